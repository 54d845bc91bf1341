//! `dubbo-capture`: a TCP relay between a real Dubbo consumer and provider that records every
//! Dubbo frame crossing it, one file per frame, to make the plugin's captured test vectors
//! (`protocols/dubbo/testdata`). Prints `listening on <addr>` once it accepts connections.
//!
//! Files are named `c<conn>-<seq>-<to-provider|to-consumer>-<kind>.bin`, `<seq>` counting the
//! frames of one direction of one connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use integration::dubbo_wire::{split_frames, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Recording Dubbo relay.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long)]
    listen: SocketAddr,
    /// The provider.
    #[arg(long)]
    upstream: SocketAddr,
    /// Directory for the frame files (created).
    #[arg(long)]
    out: PathBuf,
}

/// Copies one direction, writing each complete frame to `out`.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    out: PathBuf,
    conn: usize,
    direction: &'static str,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    let mut seq = 0usize;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        pending.extend_from_slice(&buf[..n]);
        for frame in split_frames(&mut pending).map_err(anyhow::Error::msg)? {
            let kind = Header::parse(&frame)
                .map_err(anyhow::Error::msg)?
                .map_or("partial", |h| h.kind());
            let name = format!("c{conn}-{seq:03}-{direction}-{kind}.bin");
            write_frame(&out, &name, &frame)?;
            seq += 1;
        }
    }
}

fn write_frame(dir: &Path, name: &str, frame: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, frame).with_context(|| format!("writing {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    integration::process::runtime(Some(1))?.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("listening on {}", listener.local_addr()?);
        let mut conn = 0usize;
        loop {
            let (down, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                stop = integration::process::until_stop_signal() => return stop,
            };
            let up = TcpStream::connect(args.upstream).await?;
            let (down_r, down_w) = down.into_split();
            let (up_r, up_w) = up.into_split();
            let out = args.out.clone();
            tokio::spawn(pipe(down_r, up_w, out.clone(), conn, "to-provider"));
            tokio::spawn(pipe(up_r, down_w, out, conn, "to-consumer"));
            conn += 1;
        }
    })
}
