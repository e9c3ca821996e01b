//! `ringtun-load`: parses the command line, sets up tracing, and runs
//! [`ringtun_benches::run`]. Exits 2 when the run is INVALID.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = ringtun_benches::cli::Cli::parse();
    if !ringtun_benches::run(cli)? {
        std::process::exit(2);
    }
    Ok(())
}
