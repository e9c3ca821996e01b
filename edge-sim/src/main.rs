//! `ringtun-edge`: the edge simulator binary. It parses the command line
//! ([`ringtun_edge_sim::cli::Cli`]), sets up tracing and hands over to
//! [`ringtun_edge_sim::cli::run`], which runs the edge until SIGINT or SIGTERM; everything
//! else lives in the library.
use clap::Parser;
use ringtun_edge_sim::cli::{Cli, run};

#[global_allocator]
static ALLOCATOR: ringtun_core::alloc::CountingAllocator = ringtun_core::alloc::CountingAllocator;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.init_tracing();
    run(cli)
}
