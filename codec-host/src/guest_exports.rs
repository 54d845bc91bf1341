//! The guest exports the host calls (ABI §3, signatures confirmed by §9), declared once in
//! the table below: each row names the export (and any alias), gives its Rust signature, and
//! the field where an instance keeps it as a typed function. The same table drives the
//! load-time shape check ([`GUEST_EXPORTS`], signatures derived from the Rust types), the
//! resolution of an instance's typed functions ([`TypedExports::resolve`], once per
//! instance), and every call ([`GuestExport`] and [`GuestArgs`]: a static, allocation-free
//! typed call).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::exports as ex;
use wasmer::{Exports, FromToNativeWasmType, RuntimeError, Store, TypedFunction, WasmTypeList};

use crate::signature::Sig;

/// An argument list the host passes to a guest export (`()`, one value, or a tuple), called
/// through wasmer's typed call of the same arity: no boxing, no dynamic dispatch.
pub(crate) trait GuestArgs: WasmTypeList + Sized {
    /// Calls `function` with these arguments.
    fn call_with<Rets: WasmTypeList>(
        self,
        function: &TypedFunction<Self, Rets>,
        store: &mut Store,
    ) -> Result<Rets, RuntimeError>;
}

/// Implements [`GuestArgs`] for the argument list `(A1, …)` of one arity.
macro_rules! guest_args {
    ($($arg:ident),*) => {
        #[allow(unused_parens, non_snake_case)]
        impl<$($arg: FromToNativeWasmType),*> GuestArgs for ($($arg),*) {
            fn call_with<Rets: WasmTypeList>(
                self,
                function: &TypedFunction<Self, Rets>,
                store: &mut Store,
            ) -> Result<Rets, RuntimeError> {
                let ($($arg),*) = self;
                function.call(store, $($arg),*)
            }
        }
    };
}

/// Implements [`GuestArgs`] for a single argument of type `$ty` (a generic one would overlap
/// the `()` impl: `()` could be a Wasm value type as far as this crate can tell).
macro_rules! guest_arg {
    ($($ty:ty),*) => {$(
        impl GuestArgs for $ty {
            fn call_with<Rets: WasmTypeList>(
                self,
                function: &TypedFunction<Self, Rets>,
                store: &mut Store,
            ) -> Result<Rets, RuntimeError> {
                function.call(store, self)
            }
        }
    )*};
}

guest_args!();
guest_arg!(u32, u64, i32, i64);
guest_args!(A1, A2);
guest_args!(A1, A2, A3);
guest_args!(A1, A2, A3, A4);

/// One row of the export table, as a type: calls name it (`vm.call(Decode, args)`), so the
/// typed function is found statically.
pub(crate) trait GuestExport {
    /// What the host passes.
    type Args: GuestArgs;
    /// What the guest returns.
    type Rets: WasmTypeList;
    /// The export's name, then any alias a module may export instead.
    const NAMES: &'static [&'static str];
    /// The export's name (for errors and logs).
    const NAME: &'static str = Self::NAMES[0];

    /// This export's typed function among an instance's `exports`.
    fn typed(exports: &TypedExports) -> &TypedFunction<Self::Args, Self::Rets>;

    /// The signature, from the Rust types.
    fn sig() -> Sig {
        Sig(Self::Args::wasm_types(), Self::Rets::wasm_types())
    }
}

/// What the load-time shape check needs of one export.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExportSpec {
    /// The export's name, then any alias.
    pub(crate) names: &'static [&'static str],
    /// Its signature.
    pub(crate) sig: fn() -> Sig,
}

impl ExportSpec {
    const fn of<E: GuestExport>() -> ExportSpec {
        ExportSpec {
            names: E::NAMES,
            sig: E::sig,
        }
    }
}

/// Resolves export `E` of an instance under `name` (one of its names: the one the module
/// exports), checking its signature.
fn resolve<E: GuestExport>(
    exports: &Exports,
    store: &Store,
    name: &'static str,
) -> Result<TypedFunction<E::Args, E::Rets>, String> {
    exports
        .get_typed_function(store, name)
        .map_err(|e| format!("export {name}: {e}"))
}

/// Declares the export table: a unit type per row implementing [`GuestExport`], the
/// per-instance [`TypedExports`], and the list [`GUEST_EXPORTS`] the shape check walks.
macro_rules! guest_exports {
    ($(
        $(#[$doc:meta])*
        $export:ident . $field:ident = [$($name:expr),+] fn($($arg:ty),*) -> $rets:ty;
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub(crate) struct $export;

            #[allow(unused_parens)]
            impl GuestExport for $export {
                type Args = ($($arg),*);
                type Rets = $rets;
                const NAMES: &'static [&'static str] = &[$($name),+];

                fn typed(exports: &TypedExports) -> &TypedFunction<Self::Args, Self::Rets> {
                    &exports.$field
                }
            }
        )*

        /// Every export of the table as a typed function of one instance.
        #[allow(unused_parens)]
        pub(crate) struct TypedExports {
            $($field: TypedFunction<($($arg),*), $rets>,)*
        }

        impl TypedExports {
            /// Looks every export up in an instance's `exports`, once. `chosen` picks, among
            /// an export's names, the one the module uses.
            ///
            /// # Errors
            /// The first export that is missing or has another signature.
            pub(crate) fn resolve(
                exports: &Exports,
                store: &Store,
                chosen: impl Fn(&'static [&'static str]) -> &'static str,
            ) -> Result<TypedExports, String> {
                Ok(TypedExports {
                    $($field: resolve::<$export>(exports, store, chosen($export::NAMES))?,)*
                })
            }
        }

        /// Every export of the table, in the order the shape check reports problems.
        pub(crate) const GUEST_EXPORTS: &[ExportSpec] = &[$(ExportSpec::of::<$export>(),)*];
    };
}

guest_exports! {
    /// `_start()`: initialises the guest runtime; called once before anything else (§2).
    Start.start = [ex::START] fn() -> ();
    /// `proxy_on_context_create(ctx, parent)`: creates a root (parent 0) or stream context.
    ContextCreate.context_create = [ex::CONTEXT_CREATE] fn(u32, u32) -> ();
    /// `proxy_on_vm_start(root, vm_config_size) -> bool`.
    VmStart.vm_start = [ex::VM_START] fn(u32, u32) -> u32;
    /// `proxy_on_configure(root, plugin_config_size) -> bool`.
    Configure.configure = [ex::CONFIGURE] fn(u32, u32) -> u32;
    /// `proxy_on_delete(ctx)`: forgets a context (once per context, §6.7).
    Delete.delete = [ex::DELETE] fn(u32) -> ();
    /// `proxy_decode_buffer_bytes(ctx, ptr, len) -> status` (§6.2).
    Decode.decode = [ex::DECODE] fn(u32, u32, u32) -> u32;
    /// `proxy_encode_buffer_bytes(ctx, ptr, len) -> status`, with a §5.3 input (§6.3).
    Encode.encode = [ex::ENCODE] fn(u32, u32, u32) -> u32;
    /// `proxy_keepalive_buffer_bytes(ctx, id: i64) -> status` (§6.4).
    Keepalive.keepalive = [ex::KEEPALIVE] fn(u32, u64) -> u32;
    /// `proxy_reply_keepalive_buffer_bytes(ctx, ptr, len) -> status`; the guest ignores
    /// ptr and len (§6.5).
    ReplyKeepalive.reply_keepalive = [ex::REPLY_KEEPALIVE] fn(u32, u32, u32) -> u32;
    /// `proxy_hijack_buffer_bytes(ctx, status_code, ptr, len) -> status`, with a §5.3 input
    /// (§6.6).
    Hijack.hijack = [ex::HIJACK] fn(u32, u32, u32, u32) -> u32;
    /// `malloc(size) -> ptr`, or its proxy-wasm alias: where the host puts call inputs and
    /// what imports returning data call (§3, §4).
    Malloc.malloc = [ex::MALLOC, ex::MEMORY_ALLOCATE] fn(u32) -> u32;
}

#[cfg(test)]
mod tests {
    use wasmer::Type::{I32, I64};

    use super::*;

    #[test]
    fn signatures_come_from_the_rust_types() {
        assert_eq!(Start::sig(), Sig(&[], &[]));
        assert_eq!(Delete::sig(), Sig(&[I32], &[]));
        assert_eq!(Keepalive::sig(), Sig(&[I32, I64], &[I32]));
        assert_eq!(Hijack::sig(), Sig(&[I32; 4], &[I32]));
        assert_eq!(Malloc::sig(), Sig(&[I32], &[I32]));
    }

    #[test]
    fn the_table_lists_every_export_once() {
        let names: Vec<&str> = GUEST_EXPORTS.iter().map(|e| e.names[0]).collect();
        assert_eq!(
            names,
            [
                ex::START,
                ex::CONTEXT_CREATE,
                ex::VM_START,
                ex::CONFIGURE,
                ex::DELETE,
                ex::DECODE,
                ex::ENCODE,
                ex::KEEPALIVE,
                ex::REPLY_KEEPALIVE,
                ex::HIJACK,
                ex::MALLOC,
            ]
        );
        assert_eq!(Malloc::NAMES, [ex::MALLOC, ex::MEMORY_ALLOCATE]);
        assert_eq!(Decode::NAME, ex::DECODE);
    }
}
