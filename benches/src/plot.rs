//! `--plot FILE.svg`: two panels drawn as plain SVG. Left, latency by percentile with the
//! percentile axis on a log scale of 1/(1−p) (as HdrHistogram's plotter does), corrected and
//! uncorrected. Right, corrected p50/p99/max latency for each second of the run.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::{LoadError, report::RunReport};

const W: f64 = 1000.0;
const H: f64 = 420.0;
const PW: f64 = 400.0;
const PH: f64 = 300.0;
const TOP: f64 = 60.0;
const LEFT1: f64 = 70.0;
const LEFT2: f64 = 570.0;
/// Percentile axis reaches 99.999 %.
const MAX_NINES: f64 = 5.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Points `(nines, value_ms)` of the percentile curve.
fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    if h.is_empty() {
        return pts;
    }
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let nines = if q >= 1.0 {
            MAX_NINES
        } else {
            (-(1.0 - q).log10()).min(MAX_NINES)
        };
        pts.push((nines, v.value_iterated_to() as f64 / 1e3));
    }
    pts
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 1.5, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn polyline(out: &mut String, pts: &[(f64, f64)], color: &str) {
    if pts.is_empty() {
        return;
    }
    let mut d = String::new();
    for (x, y) in pts {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        d.trim_end()
    );
}

fn axes(out: &mut String, left: f64, title: &str, xlabel: &str, ymax: f64) {
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{TOP}" width="{PW}" height="{PH}" fill="#fafafa" stroke="#333"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="14">{}</text>"#,
        left + PW / 2.0,
        TOP - 10.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text>"#,
        left + PW / 2.0,
        TOP + PH + 40.0,
        esc(xlabel)
    );
    for i in 0..=5 {
        let v = ymax * f64::from(i) / 5.0;
        let y = TOP + PH - PH * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            left + PW,
            left - 5.0,
            y + 4.0,
            trim_num(v)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="12" transform="rotate(-90 {} {})" text-anchor="middle">latency (ms)</text>"#,
        left - 50.0,
        TOP + PH / 2.0,
        left - 50.0,
        TOP + PH / 2.0
    );
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Renders the SVG of a report.
pub fn svg(r: &RunReport) -> Result<String, LoadError> {
    let (c, u, _) = r.decode()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="13">{}</text>"#,
        esc(&format!(
            "ringtun-load {} {} — {} conns, target {} req/s, achieved {:.1} req/s{}",
            r.mode,
            r.target,
            r.connections,
            if r.target_rate > 0.0 {
                format!("{:.0}", r.target_rate)
            } else {
                "closed-loop".into()
            },
            r.achieved_rate,
            if r.valid { "" } else { " (INVALID)" }
        ))
    );
    // Left: percentile spectrum.
    let ymax = nice_max(c.max().max(u.max()) as f64 / 1e3);
    axes(&mut out, LEFT1, "Latency by percentile", "percentile", ymax);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = LEFT1 + PW * i as f64 / MAX_NINES;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle" font-size="11">{label}</text>"##,
            TOP + PH,
            TOP + PH + 16.0
        );
    }
    let map = |(n, ms): (f64, f64)| {
        (
            LEFT1 + PW * n / MAX_NINES,
            TOP + PH - PH * (ms / ymax).min(1.0),
        )
    };
    let pc: Vec<_> = spectrum(&c).into_iter().map(map).collect();
    let pu: Vec<_> = spectrum(&u).into_iter().map(map).collect();
    polyline(&mut out, &pc, "#d62728");
    polyline(&mut out, &pu, "#1f77b4");
    legend(
        &mut out,
        LEFT1 + 10.0,
        &[("corrected", "#d62728"), ("uncorrected", "#1f77b4")],
    );

    // Right: latency over time.
    let tmax = nice_max(r.timeline.iter().map(|p| p.max_us).max().unwrap_or(1) as f64 / 1e3);
    axes(
        &mut out,
        LEFT2,
        "Corrected latency over time",
        "seconds into the run",
        tmax,
    );
    let secs = r.timeline.len().max(1) as f64;
    for i in 0..=4 {
        let t = secs * f64::from(i) / 4.0;
        let x = LEFT2 + PW * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"#,
            TOP + PH + 16.0,
            trim_num(t)
        );
    }
    let series = |f: &dyn Fn(&crate::report::TimelinePoint) -> u64| -> Vec<(f64, f64)> {
        r.timeline
            .iter()
            .map(|p| {
                let x = LEFT2 + PW * (p.second as f64 + 0.5) / secs;
                let ms = f(p) as f64 / 1e3;
                (x, TOP + PH - PH * (ms / tmax).min(1.0))
            })
            .collect()
    };
    polyline(&mut out, &series(&|p| p.max_us), "#7f7f7f");
    polyline(&mut out, &series(&|p| p.p99_us), "#d62728");
    polyline(&mut out, &series(&|p| p.p50_us), "#2ca02c");
    legend(
        &mut out,
        LEFT2 + 10.0,
        &[("max", "#7f7f7f"), ("p99", "#d62728"), ("p50", "#2ca02c")],
    );
    out.push_str("</svg>\n");
    Ok(out)
}

fn legend(out: &mut String, x: f64, items: &[(&str, &str)]) {
    for (i, (name, color)) in items.iter().enumerate() {
        let y = TOP + 15.0 + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}" font-size="11">{name}</text>"#,
            x + 20.0,
            x + 25.0,
            y + 4.0
        );
    }
}

/// Line colours of overlaid curves, in order.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// Renders the corrected latency percentile curves of several reports on one chart, labelled
/// in order (for comparing paths measured at the same rate).
pub fn overlay(title: &str, curves: &[(String, RunReport)]) -> Result<String, LoadError> {
    let mut decoded = Vec::with_capacity(curves.len());
    for (label, r) in curves {
        let (c, _, _) = r.decode()?;
        decoded.push((label.as_str(), r, c));
    }
    let left = LEFT1 + 30.0;
    let width = left + PW + 260.0;
    let height = H;
    // The y axis stops at the largest p99.99, so one path's outlier max does not flatten the rest.
    let top_value = decoded
        .iter()
        .map(|(_, _, c)| c.value_at_quantile(0.9999))
        .max()
        .unwrap_or(1);
    let ymax = nice_max(top_value as f64 / 1e3);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="13">{}</text>"#,
        esc(title)
    );
    axes(
        &mut out,
        left,
        "Corrected latency by percentile",
        "percentile",
        ymax,
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = left + PW * i as f64 / MAX_NINES;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle" font-size="11">{label}</text>"##,
            TOP + PH,
            TOP + PH + 16.0
        );
    }
    let mut items = Vec::with_capacity(decoded.len());
    for (i, (label, r, c)) in decoded.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<_> = spectrum(c)
            .into_iter()
            .map(|(n, ms)| {
                (
                    left + PW * n / MAX_NINES,
                    TOP + PH - PH * (ms / ymax).min(1.0),
                )
            })
            .collect();
        polyline(&mut out, &pts, color);
        items.push((
            format!(
                "{label}: {:.0} req/s{}",
                r.achieved_rate,
                if r.valid { "" } else { " INVALID" }
            ),
            color,
        ));
    }
    let refs: Vec<(&str, &str)> = items.iter().map(|(l, c)| (l.as_str(), *c)).collect();
    legend(&mut out, left + PW + 15.0, &refs);
    out.push_str("</svg>\n");
    Ok(out)
}
