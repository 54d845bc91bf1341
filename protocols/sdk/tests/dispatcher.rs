//! The dispatcher's own rules, with a toy protocol whose frames are
//! `[kind, id, len, body...]`: statuses for protocol bugs, keepalive support, which cached
//! command encode picks, configuration hand-over.

use std::cell::RefCell;
use std::rc::Rc;

use codec_abi::{write_host_command, FrameKind, HeaderMap, Status};
use codec_sdk::harness::{Harness, HarnessError};
use codec_sdk::{Command, Decoded, Protocol, ProtocolError};

#[derive(Debug, Clone)]
struct Toy {
    kind: FrameKind,
    id: u64,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Command for Toy {
    fn kind(&self) -> FrameKind {
        self.kind
    }
    fn id(&self) -> u64 {
        self.id
    }
    fn set_id(&mut self, id: u64) {
        self.id = id;
    }
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
    fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }
    fn timeout_or_status(&self) -> u32 {
        42
    }
}

type Seen = Rc<RefCell<Vec<(Vec<(String, String)>, Vec<(String, String)>)>>>;

#[derive(Default)]
struct ToyProtocol {
    heartbeats: bool,
    configs: Seen,
}

impl Protocol for ToyProtocol {
    type Command = Toy;

    fn name(&self) -> &str {
        "toy"
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<Decoded<Toy>>, ProtocolError> {
        let [kind, id, len, rest @ ..] = data else {
            return Ok(None);
        };
        let kind = match kind {
            0 => FrameKind::Response,
            1 => FrameKind::Request,
            3 => FrameKind::HeartbeatRequest,
            4 => FrameKind::HeartbeatResponse,
            // Protocol bugs: a frame of 0 bytes, a frame longer than the input.
            5 => {
                return Ok(Some(Decoded {
                    command: self
                        .keepalive(0)
                        .unwrap_or_else(|| toy(FrameKind::Request, 0)),
                    consumed: 0,
                }))
            }
            6 => {
                return Ok(Some(Decoded {
                    command: toy(FrameKind::Request, 0),
                    consumed: data.len() + 1,
                }))
            }
            _ => return Err(ProtocolError::new("not a toy frame")),
        };
        let len = usize::from(*len);
        let Some(body) = rest.get(..len) else {
            return Ok(None);
        };
        Ok(Some(Decoded {
            command: Toy {
                body: body.to_vec(),
                ..toy(kind, u64::from(*id))
            },
            consumed: 3 + len,
        }))
    }

    fn encode(&mut self, c: &Toy, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let kind = match c.kind {
            FrameKind::Response => 0,
            FrameKind::Request | FrameKind::Oneway => 1,
            FrameKind::HeartbeatRequest => 3,
            FrameKind::HeartbeatResponse => 4,
        };
        out.extend_from_slice(&[kind, c.id as u8, c.body.len() as u8]);
        out.extend_from_slice(&c.body);
        Ok(())
    }

    fn keepalive(&mut self, id: u64) -> Option<Toy> {
        self.heartbeats
            .then(|| toy(FrameKind::HeartbeatRequest, id))
    }

    fn hijack(&mut self, request: &Toy, status: u32) -> Result<Toy, ProtocolError> {
        Ok(Toy {
            body: status.to_string().into_bytes(),
            ..toy(FrameKind::Response, request.id)
        })
    }

    fn configure(
        &mut self,
        vm: &[(String, String)],
        plugin: &[(String, String)],
    ) -> Result<(), ProtocolError> {
        if plugin.iter().any(|(k, _)| k == "refuse") {
            return Err(ProtocolError::new("refused"));
        }
        self.configs
            .borrow_mut()
            .push((vm.to_vec(), plugin.to_vec()));
        Ok(())
    }
}

fn toy(kind: FrameKind, id: u64) -> Toy {
    Toy {
        kind,
        id,
        headers: HeaderMap::new(),
        body: Vec::new(),
    }
}

fn input(kind: FrameKind, replaced: u64, command: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_host_command(
        &mut out,
        &[][..],
        kind.host_flag(),
        replaced,
        command,
        0,
        payload,
    );
    out
}

#[test]
fn protocol_bugs_and_errors_are_status_10() {
    let mut h = Harness::new(ToyProtocol::default).unwrap();
    let ctx = h.create_context();
    for (frame, why) in [
        (&[5u8, 0, 0][..], "decoded a frame of 0 bytes"),
        (&[6, 0, 0], "decoded a frame of 4 bytes from 3"),
        (
            &[9, 0, 0],
            "protocol toy failed to decode on context 2: not a toy frame",
        ),
    ] {
        let call = h.decode(ctx, frame);
        assert_eq!((call.status, call.reports.len()), (10, 0), "{why}");
        assert!(
            h.logs().last().unwrap().message.contains(why),
            "{:?}",
            h.logs()
        );
    }
    assert_eq!(
        h.decode(ctx, &[1, 7, 3, b'a']).known_status(),
        Some(Status::NeedMoreData)
    );
    assert_eq!(h.decode(ctx, &[1, 7, 1, b'a', b'x']).status, 0);
}

#[test]
fn keepalive_is_status_2_when_the_protocol_has_none() {
    let mut h = Harness::new(ToyProtocol::default).unwrap();
    let ctx = h.create_context();
    assert_eq!(
        h.keepalive(ctx, 3).known_status(),
        Some(Status::BadArgument)
    );
    // Nothing cached: encode has nothing to encode.
    assert_eq!(
        h.encode(ctx, &input(FrameKind::HeartbeatRequest, 3, 3, &[]))
            .status,
        10
    );

    let mut h = Harness::new(|| ToyProtocol {
        heartbeats: true,
        ..ToyProtocol::default()
    })
    .unwrap();
    let ctx = h.create_context();
    assert_eq!(h.keepalive(ctx, 3).status, 0);
    let call = h.encode(ctx, &input(FrameKind::HeartbeatRequest, 3, 3, &[]));
    assert_eq!(call.encode_result().unwrap().frame, &[3, 3, 0]);
}

#[test]
fn encode_prefers_a_heartbeat_encode_command_over_the_decoded_one() {
    let mut h = Harness::new(|| ToyProtocol {
        heartbeats: true,
        ..ToyProtocol::default()
    })
    .unwrap();
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &[1, 7, 1, b'a']).status, 0);
    assert_eq!(h.keepalive(ctx, 9).status, 0);
    let call = h.encode(ctx, &input(FrameKind::HeartbeatRequest, 9, 9, &[]));
    assert_eq!(call.encode_result().unwrap().frame, &[3, 9, 0]);
    // A non-heartbeat EncodeCommand loses to the DecodeCommand (hijack on a decoded ctx).
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &[1, 7, 1, b'a']).status, 0);
    let hijack = {
        let mut out = Vec::new();
        write_host_command(&mut out, &[][..], 0x40, 7, 7, 0, &[1, 7, 1, b'a']);
        out
    };
    assert_eq!(h.hijack(ctx, 504, &hijack).status, 0);
    let call = h.encode(ctx, &input(FrameKind::Request, 8, 7, &[]));
    assert_eq!(call.encode_result().unwrap().frame, &[1, 8, 1, b'a']);
    // On a fresh context the hijack response is encoded; the code is passed unmapped.
    let ctx = h.create_context();
    assert_eq!(h.hijack(ctx, 504, &hijack).status, 0);
    let call = h.encode(ctx, &input(FrameKind::Response, 1, 7, &[]));
    let e = call.encode_result().unwrap();
    assert_eq!((e.flag, e.id, e.timeout_or_status), (0x01, 1, 42));
    assert_eq!(e.frame, b"\x00\x01\x03504");
}

#[test]
fn configuration_reaches_the_protocol_or_fails_configure() {
    let seen: Seen = Rc::default();
    let for_factory = seen.clone();
    let _h = Harness::with_config(
        move || ToyProtocol {
            configs: for_factory.clone(),
            ..ToyProtocol::default()
        },
        &[("Engine", "wasmer"), ("Md5", "")],
        &[("protocol", "toy")],
    )
    .unwrap();
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        *seen.borrow(),
        vec![(
            vec![pair("Engine", "wasmer"), pair("Md5", "")],
            vec![pair("protocol", "toy")]
        )]
    );
    let refused = Harness::with_config(ToyProtocol::default, &[], &[("refuse", "")]);
    assert!(matches!(
        refused,
        Err(HarnessError::Start {
            step: "proxy_on_configure"
        })
    ));
}

#[test]
fn contexts_are_counted_and_released() {
    let mut h = Harness::new(ToyProtocol::default).unwrap();
    let ctxs: Vec<u32> = (0..100).map(|_| h.create_context()).collect();
    for &ctx in &ctxs {
        assert_eq!(h.decode(ctx, &[0, 1, 0]).status, 0);
    }
    assert_eq!(h.live_contexts(), 100);
    for ctx in ctxs {
        h.delete(ctx);
    }
    assert_eq!(h.live_contexts(), 0);
    assert!(h.logs().is_empty());
}
