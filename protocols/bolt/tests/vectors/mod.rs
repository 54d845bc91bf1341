//! Test vectors shared by the integration tests: the captured frames of `testdata/` with what
//! MOSN's own plugin reports for them, a hand-written frame builder (independent of the
//! crate's encoder) and §5.3 input builders.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use codec_abi::{write_host_command, FrameKind, HeaderMap};
use sha2::{Digest, Sha256};

/// One captured frame and what the Go plugin reported for it.
pub struct Vector {
    pub name: String,
    pub bytes: Vec<u8>,
    pub flag: u8,
    pub id: u64,
    pub timeout_or_status: u32,
    pub drain: usize,
    pub payload_len: usize,
    pub payload_sha256: String,
    pub headers: BTreeMap<String, String>,
    pub decode_result_len: usize,
}

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Every vector of `expected-decode.json`; checks that every `.bin` file is listed.
pub fn vectors() -> Vec<Vector> {
    let json = std::fs::read_to_string(testdata().join("expected-decode.json"))
        .expect("testdata/expected-decode.json");
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json).expect("expected-decode.json parses");
    let mut on_disk = Vec::new();
    for dir in std::fs::read_dir(testdata()).expect("testdata dir") {
        let dir = dir.expect("dir entry").path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).expect("vector dir") {
            let file = file.expect("file entry").path();
            if file.extension().is_some_and(|e| e == "bin") {
                let rel = file.strip_prefix(testdata()).expect("under testdata");
                on_disk.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = expected.keys().cloned().collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every frame file has an expected decode");
    assert_eq!(listed.len(), 14, "all captured vectors present");

    listed
        .into_iter()
        .map(|name| {
            let e = &expected[&name];
            let num = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{name}: {k}"));
            let flag = e["flag"].as_str().expect("flag");
            let headers = e["headers"]
                .as_object()
                .expect("headers")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_owned()))
                .collect();
            assert_eq!(num("status"), 0, "{name}: the Go plugin decoded it");
            Vector {
                bytes: std::fs::read(testdata().join(&name)).expect("vector file"),
                flag: u8::from_str_radix(flag.trim_start_matches("0x"), 16).expect("hex flag"),
                id: num("id"),
                timeout_or_status: num("timeout_or_status") as u32,
                drain: num("drain") as usize,
                payload_len: num("payload_len") as usize,
                payload_sha256: e["payload_sha256"].as_str().expect("sha").to_owned(),
                headers,
                decode_result_len: num("decode_result_len") as usize,
                name,
            }
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses hex with any spacing.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn sorted(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.to_vec()).expect("utf-8 key"),
                String::from_utf8(v.to_vec()).expect("utf-8 value"),
            )
        })
        .collect()
}

/// Offset of the request id: 5 in v1, 6 in v2.
pub fn id_offset(frame: &[u8]) -> usize {
    if frame[0] == 2 {
        6
    } else {
        5
    }
}

/// `frame` with its id replaced (no CRC fix-up).
pub fn with_id(frame: &[u8], id: u32) -> Vec<u8> {
    let mut out = frame.to_vec();
    let at = id_offset(frame);
    out[at..at + 4].copy_from_slice(&id.to_be_bytes());
    out
}

/// A Bolt frame written by hand from the spec tables (xprotocol spec
/// (`docs/xprotocol-proxy-and-bolt.md`) §1), independent of the crate's encoder.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `Some((ver1, switch))` for v2.
    pub v2: Option<(u8, u8)>,
    pub cmd_type: u8,
    pub cmd_code: u16,
    pub ver2: u8,
    pub id: u32,
    pub codec: u8,
    pub timeout_or_status: u32,
    pub class: Vec<u8>,
    pub headers: Vec<u8>,
    pub content: Vec<u8>,
}

impl Spec {
    pub fn request(id: u32) -> Spec {
        Spec {
            v2: None,
            cmd_type: 1,
            cmd_code: 1,
            ver2: 1,
            id,
            codec: 1,
            timeout_or_status: 3000,
            class: b"com.alipay.sofa.rpc.core.request.SofaRequest".to_vec(),
            headers: header_section(&[("service", "com.foo.HelloService:1.0")]),
            content: b"hessian body".to_vec(),
        }
    }

    pub fn response(id: u32, status: u16) -> Spec {
        Spec {
            cmd_type: 0,
            cmd_code: 2,
            timeout_or_status: u32::from(status),
            class: b"com.alipay.sofa.rpc.core.response.SofaResponse".to_vec(),
            headers: Vec::new(),
            content: b"result".to_vec(),
            ..Spec::request(id)
        }
    }

    pub fn v2(mut self, ver1: u8, switch: u8) -> Spec {
        self.v2 = Some((ver1, switch));
        self
    }

    pub fn has_crc(&self) -> bool {
        matches!(self.v2, Some((2, switch)) if switch & 1 != 0)
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.v2 {
            Some((ver1, _)) => out.extend_from_slice(&[2, ver1]),
            None => out.push(1),
        }
        out.push(self.cmd_type);
        out.extend_from_slice(&self.cmd_code.to_be_bytes());
        out.push(self.ver2);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.codec);
        if let Some((_, switch)) = self.v2 {
            out.push(switch);
        }
        if self.cmd_type == 0 {
            out.extend_from_slice(&(self.timeout_or_status as u16).to_be_bytes());
        } else {
            out.extend_from_slice(&self.timeout_or_status.to_be_bytes());
        }
        out.extend_from_slice(&(self.class.len() as u16).to_be_bytes());
        out.extend_from_slice(&(self.headers.len() as u16).to_be_bytes());
        out.extend_from_slice(&(self.content.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.class);
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(&self.content);
        if self.has_crc() {
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        out
    }
}

pub fn header_section(pairs: &[(&str, &str)]) -> Vec<u8> {
    let map: HeaderMap = pairs.iter().copied().collect();
    let mut out = Vec::new();
    map.encode_into(&mut out);
    out
}

/// A §5.3 encode input as a host sends it for a frame of `kind`.
pub fn encode_input(
    headers: &[u8],
    kind: FrameKind,
    replaced_id: u64,
    command_id: u64,
    timeout_or_status: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    write_host_command(
        &mut out,
        headers,
        kind.host_flag(),
        replaced_id,
        command_id,
        timeout_or_status,
        payload,
    );
    out
}

/// A §6.6 hijack input: no headers, the request's flag, its id twice, the raw frame.
pub fn hijack_input(request: &[u8], id: u64, timeout: u32) -> Vec<u8> {
    encode_input(&[], FrameKind::Request, id, id, timeout, request)
}
