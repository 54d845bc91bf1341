//! How an import namespace is declared: one row per function with its name, its signature
//! and how the host provides it. The load-time shape check reads the rows' signatures; each
//! instance links the functions the module imports from the same rows.

use wasmer::{Function, FunctionEnv, Store};

use super::host_state::HostState;
use super::unimplemented;
use crate::signature::Sig;

/// How the host provides one import.
#[derive(Clone, Copy)]
pub(crate) enum Provider {
    /// A typed host function; its Rust signature is the row's (a unit test checks every
    /// row).
    Host(fn(&mut Store, &FunctionEnv<HostState>) -> Function),
    /// Not implemented: a function of the row's signature returning this status.
    Answer(i32),
}

/// One import the host provides.
#[derive(Clone, Copy)]
pub(crate) struct Import {
    /// Its name within the namespace.
    pub(crate) name: &'static str,
    /// Its signature.
    pub(crate) sig: Sig,
    /// How it is provided.
    pub(crate) provider: Provider,
}

impl Import {
    /// A row of a namespace table.
    pub(crate) const fn new(name: &'static str, sig: Sig, provider: Provider) -> Import {
        Import {
            name,
            sig,
            provider,
        }
    }

    /// The host function for one instance.
    pub(crate) fn function(&self, store: &mut Store, env: &FunctionEnv<HostState>) -> Function {
        match self.provider {
            Provider::Host(make) => make(store, env),
            Provider::Answer(status) => unimplemented::answering(store, self.sig, status),
        }
    }
}

/// An import namespace: the module names it is imported under and its functions.
pub(crate) struct Namespace {
    /// Module names a plugin may import these functions from.
    pub(crate) modules: &'static [&'static str],
    /// The functions.
    pub(crate) imports: &'static [Import],
}

impl Namespace {
    /// The import `name` if this namespace serves `module`.
    pub(crate) fn get(&self, module: &str, name: &str) -> Option<&'static Import> {
        if !self.modules.contains(&module) {
            return None;
        }
        self.imports.iter().find(|i| i.name == name)
    }
}

/// [`Provider::Host`] for a host function taking the instance state first
/// (`FunctionEnvMut<HostState>`).
macro_rules! with_env {
    ($function:path) => {
        $crate::imports::table::Provider::Host(|store, env| {
            wasmer::Function::new_typed_with_env(store, env, $function)
        })
    };
}

/// [`Provider::Host`] for a host function that needs no instance state.
macro_rules! plain {
    ($function:path) => {
        $crate::imports::table::Provider::Host(|store, _| {
            wasmer::Function::new_typed(store, $function)
        })
    };
}

pub(crate) use {plain, with_env};
