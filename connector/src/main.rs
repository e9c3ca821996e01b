//! `ringtun`: the connector binary. It parses the command line (with the config file's keys as
//! flags, [`ringtun_connector::cli::parse_args`]), sets up tracing (text or JSON lines,
//! `--log-format`; `--loglevel`; also to `--logfile`) and hands over to
//! [`ringtun_connector::cli::run`]; everything else lives in the library.
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use ringtun_connector::cli::{GlobalArgs, LogFormat, parse_args, run};
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};

#[global_allocator]
static ALLOCATOR: ringtun_core::alloc::CountingAllocator = ringtun_core::alloc::CountingAllocator;

fn init_tracing(global: &GlobalArgs) -> anyhow::Result<()> {
    // `--loglevel` (flag, TUNNEL_LOGLEVEL or config key) wins over RUST_LOG.
    let filter = match global.loglevel {
        Some(level) => tracing_subscriber::EnvFilter::new(level.directive()),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let (writer, ansi) = match &global.logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open --logfile {}: {e}", path.display()))?;
            (
                BoxMakeWriter::new(std::io::stderr.and(Arc::new(file))),
                false,
            )
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let done = match global.log_format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    done.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

fn main() -> ExitCode {
    let (cli, notes) = match parse_args(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    if let Err(e) = init_tracing(&cli.global) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    for note in &notes {
        note.log();
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.global.logfile.is_some() {
                // So that the file, not only the terminal, says why the process ended.
                tracing::error!(error = %e, "exiting");
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
