//! `ringtun-load`: ringtun's load generator and benchmarks.
//!
//! The binary only parses the command line, sets up tracing and calls the module that runs
//! the chosen subcommand.

use clap::{Parser, Subcommand};

mod link_bench;

/// ringtun's load generator and benchmarks.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One link over loopback with 1, 16 and 256 streams against plain TCP, in the same run.
    Link(link_bench::LinkArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Link(args) => link_bench::run(args),
    }
}
