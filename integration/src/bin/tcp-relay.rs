//! `tcp-relay`: a plain TCP relay, `--hops 2` chaining two in one process (the benchmark's
//! physical limit). Prints `listening on <addr>` on stdout once it accepts connections.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

/// Plain TCP relay for benchmarks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// Where the last relay connects.
    #[arg(long)]
    upstream: SocketAddr,
    /// Relays chained in this process.
    #[arg(long, default_value_t = 2)]
    hops: usize,
    /// Worker threads (default: one per CPU, like the sidecar's workers).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    integration::process::runtime(args.threads)?.block_on(async {
        let entry = integration::relay::chain(args.listen, args.upstream, args.hops)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("listening on {entry}");
        integration::process::until_stop_signal().await
    })
}
