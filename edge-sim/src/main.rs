//! `ringtun-edge`: the edge simulator. The tunnel commands arrive with the tunnel issue; for now the
//! binary only reports its version, so the workspace layout is in place.
use clap::Parser;

/// ringtun edge simulator.
#[derive(Parser)]
#[command(
    version,
    about = "ringtun edge simulator: data centers, registry, public ingress"
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("no command yet: the edge simulator is not built (see issue 3)")
}
