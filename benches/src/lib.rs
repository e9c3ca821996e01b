//! `ringtun-benches`: the library behind `ringtun-load`, the project's load generator and test
//! origin. Every performance claim of ringtun is measured with it.
//!
//! It follows wrk2 and HdrHistogram: an open loop at a fixed rate, each request timed from its
//! *intended* send time (correcting coordinated omission), full-range histograms per worker,
//! merged, never averaged. Runs that do not reach the target rate are marked INVALID.
//!
//! # Layout
//! - [`cli`]: the command line (clap).
//! - [`schedule`]: the open-loop schedule math and deadline pacing.
//! - [`engine`]: thread-per-core request/response load (`http`, `tcp-rr`), timeouts, counters.
//! - [`stream`]: bulk transfer (`tcp-stream`).
//! - [`capacity`]: the rate search against a p99 SLO.
//! - [`hold`]: many idle connections held open (`hold`).
//! - [`origin`]: the test origin (HTTP, TCP echo, TCP sink).
//! - [`http`]: request building and an incremental response/request parser.
//! - [`hist`]: per-worker samples, merge, histogram encoding.
//! - [`report`]: JSON report, text summary, `.hgrm`; [`plot`]: the SVGs (one run, overlays).
//! - [`error`]: the error type, [`LoadError`].
//!
//! [`run`] dispatches a parsed [`cli::Cli`]; `main.rs` only parses and sets up tracing.
//!
//! # Usage
//! ```text
//! ringtun-load origin --http 127.0.0.1:8080 --tcp 127.0.0.1:9000 --sink 127.0.0.1:9001
//! ringtun-load http http://127.0.0.1:8080/ -R 20000 -c 50 -t 2 -d 30s --warmup 5s \
//!     --json run.json --hgrm run.hgrm --plot run.svg
//! ringtun-load http http://127.0.0.1:8080/ -R 0 -c 50 -d 10s          # closed loop
//! ringtun-load tcp-rr 127.0.0.1:9000 -R 10000 --size 64
//! ringtun-load tcp-stream 127.0.0.1:9001 -c 4
//! ringtun-load capacity http://127.0.0.1:8080/ --slo-p99 5ms --start-rate 1000
//! ringtun-load merge a.json b.json --json all.json
//! ringtun-load http http://127.0.0.1:8080/ -R 0 -c 32 -d 5s --new-connection   # conn/s
//! ringtun-load hold http://127.0.0.1:8080/ -c 1000 -d 10s        # idle connections held
//! ringtun-load overlay --svg p.svg direct=a.json proxy=b.json    # percentile curves overlaid
//! ```
//! Generator and origin pin their workers from the first allowed core; on one machine give
//! them separate cores with `taskset -c` (or `--no-pin`). An INVALID run exits with status 2.

pub mod capacity;
pub mod cli;
pub mod engine;
pub mod error;
pub mod hist;
pub mod hold;
pub mod http;
pub mod link_bench;
pub mod origin;
pub mod plot;
pub mod report;
pub mod schedule;
pub mod stream;

use std::{io::Write as _, path::Path};

pub use error::LoadError;

use crate::{
    cli::{Cli, Command, LoadArgs, Proto, RequestArgs},
    engine::{LoadConfig, Workload},
    http::{RequestSpec, Target},
    report::{RunInfo, RunReport},
};

fn write_file(path: &Path, text: &str) -> Result<(), LoadError> {
    std::fs::write(path, text).map_err(|e| LoadError::io(format!("write {}", path.display()), e))
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn http_workload(
    url: &str,
    req: &RequestArgs,
    new_connection: bool,
) -> Result<(Target, Workload), LoadError> {
    let target = Target::parse(url)?;
    let mut headers = req
        .headers
        .iter()
        .map(|h| http::parse_header_arg(h))
        .collect::<Result<Vec<_>, _>>()?;
    if new_connection
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
    {
        headers.push(("Connection".to_owned(), "close".to_owned()));
    }
    let body = match (&req.body, &req.body_file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(p)) => {
            std::fs::read(p).map_err(|e| LoadError::io(format!("read {}", p.display()), e))?
        }
        (None, None) => Vec::new(),
    };
    let spec = RequestSpec {
        method: req.method.clone(),
        path: target.path.clone(),
        host: req.host.clone().unwrap_or_else(|| target.authority.clone()),
        headers,
        body,
    };
    Ok((
        target,
        Workload::Http {
            request: spec.encode(),
            head: spec.is_head(),
        },
    ))
}

fn load_config(
    addr: std::net::SocketAddr,
    workload: Workload,
    rate: f64,
    a: &LoadArgs,
) -> LoadConfig {
    LoadConfig {
        addr,
        workload,
        threads: a.threads.unwrap_or_else(default_threads),
        connections: a.connections,
        duration: a.duration,
        warmup: a.warmup,
        rate,
        timeout: a.timeout,
        spin: a.spin,
        progress: !a.quiet,
        pin: !a.no_pin,
        new_connection: a.new_connection,
    }
}

fn resolve_addr(s: &str) -> Result<std::net::SocketAddr, LoadError> {
    http::resolve(s).ok_or_else(|| LoadError::BadTarget {
        target: s.to_owned(),
        reason: "expected a resolvable host:port",
    })
}

/// Runs a load test and writes its outputs; returns the report.
pub fn run_load(
    mode: &str,
    target: &str,
    cfg: &LoadConfig,
    a: &LoadArgs,
) -> Result<RunReport, LoadError> {
    let res = engine::run(cfg)?;
    let info = RunInfo {
        mode: mode.to_owned(),
        target: target.to_owned(),
        threads: res.threads,
        connections: cfg.connections,
        driver: res.driver.clone(),
        duration: cfg.duration,
        warmup: cfg.warmup,
        rate: cfg.rate,
        failed_initial_connections: res.failed_initial_connections,
    };
    let report = RunReport::new(&info, &res.samples)?;
    emit(
        &report,
        a.hgrm.as_deref(),
        a.json.as_deref(),
        a.plot.as_deref(),
    )?;
    Ok(report)
}

fn emit(
    report: &RunReport,
    hgrm: Option<&Path>,
    json: Option<&Path>,
    plot: Option<&Path>,
) -> Result<(), LoadError> {
    let text = report::text_summary(report)?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if let Some(p) = hgrm {
        let (c, _, _) = report.decode()?;
        write_file(p, &report::hgrm(&c))?;
    }
    if let Some(p) = json {
        write_file(p, &report.to_json()?)?;
    }
    if let Some(p) = plot {
        write_file(p, &plot::svg(report)?)?;
    }
    Ok(())
}

/// Runs a parsed command line. Returns whether the result is valid (the binary exits non-zero
/// on an invalid run).
pub fn run(cli: Cli) -> Result<bool, LoadError> {
    match cli.command {
        Command::Http(a) => {
            let (target, workload) = http_workload(&a.url, &a.request, a.load.new_connection)?;
            let cfg = load_config(target.addr, workload, a.rate, &a.load);
            Ok(run_load("http", &a.url, &cfg, &a.load)?.valid)
        }
        Command::TcpRr(a) => {
            let addr = resolve_addr(&a.addr)?;
            let cfg = load_config(addr, Workload::Echo { size: a.size }, a.rate, &a.load);
            Ok(run_load("tcp-rr", &a.addr, &cfg, &a.load)?.valid)
        }
        Command::TcpStream(a) => {
            let cfg = stream::StreamConfig {
                addr: resolve_addr(&a.addr)?,
                threads: a.threads.unwrap_or_else(default_threads),
                connections: a.connections,
                duration: a.duration,
                warmup: a.warmup,
                chunk: a.chunk,
                pin: !a.no_pin,
            };
            let r = stream::run(&cfg)?;
            println!(
                "tcp-stream @ {}: {} connections, {:.1}s: {:.3} Gbit/s ({} bytes), {} write errors",
                a.addr,
                a.connections,
                r.duration.as_secs_f64(),
                r.gbit_per_s(),
                r.bytes,
                r.write_errors
            );
            let valid = r.failed_connections == 0;
            if !valid {
                println!(
                    "Run: INVALID\n  - {} connections failed to establish",
                    r.failed_connections
                );
            }
            Ok(valid)
        }
        Command::Capacity(a) => {
            let (addr, workload, mode) = match a.proto {
                Proto::Http => {
                    let (t, w) = http_workload(&a.target, &a.request, a.load.new_connection)?;
                    (t.addr, w, "http")
                }
                Proto::TcpRr => (
                    resolve_addr(&a.target)?,
                    Workload::Echo { size: a.size },
                    "tcp-rr",
                ),
            };
            let base = load_config(addr, workload, a.start_rate, &a.load);
            let info = RunInfo {
                mode: mode.to_owned(),
                target: a.target.clone(),
                threads: base.threads,
                connections: base.connections,
                driver: String::new(),
                duration: base.duration,
                warmup: base.warmup,
                rate: a.start_rate,
                failed_initial_connections: 0,
            };
            let rates = capacity::rates(a.start_rate, a.step_factor, a.max_rate);
            println!(
                "{:>12} {:>12} {:>12} {:>12}  result",
                "target", "achieved", "p99", "max"
            );
            let (steps, best) = capacity::search(&base, &info, a.slo_p99, &rates, |s| {
                println!(
                    "{:>12.0} {:>12.1} {:>12} {:>12}  {}",
                    s.rate,
                    s.report.achieved_rate,
                    report::fmt_us(s.report.corrected.p99 as f64),
                    report::fmt_us(s.report.corrected.max as f64),
                    if s.pass {
                        "pass"
                    } else if s.report.valid {
                        "FAIL (SLO)"
                    } else {
                        "FAIL (INVALID)"
                    }
                );
            })?;
            if let Some(last) = steps.last() {
                emit(
                    &last.report,
                    a.load.hgrm.as_deref(),
                    a.load.json.as_deref(),
                    a.load.plot.as_deref(),
                )?;
            }
            match best {
                Some(r) => println!(
                    "capacity: {r:.0} req/s meets p99 <= {}",
                    report::fmt_us(a.slo_p99.as_micros() as f64)
                ),
                None => println!("capacity: no rate tried meets the SLO"),
            }
            Ok(best.is_some())
        }
        Command::Origin(a) => {
            let parse = |s: &Option<String>| s.as_deref().map(resolve_addr).transpose();
            let cfg = origin::OriginConfig {
                http: parse(&a.http)?,
                tcp: parse(&a.tcp)?,
                sink: parse(&a.sink)?,
                body_size: a.body_size,
                delay: a.delay,
                echo: a.echo,
                threads: a.threads,
                pin: !a.no_pin,
            };
            origin::run(&cfg, |addrs| {
                let mut out = std::io::stdout().lock();
                for (k, a) in [
                    ("http", addrs.http),
                    ("tcp", addrs.tcp),
                    ("sink", addrs.sink),
                ] {
                    if let Some(a) = a {
                        let _ = writeln!(out, "listening {k} {a}");
                    }
                }
                let _ = out.flush();
            })?;
            Ok(true)
        }
        Command::Merge(a) => {
            let reports = a
                .inputs
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map_err(|e| LoadError::io(format!("read {}", p.display()), e))
                        .and_then(|t| RunReport::from_json(&t))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let merged = RunReport::merge(&reports)?;
            emit(&merged, a.hgrm.as_deref(), a.json.as_deref(), None)?;
            Ok(merged.valid)
        }
        Command::Hold(a) => hold::run(&a),
        Command::Overlay(a) => {
            let mut curves = Vec::with_capacity(a.inputs.len());
            for input in &a.inputs {
                let (label, path) = input.split_once('=').ok_or_else(|| LoadError::BadOption {
                    option: "overlay input",
                    reason: format!("{input:?} is not label=report.json"),
                })?;
                let text = std::fs::read_to_string(path)
                    .map_err(|e| LoadError::io(format!("read {path}"), e))?;
                curves.push((label.to_owned(), RunReport::from_json(&text)?));
            }
            write_file(&a.svg, &plot::overlay(&a.title, &curves)?)?;
            Ok(true)
        }
        Command::Link(a) => {
            link_bench::run(a).map_err(|e| LoadError::LinkBench(format!("{e:#}")))?;
            Ok(true)
        }
    }
}
