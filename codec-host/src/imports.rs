//! Everything a plugin may import, one table per namespace (ABI §4): `env` (§4.1, §4.2,
//! [`env`]) and WASI under both its module names (§4.3, [`wasi`]). The shape check and the
//! linker of every instance look imports up here ([`find`]); the host functions live in the
//! modules below, each validating the guest's pointers through [`guest_memory`] before
//! touching anything, and sharing the instance's [`host_state`].
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

mod buffer;
mod env;
pub(crate) mod guest_memory;
mod header_map;
pub(crate) mod host_state;
pub(crate) mod log;
mod property;
pub(crate) mod table;
pub(crate) mod time;
mod unimplemented;
mod wasi;

pub(crate) use table::Import;
use table::Namespace;

/// Every namespace the host provides.
const NAMESPACES: &[&Namespace] = &[&env::ENV, &wasi::WASI];

/// The WASI function `module.name` (either WASI module name), shared with filter modules.
pub(crate) fn find_wasi(module: &str, name: &str) -> Option<&'static Import> {
    wasi::WASI.get(module, name)
}

/// The import `module.name` as the host provides it, or `None` if it provides no such
/// import.
pub(crate) fn find(module: &str, name: &str) -> Option<&'static Import> {
    NAMESPACES.iter().find_map(|ns| ns.get(module, name))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use wasmer::{FunctionEnv, Store, Type};

    use super::host_state::HostState;
    use super::table::Provider;
    use super::*;

    #[test]
    fn every_host_function_has_its_rows_signature() {
        let mut store = Store::default();
        let env = FunctionEnv::new(
            &mut store,
            HostState::new("p".into(), Vec::new().into(), Vec::new().into()),
        );
        for ns in NAMESPACES {
            for import in ns.imports {
                let f = import.function(&mut store, &env);
                assert_eq!(
                    f.ty(&store),
                    import.sig.function_type(),
                    "{}.{}",
                    ns.modules[0],
                    import.name
                );
            }
        }
    }

    #[test]
    fn names_are_unique_and_answers_are_a_status() {
        for ns in NAMESPACES {
            let mut seen = HashSet::new();
            for import in ns.imports {
                assert!(seen.insert(import.name), "{} twice", import.name);
                if let Provider::Answer(_) = import.provider {
                    assert_eq!(import.sig.1, [Type::I32], "{}", import.name);
                }
            }
        }
    }

    #[test]
    fn finds_by_module_and_name() {
        assert_eq!(find("env", "proxy_log").unwrap().name, "proxy_log");
        for module in ["wasi_unstable", "wasi_snapshot_preview1"] {
            assert_eq!(find(module, "fd_write").unwrap().name, "fd_write");
        }
        assert!(find("env", "fd_write").is_none());
        assert!(find("wasi_unstable", "proxy_log").is_none());
        assert!(find("wasi_ephemeral", "fd_write").is_none());
    }
}
