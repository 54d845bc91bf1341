//! One active health check of one host: a TCP connect, or a connect plus the cluster codec's
//! heartbeat and its ack. Each check opens its own connection and closes it (never one of
//! the workers' pooled connections), so a check sees what a new connection would see.

use std::cell::{Cell, RefCell, RefMut};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use codec_host::{Codec, CodecError, FrameKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::plugin_slot::PluginSlot;

/// The codec a heartbeat probe speaks: the health thread's own instance, shared by its host
/// tasks (never borrowed across an await). A Wasm codec follows live plugin reloads: the
/// first check after a reload makes a new instance of the new plugin.
pub type ProbeCodec = Rc<FollowingCodec>;

/// A codec instance that follows its plugin slot's reloads (or a native codec: fixed).
pub struct FollowingCodec {
    codec: RefCell<Box<dyn Codec>>,
    slot: Option<Arc<PluginSlot>>,
    generation: Cell<u64>,
}

impl FollowingCodec {
    /// A codec that never changes (native codecs; tests).
    pub fn fixed(codec: Box<dyn Codec>) -> ProbeCodec {
        Rc::new(FollowingCodec {
            codec: RefCell::new(codec),
            slot: None,
            generation: Cell::new(0),
        })
    }

    /// An instance of `slot`'s current plugin, replaced after each reload.
    ///
    /// # Errors
    /// [`CodecError`] when the instance cannot be created.
    pub fn following(slot: Arc<PluginSlot>) -> Result<ProbeCodec, CodecError> {
        let generation = slot.generation();
        let codec = slot.current().new_codec()?;
        Ok(Rc::new(FollowingCodec {
            codec: RefCell::new(Box::new(codec)),
            slot: Some(slot),
            generation: Cell::new(generation),
        }))
    }

    /// The instance, for one call (never held across an await).
    pub fn codec(&self) -> RefMut<'_, Box<dyn Codec>> {
        self.codec.borrow_mut()
    }

    /// Switches to the slot's plugin if it was reloaded since the last switch (checks call
    /// this before each check, so one check speaks one instance throughout). An instance
    /// that cannot be made is retried after the next reload; the old one keeps serving.
    pub fn follow_reloads(&self) {
        let Some(slot) = &self.slot else {
            return;
        };
        let generation = slot.generation();
        if generation == self.generation.get() {
            return;
        }
        self.generation.set(generation);
        match slot.current().new_codec() {
            Ok(codec) => {
                *self.codec.borrow_mut() = Box::new(codec);
                info!(
                    protocol = slot.protocol(),
                    generation, "health checks use the reloaded plugin"
                );
            }
            Err(e) => warn!(protocol = slot.protocol(), generation, cause = %e,
                "health checks keep the previous plugin: the reloaded one does not start"),
        }
    }
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The connection could not be opened.
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// No answer (or no connection) within the check's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The host closed the connection before the ack arrived.
    #[error("connection closed before the heartbeat ack")]
    Closed,
    /// Writing the heartbeat or reading the ack failed.
    #[error("i/o: {0}")]
    Io(#[source] std::io::Error),
    /// The codec could not build the heartbeat or decode the answer.
    #[error("codec: {0}")]
    Codec(#[source] CodecError),
    /// The protocol has no heartbeat (the codec's keepalive builds none).
    #[error("the protocol has no heartbeat")]
    NoHeartbeat,
    /// The ack carried a status other than success.
    #[error("heartbeat ack with status {0}")]
    Status(u32),
}

/// How a host is checked.
pub enum Probe {
    /// Connect, then close.
    TcpConnect,
    /// Connect, send the codec's heartbeat, wait for its ack (success status, same id).
    Heartbeat(ProbeCodec),
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Probe::TcpConnect => "TcpConnect",
            Probe::Heartbeat(_) => "Heartbeat",
        })
    }
}

impl Probe {
    /// Checks `addr` once within `timeout`; `id` is the heartbeat's protocol id.
    ///
    /// # Errors
    /// [`ProbeError`]: why the host failed the check.
    pub async fn check(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        id: u64,
    ) -> Result<(), ProbeError> {
        tokio::time::timeout(timeout, self.attempt(addr, id))
            .await
            .map_err(|_| ProbeError::Timeout(timeout))?
    }

    async fn attempt(&self, addr: SocketAddr, id: u64) -> Result<(), ProbeError> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(ProbeError::Connect)?;
        let codec = match self {
            Probe::TcpConnect => return Ok(()),
            Probe::Heartbeat(codec) => codec,
        };
        codec.follow_reloads();
        let _ = stream.set_nodelay(true);
        let heartbeat = codec
            .codec()
            .keepalive(id)
            .map_err(ProbeError::Codec)?
            .ok_or(ProbeError::NoHeartbeat)?;
        stream.write_all(&heartbeat).await.map_err(ProbeError::Io)?;
        let mut buf = BytesMut::with_capacity(256);
        loop {
            // Every complete frame in the buffer; anything but our ack is skipped.
            loop {
                let frame = codec.codec().decode(&mut buf).map_err(ProbeError::Codec)?;
                let Some(frame) = frame else {
                    break;
                };
                if frame.kind() == FrameKind::HeartbeatResponse && frame.id() == id {
                    return match frame.timeout_or_status() {
                        0 => Ok(()),
                        status => Err(ProbeError::Status(status)),
                    };
                }
            }
            if stream.read_buf(&mut buf).await.map_err(ProbeError::Io)? == 0 {
                return Err(ProbeError::Closed);
            }
        }
    }
}

/// Whether `codec` can build a heartbeat (a protocol without one is checked by TCP connect).
pub fn has_heartbeat(codec: &ProbeCodec) -> bool {
    matches!(codec.codec().keepalive(1), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn bolt() -> ProbeCodec {
        let codec = codec_host::native_codec("bolt", &codec_host::Limits::new()).expect("bolt");
        FollowingCodec::fixed(codec)
    }

    /// A Bolt server answering heartbeats through the codec's own `reply_keepalive`, or
    /// (`answer` false) reading them and never answering.
    async fn heartbeat_server(answer: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::task::spawn_local(async move {
            let codec = bolt();
            while let Ok((mut s, _)) = listener.accept().await {
                let codec = codec.clone();
                tokio::task::spawn_local(async move {
                    let mut buf = BytesMut::new();
                    loop {
                        match s.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let frame = codec.codec().decode(&mut buf).expect("decodes");
                        let Some(mut frame) = frame else { continue };
                        if !answer {
                            continue;
                        }
                        let mut out = BytesMut::new();
                        codec
                            .codec()
                            .reply_keepalive(&mut frame, &mut out)
                            .expect("ack");
                        s.write_all(&out).await.expect("write");
                    }
                });
            }
        });
        addr
    }

    fn local<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn tcp_connect_passes_on_a_listener_and_fails_on_a_closed_port() {
        local(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let open = listener.local_addr().expect("addr");
            let t = Duration::from_secs(5);
            Probe::TcpConnect.check(open, t, 1).await.expect("passes");
            drop(listener);
            let err = Probe::TcpConnect.check(open, t, 2).await.unwrap_err();
            assert!(matches!(err, ProbeError::Connect(_)), "{err}");
        });
    }

    #[test]
    fn heartbeat_passes_on_an_ack_and_times_out_on_silence() {
        local(async {
            let codec = bolt();
            assert!(has_heartbeat(&codec));
            let probe = Probe::Heartbeat(codec);
            let answering = heartbeat_server(true).await;
            probe
                .check(answering, Duration::from_secs(5), 77)
                .await
                .expect("acked");
            let silent = heartbeat_server(false).await;
            let err = probe
                .check(silent, Duration::from_millis(200), 78)
                .await
                .unwrap_err();
            assert!(matches!(err, ProbeError::Timeout(_)), "{err}");
        });
    }

    #[test]
    fn heartbeat_fails_when_the_host_closes_without_an_ack() {
        local(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::task::spawn_local(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    let mut b = [0u8; 64];
                    let _ = s.read(&mut b).await;
                    drop(s);
                }
            });
            let err = Probe::Heartbeat(bolt())
                .check(addr, Duration::from_secs(5), 9)
                .await
                .unwrap_err();
            assert!(
                matches!(err, ProbeError::Closed | ProbeError::Io(_)),
                "{err}"
            );
        });
    }
}
