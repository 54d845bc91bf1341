//! What the first bytes of a connection say about one protocol: the answer of the optional
//! export `rpc_sidecar_check` ([`crate::optional_exports::CHECK`]), used to pick a listener's
//! codec among several candidates (`downstream_protocol: "Auto"`).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use crate::Status;

/// A protocol's verdict on the first bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detect {
    /// The bytes are this protocol (status 0).
    Match,
    /// The bytes are not this protocol (status 1, `NotFound`).
    NoMatch,
    /// Too few bytes to tell; ask again with more (status 99, `NeedMoreData`).
    NeedMore,
    /// The protocol cannot tell from bytes alone (status 12, `Unimplemented`): the host
    /// tries its decode instead.
    NotImplemented,
}

impl Detect {
    /// The status the export returns for this verdict.
    pub fn status(self) -> u32 {
        match self {
            Detect::Match => Status::Ok.raw(),
            Detect::NoMatch => Status::NotFound.raw(),
            Detect::NeedMore => Status::NeedMoreData.raw(),
            Detect::NotImplemented => Status::Unimplemented.raw(),
        }
    }

    /// The verdict a returned status stands for; `None` for any other status (a broken
    /// plugin: the host treats it as no match).
    pub fn from_status(status: u32) -> Option<Detect> {
        Some(match Status::from_raw(status)? {
            Status::Ok => Detect::Match,
            Status::NotFound => Detect::NoMatch,
            Status::NeedMoreData => Detect::NeedMore,
            Status::Unimplemented => Detect::NotImplemented,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Detect;

    #[test]
    fn verdicts_round_trip_through_their_statuses() {
        for d in [
            Detect::Match,
            Detect::NoMatch,
            Detect::NeedMore,
            Detect::NotImplemented,
        ] {
            assert_eq!(Detect::from_status(d.status()), Some(d));
        }
        assert_eq!(
            [0, 1, 99, 12].map(Detect::from_status),
            [
                Some(Detect::Match),
                Some(Detect::NoMatch),
                Some(Detect::NeedMore),
                Some(Detect::NotImplemented)
            ]
        );
        assert_eq!(Detect::from_status(10), None);
        assert_eq!(Detect::from_status(7), None);
    }
}
