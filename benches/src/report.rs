//! Reports: the versioned JSON document, the wrk2-style text summary and the `.hgrm`
//! percentile spectrum.
//!
//! The JSON carries every histogram in HdrHistogram V2 + base64 ([`crate::hist::encode`]), so
//! [`RunReport::merge`] can combine runs exactly (histograms add; nothing is averaged).

use std::{fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{
    LoadError,
    hist::{self, Counters, Samples},
};

/// Identifies the JSON format; bump [`FORMAT_VERSION`] on incompatible changes.
pub const FORMAT: &str = "ringtun-load";
/// Version of the JSON format.
pub const FORMAT_VERSION: u32 = 1;

/// Decoded histograms of a report: `(corrected, uncorrected, send_lag)`.
pub type Decoded = (Histogram<u64>, Histogram<u64>, Histogram<u64>);

/// Percentile summary of one histogram, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of values.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Maximum.
    pub max: u64,
}

impl Summary {
    /// Summarizes `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            mean: h.mean(),
            stdev: h.stdev(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

/// One second of the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the measured window began.
    pub second: u64,
    /// Requests with their intended time in this second.
    pub count: u64,
    /// Median corrected latency, µs.
    pub p50_us: u64,
    /// 99th percentile corrected latency, µs.
    pub p99_us: u64,
    /// Maximum corrected latency, µs.
    pub max_us: u64,
}

/// Encoded histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedHistograms {
    /// Corrected latency.
    pub corrected: String,
    /// Uncorrected latency.
    pub uncorrected: String,
    /// Send lag.
    pub send_lag: String,
}

/// A run's report, as written by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Mode: `http`, `tcp-rr`, or `merged`.
    pub mode: String,
    /// What was loaded.
    pub target: String,
    /// Worker threads.
    pub threads: usize,
    /// Connections.
    pub connections: usize,
    /// IO driver.
    pub driver: String,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warmup seconds.
    pub warmup_s: f64,
    /// Target rate, req/s; 0 is closed loop.
    pub target_rate: f64,
    /// Responses per second in the measured window.
    pub achieved_rate: f64,
    /// False when the run cannot be trusted; see `invalid_reasons`.
    pub valid: bool,
    /// Why the run is invalid.
    pub invalid_reasons: Vec<String>,
    /// Counts.
    pub counters: Counters,
    /// Connections that failed at start.
    pub failed_initial_connections: u64,
    /// Corrected latency summary, µs.
    pub corrected: Summary,
    /// Uncorrected latency summary, µs.
    pub uncorrected: Summary,
    /// Send lag summary, µs.
    pub send_lag: Summary,
    /// Corrected latency per second.
    pub timeline: Vec<TimelinePoint>,
    /// The histograms, HdrHistogram V2 in base64.
    pub histograms: EncodedHistograms,
}

/// Run facts a report needs besides the samples.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Mode name.
    pub mode: String,
    /// Target.
    pub target: String,
    /// Threads.
    pub threads: usize,
    /// Connections.
    pub connections: usize,
    /// IO driver.
    pub driver: String,
    /// Measured window.
    pub duration: Duration,
    /// Warmup.
    pub warmup: Duration,
    /// Target rate (0: closed loop).
    pub rate: f64,
    /// Connections that failed at start.
    pub failed_initial_connections: u64,
}

/// The achieved rate must reach this share of the target.
pub const MIN_RATE_SHARE: f64 = 0.99;

/// The reasons a run is invalid (empty when it is valid).
pub fn invalid_reasons(target: f64, achieved: f64, failed_connections: u64) -> Vec<String> {
    let mut r = Vec::new();
    if target > 0.0 && achieved < MIN_RATE_SHARE * target {
        r.push(format!(
            "achieved rate {achieved:.1} req/s is below {:.0} % of the target {target:.1} req/s",
            MIN_RATE_SHARE * 100.0
        ));
    }
    if failed_connections > 0 {
        r.push(format!(
            "{failed_connections} connections failed to establish"
        ));
    }
    r
}

impl RunReport {
    /// Builds the report of a run.
    pub fn new(info: &RunInfo, s: &Samples) -> Result<Self, LoadError> {
        let secs = info.duration.as_secs_f64();
        let achieved = s.counters.responses as f64 / secs;
        let reasons = invalid_reasons(info.rate, achieved, info.failed_initial_connections);
        let max_second = info.duration.as_secs_f64().ceil() as usize;
        let timeline = s
            .timeline
            .iter()
            .take(max_second.max(1))
            .enumerate()
            .map(|(i, h)| TimelinePoint {
                second: i as u64,
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
            })
            .collect();
        Ok(Self {
            format: FORMAT.to_owned(),
            version: FORMAT_VERSION,
            mode: info.mode.clone(),
            target: info.target.clone(),
            threads: info.threads,
            connections: info.connections,
            driver: info.driver.clone(),
            duration_s: secs,
            warmup_s: info.warmup.as_secs_f64(),
            target_rate: info.rate,
            achieved_rate: achieved,
            valid: reasons.is_empty(),
            invalid_reasons: reasons,
            counters: s.counters,
            failed_initial_connections: info.failed_initial_connections,
            corrected: Summary::of(&s.corrected),
            uncorrected: Summary::of(&s.uncorrected),
            send_lag: Summary::of(&s.send_lag),
            timeline,
            histograms: EncodedHistograms {
                corrected: hist::encode(&s.corrected)?,
                uncorrected: hist::encode(&s.uncorrected)?,
                send_lag: hist::encode(&s.send_lag)?,
            },
        })
    }

    /// The JSON text.
    pub fn to_json(&self) -> Result<String, LoadError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Parses a report, checking its format and version.
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let r: Self = serde_json::from_str(text)?;
        if r.format != FORMAT || r.version != FORMAT_VERSION {
            return Err(LoadError::BadReport {
                reason: format!("unsupported format {} v{}", r.format, r.version),
            });
        }
        Ok(r)
    }

    /// The decoded histograms: `(corrected, uncorrected, send_lag)`.
    pub fn decode(&self) -> Result<Decoded, LoadError> {
        Ok((
            hist::decode(&self.histograms.corrected)?,
            hist::decode(&self.histograms.uncorrected)?,
            hist::decode(&self.histograms.send_lag)?,
        ))
    }

    /// Merges reports of runs that happened *at the same time* (e.g. several generator
    /// machines): histograms and counters add, rates add, the window is the longest.
    pub fn merge(reports: &[Self]) -> Result<Self, LoadError> {
        let first = reports.first().ok_or_else(|| LoadError::BadReport {
            reason: "nothing to merge".to_owned(),
        })?;
        let mut s = Samples::new();
        let mut rate = 0.0;
        let mut conns = 0;
        let mut threads = 0;
        let mut failed = 0;
        let mut duration: f64 = 0.0;
        for r in reports {
            let (c, u, l) = r.decode()?;
            hist::add_hist(&mut s.corrected, &c);
            hist::add_hist(&mut s.uncorrected, &u);
            hist::add_hist(&mut s.send_lag, &l);
            s.counters.add(&r.counters);
            rate += r.target_rate;
            conns += r.connections;
            threads += r.threads;
            failed += r.failed_initial_connections;
            duration = duration.max(r.duration_s);
        }
        let info = RunInfo {
            mode: "merged".to_owned(),
            target: first.target.clone(),
            threads,
            connections: conns,
            driver: first.driver.clone(),
            duration: Duration::from_secs_f64(duration.max(1e-3)),
            warmup: Duration::from_secs_f64(first.warmup_s),
            rate,
            failed_initial_connections: failed,
        };
        let mut out = Self::new(&info, &s)?;
        for r in reports {
            for reason in &r.invalid_reasons {
                out.invalid_reasons.push(format!("{}: {reason}", r.target));
            }
        }
        out.valid = out.invalid_reasons.is_empty();
        Ok(out)
    }
}

/// Formats µs as a human latency.
pub fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.0}us")
    }
}

/// The percentile spectrum in HdrHistogram's `.hgrm` text format, values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let ms = v.value_iterated_to() as f64 / 1e3;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{ms:12.3} {q:14.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{ms:12.3} {q:14.12} {total:10}");
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1e3,
        h.stdev() / 1e3
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1e3,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        // HdrHistogram's sub-bucket count: the power of two that holds 2·10^digits values.
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    );
    out
}

fn distribution(out: &mut String, title: &str, h: &Histogram<u64>) {
    let _ = writeln!(out, "  {title}");
    // Quantiles as written (0.999, not 99.9 / 100, which rounds above 0.999).
    for q in [0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1.0] {
        let v = h.value_at_quantile(q);
        let _ = writeln!(out, " {:7.3}%  {:>10}", q * 100.0, fmt_us(v as f64));
    }
}

/// The wrk2-style text summary, including the detailed corrected spectrum.
pub fn text_summary(r: &RunReport) -> Result<String, LoadError> {
    let (c, u, l) = r.decode()?;
    let mut out = String::new();
    let loop_kind = if r.target_rate > 0.0 {
        format!("open loop at {:.0} req/s", r.target_rate)
    } else {
        "closed loop".to_owned()
    };
    let _ = writeln!(
        out,
        "Running {:.1}s {} test @ {} ({loop_kind}, {} driver)",
        r.duration_s, r.mode, r.target, r.driver
    );
    let _ = writeln!(
        out,
        "  {} threads and {} connections, warmup {:.1}s",
        r.threads, r.connections, r.warmup_s
    );
    let _ = writeln!(
        out,
        "  Latency (corrected)   mean {:>9}  stdev {:>9}  max {:>9}",
        fmt_us(r.corrected.mean),
        fmt_us(r.corrected.stdev),
        fmt_us(r.corrected.max as f64)
    );
    distribution(
        &mut out,
        "Latency Distribution (corrected, from intended send time)",
        &c,
    );
    distribution(&mut out, "Uncorrected Latency (from actual send time)", &u);
    if l.is_empty() {
        let _ = writeln!(out, "  Send lag: not applicable (closed loop)");
    } else {
        distribution(&mut out, "Send lag (generator lateness)", &l);
    }
    let _ = writeln!(out, "\n  Detailed Percentile spectrum (corrected):");
    out.push_str(&hgrm(&c));
    let _ = writeln!(
        out,
        "----------------------------------------------------------"
    );
    let k = &r.counters;
    let _ = writeln!(
        out,
        "  {} requests in {:.2}s, {:.2}MB read, {:.2}MB written",
        k.responses,
        r.duration_s,
        k.bytes_read as f64 / 1e6,
        k.bytes_written as f64 / 1e6
    );
    if k.errors() > 0 || k.non_2xx_3xx > 0 {
        let _ = writeln!(
            out,
            "  Errors: connect {}, read {}, write {}, protocol {}, timeout {}; non-2xx/3xx {}",
            k.connect_errors,
            k.read_errors,
            k.write_errors,
            k.protocol_errors,
            k.timeouts,
            k.non_2xx_3xx
        );
    }
    if r.target_rate > 0.0 {
        let _ = writeln!(
            out,
            "Requests/sec: {:10.2}  (target {:.2}, {:.1} %)",
            r.achieved_rate,
            r.target_rate,
            100.0 * r.achieved_rate / r.target_rate
        );
    } else {
        let _ = writeln!(out, "Requests/sec: {:10.2}", r.achieved_rate);
    }
    let _ = writeln!(
        out,
        "Transfer/sec: {:10.2}MB",
        k.bytes_read as f64 / 1e6 / r.duration_s
    );
    if r.valid {
        let _ = writeln!(out, "Run: VALID");
    } else {
        let _ = writeln!(out, "Run: INVALID");
        for reason in &r.invalid_reasons {
            let _ = writeln!(out, "  - {reason}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> RunReport {
        let mut s = Samples::new();
        for i in 1..=1000u64 {
            s.record(Duration::from_micros(i * 10), Duration::from_micros(i), 0);
            s.record_lag(Duration::from_micros(i % 20));
        }
        s.counters.responses = 1000;
        let info = RunInfo {
            mode: "http".into(),
            target: "http://127.0.0.1:1/".into(),
            threads: 2,
            connections: 10,
            driver: "io_uring".into(),
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            rate: 1000.0,
            failed_initial_connections: 0,
        };
        RunReport::new(&info, &s).expect("report")
    }

    #[test]
    fn json_round_trip() {
        let r = sample_report();
        assert!(r.valid, "{:?}", r.invalid_reasons);
        let text = r.to_json().expect("json");
        let back = RunReport::from_json(&text).expect("parses");
        // Floats may differ in the last bit through JSON; everything exact must be exact.
        assert_eq!(back.histograms, r.histograms);
        assert_eq!(back.counters, r.counters);
        assert_eq!(back.timeline, r.timeline);
        assert_eq!(
            (back.corrected.p99, back.uncorrected.max),
            (r.corrected.p99, r.uncorrected.max)
        );
        assert!((back.send_lag.mean - r.send_lag.mean).abs() < 1e-9);
        let (c, _, _) = back.decode().expect("decodes");
        assert_eq!(c.len(), 1000);
        assert_eq!(c.value_at_quantile(0.99), r.corrected.p99);
        let bad = text.replace("\"version\": 1", "\"version\": 99");
        assert!(RunReport::from_json(&bad).is_err());
    }

    #[test]
    fn merge_adds_histograms_and_rates() {
        let r = sample_report();
        let m = RunReport::merge(&[r.clone(), r.clone()]).expect("merge");
        assert_eq!(m.corrected.count, 2000);
        assert_eq!(m.corrected.p99, r.corrected.p99);
        assert_eq!(m.target_rate, 2000.0);
        assert_eq!(m.counters.responses, 2000);
        assert!(m.valid);
    }

    #[test]
    fn validity_rules() {
        assert!(invalid_reasons(1000.0, 990.0, 0).is_empty());
        assert_eq!(invalid_reasons(1000.0, 989.0, 0).len(), 1);
        assert_eq!(invalid_reasons(0.0, 5.0, 2).len(), 1);
        assert!(invalid_reasons(0.0, 5.0, 0).is_empty());
    }

    #[test]
    fn texts_render() {
        let r = sample_report();
        let t = text_summary(&r).expect("text");
        assert!(t.contains("Detailed Percentile spectrum"));
        assert!(t.contains("Run: VALID"));
        let (c, _, _) = r.decode().expect("decodes");
        let h = hgrm(&c);
        assert!(h.contains("#[Max     ="));
        assert!(h.lines().count() > 20);
    }
}
