//! `bolt-echo`: a fast Bolt v1 echo server (see `integration::echo` for its behaviour and
//! control headers). Prints `listening on <addr>` on stdout once it accepts connections.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use integration::echo::{EchoOptions, EchoServer};
use tracing_subscriber::EnvFilter;

/// Bolt v1 echo server for tests and benchmarks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:12199")]
    listen: SocketAddr,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    integration::process::runtime(args.threads)?.block_on(async {
        let options = EchoOptions {
            record: false,
            ..EchoOptions::default()
        };
        let server = EchoServer::start_with(args.listen, options)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("listening on {}", server.local_addr());
        integration::process::until_stop_signal().await?;
        server.shutdown();
        Ok(())
    })
}
