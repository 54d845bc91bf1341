//! `dubbobench`: a closed-loop Dubbo 2 load client. Each connection keeps `--in-flight` calls
//! outstanding, sending a captured Apache Dubbo request (`protocols/dubbo/testdata`, 240 bytes,
//! `EchoService.echo`) with a fresh id for every answered one, for `--duration` after a
//! warm-up. Prints one JSON line: calls, failed (answers with a status other than OK),
//! total (every answer, warm-up included), seconds, calls per second.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use integration::dubbo_wire::{set_id, split_frames, Header, STATUS_OK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Closed-loop Dubbo load client.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where to connect (a provider, or a sidecar's Dubbo listener).
    #[arg(long)]
    target: SocketAddr,
    /// Connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Calls outstanding per connection.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Measured time, in seconds.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Unmeasured time before, in seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The request frame to send (default: the captured echo request).
    #[arg(long)]
    request: Option<PathBuf>,
}

#[derive(Default)]
struct Counts {
    /// Answers in the measured window.
    calls: AtomicU64,
    /// Of those, status other than OK.
    failed: AtomicU64,
    /// Answers from the start to the end (warm-up and drain included).
    total: AtomicU64,
}

async fn connection(
    target: SocketAddr,
    template: Arc<Vec<u8>>,
    in_flight: usize,
    first_id: u64,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(target)
        .await
        .with_context(|| format!("connecting to {target}"))?;
    stream.set_nodelay(true)?;
    let mut next_id = first_id;
    let mut out = Vec::with_capacity(template.len() * in_flight);
    let push = |out: &mut Vec<u8>, next_id: &mut u64| {
        let at = out.len();
        out.extend_from_slice(&template);
        set_id(&mut out[at..], *next_id);
        *next_id += 1;
    };
    for _ in 0..in_flight {
        push(&mut out, &mut next_id);
    }
    stream.write_all(&out).await?;
    out.clear();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut outstanding = in_flight;
    while outstanding > 0 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("{target} closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        let stopping = stop.load(Ordering::Relaxed);
        for frame in split_frames(&mut buf).map_err(anyhow::Error::msg)? {
            let Some(head) = Header::parse(&frame).map_err(anyhow::Error::msg)? else {
                continue;
            };
            outstanding -= 1;
            counts.total.fetch_add(1, Ordering::Relaxed);
            if measuring.load(Ordering::Relaxed) {
                counts.calls.fetch_add(1, Ordering::Relaxed);
                if head.status != STATUS_OK {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !stopping {
                push(&mut out, &mut next_id);
                outstanding += 1;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let path = args.request.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../protocols/dubbo/testdata/dubbo-3.3.6-hessian2/request-echo.bin")
    });
    let template = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    match Header::parse(&template).map_err(anyhow::Error::msg)? {
        Some(h) if h.frame_len() == template.len() => {}
        _ => bail!("{} is not one whole Dubbo frame", path.display()),
    }
    let template = Arc::new(template);
    let rt = integration::process::runtime(Some(args.connections.clamp(1, 2)))?;
    rt.block_on(async {
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..args.connections {
            tasks.spawn(connection(
                args.target,
                template.clone(),
                args.in_flight,
                (c as u64 + 1) << 40,
                measuring.clone(),
                stop.clone(),
                counts.clone(),
            ));
        }
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
        measuring.store(true, Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        measuring.store(false, Ordering::Relaxed);
        let seconds = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let calls = counts.calls.load(Ordering::Relaxed);
        println!(
            "{}",
            serde_json::json!({
                "target": args.target.to_string(),
                "connections": args.connections,
                "in_flight": args.in_flight,
                "calls": calls,
                "failed": counts.failed.load(Ordering::Relaxed),
                "total": counts.total.load(Ordering::Relaxed),
                "seconds": seconds,
                "calls_per_sec": calls as f64 / seconds,
            })
        );
        Ok(())
    })
}
