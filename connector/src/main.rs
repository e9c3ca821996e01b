//! `ringtun`: the connector. The tunnel commands arrive with the tunnel issue; for now the
//! binary only reports its version, so the workspace layout is in place.
use clap::Parser;

/// ringtun connector.
#[derive(Parser)]
#[command(
    version,
    about = "ringtun connector: dials out to an edge and serves origins"
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("no command yet: the tunnel commands are not built (see issue 3)")
}
