//! The one place a rhai [`Engine`] is made. Every rule berth runs — discovery, landing
//! policy, detectors, `rules check`, `rules test`, hot reload — goes through
//! [`hardened_engine`], so a limit set here holds everywhere.
//!
//! Why each choice (DESIGN §8, crate-notes):
//! - `Engine::new_raw()` + [`StandardPackage`]: `Engine::new()` installs a file module
//!   resolver, so a script could `import` any `.rhai` file on disk. There is no resolver
//!   here, `import` is a disabled keyword and `max_modules` is 0.
//! - `eval` is a disabled keyword: a rule cannot build code from data.
//! - The standard package does no file, network or process I/O; its one blocking function,
//!   `sleep`, is shadowed by one that fails (a sleeping rule would outlive any deadline,
//!   since `on_progress` is not called while it sleeps).
//! - rhai has no wall-clock limit: `on_progress` checks a per-call deadline kept in a
//!   thread-local, because one engine is shared by every thread that calls rules.
//! - Every size limit is finite (each is unlimited by default).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, Position};

use super::{memory, output, primitives};

/// Registers extra primitives on the hardened engine (after berth's own).
pub type Extension = fn(&mut rhai::Engine);

/// The bounds every rule call runs within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time one call may take before it is stopped.
    pub deadline: Duration,
    /// rhai operations per call (about 39 M/s in a release build here): a second bound
    /// that does not depend on machine load.
    pub max_operations: u64,
    /// Nested function calls, recursion included.
    pub max_call_levels: usize,
    /// Expression nesting at the top level and inside functions (checked when parsing).
    pub max_expr_depth: usize,
    pub max_fn_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Elements in one array (or bytes in one blob).
    pub max_array_size: usize,
    /// Properties in one object map.
    pub max_map_size: usize,
    /// Variables alive at once in one call.
    pub max_variables: usize,
    /// Functions one rule file may define.
    pub max_functions: usize,
}

/// The limits berth uses. A policy decision is a few hundred operations on a record of a
/// few hundred bytes; these leave room for detectors reading a plan or a log, and stop a
/// runaway rule in a quarter of a second.
pub const LIMITS: Limits = Limits {
    deadline: Duration::from_millis(250),
    max_operations: 20_000_000,
    max_call_levels: 48,
    max_expr_depth: 64,
    max_fn_expr_depth: 48,
    max_string_size: 4 * 1024 * 1024,
    max_array_size: 100_000,
    max_map_size: 10_000,
    max_variables: 1_000,
    max_functions: 256,
};

/// How many operations pass between two looks at the clock: reading the clock on every
/// operation would halve a rule's speed; 1024 operations take well under a millisecond.
const CLOCK_EVERY_OPS: u64 = 1024;

/// What `on_progress` and `log` need to know about the call running on this thread.
struct CallScope {
    deadline: Instant,
    file: String,
}

thread_local! {
    static CURRENT: RefCell<Option<CallScope>> = const { RefCell::new(None) };
}

/// Marks a rule call as running on this thread until dropped. Calls do not nest (a rule
/// cannot call the engine), so one slot per thread is enough.
pub(crate) struct CallGuard(());

impl CallGuard {
    pub(crate) fn enter(file: &str, limits: &Limits) -> CallGuard {
        CURRENT.with(|slot| {
            *slot.borrow_mut() = Some(CallScope {
                deadline: Instant::now() + limits.deadline,
                file: file.to_owned(),
            })
        });
        output::start_call();
        memory::start();
        CallGuard(())
    }

    /// Whether the call has run past its deadline.
    pub(crate) fn past_deadline(&self) -> bool {
        past_deadline()
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        memory::stop();
        CURRENT.with(|slot| *slot.borrow_mut() = None);
    }
}

/// The rule file whose call is running on this thread, for `log` and `print`.
pub(crate) fn current_file() -> String {
    CURRENT.with(|slot| {
        slot.borrow()
            .as_ref()
            .map_or_else(|| "(no rule)".to_owned(), |scope| scope.file.clone())
    })
}

fn past_deadline() -> bool {
    CURRENT.with(|slot| {
        slot.borrow()
            .as_ref()
            .is_some_and(|scope| Instant::now() >= scope.deadline)
    })
}

/// The token `on_progress` returns when it stops a call at its deadline.
const DEADLINE_TOKEN: &str = "deadline";
/// The token `on_progress` returns when it stops a call holding too much memory;
/// [`super::RuleError::from_eval`] tells it from the deadline.
pub(crate) const MEMORY_TOKEN: &str = "memory";

/// Builds the locked-down engine: standard package only, berth's primitives, the given
/// extensions (other berth modules' primitives, e.g. the faults' `state_jsonpath`), and
/// every limit in `limits`.
pub fn hardened_engine(limits: &Limits, extensions: &[Extension]) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.disable_symbol("export");
    engine.set_max_modules(0);
    engine.set_strict_variables(true);
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_fn_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_variables(limits.max_variables);
    engine.set_max_functions(limits.max_functions);
    engine.on_progress(|ops| {
        if memory::live() > memory::MAX_CALL_BYTES {
            Some(Dynamic::from(MEMORY_TOKEN))
        } else if ops % CLOCK_EVERY_OPS == 0 && past_deadline() {
            Some(Dynamic::from(DEADLINE_TOKEN))
        } else {
            None
        }
    });
    engine.on_print(|text| output::emit(output::Level::Info, &current_file(), text));
    engine.on_debug(|text, _, _| output::emit(output::Level::Debug, &current_file(), text));
    engine.register_fn("log", |value: rhai::Dynamic| {
        output::emit(output::Level::Info, &current_file(), &value.to_string())
    });
    primitives::register(&mut engine);
    engine.register_fn("sleep", refuse_sleep::<rhai::INT>);
    engine.register_fn("sleep", refuse_sleep::<rhai::FLOAT>);
    for extend in extensions {
        extend(&mut engine);
    }
    engine
}

/// Shadows the standard `sleep`: the engine's own namespace is searched before packages.
fn refuse_sleep<T>(_: T) -> Result<(), Box<EvalAltResult>> {
    Err(EvalAltResult::ErrorRuntime(
        "sleep is not available to rules (a rule must decide, not wait)".into(),
        Position::NONE,
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let engine = hardened_engine(&LIMITS, &[]);
        let ast = engine
            .compile(script)
            .map_err(|e| Box::new(EvalAltResult::from(e.to_string())))?;
        let _guard = CallGuard::enter("test.rhai", &LIMITS);
        engine.eval_ast::<Dynamic>(&ast)
    }

    #[test]
    fn eval_import_and_export_are_refused_at_compile_time() {
        let engine = hardened_engine(&LIMITS, &[]);
        for script in [
            r#"eval("40 + 2")"#,
            r#"import "/etc/passwd" as p; 1"#,
            "let x = 1; export x;",
        ] {
            let err = engine.compile(script).expect_err(script).to_string();
            assert!(
                err.contains("disabled") || err.contains("reserved keyword"),
                "{script}: {err}"
            );
        }
    }

    #[test]
    fn no_file_network_or_process_functions_exist() {
        for call in [
            r#"open("/etc/passwd")"#,
            r#"read_file("/etc/passwd")"#,
            r#"system("id")"#,
            r#"exec("id")"#,
            r#"command("id")"#,
            r#"http_get("http://example.invalid")"#,
            r#"env("HOME")"#,
        ] {
            let err = run(call).expect_err(call).to_string();
            assert!(err.contains("Function not found"), "{call}: {err}");
        }
    }

    #[test]
    fn sleep_fails_instead_of_blocking() {
        let started = Instant::now();
        let err = run("sleep(30)").unwrap_err().to_string();
        assert!(err.contains("sleep is not available"), "{err}");
        let err = run("sleep(30.0)").unwrap_err().to_string();
        assert!(err.contains("sleep is not available"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn an_endless_loop_stops_at_the_deadline() {
        let started = Instant::now();
        let err = run("let n = 0; loop { n += 1; }").unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(*err, EvalAltResult::ErrorTerminated(..)), "{err}");
        assert!(elapsed >= LIMITS.deadline, "{elapsed:?}");
        assert!(elapsed < LIMITS.deadline * 4, "{elapsed:?}");
    }

    #[test]
    fn sizes_are_capped() {
        for script in [
            r#"let s = "x"; loop { s += s; }"#,
            r#"let s = ""; s.pad(100_000_000, 'x'); s"#,
            "let a = []; a.pad(100_000_000, 0); a",
            "blob(100_000_000)",
        ] {
            let err = run(script).expect_err(script);
            assert!(
                matches!(*err, EvalAltResult::ErrorDataTooLarge(..)),
                "{script}: {err}"
            );
        }
    }

    /// Every size limit alone lets one call hold about 1 GiB (rhai does not count map keys,
    /// and nothing bounds how many big values stay alive). The heap a
    /// call holds is counted and capped; the count, not the time, is what is checked.
    #[test]
    fn one_call_cannot_hold_more_than_its_memory_bound() {
        // Deadline and operations out of the way: only the memory bound may stop it.
        let limits = Limits {
            deadline: Duration::from_secs(120),
            ..LIMITS
        };
        let engine = hardened_engine(&limits, &[]);
        let hostile = r#"
            let key = ""; key.pad(1_000_000, 'k');
            let held = #{};
            for i in 0..10_000 { held[key + i] = i; }
            held.len()
        "#;
        let ast = engine.compile(hostile).unwrap();
        let _guard = CallGuard::enter("hostile.rhai", &limits);
        let err = engine.eval_ast::<Dynamic>(&ast).unwrap_err();
        drop(_guard);
        let held = memory::peak();
        let error = super::super::RuleError::from_eval("hostile.rhai", "f", &err, 0);
        assert!(
            error.to_string().contains("held more than 256 MiB"),
            "{error}"
        );
        // 10,000 keys of 1 MB would be 10 GB; the call stopped within a few keys of the
        // bound (one operation allocates at most a couple of MB here).
        assert!(held > memory::MAX_CALL_BYTES, "{held}");
        assert!(held < memory::MAX_CALL_BYTES + (8 << 20), "{held}");
    }

    #[test]
    fn recursion_is_capped_before_the_stack_runs_out() {
        // The daemon calls rules on tokio's blocking threads (2 MiB stacks): prove the
        // call-depth limit trips first on a stack that small.
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| run("fn f(n) { f(n + 1) } f(0)").map_err(|e| e.to_string()))
            .unwrap();
        let err = handle.join().expect("no stack overflow").unwrap_err();
        // rhai reports the call-depth limit as "Stack overflow": its own count, not the
        // thread's stack, which is what the 2 MiB thread proves.
        assert!(err.contains("Stack overflow"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_when_parsing() {
        let engine = hardened_engine(&LIMITS, &[]);
        let script = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        let err = engine.compile(&script).unwrap_err().to_string();
        assert!(err.contains("exceeds maximum complexity"), "{err}");
    }

    #[test]
    fn undeclared_variables_are_compile_errors() {
        let engine = hardened_engine(&LIMITS, &[]);
        let err = engine
            .compile("fn f() { undeclared + 1 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("undeclared"), "{err}");
    }
}
