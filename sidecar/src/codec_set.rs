//! A worker's instances of one protocol's codec (`instance_num`), and which one a new
//! connection gets.
//!
//! MOSN's `instance_num` sizes a plugin's instance pool, shared by the whole process and
//! handed out round robin. Here a worker owns its share of them (the count divided by the
//! worker count, rounded up: [`crate::config::PluginConfig::instances_per_worker`]) and assigns each connection, downstream or upstream, to one of
//! its instances, round robin, for the connection's life: every frame of a connection is
//! decoded and encoded by the instance that decoded its first. With a plugin whose garbage
//! collector walks every live context (MOSN's TinyGo plugins), more instances mean smaller
//! heaps, each walked only for its own connections.

use std::cell::Cell;

use crate::framed::CodecRef;

/// The instances of one protocol's codec a worker owns (at least one).
pub struct CodecSet {
    members: Vec<CodecRef>,
    next: Cell<usize>,
}

impl CodecSet {
    /// A set of `members`.
    ///
    /// # Panics
    /// When `members` is empty: a protocol served by a worker has at least one instance.
    pub fn new(members: Vec<CodecRef>) -> CodecSet {
        assert!(!members.is_empty(), "a codec set has at least one member");
        CodecSet {
            members,
            next: Cell::new(0),
        }
    }

    /// The instance the next connection uses: each member in turn.
    pub fn assign(&self) -> CodecRef {
        let i = self.next.get();
        self.next.set((i + 1) % self.members.len());
        self.members[i].clone()
    }

    /// The first instance: for questions any instance answers alike (a response status's
    /// proxy code, which is the plugin's mapping, not a connection's state).
    pub fn first(&self) -> &CodecRef {
        &self.members[0]
    }

    /// Every instance, in order.
    pub fn members(&self) -> &[CodecRef] {
        &self.members
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    fn codec() -> CodecRef {
        let limits = codec_host::Limits::default();
        Rc::new(RefCell::new(
            codec_host::native_codec("bolt", &limits).expect("the native Bolt codec"),
        ))
    }

    #[test]
    fn connections_are_assigned_round_robin() {
        let set = CodecSet::new(vec![codec(), codec(), codec()]);
        let picked: Vec<usize> = (0..7)
            .map(|_| {
                let c = set.assign();
                set.members()
                    .iter()
                    .position(|m| Rc::ptr_eq(m, &c))
                    .unwrap()
            })
            .collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2, 0]);
        assert!(Rc::ptr_eq(set.first(), &set.members()[0]));
    }

    #[test]
    fn one_member_is_always_the_one() {
        let set = CodecSet::new(vec![codec()]);
        assert!(Rc::ptr_eq(&set.assign(), &set.assign()));
    }
}
