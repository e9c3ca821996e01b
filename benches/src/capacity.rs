//! `capacity`: steps the open-loop rate up, one short run per step, until a run is invalid or
//! its corrected p99 breaks the SLO, and reports the highest rate that passed.

use std::time::Duration;

use crate::{
    LoadError,
    engine::{self, LoadConfig},
    report::{RunInfo, RunReport},
};

/// One step of the search.
#[derive(Debug, Clone)]
pub struct Step {
    /// Target rate.
    pub rate: f64,
    /// The run's report.
    pub report: RunReport,
    /// Whether it met the SLO and was valid.
    pub pass: bool,
}

/// The rates tried: `start`, `start·factor`, ... up to `max` (at least one).
pub fn rates(start: f64, factor: f64, max: f64) -> Vec<f64> {
    let mut out = vec![start];
    if factor <= 1.0 {
        return out;
    }
    let mut r = start * factor;
    while r <= max && out.len() < 200 {
        out.push(r.round());
        r *= factor;
    }
    out
}

/// Runs the search; `on_step` sees each step as it finishes. Returns the steps and the highest
/// passing rate.
pub fn search(
    base: &LoadConfig,
    info: &RunInfo,
    slo_p99: Duration,
    rates_to_try: &[f64],
    mut on_step: impl FnMut(&Step),
) -> Result<(Vec<Step>, Option<f64>), LoadError> {
    let mut steps = Vec::new();
    let mut best = None;
    for &rate in rates_to_try {
        let cfg = LoadConfig {
            rate,
            ..base.clone()
        };
        let res = engine::run(&cfg)?;
        let report = RunReport::new(
            &RunInfo {
                rate,
                threads: res.threads,
                driver: res.driver.clone(),
                failed_initial_connections: res.failed_initial_connections,
                ..info.clone()
            },
            &res.samples,
        )?;
        let pass = report.valid
            && u128::from(report.corrected.p99) <= slo_p99.as_micros()
            && report.counters.errors() == 0;
        let step = Step { rate, report, pass };
        on_step(&step);
        steps.push(step);
        if !pass {
            break;
        }
        best = Some(rate);
    }
    Ok((steps, best))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_rates() {
        assert_eq!(rates(100.0, 2.0, 1000.0), vec![100.0, 200.0, 400.0, 800.0]);
        assert_eq!(rates(100.0, 1.0, 1000.0), vec![100.0]);
        assert_eq!(rates(5.0, 1.5, 5.0), vec![5.0]);
    }
}
