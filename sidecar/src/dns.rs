//! Name resolution for `STRICT_DNS` clusters: the system resolver (`getaddrinfo`), or a
//! small DNS stub client that asks the configured name servers over UDP (RFC 1035 A / AAAA
//! queries with an EDNS0 payload size of 4096, so answers with many addresses are not
//! truncated) and reports the answer's TTL.

mod wire;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::config::{DnsConfig, DnsServers, LookupFamily};
pub use wire::{parse_response, query, Answer, WireError};

/// What one resolution found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The addresses, in answer order, without duplicates.
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL of the records (`None` from the system resolver).
    pub ttl: Option<Duration>,
}

/// Why a resolution found nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// The name does not exist or has no record of the family: its hosts are gone.
    #[error("{0} has no address")]
    NoRecords(String),
    /// No server answered usefully (timeouts, refusals, bad answers): hosts are kept.
    #[error("resolving {name} failed: {reason}")]
    Failed {
        /// The name.
        name: String,
        /// The last server's failure.
        reason: String,
    },
}

/// Resolves names as one cluster's `DnsConfig` says.
#[derive(Debug, Clone)]
pub struct Resolver {
    config: DnsConfig,
}

impl Resolver {
    /// A resolver with `config`'s servers, family, timeout and attempts.
    pub fn new(config: &DnsConfig) -> Resolver {
        Resolver {
            config: config.clone(),
        }
    }

    /// The addresses of `name`.
    ///
    /// # Errors
    /// [`DnsError::NoRecords`] when the name has none (NXDOMAIN or an empty answer),
    /// [`DnsError::Failed`] when no server answered.
    pub async fn resolve(&self, name: &str) -> Result<Resolution, DnsError> {
        let family = self.config.family;
        let resolution = match &self.config.servers {
            DnsServers::System => self.system(name).await?,
            DnsServers::Servers(servers) => self.ask_servers(servers, name).await?,
        };
        let mut addrs: Vec<IpAddr> = Vec::with_capacity(resolution.addrs.len());
        for a in resolution.addrs {
            if family_matches(family, a) && !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(DnsError::NoRecords(name.to_owned()));
        }
        Ok(Resolution {
            addrs,
            ttl: resolution.ttl,
        })
    }

    async fn system(&self, name: &str) -> Result<Resolution, DnsError> {
        let lookup = tokio::time::timeout(
            self.config.timeout * self.config.attempts.max(1),
            tokio::net::lookup_host((name, 0)),
        )
        .await;
        match lookup {
            Ok(Ok(addrs)) => Ok(Resolution {
                addrs: addrs.map(|a| a.ip()).collect(),
                ttl: None,
            }),
            // getaddrinfo does not tell "no such name" from "no server answered" in a
            // portable way; both keep the hosts (the next round tries again).
            Ok(Err(e)) => Err(DnsError::Failed {
                name: name.to_owned(),
                reason: e.to_string(),
            }),
            Err(_) => Err(DnsError::Failed {
                name: name.to_owned(),
                reason: "system resolver timed out".into(),
            }),
        }
    }

    async fn ask_servers(
        &self,
        servers: &[SocketAddr],
        name: &str,
    ) -> Result<Resolution, DnsError> {
        let qtype = match self.config.family {
            LookupFamily::V4Only => wire::TYPE_A,
            LookupFamily::V6Only => wire::TYPE_AAAA,
        };
        let mut reason = String::from("no server configured");
        for _ in 0..self.config.attempts.max(1) {
            for server in servers {
                match self.ask(*server, name, qtype).await {
                    Ok(Answer::Records { addrs, ttl }) => {
                        return Ok(Resolution {
                            addrs,
                            ttl: Some(ttl),
                        })
                    }
                    Ok(Answer::NoSuchName) => return Err(DnsError::NoRecords(name.to_owned())),
                    Err(e) => reason = format!("{server}: {e}"),
                }
            }
        }
        Err(DnsError::Failed {
            name: name.to_owned(),
            reason,
        })
    }

    async fn ask(&self, server: SocketAddr, name: &str, qtype: u16) -> Result<Answer, String> {
        let id = fastrand::u16(..);
        let packet = query(id, name, qtype).map_err(|e| e.to_string())?;
        let bind: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
        socket.connect(server).await.map_err(|e| e.to_string())?;
        socket.send(&packet).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; wire::MAX_UDP_PAYLOAD];
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            match parse_response(&buf[..n], id, qtype) {
                // A stray or late datagram: keep waiting for ours.
                Err(WireError::OtherId) => continue,
                other => return other.map_err(|e| e.to_string()),
            }
        }
    }
}

fn family_matches(family: LookupFamily, addr: IpAddr) -> bool {
    match family {
        LookupFamily::V4Only => addr.is_ipv4(),
        LookupFamily::V6Only => addr.is_ipv6(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name server on loopback that answers each query with `answer(query)`.
    async fn server(
        answer: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                if let Some(reply) = answer(&buf[..n]) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        (addr, task)
    }

    fn config(servers: Vec<SocketAddr>) -> DnsConfig {
        DnsConfig {
            servers: DnsServers::Servers(servers),
            timeout: Duration::from_millis(300),
            attempts: 1,
            ..DnsConfig::default()
        }
    }

    #[tokio::test]
    async fn a_records_come_back_deduplicated_with_the_smallest_ttl() {
        let (addr, _task) = server(|q| {
            Some(wire::test_answer(
                q,
                &[([10, 0, 0, 1], 30), ([10, 0, 0, 2], 7), ([10, 0, 0, 1], 30)],
                0,
            ))
        })
        .await;
        let r = Resolver::new(&config(vec![addr]))
            .resolve("backend.test")
            .await
            .unwrap();
        assert_eq!(
            r.addrs,
            vec![IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])]
        );
        assert_eq!(r.ttl, Some(Duration::from_secs(7)));
    }

    #[tokio::test]
    async fn nxdomain_and_empty_answers_mean_no_records() {
        let (nx, _a) = server(|q| Some(wire::test_answer(q, &[], 3))).await;
        let (empty, _b) = server(|q| Some(wire::test_answer(q, &[], 0))).await;
        for addr in [nx, empty] {
            let err = Resolver::new(&config(vec![addr]))
                .resolve("gone.test")
                .await
                .unwrap_err();
            assert_eq!(err, DnsError::NoRecords("gone.test".into()));
        }
    }

    #[tokio::test]
    async fn a_silent_or_failing_server_is_skipped_for_the_next() {
        let (silent, _a) = server(|_| None).await;
        let (servfail, _b) = server(|q| Some(wire::test_answer(q, &[], 2))).await;
        let (good, _c) = server(|q| Some(wire::test_answer(q, &[([10, 0, 0, 9], 5)], 0))).await;
        let r = Resolver::new(&config(vec![silent, servfail, good]))
            .resolve("backend.test")
            .await
            .unwrap();
        assert_eq!(r.addrs, vec![IpAddr::from([10, 0, 0, 9])]);
        let err = Resolver::new(&config(vec![silent, servfail]))
            .resolve("backend.test")
            .await
            .unwrap_err();
        assert!(matches!(err, DnsError::Failed { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn the_system_resolver_knows_localhost() {
        let r = Resolver::new(&DnsConfig::default())
            .resolve("localhost")
            .await
            .unwrap();
        assert!(r.addrs.iter().all(IpAddr::is_loopback), "{r:?}");
        assert_eq!(r.ttl, None);
    }
}
