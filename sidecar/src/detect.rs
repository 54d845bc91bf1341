//! Protocol auto-detection for a listener serving several protocols
//! (`downstream_protocol: "Auto"`): the first bytes of a connection pick its codec among the
//! listener's candidates, once, before the connection is framed.
//!
//! The rule, per read until decided (at most one [`Codec::detect`] call per candidate per
//! read; a candidate that said "no" is not asked again):
//! * candidates are asked in the listener's order; the first that recognises the bytes
//!   wins at once (a candidate that still needs more bytes does not hold a later one back);
//! * every candidate refused the bytes: no match;
//! * the sniff buffer reached its cap (`max_bytes`) undecided: the one candidate still
//!   waiting wins (each other refused the bytes), or, with several still waiting, no match;
//! * the peer sent nothing decisive within `timeout`, closed, or the process stops:
//!   undecided.
//!
//! Bytes are read into one buffer that the chosen codec's connection then starts from
//! ([`Sniffed::Detected`]): nothing is lost or read twice from the socket. Connections of
//! single-protocol listeners never come here.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use codec_host::Detect;
use serde_json::{json, Map, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::framed::CodecRef;
use crate::stats::StatsSource;

/// First read buffer of a sniffing connection.
const SNIFF_CHUNK: usize = 4096;
/// How many first bytes a log line shows.
const LOGGED_BYTES: usize = 32;

/// What became of one sniffing connection.
pub enum Sniffed {
    /// Candidate `index` recognised the bytes; `buf` holds every byte read so far.
    Detected {
        /// Index of the chosen candidate.
        index: usize,
        /// The bytes read (the chosen codec decodes them first).
        buf: BytesMut,
    },
    /// No candidate speaks these bytes (`buf`: what was read).
    NoMatch {
        /// The bytes read.
        buf: BytesMut,
    },
    /// Nothing decisive arrived within the detection timeout (`buf`: what was read).
    Timeout {
        /// The bytes read.
        buf: BytesMut,
    },
    /// The peer closed, the read failed or the process began stopping before a decision.
    Closed,
}

/// The limits of one listener's detection.
#[derive(Debug, Clone, Copy)]
pub struct SniffLimits {
    /// The most bytes shown to the candidates.
    pub max_bytes: usize,
    /// How long the peer may take.
    pub timeout: Duration,
}

/// Reads from `stream` until one of `candidates` (in order) is chosen, none can be, the
/// timeout passes or `stop` fires. `on_read` is told the size of every read.
pub async fn sniff(
    stream: &mut TcpStream,
    candidates: &[CodecRef],
    limits: SniffLimits,
    stop: &CancellationToken,
    mut on_read: impl FnMut(usize),
) -> Sniffed {
    let mut buf = BytesMut::with_capacity(SNIFF_CHUNK.min(limits.max_bytes.max(64)));
    let mut refused = vec![false; candidates.len()];
    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);
    loop {
        if buf.capacity() == buf.len() {
            buf.reserve(SNIFF_CHUNK);
        }
        let n = tokio::select! {
            biased;
            _ = stop.cancelled() => return Sniffed::Closed,
            _ = &mut deadline => return Sniffed::Timeout { buf },
            n = stream.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => return Sniffed::Closed,
                Ok(n) => n,
            },
        };
        on_read(n);
        let window = &buf[..buf.len().min(limits.max_bytes)];
        match decide(candidates, &mut refused, window) {
            Decision::Chosen(index) => return Sniffed::Detected { index, buf },
            Decision::NoneMatch => return Sniffed::NoMatch { buf },
            Decision::Wait if window.len() >= limits.max_bytes => {
                let mut waiting = refused.iter().enumerate().filter(|(_, r)| !**r);
                return match (waiting.next(), waiting.next()) {
                    (Some((index, _)), None) => Sniffed::Detected { index, buf },
                    _ => Sniffed::NoMatch { buf },
                };
            }
            Decision::Wait => {}
        }
    }
}

/// What one round of questions decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// This candidate recognised the bytes.
    Chosen(usize),
    /// Every candidate refused them.
    NoneMatch,
    /// Some candidate needs more bytes.
    Wait,
}

/// Asks each candidate not yet refused, in order, about `window`, until one recognises it.
fn decide(candidates: &[CodecRef], refused: &mut [bool], window: &[u8]) -> Decision {
    for (i, codec) in candidates.iter().enumerate() {
        if refused[i] {
            continue;
        }
        let verdict = codec.borrow_mut().detect(window);
        match verdict {
            Ok(Detect::Match) => return Decision::Chosen(i),
            Ok(Detect::NeedMore) => {}
            Ok(Detect::NoMatch | Detect::NotImplemented) => refused[i] = true,
            Err(e) => {
                let protocol = codec.borrow().protocol().to_owned();
                warn!(%protocol, cause = %e, "protocol detection failed in the codec; not a candidate for this connection");
                refused[i] = true;
            }
        }
    }
    if refused.iter().all(|&r| r) {
        Decision::NoneMatch
    } else {
        Decision::Wait
    }
}

/// The first bytes of a connection, for a log line: at most [`LOGGED_BYTES`] in hex.
pub struct FirstBytes<'a>(pub &'a [u8]);

impl fmt::Display for FirstBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(LOGGED_BYTES) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > LOGGED_BYTES {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// What became of an auto-detecting listener's connections, process-wide (one atomic add
/// per connection). Every connection the listener accepted ends up in exactly one of them.
#[derive(Debug)]
pub struct DetectStats {
    /// Connections detected as each candidate, index-aligned with the listener's protocols.
    detected: Vec<(String, AtomicU64)>,
    no_match: AtomicU64,
    timeout: AtomicU64,
    closed: AtomicU64,
}

impl DetectStats {
    /// Counters for a listener with these candidate protocols (in order).
    pub fn new<S: AsRef<str>>(candidates: &[S]) -> DetectStats {
        DetectStats {
            detected: candidates
                .iter()
                .map(|p| (p.as_ref().to_owned(), AtomicU64::new(0)))
                .collect(),
            no_match: AtomicU64::new(0),
            timeout: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    /// Counts the outcome of one connection.
    pub fn record(&self, sniffed: &Sniffed) {
        let counter = match sniffed {
            Sniffed::Detected { index, .. } => match self.detected.get(*index) {
                Some((_, c)) => c,
                None => return,
            },
            Sniffed::NoMatch { .. } => &self.no_match,
            Sniffed::Timeout { .. } => &self.timeout,
            Sniffed::Closed => &self.closed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl StatsSource for DetectStats {
    fn to_json(&self) -> Value {
        let detected: Map<String, Value> = self
            .detected
            .iter()
            .map(|(p, c)| (p.clone(), json!(c.load(Ordering::Relaxed))))
            .collect();
        json!({
            "detected": detected,
            "no_match": self.no_match.load(Ordering::Relaxed),
            "timeout": self.timeout.load(Ordering::Relaxed),
            "closed_undecided": self.closed.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use bytes::Bytes;
    use codec_host::{Codec, CodecError, Frame};

    use super::*;

    /// A candidate answering by a script over the window's length, counting its calls.
    struct Scripted {
        name: &'static str,
        answer: fn(&[u8]) -> Detect,
        calls: Rc<Cell<u32>>,
    }

    impl Codec for Scripted {
        fn protocol(&self) -> &str {
            self.name
        }
        fn detect(&mut self, first: &[u8]) -> Result<Detect, CodecError> {
            self.calls.set(self.calls.get() + 1);
            Ok((self.answer)(first))
        }
        fn decode(&mut self, _: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
            Ok(None)
        }
        fn encode(&mut self, _: &mut Frame, _: u64, _: &mut BytesMut) -> Result<(), CodecError> {
            Ok(())
        }
        fn keepalive(&mut self, _: u64) -> Result<Option<Bytes>, CodecError> {
            Ok(None)
        }
        fn reply_keepalive(&mut self, _: &mut Frame, _: &mut BytesMut) -> Result<(), CodecError> {
            Ok(())
        }
        fn hijack(
            &mut self,
            _: &Frame,
            _: u32,
            _: u64,
            _: &mut BytesMut,
        ) -> Result<(), CodecError> {
            Ok(())
        }
    }

    fn candidate(name: &'static str, answer: fn(&[u8]) -> Detect) -> (CodecRef, Rc<Cell<u32>>) {
        let calls = Rc::new(Cell::new(0));
        let codec: Box<dyn Codec> = Box::new(Scripted {
            name,
            answer,
            calls: calls.clone(),
        });
        (Rc::new(RefCell::new(codec)), calls)
    }

    #[test]
    fn the_first_candidate_that_recognises_the_bytes_wins_and_later_ones_are_not_asked() {
        let (a, a_calls) = candidate("a", |_| Detect::NeedMore);
        let (b, b_calls) = candidate("b", |w| {
            if w[0] == b'B' {
                Detect::Match
            } else {
                Detect::NoMatch
            }
        });
        let (c, c_calls) = candidate("c", |_| Detect::Match);
        let candidates = [a, b, c];
        let mut refused = [false; 3];
        assert_eq!(decide(&candidates, &mut refused, b"B"), Decision::Chosen(1));
        assert_eq!((a_calls.get(), b_calls.get(), c_calls.get()), (1, 1, 0));
    }

    #[test]
    fn a_refusing_candidate_is_asked_once_and_all_refusing_is_no_match() {
        let (a, a_calls) = candidate("a", |_| Detect::NoMatch);
        let (b, b_calls) = candidate("b", |w| {
            if w.len() < 3 {
                Detect::NeedMore
            } else {
                Detect::NoMatch
            }
        });
        let candidates = [a, b];
        let mut refused = [false; 2];
        assert_eq!(decide(&candidates, &mut refused, b"x"), Decision::Wait);
        assert_eq!(decide(&candidates, &mut refused, b"xy"), Decision::Wait);
        assert_eq!(
            decide(&candidates, &mut refused, b"xyz"),
            Decision::NoneMatch
        );
        assert_eq!(
            (a_calls.get(), b_calls.get()),
            (1, 3),
            "one call per candidate per read"
        );
    }

    /// `sniff` over a loopback connection whose peer wrote `bytes` (and keeps it open).
    async fn sniff_bytes(bytes: &[u8], candidates: &[CodecRef], max_bytes: usize) -> Sniffed {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (peer, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut peer = peer.unwrap();
        let (mut stream, _) = accepted.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut peer, bytes)
            .await
            .unwrap();
        let limits = SniffLimits {
            max_bytes,
            timeout: Duration::from_secs(60),
        };
        let sniffed = sniff(
            &mut stream,
            candidates,
            limits,
            &CancellationToken::new(),
            |_| {},
        )
        .await;
        drop(peer);
        sniffed
    }

    #[test]
    fn at_the_cap_one_waiting_candidate_wins_and_two_waiting_is_no_match() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (waits, _) = candidate("waits", |_| Detect::NeedMore);
            let (waits_too, _) = candidate("waits too", |_| Detect::NeedMore);
            let (refuses, _) = candidate("refuses", |_| Detect::NoMatch);
            let bytes = [7u8; 100];
            match sniff_bytes(&bytes, &[refuses.clone(), waits.clone()], 64).await {
                Sniffed::Detected { index, buf } => {
                    assert_eq!(index, 1);
                    assert!(
                        buf.len() >= 64 && bytes.starts_with(&buf),
                        "every byte read is kept"
                    );
                }
                _ => panic!("the one waiting candidate wins at the cap"),
            }
            assert!(matches!(
                sniff_bytes(&bytes, &[waits, waits_too], 64).await,
                Sniffed::NoMatch { .. }
            ));
            // Below the cap a match decides at once, whatever the bytes' length.
            let (matches, _) = candidate("matches", |_| Detect::Match);
            assert!(matches!(
                sniff_bytes(&[1], &[matches], 64).await,
                Sniffed::Detected { index: 0, .. }
            ));
        });
    }

    #[test]
    fn first_bytes_are_logged_in_hex_and_bounded() {
        assert_eq!(FirstBytes(&[0xda, 0xbb, 0x02]).to_string(), "dabb02");
        let long = FirstBytes(&[0xab; 40]).to_string();
        assert_eq!(long, format!("{}…", "ab".repeat(32)));
    }

    #[test]
    fn outcomes_are_counted_once_each() {
        let stats = DetectStats::new(&["x-bolt", "x-dubbo"]);
        stats.record(&Sniffed::Detected {
            index: 1,
            buf: BytesMut::new(),
        });
        stats.record(&Sniffed::Detected {
            index: 1,
            buf: BytesMut::new(),
        });
        stats.record(&Sniffed::NoMatch {
            buf: BytesMut::new(),
        });
        stats.record(&Sniffed::Timeout {
            buf: BytesMut::new(),
        });
        stats.record(&Sniffed::Closed);
        assert_eq!(
            stats.to_json(),
            json!({"detected": {"x-bolt": 0, "x-dubbo": 2}, "no_match": 1, "timeout": 1, "closed_undecided": 1})
        );
    }
}
