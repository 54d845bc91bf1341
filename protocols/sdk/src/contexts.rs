//! The context table (ABI §6.1): root contexts, each with its own protocol instance and
//! configuration, and stream contexts, each caching a DecodeCommand and an EncodeCommand.
//!
//! Roots and streams are separate tables: MOSN's first stream context may reuse the root id
//! (§6.1), so one id can name both a root and a stream.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::protocol::Protocol;

/// A root context: one plugin configuration and the protocol instance serving it.
pub(crate) struct Root<P> {
    pub(crate) id: u32,
    pub(crate) protocol: P,
    pub(crate) vm_config: Vec<(String, String)>,
}

/// A stream (protocol) context: the commands cached for one frame (§6.1).
pub(crate) struct Stream<C> {
    /// The root this stream was created under.
    pub(crate) root: u32,
    /// Set by decode.
    pub(crate) decoded: Option<C>,
    /// Set by keepalive, reply-keepalive and hijack.
    pub(crate) encoded: Option<C>,
}

impl<C> Stream<C> {
    fn new(root: u32) -> Self {
        Stream {
            root,
            decoded: None,
            encoded: None,
        }
    }
}

/// All live contexts of one instance.
pub(crate) struct Contexts<P: Protocol> {
    pub(crate) roots: Vec<Root<P>>,
    pub(crate) streams: HashMap<u32, Stream<P::Command>, BuildHasherDefault<IdHasher>>,
}

/// What `proxy_on_context_create` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// A new root.
    Root,
    /// A root with this id existed and was replaced by a fresh one.
    RootReplaced,
    /// A new stream under its root.
    Stream,
    /// A stream with this id existed; its caches were dropped.
    StreamReset,
    /// The parent is not a root: nothing was created.
    UnknownParent,
}

impl<P: Protocol> Contexts<P> {
    pub(crate) fn new() -> Self {
        Contexts {
            roots: Vec::new(),
            streams: HashMap::default(),
        }
    }

    /// Creates a root (parent 0) or a stream under root `parent`.
    pub(crate) fn create(&mut self, id: u32, parent: u32, factory: &dyn Fn() -> P) -> Created {
        if parent == 0 {
            let root = Root {
                id,
                protocol: factory(),
                vm_config: Vec::new(),
            };
            return match self.roots.iter_mut().find(|r| r.id == id) {
                Some(existing) => {
                    *existing = root;
                    Created::RootReplaced
                }
                None => {
                    self.roots.push(root);
                    Created::Root
                }
            };
        }
        if !self.roots.iter().any(|r| r.id == parent) {
            return Created::UnknownParent;
        }
        match self.streams.insert(id, Stream::new(parent)) {
            Some(_) => Created::StreamReset,
            None => Created::Stream,
        }
    }

    pub(crate) fn root_mut(&mut self, id: u32) -> Option<&mut Root<P>> {
        self.roots.iter_mut().find(|r| r.id == id)
    }

    /// Removes a stream, else a root, with this id (streams first, as the Go SDK: a stream
    /// may share the root's id). Returns false when neither exists.
    pub(crate) fn delete(&mut self, id: u32) -> bool {
        if self.streams.remove(&id).is_some() {
            return true;
        }
        match self.roots.iter().position(|r| r.id == id) {
            Some(at) => {
                self.roots.swap_remove(at);
                true
            }
            None => false,
        }
    }
}

/// Hashes a `u32` context id with one multiply (ids are host counters: no attacker controls
/// them, and SipHash would cost more than the codec call around it).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
