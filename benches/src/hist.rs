//! Latency recording: one [`Samples`] per worker, merged at the end.
//!
//! Histograms are HdrHistograms from 1 µs to 60 s at 3 significant digits (values in µs,
//! larger values saturate at 60 s). A worker records into its own [`Samples`] with no sharing;
//! [`Samples::merge`] adds them up once the run is over. Percentiles are only ever read from a
//! merged histogram, never averaged. For the latency-over-time plot each worker also keeps a
//! coarse (2-digit) histogram per second of the run.
//!
//! Histograms travel in reports as HdrHistogram V2 serialization in base64, so reports from
//! separate runs or machines can be merged exactly.

use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::{
    Histogram,
    serialization::{Deserializer, Serializer, V2Serializer},
};

use crate::LoadError;

/// Lowest trackable latency, µs.
pub const LOWEST_US: u64 = 1;
/// Highest trackable latency, µs (60 s).
pub const HIGHEST_US: u64 = 60_000_000;
/// Significant decimal digits of the main histograms.
pub const SIGFIG: u8 = 3;
/// Significant digits of the per-second histograms.
const TIMELINE_SIGFIG: u8 = 2;

/// A new, empty main histogram.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("constant bounds are valid")
}

fn new_timeline_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, TIMELINE_SIGFIG)
        .expect("constant bounds are valid")
}

/// A duration as whole microseconds, at least 1 (the histogram's floor).
pub fn as_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .max(LOWEST_US)
}

/// Event counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Requests completed with a full response (any status).
    pub responses: u64,
    /// HTTP responses with a status outside 200–399.
    pub non_2xx_3xx: u64,
    /// Requests that got no full response within `--timeout`.
    pub timeouts: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
    /// Reads that failed or met an early close.
    pub read_errors: u64,
    /// Writes that failed.
    pub write_errors: u64,
    /// Responses that were not valid HTTP (or a short echo).
    pub protocol_errors: u64,
    /// Bytes read from the target.
    pub bytes_read: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        self.responses += other.responses;
        self.non_2xx_3xx += other.non_2xx_3xx;
        self.timeouts += other.timeouts;
        self.connect_errors += other.connect_errors;
        self.read_errors += other.read_errors;
        self.write_errors += other.write_errors;
        self.protocol_errors += other.protocol_errors;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
    }

    /// All errors, timeouts included.
    pub fn errors(&self) -> u64 {
        self.timeouts
            + self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.protocol_errors
    }
}

/// Everything a worker measures.
#[derive(Debug, Clone)]
pub struct Samples {
    /// Latency from each request's intended send time (coordinated-omission corrected), µs.
    pub corrected: Histogram<u64>,
    /// Latency from each request's actual send time, µs.
    pub uncorrected: Histogram<u64>,
    /// How late the generator sent, when it was waiting for the send time, µs.
    pub send_lag: Histogram<u64>,
    /// Corrected latency per second of the measured window.
    pub timeline: Vec<Histogram<u64>>,
    /// Counts.
    pub counters: Counters,
}

impl Default for Samples {
    fn default() -> Self {
        Self::new()
    }
}

impl Samples {
    /// Empty samples.
    pub fn new() -> Self {
        Self {
            corrected: new_hist(),
            uncorrected: new_hist(),
            send_lag: new_hist(),
            timeline: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Records one request: corrected and uncorrected latency, at `second` of the run.
    pub fn record(&mut self, corrected: Duration, uncorrected: Duration, second: usize) {
        let c = as_us(corrected);
        self.corrected.saturating_record(c);
        self.uncorrected.saturating_record(as_us(uncorrected));
        if second < 24 * 3600 {
            if self.timeline.len() <= second {
                self.timeline.resize_with(second + 1, new_timeline_hist);
            }
            self.timeline[second].saturating_record(c);
        }
    }

    /// Records how late a send was.
    pub fn record_lag(&mut self, lag: Duration) {
        self.send_lag.saturating_record(as_us(lag));
    }

    /// Adds `other` into `self`. Histograms have identical bounds, so this cannot lose data.
    pub fn merge(&mut self, other: &Self) {
        add_hist(&mut self.corrected, &other.corrected);
        add_hist(&mut self.uncorrected, &other.uncorrected);
        add_hist(&mut self.send_lag, &other.send_lag);
        if self.timeline.len() < other.timeline.len() {
            self.timeline
                .resize_with(other.timeline.len(), new_timeline_hist);
        }
        for (a, b) in self.timeline.iter_mut().zip(&other.timeline) {
            add_hist(a, b);
        }
        self.counters.add(&other.counters);
    }
}

/// Adds `b` into `a`; values beyond `a`'s range (only possible from a foreign report) are
/// clamped to the highest trackable value.
pub fn add_hist(a: &mut Histogram<u64>, b: &Histogram<u64>) {
    if a.add(b).is_err() {
        for v in b.iter_recorded() {
            a.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Encodes a histogram as base64 of its HdrHistogram V2 serialization.
pub fn encode(h: &Histogram<u64>) -> Result<String, LoadError> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| LoadError::BadReport {
            reason: format!("cannot serialize histogram: {e}"),
        })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Decodes [`encode`]'s output.
pub fn decode(s: &str) -> Result<Histogram<u64>, LoadError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| LoadError::BadReport {
            reason: format!("histogram is not base64: {e}"),
        })?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| LoadError::BadReport {
            reason: format!("cannot decode histogram: {e:?}"),
        })?;
    let mut out = new_hist();
    add_hist(&mut out, &h);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Samples::new();
        let mut b = Samples::new();
        let mut all = Samples::new();
        for i in 0..10_000u64 {
            let c = Duration::from_micros(1 + i * 37 % 50_000);
            let u = Duration::from_micros(1 + i % 900);
            let s = (i / 3000) as usize;
            if i % 3 == 0 { &mut a } else { &mut b }.record(c, u, s);
            all.record(c, u, s);
        }
        a.counters.responses = 3;
        b.counters.responses = 4;
        a.merge(&b);
        assert_eq!(a.corrected, all.corrected);
        assert_eq!(a.uncorrected, all.uncorrected);
        assert_eq!(a.timeline.len(), 4);
        assert_eq!(a.counters.responses, 7);
        for q in [0.5, 0.99, 0.999] {
            assert_eq!(
                a.corrected.value_at_quantile(q),
                all.corrected.value_at_quantile(q)
            );
        }
    }

    #[test]
    fn saturates_instead_of_failing() {
        let mut s = Samples::new();
        s.record(Duration::from_secs(3600), Duration::ZERO, 0);
        assert_eq!(s.corrected.len(), 1);
        assert!(s.corrected.max() >= HIGHEST_US);
        assert_eq!(s.uncorrected.min(), LOWEST_US);
    }

    #[test]
    fn encode_round_trip() {
        let mut h = new_hist();
        for v in [1u64, 10, 1_000, 123_456, 59_000_000] {
            h.record_n(v, v % 7 + 1).expect("in range");
        }
        let text = encode(&h).expect("encodes");
        let back = decode(&text).expect("decodes");
        assert_eq!(back, h);
        assert!(decode("not base64!").is_err());
        assert!(decode("AAAA").is_err());
    }
}
