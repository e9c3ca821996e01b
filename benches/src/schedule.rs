//! Open-loop send schedule (the wrk2 model) and the pacing that follows it.
//!
//! A target rate `R` is spread over `C` connections. Connection `i` sends its `k`-th request at
//! the absolute offset `(i + k·C) / R` from the common start, so the whole run is one evenly
//! spaced stream of `R` requests per second, interleaved across connections. Offsets are
//! computed from `k` every time, never accumulated, so they do not drift.
//!
//! A connection that is late (its previous response took longer than its interval) sends the
//! next request at once; latency is still measured from the *intended* time, which is what
//! corrects coordinated omission.
//!
//! Pacing: sleeping on a timer alone lands 50–100 µs or more late. [`wait_until`] sleeps on a
//! compio timer until `spin` before the deadline, then yields in a loop (letting other
//! connections of this worker run) until the deadline passes. The generator reports how late it
//! really sent ("send lag").

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// The intended send offset, from the run's start, of request `k` of connection `conn` when
/// `conns` connections share `rate` requests per second. `rate` must be positive.
pub fn offset(conn: u64, k: u64, conns: u64, rate: f64) -> Duration {
    let slot = conn as f64 + k as f64 * conns.max(1) as f64;
    Duration::from_secs_f64(slot / rate)
}

/// One connection's position in the schedule.
#[derive(Debug, Clone)]
pub struct ConnSchedule {
    start: Instant,
    conn: u64,
    conns: u64,
    rate: f64,
    k: u64,
}

impl ConnSchedule {
    /// The schedule of connection `conn` of `conns`, at `rate` req/s in total, from `start`.
    pub fn new(start: Instant, conn: u64, conns: u64, rate: f64) -> Self {
        Self {
            start,
            conn,
            conns,
            rate,
            k: 0,
        }
    }

    /// The intended send time of the next request, and advances.
    pub fn next_intended(&mut self) -> Instant {
        let t = self.start + offset(self.conn, self.k, self.conns, self.rate);
        self.k += 1;
        t
    }

    /// Requests scheduled so far.
    pub fn scheduled(&self) -> u64 {
        self.k
    }
}

/// Waits until `deadline`: a timer until `spin` before it, then cooperative spinning.
pub async fn wait_until(deadline: Instant, spin: Duration) {
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    if deadline - now > spin {
        compio::time::sleep_until(deadline - spin).await;
    }
    while Instant::now() < deadline {
        YieldNow(false).await;
    }
}

/// Yields once to the executor.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Parses a duration such as `500us`, `250ms`, `10s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (use us, ms, s, m, h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_evenly() {
        // 4 connections at 1000 req/s: together one request every millisecond.
        let mut all: Vec<Duration> = (0..4)
            .flat_map(|c| (0..100).map(move |k| offset(c, k, 4, 1000.0)))
            .collect();
        all.sort();
        for (i, t) in all.iter().enumerate() {
            let want = Duration::from_millis(i as u64);
            let diff = t.abs_diff(want);
            assert!(diff < Duration::from_nanos(2), "{i}: {t:?}");
        }
    }

    #[test]
    fn no_drift_over_long_runs() {
        // 10 connections at 2,000 req/s for an hour: the last request of connection 3 lands on
        // its exact slot.
        let k = 2_000 * 3_600 / 10 - 1;
        let t = offset(3, k, 10, 2_000.0);
        let want_ns = (3 + k * 10) as u128 * 500_000;
        assert!(t.as_nanos().abs_diff(want_ns) < 10, "{t:?}");
        let mut s = ConnSchedule::new(Instant::now(), 1, 2, 10.0);
        let a = s.next_intended();
        let b = s.next_intended();
        assert_eq!(b - a, Duration::from_millis(200));
        assert_eq!(s.scheduled(), 2);
    }

    #[test]
    fn fractional_rates() {
        assert_eq!(offset(0, 1, 1, 0.5), Duration::from_secs(2));
        assert_eq!(offset(1, 0, 3, 3.0), Duration::from_secs_f64(1.0 / 3.0));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("40us"), Ok(Duration::from_micros(40)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn wait_until_is_not_early() {
        let rt = compio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            for _ in 0..5 {
                let d = Instant::now() + Duration::from_millis(2);
                wait_until(d, Duration::from_micros(50)).await;
                assert!(Instant::now() >= d);
            }
        });
    }
}
