//! A codec plugin that misbehaves on purpose, for the host's sandbox tests: it is exactly
//! [`Bolt`] except when a decoded request carries the header `misbehave` with value
//!
//! * `trap`: panics with "misbehave: trap requested" (a trap, panic = abort);
//! * `loop`: spins forever (the host must interrupt it);
//! * `oom`: allocates and touches memory until allocation fails, then panics with
//!   "misbehave: out of memory".
//!
//! One instance serves normal frames between bad ones, so a test can show the host recovers.
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::hint::black_box;

use bolt::{Bolt, BoltCommand};
use codec_sdk::{Command, Decoded, Protocol, ProtocolError};

/// The header that asks for misbehaviour.
pub const HEADER: &str = "misbehave";
/// Panic message of `misbehave: trap`.
pub const TRAP_MESSAGE: &str = "misbehave: trap requested";
/// Panic message once `misbehave: oom` has exhausted memory.
pub const OOM_MESSAGE: &str = "misbehave: out of memory";

/// Bolt with misbehaviour on request.
#[derive(Debug, Default, Clone)]
pub struct Misbehave {
    bolt: Bolt,
}

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Panic (trap).
    Trap,
    /// Loop forever.
    Loop,
    /// Exhaust memory.
    Oom,
}

impl Misbehaviour {
    /// The misbehaviour `command` asks for, if any (requests only).
    pub fn requested_by(command: &BoltCommand) -> Option<Misbehaviour> {
        if !command.kind().is_request() {
            return None;
        }
        match command.headers().get_str(HEADER)? {
            "trap" => Some(Misbehaviour::Trap),
            "loop" => Some(Misbehaviour::Loop),
            "oom" => Some(Misbehaviour::Oom),
            _ => None,
        }
    }
}

fn misbehave(what: Misbehaviour) -> ! {
    match what {
        // `panic_any` with a `&'static str`: the hook shows it without formatting (allocating).
        Misbehaviour::Trap => std::panic::panic_any(TRAP_MESSAGE),
        Misbehaviour::Loop => spin(),
        Misbehaviour::Oom => exhaust_memory(),
    }
}

/// Loops forever; `black_box` keeps the optimiser from proving the loop side-effect free.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks, writing every page, until an allocation fails; then panics.
fn exhaust_memory() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        if block.try_reserve_exact(BLOCK).is_err() || blocks.try_reserve(1).is_err() {
            break;
        }
        block.resize(BLOCK, 0xA5);
        blocks.push(black_box(block));
    }
    black_box(&blocks);
    std::panic::panic_any(OOM_MESSAGE)
}

impl Protocol for Misbehave {
    type Command = BoltCommand;

    fn name(&self) -> &str {
        self.bolt.name()
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<Decoded<BoltCommand>>, ProtocolError> {
        let decoded = self.bolt.decode(data)?;
        if let Some(what) = decoded
            .as_ref()
            .and_then(|d| Misbehaviour::requested_by(&d.command))
        {
            misbehave(what);
        }
        Ok(decoded)
    }

    fn encode(&mut self, command: &BoltCommand, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        self.bolt.encode(command, out)
    }

    fn keepalive(&mut self, id: u64) -> Option<BoltCommand> {
        self.bolt.keepalive(id)
    }

    fn reply_keepalive(&mut self, request: &BoltCommand) -> Option<BoltCommand> {
        self.bolt.reply_keepalive(request)
    }

    fn map_status(&self, proxy_code: u32) -> u32 {
        self.bolt.map_status(proxy_code)
    }

    fn hijack(&mut self, request: &BoltCommand, status: u32) -> Result<BoltCommand, ProtocolError> {
        self.bolt.hijack(request, status)
    }

    fn configure(
        &mut self,
        vm_config: &[(String, String)],
        plugin_config: &[(String, String)],
    ) -> Result<(), ProtocolError> {
        self.bolt.configure(vm_config, plugin_config)
    }
}

codec_sdk::entry!(Misbehave::default);

#[cfg(test)]
mod tests {
    use super::*;
    use codec_sdk::HeaderMap;

    /// A v1 request with `headers`, written by hand.
    fn request(headers: &[(&str, &str)]) -> Vec<u8> {
        let map: HeaderMap = headers.iter().copied().collect();
        let mut section = Vec::new();
        map.encode_into(&mut section);
        let mut frame = vec![1, 1, 0, 1, 1, 0, 0, 0, 9, 1, 0, 0, 0x0b, 0xb8, 0, 0];
        frame.extend_from_slice(&(section.len() as u16).to_be_bytes());
        frame.extend_from_slice(&2u32.to_be_bytes());
        frame.extend_from_slice(&section);
        frame.extend_from_slice(b"hi");
        frame
    }

    #[test]
    fn behaves_like_bolt_without_the_header() {
        for headers in [&[("service", "s")][..], &[("misbehave", "politely")]] {
            let frame = request(headers);
            let ours = Misbehave::default().decode(&frame).unwrap().unwrap();
            let bolts = Bolt::default().decode(&frame).unwrap().unwrap();
            assert_eq!(ours, bolts);
            let mut out = Vec::new();
            Misbehave::default()
                .encode(&ours.command, &mut out)
                .unwrap();
            assert_eq!(out, frame);
        }
        let mut m = Misbehave::default();
        let hb = m.keepalive(3).unwrap();
        assert_eq!(Some(hb.clone()), Bolt::default().keepalive(3));
        assert_eq!(m.map_status(504), 7);
        assert_eq!(m.name(), "x-bolt");
    }

    #[test]
    fn recognises_each_request() {
        for (value, want) in [
            ("trap", Some(Misbehaviour::Trap)),
            ("loop", Some(Misbehaviour::Loop)),
            ("oom", Some(Misbehaviour::Oom)),
            ("other", None),
        ] {
            let frame = request(&[("misbehave", value)]);
            let command = Bolt::default().decode(&frame).unwrap().unwrap().command;
            assert_eq!(Misbehaviour::requested_by(&command), want, "{value}");
        }
        // Only requests misbehave: a response with the same header does not.
        let mut frame = request(&[("misbehave", "trap")]);
        frame[1] = 0; // type: response
        frame[3] = 2; // cmdCode: RPC response
        frame.drain(10..12); // responses have a 2-byte status instead of a 4-byte timeout
        let command = Bolt::default().decode(&frame).unwrap().unwrap().command;
        assert_eq!(Misbehaviour::requested_by(&command), None);
    }

    #[test]
    fn trap_panics_with_its_message() {
        let frame = request(&[("misbehave", "trap")]);
        let payload = std::panic::catch_unwind(|| Misbehave::default().decode(&frame))
            .expect_err("trap panics");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&TRAP_MESSAGE));
    }
}
