//! The CPU budget built into a plugin's code: a compile-time transform that charges the
//! operators a guest executes against a per-call allowance and stops the guest (a trap with
//! the exhausted flag set) when it runs out.
//!
//! `wasmer_middlewares::Metering` checks the budget at every basic block boundary, which on
//! our Bolt plugin was about a fifth of the sidecar's CPU per call: most of the guest's time
//! went into the checks. This transform checks only where execution can repeat or leave a
//! function, the places wasmtime's epoch interruption checks:
//! * before a branch back to a `loop` (one check per iteration) and before entering a loop;
//! * before leaving the function (`return`, a branch to the function's own label, the
//!   final `end`, tail calls);
//! * before anything that can throw, and before calls inside a `try` (a throw can land in a
//!   handler that continues a loop).
//!
//! Each check charges the operators that precede it in the function's code since the
//! previous check, so a point is still about one operator. A forward branch may skip a check
//! whose operators it already ran: at most one function body's worth of operators goes
//! uncharged between two checks that run, so an endless loop still stops, and a call that
//! runs out of points still stops at the next check. Calls are not checked: a callee charges
//! its own work when it returns, and recursion without a tail call is bounded by the stack.
//!
//! The globals and their export names are those of `wasmer_middlewares::Metering`, so the
//! host arms and reads the budget the same way (`vm.rs`).

use std::sync::Mutex;

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{
    ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type,
};

/// Export holding the remaining CPU points.
pub(crate) const POINTS_REMAINING: &str = "wasmer_metering_remaining_points";
/// Export set to 1 when the points ran out.
pub(crate) const POINTS_EXHAUSTED: &str = "wasmer_metering_points_exhausted";

/// The module half: adds the two globals; one per compiled module.
#[derive(Debug)]
pub(crate) struct Budget {
    initial_points: u64,
    /// The indexes of the remaining-points and exhausted globals, once added.
    globals: Mutex<Option<(u32, u32)>>,
}

impl Budget {
    /// A budget whose globals start at `initial_points` (the host re-arms before each call).
    pub(crate) fn new(initial_points: u64) -> Budget {
        Budget {
            initial_points,
            globals: Mutex::new(None),
        }
    }

    fn globals(&self) -> (u32, u32) {
        self.globals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .expect("the module info is transformed before its functions")
    }
}

impl ModuleMiddleware for Budget {
    fn generate_function_middleware<'a>(
        &self,
        _: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let (remaining, exhausted) = self.globals();
        Box::new(FunctionBudget {
            remaining,
            exhausted,
            pending: 0,
            labels: vec![Label::Function],
        })
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let mut globals = self
            .globals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if globals.is_some() {
            return Err(MiddlewareError::new(
                "budget",
                "one Budget middleware per module",
            ));
        }
        let remaining = info
            .globals
            .push(GlobalType::new(Type::I64, Mutability::Var));
        info.global_initializers
            .push(GlobalInit::I64Const(self.initial_points as i64));
        info.exports
            .insert(POINTS_REMAINING.to_owned(), ExportIndex::Global(remaining));
        let exhausted = info
            .globals
            .push(GlobalType::new(Type::I32, Mutability::Var));
        info.global_initializers.push(GlobalInit::I32Const(0));
        info.exports
            .insert(POINTS_EXHAUSTED.to_owned(), ExportIndex::Global(exhausted));
        *globals = Some((remaining.as_u32(), exhausted.as_u32()));
        Ok(())
    }
}

/// What a branch to a label does: only `loop` labels go backwards; the function's own label
/// leaves the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Function,
    Loop,
    Forward,
    Try,
}

/// The function half: charges the pending operators at the checks.
#[derive(Debug)]
struct FunctionBudget {
    remaining: u32,
    exhausted: u32,
    /// Operators since the last check, in code order.
    pending: u64,
    /// The open control frames, outermost (the function) first.
    labels: Vec<Label>,
}

impl FunctionBudget {
    /// Whether a branch `depth` labels out ends at a check point (a loop or the exit).
    fn checks_branch(&self, depth: u32) -> bool {
        let at = self.labels.len().checked_sub(1 + depth as usize);
        match at.and_then(|i| self.labels.get(i)) {
            Some(Label::Loop | Label::Function) => true,
            Some(Label::Forward | Label::Try) => false,
            // Not valid Wasm; the validator refuses it. Check rather than guess.
            None => true,
        }
    }

    /// Whether the budget is checked before `op` (which is already counted).
    fn checks_before(&self, op: &Operator<'_>) -> bool {
        match op {
            Operator::Loop { .. }
            | Operator::Return
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. }
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::Rethrow { .. }
            | Operator::Delegate { .. } => true,
            Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. } => {
                self.labels.contains(&Label::Try)
            }
            // The function's final `end`.
            Operator::End => self.labels.len() == 1,
            Operator::Br { relative_depth }
            | Operator::BrIf { relative_depth }
            | Operator::BrOnNull { relative_depth }
            | Operator::BrOnNonNull { relative_depth }
            | Operator::BrOnCast { relative_depth, .. }
            | Operator::BrOnCastFail { relative_depth, .. } => self.checks_branch(*relative_depth),
            Operator::BrTable { targets } => {
                self.checks_branch(targets.default())
                    || targets
                        .targets()
                        .any(|t| t.map_or(true, |depth| self.checks_branch(depth)))
            }
            _ => false,
        }
    }

    /// Tracks the control frames `op` opens or closes.
    fn track(&mut self, op: &Operator<'_>) {
        match op {
            Operator::Block { .. } | Operator::If { .. } => self.labels.push(Label::Forward),
            Operator::Loop { .. } => self.labels.push(Label::Loop),
            Operator::Try { .. } | Operator::TryTable { .. } => self.labels.push(Label::Try),
            Operator::End | Operator::Delegate { .. } => {
                self.labels.pop();
            }
            _ => {}
        }
    }

    /// The check: trap with the exhausted flag set unless `pending` points remain, then
    /// take them.
    fn charge(&mut self, state: &mut MiddlewareReaderState<'_>) {
        let cost = self.pending as i64;
        self.pending = 0;
        state.extend(&[
            Operator::GlobalGet {
                global_index: self.remaining,
            },
            Operator::I64Const { value: cost },
            Operator::I64LtU,
            Operator::If {
                blockty: BlockType::Empty,
            },
            Operator::I32Const { value: 1 },
            Operator::GlobalSet {
                global_index: self.exhausted,
            },
            Operator::Unreachable,
            Operator::End,
            Operator::GlobalGet {
                global_index: self.remaining,
            },
            Operator::I64Const { value: cost },
            Operator::I64Sub,
            Operator::GlobalSet {
                global_index: self.remaining,
            },
        ]);
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionBudget {
    fn feed(
        &mut self,
        op: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        // One point per operator, counted before the check so the checked operator pays too.
        self.pending += 1;
        if self.checks_before(&op) {
            self.charge(state);
        }
        self.track(&op);
        state.push_operator(op);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmer::sys::{CompilerConfig, Cranelift, EngineBuilder};
    use wasmer::{imports, Engine, Instance, Module, Store, TypedFunction, Value};

    use crate::limits::Limits;

    use super::{Budget, POINTS_EXHAUSTED, POINTS_REMAINING};

    /// A module instance with a budget of `points` per call.
    struct Metered {
        store: Store,
        instance: Instance,
    }

    impl Metered {
        fn new(wat: &str, points: u64) -> Metered {
            let mut compiler = Cranelift::new();
            compiler.push_middleware(Arc::new(Budget::new(points)));
            let engine: Engine = EngineBuilder::new(compiler).into();
            let module = Module::new(&engine, wat.as_bytes()).expect("compiles");
            let mut store = Store::new(engine);
            let instance = Instance::new(&mut store, &module, &imports! {}).expect("instantiates");
            Metered { store, instance }
        }

        fn remaining(&mut self) -> i64 {
            let global = self.instance.exports.get_global(POINTS_REMAINING).unwrap();
            match global.get(&mut self.store) {
                Value::I64(v) => v,
                other => panic!("remaining points: {other:?}"),
            }
        }

        fn exhausted(&mut self) -> bool {
            let global = self.instance.exports.get_global(POINTS_EXHAUSTED).unwrap();
            global.get(&mut self.store) == Value::I32(1)
        }

        /// Calls `name(arg)`: its result, or `None` when it trapped.
        fn call(&mut self, name: &str, arg: i32) -> Option<i32> {
            let f: TypedFunction<i32, i32> = self
                .instance
                .exports
                .get_typed_function(&self.store, name)
                .unwrap();
            f.call(&mut self.store, arg).ok()
        }
    }

    const LOOPS: &str = r#"(module
      (func (export "spin") (param i32) (result i32)
        (loop $l (br $l))
        i32.const 0)
      (func (export "spin_if") (param i32) (result i32)
        (loop $l (br_if $l (i32.const 1)))
        i32.const 0)
      (func (export "spin_table") (param i32) (result i32)
        (block $out (loop $l (br_table $l $out (i32.const 0))))
        i32.const 0)
      (func (export "count") (param $n i32) (result i32)
        (local $i i32)
        (block $done
          (loop $l
            (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $l)))
        local.get $i)
      (func $deep (export "deep") (param i32) (result i32)
        (call $deep (local.get 0)))
      (func (export "straight") (param i32) (result i32)
        local.get 0
        i32.const 1
        i32.add
        i32.const 2
        i32.add))"#;

    #[test]
    fn endless_loops_run_out_of_points() {
        let mut m = Metered::new(LOOPS, 10_000);
        for name in ["spin", "spin_if", "spin_table"] {
            m.instance
                .exports
                .get_global(POINTS_REMAINING)
                .unwrap()
                .set(&mut m.store, Value::I64(10_000))
                .unwrap();
            assert_eq!(m.call(name, 0), None, "{name} must be stopped");
            assert!(
                m.exhausted(),
                "{name} stopped by the budget, not another trap"
            );
            assert!(m.remaining() < 10, "{name}: {} points left", m.remaining());
        }
    }

    #[test]
    fn a_loop_pays_for_every_iteration() {
        let mut m = Metered::new(LOOPS, 1_000_000);
        let before = m.remaining();
        assert_eq!(m.call("count", 1_000), Some(1_000));
        let spent = before - m.remaining();
        // Nine operators per iteration from the loop header to the back branch, two on entry
        // (`block`, `loop`) and four on return (`end`, `end`, `local.get`, `end`); the four
        // operators of the last, partial iteration branch forward past the check.
        assert_eq!(spent, 2 + 1_000 * 9 + 4);

        let mut m = Metered::new(LOOPS, 5_000);
        assert_eq!(m.call("count", 1_000), None, "5,000 points are not enough");
        assert!(m.exhausted());
    }

    #[test]
    fn straight_code_pays_once_on_return() {
        let mut m = Metered::new(LOOPS, 1_000);
        let before = m.remaining();
        assert_eq!(m.call("straight", 1), Some(4));
        // Five operators and the final `end`.
        assert_eq!(before - m.remaining(), 6);
    }

    #[test]
    #[ignore = "a measurement: cargo test --release -p codec-host --lib budget -- --ignored --nocapture"]
    fn time_to_stop_an_endless_loop_with_the_default_budget() {
        let mut m = Metered::new(LOOPS, Limits::DEFAULT_CPU_POINTS);
        for name in ["spin", "spin_if", "count"] {
            m.instance
                .exports
                .get_global(POINTS_REMAINING)
                .unwrap()
                .set(&mut m.store, Value::I64(Limits::DEFAULT_CPU_POINTS as i64))
                .unwrap();
            let started = std::time::Instant::now();
            let r = m.call(name, i32::MAX);
            println!("{name}: {r:?} after {:?}", started.elapsed());
        }
    }

    #[test]
    fn endless_recursion_is_stopped_by_the_stack() {
        let mut m = Metered::new(LOOPS, 64_000_000);
        assert_eq!(m.call("deep", 0), None);
        assert!(!m.exhausted(), "a stack overflow, not the budget");
    }
}
