//! The proxy-wasm 0.1.0 imports a codec host does not implement (ABI §4.1, §4.2): each
//! answers 12 (Unimplemented) without touching guest memory. One function per arity, named
//! by it; [`super::ENV_IMPORTS`] maps import names onto them.

use codec_abi::Status;

const UNIMPLEMENTED: i32 = Status::Unimplemented as i32;

/// `() -> 12`.
pub(crate) fn unimplemented_0() -> i32 {
    UNIMPLEMENTED
}

/// `(i32) -> 12`.
pub(crate) fn unimplemented_1(_: i32) -> i32 {
    UNIMPLEMENTED
}

/// `(i32, i32) -> 12`.
pub(crate) fn unimplemented_2(_: i32, _: i32) -> i32 {
    UNIMPLEMENTED
}

/// `(i32 × 3) -> 12`.
pub(crate) fn unimplemented_3(_: i32, _: i32, _: i32) -> i32 {
    UNIMPLEMENTED
}

/// `(i32 × 4) -> 12`.
pub(crate) fn unimplemented_4(_: i32, _: i32, _: i32, _: i32) -> i32 {
    UNIMPLEMENTED
}

/// `(i32 × 5) -> 12`.
pub(crate) fn unimplemented_5(_: i32, _: i32, _: i32, _: i32, _: i32) -> i32 {
    UNIMPLEMENTED
}

/// `(i32 × 6) -> 12`.
pub(crate) fn unimplemented_6(_: i32, _: i32, _: i32, _: i32, _: i32, _: i32) -> i32 {
    UNIMPLEMENTED
}

/// `(i32 × 7) -> 12`.
pub(crate) fn unimplemented_7(_: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32) -> i32 {
    UNIMPLEMENTED
}

/// `(i32 × 8) -> 12`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn unimplemented_8(
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
) -> i32 {
    UNIMPLEMENTED
}

/// `(i32 × 10) -> 12`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn unimplemented_10(
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
) -> i32 {
    UNIMPLEMENTED
}

/// `(i32, i64) -> 12` (metric increment/record).
pub(crate) fn unimplemented_metric(_: i32, _: i64) -> i32 {
    UNIMPLEMENTED
}
