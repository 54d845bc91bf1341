//! The admin API (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §6), a small HTTP/1.1 server: `GET /api/v1/stats` (counters as
//! MOSN-style JSON), `GET /api/v1/config_dump` (the configuration as loaded),
//! `GET /api/v1/states`, `GET /api/v1/version`, `GET /` (the endpoint list). Other methods
//! get 405, unknown paths 404.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::plan::Plan;

const ENDPOINTS: &[&str] = &[
    "/api/v1/stats",
    "/api/v1/config_dump",
    "/api/v1/states",
    "/api/v1/version",
];

/// Serves admin requests until `shutdown`.
pub async fn serve(listener: TcpListener, plan: Arc<Plan>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        if let Ok((stream, _)) = accepted {
            let plan = plan.clone();
            let state = if shutdown.is_cancelled() {
                "stopping"
            } else {
                "running"
            };
            tokio::spawn(async move {
                if let Err(e) = handle(stream, &plan, state).await {
                    debug!(cause = %e, "admin request failed");
                }
            });
        }
    }
}

async fn handle(mut stream: TcpStream, plan: &Plan, state: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = respond(method, path, plan, state);
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

fn respond(method: &str, path: &str, plan: &Plan, state: &str) -> (&'static str, String) {
    let known = path == "/" || ENDPOINTS.contains(&path);
    if !known {
        return ("404 Not Found", r#"{"error":"not found"}"#.into());
    }
    if method != "GET" {
        return (
            "405 Method Not Allowed",
            r#"{"error":"method not allowed"}"#.into(),
        );
    }
    let body = match path {
        "/api/v1/stats" => plan.stats.to_json().to_string(),
        "/api/v1/config_dump" => plan.config_json.to_string(),
        "/api/v1/states" => {
            serde_json::json!({ "pid": std::process::id(), "state": state }).to_string()
        }
        "/api/v1/version" => {
            serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }).to_string()
        }
        _ => serde_json::json!({ "endpoints": ENDPOINTS }).to_string(),
    };
    ("200 OK", body)
}
