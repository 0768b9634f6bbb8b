//! The sandbox every guest runs in, endpoint component or tool: the
//! engine settings they share, a store confined by a memory cap and an
//! epoch deadline, and what a failed guest call was (a deadline, the
//! memory cap, a trap), mapped to the error its caller is told.
//!
//! The epoch advances every [`EPOCH_TICK`] on a thread of its own
//! ([`start_epoch_clock`]), so a deadline interrupts a guest that never
//! calls out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, Store, Trap};

use crate::capabilities::tools::ToolCallError;
use crate::config::{AddressSpace, Config};
use crate::error::ApiError;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The epoch deadline, in ticks, of a call that may run for `timeout`.
pub fn epoch_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] for as long as the
/// engine lives, so that deadlines interrupt guests that never call out.
pub fn start_epoch_clock(engine: &Engine) -> std::io::Result<()> {
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}

/// The engine settings of every guest: components (wasi:http 0.2, no
/// component-model async: skipping the concurrency state makes every
/// store cheaper), epoch interruption, linear memories laid out as
/// `config` says (`memory_cap` the largest one may grow), and the perf map
/// when asked for.
pub fn engine_config(config: &Config, memory_cap: usize) -> wasmtime::Config {
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .concurrency_support(false)
        .epoch_interruption(true);
    if config.perf_map {
        wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if config.address_space == AddressSpace::Compact {
        // Reserve what the cap allows and nothing past it: every access is
        // then bounds-checked in code instead of by guard pages.
        wasm.memory_reservation(memory_cap as u64)
            .memory_guard_size(0)
            .memory_reservation_for_growth(0);
    }
    wasm
}

/// Caps an instance's memory, and remembers whether the cap was hit so
/// that the failure is reported as what it is.
pub struct MemoryLimit {
    max: usize,
    hit: Arc<AtomicBool>,
    /// The largest memory the instance was allowed to grow to.
    grown: usize,
}

impl MemoryLimit {
    /// The largest linear memory the instance has grown to so far.
    pub fn grown(&self) -> usize {
        self.grown
    }

    /// A cap of `max` bytes, and the flag that tells whether it was hit.
    pub fn new(max: usize) -> (MemoryLimit, Arc<AtomicBool>) {
        let hit = Arc::new(AtomicBool::new(false));
        (
            MemoryLimit {
                max,
                hit: hit.clone(),
                grown: 0,
            },
            hit,
        )
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        self.grown = self.grown.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A store state with a memory cap.
pub trait Sandboxed: 'static {
    /// The cap of the store's instance.
    fn memory_limit(&mut self) -> &mut MemoryLimit;
}

/// Confines `store` for a call of at most `timeout`: its memory cap, and
/// an epoch deadline that traps.
pub fn confine<T: Sandboxed>(store: &mut Store<T>, timeout: Duration) {
    store.limiter(|state| state.memory_limit());
    store.set_epoch_deadline(epoch_ticks(timeout));
    store.epoch_deadline_trap();
}

/// What stopped a guest call: a kind, as `std::io::ErrorKind`, read off
/// the wasmtime error that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestErrorKind {
    /// It was interrupted at its deadline.
    Deadline,
    /// It ran into its memory cap.
    OutOfMemory,
    /// It trapped, or a host call failed.
    Trapped,
}

impl GuestErrorKind {
    /// What `error` was, `memory_hit` telling whether the cap was hit.
    pub fn of(error: &wasmtime::Error, memory_hit: &AtomicBool) -> GuestErrorKind {
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            GuestErrorKind::Deadline
        } else if memory_hit.load(Ordering::Relaxed) {
            GuestErrorKind::OutOfMemory
        } else {
            GuestErrorKind::Trapped
        }
    }
}

/// Turns a failed endpoint component call into the client's error.
pub fn component_failure(error: wasmtime::Error, memory_hit: &AtomicBool) -> ApiError {
    match GuestErrorKind::of(&error, memory_hit) {
        GuestErrorKind::Deadline => {
            tracing::warn!("component interrupted at its deadline");
            ApiError::deadline_exceeded()
        }
        GuestErrorKind::OutOfMemory => {
            tracing::warn!(error = %format!("{error:#}"), "component ran out of memory");
            ApiError::internal("the component ran out of memory")
        }
        GuestErrorKind::Trapped => {
            tracing::error!(error = %format!("{error:#}"), "component trapped");
            ApiError::internal("the component failed")
        }
    }
}

/// Turns a failed call of `tool` into what its caller is told.
pub fn tool_failure(error: wasmtime::Error, memory_hit: &AtomicBool, tool: &str) -> ToolCallError {
    match GuestErrorKind::of(&error, memory_hit) {
        GuestErrorKind::Deadline => ToolCallError::TimedOut,
        GuestErrorKind::OutOfMemory => ToolCallError::OutOfMemory,
        GuestErrorKind::Trapped => {
            tracing::warn!(tool, error = %format!("{error:#}"), "tool trapped");
            ToolCallError::Crashed("the tool stopped with an error".into())
        }
    }
}
