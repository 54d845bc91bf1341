//! `dubbo-echo`: a small Dubbo 2 server for benchmarks. Every two-way request is answered with
//! status OK and a Hessian2 "response with value" body (the value is null: the benchmark
//! measures the proxy, not serialization), heartbeats with a heartbeat response, oneways not at
//! all. Prints `listening on <addr>` once it accepts connections.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use integration::dubbo_wire::{
    split_frames, Header, FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2, MAGIC, STATUS_OK,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Dubbo 2 answering server for benchmarks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:20880")]
    listen: SocketAddr,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

/// Hessian2: int 1 (RESPONSE_VALUE), then null.
const VALUE_NULL: [u8; 2] = [0x91, b'N'];
/// Hessian2: null (a heartbeat's body).
const NULL: [u8; 1] = [b'N'];

/// Appends the answer to the frame with header `head` to `out` (nothing for a oneway).
fn answer(head: &Header, out: &mut Vec<u8>) {
    if head.flag & FLAG_REQUEST == 0 || head.flag & FLAG_TWO_WAY == 0 {
        return;
    }
    let (flag, body): (u8, &[u8]) = if head.flag & FLAG_EVENT != 0 {
        (FLAG_EVENT | HESSIAN2, &NULL)
    } else {
        (HESSIAN2, &VALUE_NULL)
    };
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.push(flag);
    out.push(STATUS_OK);
    out.extend_from_slice(&head.id.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

async fn serve(mut stream: TcpStream) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        for frame in split_frames(&mut buf).map_err(anyhow::Error::msg)? {
            if let Some(head) = Header::parse(&frame).map_err(anyhow::Error::msg)? {
                answer(&head, &mut out);
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    integration::process::runtime(args.threads)?.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("listening on {}", listener.local_addr()?);
        let stop = integration::process::until_stop_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    tokio::spawn(async move {
                        if let Err(e) = serve(stream).await {
                            eprintln!("dubbo-echo: connection closed: {e:#}");
                        }
                    });
                }
                stopped = &mut stop => return stopped,
            }
        }
    })
}
