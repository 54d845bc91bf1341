//! The module shape the ABI requires, checked once at load: the marker export, the exports
//! the host calls with their signatures (§1, §3, §9; the table in
//! [`crate::guest_exports`]), and imports limited to what the host provides, with the
//! signatures it provides them with (§4; the tables in [`crate::imports`]). Works on a
//! description of the module ([`ModuleShape`]), not on a compiled one.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::fmt;

use codec_abi::{exports as ex, ABI_MARKER};
use wasmer::FunctionType;

use crate::error::LoadError;
use crate::guest_exports::{GuestExport, Malloc, GUEST_EXPORTS};
use crate::imports;
use crate::signature::{write_func, Sig};

/// What an import or export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// A function with its signature.
    Func(FunctionType),
    /// A linear memory with its initial size in pages.
    Memory {
        /// Initial pages.
        initial_pages: u32,
    },
    /// A global, table or tag.
    Other(&'static str),
}

impl ItemKind {
    /// Whether this is a function of signature `sig`.
    fn is_func(&self, sig: Sig) -> bool {
        matches!(self, ItemKind::Func(f) if sig.matches(f))
    }
}

/// One import (`module` set) or export (`module` empty).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The import's module; empty for exports.
    pub(crate) module: String,
    /// The name.
    pub(crate) name: String,
    /// Its kind and type.
    pub(crate) kind: ItemKind,
}

/// A module's imports and exports.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModuleShape {
    /// Imports in declaration order.
    pub(crate) imports: Vec<Item>,
    /// Exports in declaration order.
    pub(crate) exports: Vec<Item>,
}

impl ModuleShape {
    /// The export called `name`.
    pub(crate) fn export(&self, name: &str) -> Option<&Item> {
        self.exports.iter().find(|e| e.name == name)
    }

    /// The exports that look like an ABI marker (`proxy_abi…`), for error messages.
    pub(crate) fn abi_like_exports(&self) -> Vec<&str> {
        self.exports
            .iter()
            .filter(|e| e.name.starts_with("proxy_abi"))
            .map(|e| e.name.as_str())
            .collect()
    }
}

/// What the check learnt that instantiation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The allocator export to call: `malloc`, or its alias `proxy_on_memory_allocate`.
    pub(crate) allocator: &'static str,
}

impl Checked {
    /// Of an export's `names` (name, then aliases), the one the module exports: only the
    /// allocator has an alias.
    pub(crate) fn name_among(&self, names: &'static [&'static str]) -> &'static str {
        if names.contains(&self.allocator) {
            self.allocator
        } else {
            names[0]
        }
    }
}

/// Checks `shape` against the ABI. `max_pages` is the memory cap.
///
/// # Errors
/// The first problem found, in this order: marker, required exports (in table order),
/// memory, imports.
pub(crate) fn check(
    plugin: &str,
    shape: &ModuleShape,
    max_pages: u32,
) -> Result<Checked, LoadError> {
    let export = |name: &str| shape.export(name);
    let wrong = |what: &'static str, name: String, expected: Sig, found: &ItemKind| {
        wrong_signature(plugin, what, name, expected, found)
    };

    // §1: the marker, a function () -> ().
    match export(ABI_MARKER) {
        None => {
            let others = shape.abi_like_exports();
            return Err(LoadError::MissingMarker {
                plugin: plugin.to_owned(),
                marker: ABI_MARKER,
                found: if others.is_empty() {
                    String::new()
                } else {
                    format!(" (it exports {})", others.join(", "))
                },
            });
        }
        Some(e) if !e.kind.is_func(Sig::NONE) => {
            return Err(wrong("export", e.name.clone(), Sig::NONE, &e.kind));
        }
        Some(_) => {}
    }

    // §3: the exports the host calls; of an export with aliases, the first one present.
    let mut allocator = Malloc::NAME;
    for spec in GUEST_EXPORTS {
        let Some((name, e)) = spec
            .names
            .iter()
            .find_map(|&name| export(name).map(|e| (name, e)))
        else {
            return Err(LoadError::MissingExport {
                plugin: plugin.to_owned(),
                name: spec.names[0],
            });
        };
        let sig = (spec.sig)();
        if !e.kind.is_func(sig) {
            return Err(wrong("export", name.to_owned(), sig, &e.kind));
        }
        if spec.names == Malloc::NAMES {
            allocator = name;
        }
    }

    check_memory(plugin, shape, max_pages)?;
    check_imports(plugin, shape, imports::find)?;
    Ok(Checked { allocator })
}

fn wrong_signature(
    plugin: &str,
    what: &'static str,
    name: String,
    expected: Sig,
    found: &ItemKind,
) -> LoadError {
    LoadError::WrongSignature {
        plugin: plugin.to_owned(),
        what,
        name,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// §1: the module exports its own memory, of at most `max_pages` initial pages.
///
/// # Errors
/// No `memory` export, one that is not a memory, or one over the cap.
pub(crate) fn check_memory(
    plugin: &str,
    shape: &ModuleShape,
    max_pages: u32,
) -> Result<(), LoadError> {
    match shape.export(ex::MEMORY) {
        None => Err(LoadError::MissingExport {
            plugin: plugin.to_owned(),
            name: ex::MEMORY,
        }),
        Some(Item {
            kind: ItemKind::Memory { initial_pages },
            ..
        }) if *initial_pages > max_pages => Err(LoadError::MemoryLimit {
            plugin: plugin.to_owned(),
            needed_mib: u64::from(*initial_pages) * 64 / 1024,
            limit_mib: max_pages / 16,
        }),
        Some(Item {
            kind: ItemKind::Memory { .. },
            ..
        }) => Ok(()),
        Some(e) => Err(LoadError::WrongSignature {
            plugin: plugin.to_owned(),
            what: "export",
            name: e.name.clone(),
            expected: "memory".into(),
            found: e.kind.to_string(),
        }),
    }
}

/// §4: every import is one `find` provides (codec or filter hostcalls, WASI), with the
/// signature it is provided with.
///
/// # Errors
/// The first import not provided, or provided with another signature.
pub(crate) fn check_imports(
    plugin: &str,
    shape: &ModuleShape,
    find: fn(&str, &str) -> Option<&'static imports::Import>,
) -> Result<(), LoadError> {
    for i in &shape.imports {
        let Some(import) = find(&i.module, &i.name) else {
            return Err(LoadError::UnknownImport {
                plugin: plugin.to_owned(),
                module: i.module.clone(),
                name: i.name.clone(),
            });
        };
        if !i.kind.is_func(import.sig) {
            return Err(wrong_signature(
                plugin,
                "import",
                format!("{}.{}", i.module, i.name),
                import.sig,
                &i.kind,
            ));
        }
    }
    Ok(())
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemKind::Func(t) => write_func(f, t.params(), t.results()),
            ItemKind::Memory { .. } => f.write_str("memory"),
            ItemKind::Other(what) => f.write_str(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmer::Type::I32;

    use super::*;

    /// The allocator's signature: `(size) -> ptr`.
    const ALLOCATOR: Sig = Sig(&[I32], &[I32]);

    fn func(name: &str, sig: Sig) -> Item {
        Item {
            module: String::new(),
            name: name.into(),
            kind: ItemKind::Func(sig.function_type()),
        }
    }

    fn good() -> ModuleShape {
        let mut exports = vec![
            func(ABI_MARKER, Sig(&[], &[])),
            Item {
                module: String::new(),
                name: ex::MEMORY.into(),
                kind: ItemKind::Memory { initial_pages: 2 },
            },
        ];
        exports.extend(GUEST_EXPORTS.iter().map(|e| func(e.names[0], (e.sig)())));
        let mut log = func("proxy_log", Sig(&[I32, I32, I32], &[I32]));
        log.module = "env".into();
        let mut fd_write = func("fd_write", Sig(&[I32; 4], &[I32]));
        fd_write.module = "wasi_unstable".into();
        ModuleShape {
            imports: vec![log, fd_write],
            exports,
        }
    }

    #[test]
    fn accepts_the_abi_shape() {
        assert_eq!(
            check("p", &good(), 1024).unwrap(),
            Checked {
                allocator: ex::MALLOC
            }
        );
    }

    #[test]
    fn names_what_is_wrong() {
        let mut s = good();
        s.exports.retain(|e| e.name != ABI_MARKER);
        s.exports
            .push(func("proxy_abi_revision_0_2_0", Sig(&[], &[])));
        let err = check("p", &s, 1024).unwrap_err().to_string();
        assert!(
            err.contains("missing ABI marker") && err.contains("proxy_abi_revision_0_2_0"),
            "{err}"
        );

        let mut s = good();
        s.exports.retain(|e| e.name != ex::HIJACK);
        let err = check("p", &s, 1024).unwrap_err().to_string();
        assert!(
            err.contains("missing export proxy_hijack_buffer_bytes"),
            "{err}"
        );

        let mut s = good();
        s.exports.retain(|e| e.name != ex::KEEPALIVE);
        s.exports
            .push(func(ex::KEEPALIVE, Sig(&[I32, I32], &[I32])));
        let err = check("p", &s, 1024).unwrap_err().to_string();
        assert!(err.contains("export proxy_keepalive_buffer_bytes has type func (i32, i32) -> (i32), expected func (i32, i64) -> (i32)"), "{err}");

        let mut s = good();
        s.imports[0].name = "proxy_frobnicate".into();
        let err = check("p", &s, 1024).unwrap_err().to_string();
        assert!(err.contains("unknown import env.proxy_frobnicate"), "{err}");

        let mut s = good();
        s.imports[1].kind = ItemKind::Func(FunctionType::new([I32], []));
        let err = check("p", &s, 1024).unwrap_err().to_string();
        assert!(
            err.contains("import wasi_unstable.fd_write has type"),
            "{err}"
        );

        let err = check("p", &good(), 1).unwrap_err().to_string();
        assert!(err.contains("limit is 0 MiB"), "{err}");
    }

    #[test]
    fn accepts_the_allocator_alias() {
        let mut s = good();
        s.exports.retain(|e| e.name != ex::MALLOC);
        s.exports.push(func(ex::MEMORY_ALLOCATE, ALLOCATOR));
        assert_eq!(check("p", &s, 1024).unwrap().allocator, ex::MEMORY_ALLOCATE);
        s.exports.retain(|e| e.name != ex::MEMORY_ALLOCATE);
        assert!(check("p", &s, 1024)
            .unwrap_err()
            .to_string()
            .contains("missing export malloc"));
    }

    #[test]
    fn an_alias_is_resolved_under_the_name_found() {
        let checked = Checked {
            allocator: ex::MEMORY_ALLOCATE,
        };
        assert_eq!(checked.name_among(Malloc::NAMES), ex::MEMORY_ALLOCATE);
        assert_eq!(checked.name_among(&[ex::DECODE]), ex::DECODE);
        let checked = Checked {
            allocator: ex::MALLOC,
        };
        assert_eq!(checked.name_among(Malloc::NAMES), ex::MALLOC);
    }
}
