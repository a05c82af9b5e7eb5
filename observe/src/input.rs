//! The one input observe serves from, whoever produces it.
//!
//! Everything the watchdog, the metrics endpoint and the control socket show comes from an
//! [`ObserveInput`]: per loop a [`LoopObserver`] (its published snapshot, its
//! current-callback slot, its flight recorder and the identity of the thread that runs it,
//! for stack samples), the thread pool as a [`PoolFeed`], and the service counters. loopd's
//! engine fills all of it today ([`ObserveInput::from_engine`]); another producer — the libuv
//! agent, which watches a loop it does not run — fills the same types, and observe does not
//! know the difference.

use std::sync::Arc;

use loopd_engine::instrument::{LoopObserver, PoolSnapshot};
use loopd_engine::ThreadPool;

use crate::ServiceRegistry;

/// A thread pool as observe sees it: figures to show, and a size to change where the producer
/// can change it.
pub trait PoolFeed: Send + Sync {
    /// The pool now: size, busy workers, queue, histograms, per-worker figures.
    fn snapshot(&self) -> PoolSnapshot;

    /// The size in force.
    fn size(&self) -> usize;

    /// Whether [`PoolFeed::set_size`] can work (`config.set threadpool_size` is refused
    /// with a clear error otherwise, before anything is applied).
    fn resizable(&self) -> bool;

    /// Resizes the pool; returns the size in force afterwards.
    ///
    /// # Errors
    /// A message for the client when this producer cannot resize its pool.
    fn set_size(&self, size: usize) -> Result<usize, String>;
}

impl PoolFeed for ThreadPool {
    fn snapshot(&self) -> PoolSnapshot {
        ThreadPool::snapshot(self)
    }

    fn size(&self) -> usize {
        ThreadPool::size(self)
    }

    fn resizable(&self) -> bool {
        true
    }

    fn set_size(&self, size: usize) -> Result<usize, String> {
        Ok(ThreadPool::set_size(self, size))
    }
}

/// What observe serves: every figure it shows comes from here.
#[derive(Clone)]
pub struct ObserveInput {
    /// One per loop, in `loop` label order.
    pub loops: Vec<Arc<LoopObserver>>,
    /// The thread pool the loops share.
    pub pool: Arc<dyn PoolFeed>,
    /// The services and their counters (connections, bytes).
    pub services: ServiceRegistry,
}

impl ObserveInput {
    /// The input of loops run by loopd's own engine, sharing `pool`.
    pub fn from_engine(
        loops: Vec<Arc<LoopObserver>>,
        pool: Arc<ThreadPool>,
        services: ServiceRegistry,
    ) -> ObserveInput {
        ObserveInput {
            loops,
            pool,
            services,
        }
    }
}

impl Default for ObserveInput {
    /// No loops yet, the engine's global pool, no services.
    fn default() -> Self {
        ObserveInput::from_engine(
            Vec::new(),
            ThreadPool::global().clone(),
            ServiceRegistry::default(),
        )
    }
}

impl std::fmt::Debug for ObserveInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveInput")
            .field("loops", &self.loops.len())
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}
