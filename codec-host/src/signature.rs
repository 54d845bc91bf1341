//! Function signatures as the ABI tables declare them ([`Sig`]), compared with what a module
//! declares, and spelled the way load errors show them: `func (i32, i64) -> (i32)`.

use std::fmt;

use wasmer::{FunctionType, Type};

/// A function signature with static parameter and result types: a row of an ABI table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sig(pub(crate) &'static [Type], pub(crate) &'static [Type]);

impl Sig {
    /// The signature `() -> ()` (the ABI marker, `_start`).
    pub(crate) const NONE: Sig = Sig(&[], &[]);

    /// Whether `ty` has exactly these parameters and results.
    pub(crate) fn matches(&self, ty: &FunctionType) -> bool {
        ty.params() == self.0 && ty.results() == self.1
    }

    /// The same signature as a wasmer function type.
    pub(crate) fn function_type(&self) -> FunctionType {
        FunctionType::new(self.0, self.1)
    }
}

/// Writes `params` and `results` as `func (…) -> (…)`.
pub(crate) fn write_func(
    f: &mut fmt::Formatter<'_>,
    params: &[Type],
    results: &[Type],
) -> fmt::Result {
    f.write_str("func ")?;
    write_types(f, params)?;
    f.write_str(" -> ")?;
    write_types(f, results)
}

fn write_types(f: &mut fmt::Formatter<'_>, types: &[Type]) -> fmt::Result {
    f.write_str("(")?;
    for (n, t) in types.iter().enumerate() {
        if n > 0 {
            f.write_str(", ")?;
        }
        f.write_str(match t {
            Type::I32 => "i32",
            Type::I64 => "i64",
            Type::F32 => "f32",
            Type::F64 => "f64",
            _ => "?",
        })?;
    }
    f.write_str(")")
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_func(f, self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_as_in_load_errors() {
        assert_eq!(
            Sig(&[Type::I32, Type::I64], &[Type::I32]).to_string(),
            "func (i32, i64) -> (i32)"
        );
        assert_eq!(Sig::NONE.to_string(), "func () -> ()");
        assert_eq!(Sig(&[Type::V128], &[]).to_string(), "func (?) -> ()");
    }

    #[test]
    fn matches_only_the_same_types() {
        let sig = Sig(&[Type::I32], &[Type::I32]);
        assert!(sig.matches(&FunctionType::new([Type::I32], [Type::I32])));
        assert!(!sig.matches(&FunctionType::new([Type::I64], [Type::I32])));
        assert!(!sig.matches(&FunctionType::new([Type::I32], [])));
        assert_eq!(
            sig.function_type(),
            FunctionType::new([Type::I32], [Type::I32])
        );
    }
}
