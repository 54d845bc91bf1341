//! Imports the host declares but does not implement: the rest of MOSN's proxy-wasm 0.1.0 set
//! and the SDK-declared calls MOSN's codec path stubs (ABI §4.1, §4.2), answering 12
//! (Unimplemented), and the WASI functions a closed sandbox has no use for (§4.3), answering
//! `ENOSYS`. Each is built from its table row's signature, returns the row's fixed status and
//! touches neither guest memory nor host state, so a module importing it links and a guest
//! calling it gets a clear "not here".
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use wasmer::{Function, Store, Value};

use crate::signature::Sig;

/// A function of signature `sig` that returns `status` (and nothing for a signature without
/// results).
pub(crate) fn answering(store: &mut Store, sig: Sig, status: i32) -> Function {
    let answer = if sig.1.is_empty() {
        Vec::new()
    } else {
        vec![Value::I32(status)]
    };
    Function::new(store, sig.function_type(), move |_args| Ok(answer.clone()))
}

#[cfg(test)]
mod tests {
    use wasmer::Type::{I32, I64};

    use super::*;

    #[test]
    fn answers_its_status_with_its_signature() {
        let mut store = Store::default();
        let sig = Sig(&[I32, I64], &[I32]);
        let f = answering(&mut store, sig, 12);
        assert_eq!(f.ty(&store), sig.function_type());
        let out = f.call(&mut store, &[Value::I32(1), Value::I64(2)]).unwrap();
        assert_eq!(&out[..], &[Value::I32(12)]);
    }
}
