//! Bytes that are not Dubbo, or not quite: every malformed input is a clear error or a frame
//! marked with the decode error header, never a panic.

use std::path::Path;

use codec_abi::{FrameKind, HEADER_DECODE_ERROR};
use codec_sdk::harness::Harness;
use codec_sdk::{Command, Protocol};
use dubbo::{Dubbo, DubboError};

fn bytes(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/dubbo-3.3.6-hessian2")
        .join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `frame` with its body cut to `len` bytes and the length field saying so.
fn with_body_len(frame: &[u8], len: usize) -> Vec<u8> {
    let mut out = frame[..16 + len].to_vec();
    out[12..16].copy_from_slice(&(len as u32).to_be_bytes());
    out
}

#[test]
fn bad_magic_is_refused_at_once() {
    let dubbo = Dubbo::default();
    let mut frame = bytes("request-echo");
    frame[1] = 0xbc;
    assert_eq!(
        dubbo.decode_frame(&frame),
        Err(DubboError::BadMagic(0xdabc))
    );
    assert_eq!(
        dubbo.decode_frame(&frame[..2]),
        Err(DubboError::BadMagic(0xdabc))
    );
    assert_eq!(
        dubbo.decode_frame(b"GET / HTTP/1.1\r\n"),
        Err(DubboError::BadMagic(0x4745))
    );
    assert_eq!(dubbo.frame_len(&frame), None);
    let message = Dubbo::default().decode(&frame).unwrap_err().to_string();
    assert_eq!(
        message,
        "bad magic 0xdabc (a dubbo frame starts with 0xdabb)"
    );
}

#[test]
fn an_oversized_or_negative_length_is_refused_from_the_header() {
    let dubbo = Dubbo::with_max_frame_bytes(1000);
    let mut head = bytes("request-mixed")[..16].to_vec();
    assert_eq!(
        dubbo.decode_frame(&head),
        Err(DubboError::FrameTooLarge {
            len: 80668,
            max: 1000
        })
    );
    head[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        dubbo.decode_frame(&head),
        Err(DubboError::NegativeLength(-1))
    );
    head[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Dubbo::default().decode_frame(&head).is_err());
}

#[test]
fn a_truncated_or_corrupt_body_decodes_with_the_reason_as_its_only_header() {
    let mut dubbo = Dubbo::default();
    let frame = bytes("request-mixed");
    let body_len = frame.len() - 16;
    // Every cut of the body (sampled through the big arguments), framed as a whole frame.
    let cuts = (0..300).chain((300..body_len).step_by(251));
    for cut in cuts {
        let short = with_body_len(&frame, cut);
        let c = dubbo.decode(&short).unwrap().unwrap().command;
        assert_eq!(c.kind(), FrameKind::Request);
        assert_eq!(c.headers().len(), 1, "cut {cut}");
        let reason = c.headers().get_str(HEADER_DECODE_ERROR).unwrap();
        assert!(
            reason.contains("hessian2") || reason.contains("descriptor"),
            "cut {cut}: {reason}"
        );
        // Still forwarded untouched (the id rewritten).
        let mut out = Vec::new();
        dubbo.encode(&c, &mut out).unwrap();
        assert_eq!(out, short);
    }
    let mut corrupt = frame.clone();
    corrupt[16] = 0x40; // a reserved code where the dubbo version string starts
    let c = dubbo.decode(&corrupt).unwrap().unwrap().command;
    assert_eq!(
        c.headers().get_str(HEADER_DECODE_ERROR),
        Some("unexpected hessian2 code 0x40 at offset 0 (wanted a string)")
    );
}

/// A small deterministic generator (xorshift), so the inputs are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_and_mutated_frames_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut dubbo = Dubbo::default();
    let seeds: Vec<Vec<u8>> = [
        "request-echo",
        "oneway-fire",
        "request-fail",
        "heartbeat-request",
    ]
    .into_iter()
    .map(bytes)
    .collect();
    let mut decoded = 0;
    for round in 0..20_000 {
        let mut input = seeds[round % seeds.len()].clone();
        if round % 5 == 0 {
            // Pure garbage after a valid magic.
            let len = (rng.next() % 300) as usize;
            input = vec![0xda, 0xbb];
            input.extend((0..len).map(|_| rng.next() as u8));
        } else {
            for _ in 0..1 + rng.next() % 4 {
                let at = 16 + (rng.next() as usize) % (input.len() - 16).max(1);
                if at < input.len() {
                    input[at] = rng.next() as u8;
                }
            }
        }
        if let Ok(Some(d)) = dubbo.decode(&input) {
            decoded += 1;
            let mut out = Vec::new();
            // A frame that decoded re-encodes as it came.
            dubbo.encode(&d.command, &mut out).unwrap();
            assert_eq!(out, input[..d.consumed]);
        }
    }
    assert!(
        decoded > 10_000,
        "most mutations keep the framing: {decoded}"
    );
}

#[test]
fn the_abi_reports_an_error_for_bad_bytes_and_recovers_on_a_fresh_context() {
    let mut h = Harness::new(Dubbo::default).unwrap();
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, b"\x00\x01garbage garbage").status, 10);
    assert!(
        h.logs().iter().any(|l| l.message.contains("bad magic")),
        "{:?}",
        h.logs()
    );
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &bytes("request-echo")).status, 0);
}
