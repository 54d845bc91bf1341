//! A plain TCP relay (layer 4, no protocol): the physical limit a proxy is measured against.
//! Each accepted connection is copied both ways to a fresh connection to the upstream.
//! `tcp-relay --hops 2` chains two of them in one process, as the sidecar's two listeners run
//! in one process in the benchmark.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// Relays every connection `listener` accepts to `upstream` until the task is dropped.
pub async fn relay(listener: TcpListener, upstream: SocketAddr) {
    loop {
        let (down, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                debug!(cause = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (mut down, mut up) = (down, up);
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
    }
}

/// Starts `hops` relays chained in front of `upstream` on the current runtime, the first
/// listening on `listen`; returns the address to connect to.
///
/// # Errors
/// When a listener cannot be bound.
pub async fn chain(
    listen: SocketAddr,
    upstream: SocketAddr,
    hops: usize,
) -> std::io::Result<SocketAddr> {
    let mut next = upstream;
    for hop in (0..hops.max(1)).rev() {
        let addr = if hop == 0 {
            listen
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(relay(listener, next));
        next = bound;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::BoltClient;
    use crate::echo::EchoServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_chained_relays_carry_calls_to_the_echo_server() {
        let echo = EchoServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let entry = chain("127.0.0.1:0".parse().unwrap(), echo.local_addr(), 2)
            .await
            .unwrap();
        let client = BoltClient::connect(entry).await.unwrap();
        for i in 0..10 {
            let r = client.rpc("svc", format!("hello-{i}")).await.unwrap();
            assert_eq!(r.status(), Some(0));
        }
        assert_eq!(echo.counters().requests, 10);
    }
}
