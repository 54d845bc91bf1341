//! The module shape the ABI requires, checked once at load: the marker export, the exports
//! the host calls with their signatures (§1, §3, §9), and imports limited to what the host
//! provides (§4). Works on an engine-neutral description of the module.

use std::fmt;

use codec_abi::{exports as ex, ABI_MARKER};

use crate::error::LoadError;
use crate::imports::ENV_IMPORTS;
use crate::wasi::{WASI_IMPORTS, WASI_MODULES};

/// A Wasm value type, as far as the ABI cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValType {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// Any other type (vectors, references).
    Other,
}

/// A function signature: parameter and result types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sig(pub(crate) &'static [ValType], pub(crate) &'static [ValType]);

/// An owned function signature read from a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FuncType {
    /// Parameter types.
    pub(crate) params: Vec<ValType>,
    /// Result types.
    pub(crate) results: Vec<ValType>,
}

impl FuncType {
    fn matches(&self, sig: Sig) -> bool {
        self.params == sig.0 && self.results == sig.1
    }
}

/// What an import or export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// A function with its signature.
    Func(FuncType),
    /// A linear memory with its initial size in pages.
    Memory {
        /// Initial pages.
        initial_pages: u32,
    },
    /// A global, table or tag.
    Other(&'static str),
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

/// What the check learnt that instantiation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The allocator export to call: `malloc`, or its alias `proxy_on_memory_allocate`.
    pub(crate) allocator: &'static str,
}

use ValType::{I32, I64};

/// The exports the host calls, with their signatures (§3, confirmed by §9).
const REQUIRED_EXPORTS: &[(&str, Sig)] = &[
    (ex::START, Sig(&[], &[])),
    (ex::CONTEXT_CREATE, Sig(&[I32, I32], &[])),
    (ex::VM_START, Sig(&[I32, I32], &[I32])),
    (ex::CONFIGURE, Sig(&[I32, I32], &[I32])),
    (ex::DELETE, Sig(&[I32], &[])),
    (ex::DECODE, Sig(&[I32, I32, I32], &[I32])),
    (ex::ENCODE, Sig(&[I32, I32, I32], &[I32])),
    (ex::KEEPALIVE, Sig(&[I32, I64], &[I32])),
    (ex::REPLY_KEEPALIVE, Sig(&[I32, I32, I32], &[I32])),
    (ex::HIJACK, Sig(&[I32, I32, I32, I32], &[I32])),
];

/// The allocator's signature: `(size) -> ptr`.
const ALLOCATOR: Sig = Sig(&[I32], &[I32]);

/// Checks `shape` against the ABI. `max_pages` is the memory cap.
///
/// # Errors
/// The first problem found, in this order: marker, required exports, memory, imports.
pub(crate) fn check(
    plugin: &str,
    shape: &ModuleShape,
    max_pages: u32,
) -> Result<Checked, LoadError> {
    let export = |name: &str| shape.exports.iter().find(|e| e.name == name);
    let wrong = |what: &'static str, name: String, expected: String, found: &ItemKind| {
        LoadError::WrongSignature {
            plugin: plugin.to_owned(),
            what,
            name,
            expected,
            found: found.to_string(),
        }
    };

    // §1: the marker, a function () -> ().
    match export(ABI_MARKER) {
        None => {
            let others: Vec<&str> = shape
                .exports
                .iter()
                .filter(|e| e.name.starts_with("proxy_abi"))
                .map(|e| e.name.as_str())
                .collect();
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
        Some(e) if !matches!(&e.kind, ItemKind::Func(f) if f.matches(Sig(&[], &[]))) => {
            return Err(wrong(
                "export",
                e.name.clone(),
                Sig(&[], &[]).to_string(),
                &e.kind,
            ));
        }
        Some(_) => {}
    }

    // §3: the exports the host calls.
    for &(name, sig) in REQUIRED_EXPORTS {
        let e = export(name).ok_or_else(|| LoadError::MissingExport {
            plugin: plugin.to_owned(),
            name,
        })?;
        if !matches!(&e.kind, ItemKind::Func(f) if f.matches(sig)) {
            return Err(wrong("export", name.to_owned(), sig.to_string(), &e.kind));
        }
    }
    let allocator = [ex::MALLOC, ex::MEMORY_ALLOCATE]
        .into_iter()
        .find_map(|name| export(name).map(|e| (name, e)));
    let allocator = match allocator {
        None => {
            return Err(LoadError::MissingExport {
                plugin: plugin.to_owned(),
                name: ex::MALLOC,
            })
        }
        Some((name, e)) => {
            if !matches!(&e.kind, ItemKind::Func(f) if f.matches(ALLOCATOR)) {
                return Err(wrong(
                    "export",
                    name.to_owned(),
                    ALLOCATOR.to_string(),
                    &e.kind,
                ));
            }
            name
        }
    };

    // §1: the guest's own memory, within the cap.
    match export(ex::MEMORY) {
        None => {
            return Err(LoadError::MissingExport {
                plugin: plugin.to_owned(),
                name: ex::MEMORY,
            })
        }
        Some(Item {
            kind: ItemKind::Memory { initial_pages },
            ..
        }) => {
            if *initial_pages > max_pages {
                return Err(LoadError::MemoryLimit {
                    plugin: plugin.to_owned(),
                    needed_mib: u64::from(*initial_pages) * 64 / 1024,
                    limit_mib: max_pages / 16,
                });
            }
        }
        Some(e) => return Err(wrong("export", e.name.clone(), "memory".into(), &e.kind)),
    }

    // §4: only what the host provides.
    for i in &shape.imports {
        let table: &[(&str, Sig)] = if i.module == "env" {
            ENV_IMPORTS
        } else if WASI_MODULES.contains(&i.module.as_str()) {
            WASI_IMPORTS
        } else {
            &[]
        };
        let Some(&(_, sig)) = table.iter().find(|(n, _)| *n == i.name) else {
            return Err(LoadError::UnknownImport {
                plugin: plugin.to_owned(),
                module: i.module.clone(),
                name: i.name.clone(),
            });
        };
        if !matches!(&i.kind, ItemKind::Func(f) if f.matches(sig)) {
            return Err(wrong(
                "import",
                format!("{}.{}", i.module, i.name),
                sig.to_string(),
                &i.kind,
            ));
        }
    }
    Ok(Checked { allocator })
}

fn write_types(f: &mut fmt::Formatter<'_>, types: &[ValType]) -> fmt::Result {
    f.write_str("(")?;
    for (n, t) in types.iter().enumerate() {
        if n > 0 {
            f.write_str(", ")?;
        }
        f.write_str(match t {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::Other => "?",
        })?;
    }
    f.write_str(")")
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("func ")?;
        write_types(f, self.0)?;
        f.write_str(" -> ")?;
        write_types(f, self.1)
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemKind::Func(t) => {
                f.write_str("func ")?;
                write_types(f, &t.params)?;
                f.write_str(" -> ")?;
                write_types(f, &t.results)
            }
            ItemKind::Memory { .. } => f.write_str("memory"),
            ItemKind::Other(what) => f.write_str(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func(name: &str, sig: Sig) -> Item {
        Item {
            module: String::new(),
            name: name.into(),
            kind: ItemKind::Func(FuncType {
                params: sig.0.to_vec(),
                results: sig.1.to_vec(),
            }),
        }
    }

    fn good() -> ModuleShape {
        let mut exports = vec![
            func(ABI_MARKER, Sig(&[], &[])),
            func(ex::MALLOC, ALLOCATOR),
            Item {
                module: String::new(),
                name: ex::MEMORY.into(),
                kind: ItemKind::Memory { initial_pages: 2 },
            },
        ];
        exports.extend(REQUIRED_EXPORTS.iter().map(|&(n, s)| func(n, s)));
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
        s.imports[1].kind = ItemKind::Func(FuncType {
            params: vec![I32],
            results: vec![],
        });
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
}
