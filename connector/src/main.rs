//! `ringtun`: the connector binary. It parses the command line, sets up tracing (text or JSON
//! lines, `--log-format`) and hands over to [`ringtun_connector::cli::run`]; everything else
//! lives in the library.
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ringtun_connector::cli::{Cli, LogFormat, run};

#[global_allocator]
static ALLOCATOR: ringtun_core::alloc::CountingAllocator = ringtun_core::alloc::CountingAllocator;

fn init_tracing(format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let done = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    done.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing(cli.global.log_format) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
