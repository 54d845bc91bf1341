//! The processes behind one benchmark variant in front of the echo server: nothing (direct),
//! one sidecar with one listener (one hop), one sidecar with two listeners chained through
//! its own clusters (two hops, as `make run` starts it), or the plain TCP relay process.

use std::net::SocketAddr;

use super::suite::{CodecKind, Variant};
use crate::error::HarnessError;
use crate::harness::{
    free_addr, mosn_config, ClusterSpec, ListenerSpec, MosnConfig, RelayProcess, Sidecar,
    SidecarOptions,
};

/// How sidecars are started for a suite.
#[derive(Debug, Clone)]
pub struct TopologySetup {
    /// Binary, readiness timeout, environment.
    pub sidecar: SidecarOptions,
    /// `vm_config.path` of the Wasm plugin.
    pub plugin_path: String,
    /// `default_log_level` (keep it quiet for benchmarks).
    pub log_level: String,
    /// The Wasm plugin's `instance_num` (`None`: the sidecar's default, the CPU count).
    pub instance_num: Option<usize>,
}

/// A running variant: where the load generator connects, and the sidecars on the path.
#[derive(Debug)]
pub struct Topology {
    /// The variant.
    pub variant: Variant,
    /// The first hop's address (the echo server's when direct).
    pub entry: SocketAddr,
    /// Sidecars in path order: `A` (entered first), then `B`.
    pub sidecars: Vec<Sidecar>,
    /// The plain TCP relay process of a relay variant (all its hops in one process).
    pub relay: Option<RelayProcess>,
}

impl Topology {
    /// Starts the sidecars of `variant` in front of `echo`, last hop first.
    ///
    /// # Errors
    /// The first sidecar that fails to start (earlier ones are stopped on drop).
    pub fn start(
        variant: Variant,
        echo: SocketAddr,
        setup: &TopologySetup,
    ) -> Result<Topology, HarnessError> {
        let Some(codec) = variant.codec else {
            return Ok(Topology {
                variant,
                entry: echo,
                sidecars: Vec::new(),
                relay: None,
            });
        };
        if codec == CodecKind::Relay {
            let relay = RelayProcess::spawn(echo, usize::from(variant.hops))?;
            return Ok(Topology {
                variant,
                entry: relay.addr(),
                sidecars: Vec::new(),
                relay: Some(relay),
            });
        }
        let free = || {
            free_addr().map_err(|source| HarnessError::Io {
                action: "finding a free port for",
                path: "sidecar listener".into(),
                source,
            })
        };
        let with_codec = |config: MosnConfig| match codec {
            CodecKind::Wasm => MosnConfig {
                instance_num: setup.instance_num,
                ..config.wasm_plugin(&setup.plugin_path)
            },
            CodecKind::Native | CodecKind::Relay => config.native(),
        };
        if variant.hops == 2 {
            // Two hops in one process, as `make run` starts the sidecar: clientListener →
            // clientCluster (the same process's serverListener) → serverCluster (the app).
            let (client, server) = (free()?, free()?);
            let config = mosn_config()
                .listener(
                    ListenerSpec::new("serverListener", server, "serverCluster")
                        .names("server_router", "serverHost"),
                )
                .listener(
                    ListenerSpec::new("clientListener", client, "clientCluster")
                        .names("client_router", "clientHost"),
                )
                .cluster(ClusterSpec::new("serverCluster", vec![echo]))
                .cluster(ClusterSpec::new("clientCluster", vec![server]))
                .log_level(&setup.log_level);
            let sidecar = Sidecar::spawn_with(with_codec(config).build(), &setup.sidecar)?;
            return Ok(Topology {
                variant,
                entry: client,
                sidecars: vec![sidecar],
                relay: None,
            });
        }
        let mut upstream = echo;
        let mut sidecars = Vec::new();
        for _ in 0..variant.hops {
            let listen = free()?;
            let config = MosnConfig::single_hop(listen, vec![upstream]).log_level(&setup.log_level);
            sidecars.push(Sidecar::spawn_with(
                with_codec(config).build(),
                &setup.sidecar,
            )?);
            upstream = listen;
        }
        sidecars.reverse();
        Ok(Topology {
            variant,
            entry: upstream,
            sidecars,
            relay: None,
        })
    }

    /// Process ids of the proxies on the path (sidecars in path order, or the relay).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.sidecars.iter().map(Sidecar::pid).collect();
        pids.extend(self.relay.as_ref().map(RelayProcess::pid));
        pids
    }

    /// `A`, `B`, ... for the sidecar at `index` in path order.
    pub fn role(index: usize) -> String {
        char::from(b'A' + (index % 26) as u8).to_string()
    }

    /// An error for the first sidecar (or the relay) that has exited.
    pub fn check_alive(&mut self) -> Result<(), HarnessError> {
        if let Some(relay) = &mut self.relay {
            if let Some(status) = relay.try_status() {
                return Err(HarnessError::ExitedEarly {
                    name: "tcp-relay",
                    status,
                    log: relay.log_path(),
                    tail: crate::harness::log_tail(&relay.log_path()),
                });
            }
        }
        for (i, s) in self.sidecars.iter_mut().enumerate() {
            if let Some(status) = s.try_status() {
                return Err(HarnessError::ExitedEarly {
                    name: if i == 0 { "sidecar A" } else { "sidecar B" },
                    status,
                    log: s.log_path().to_path_buf(),
                    tail: crate::harness::log_tail(s.log_path()),
                });
            }
        }
        Ok(())
    }
}
