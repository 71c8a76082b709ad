//! The pipelines objects are scanned with now: read by every object (a
//! snapshot it keeps to the end), replaced whole by [`crate::reload`].

use bucketscan_engine::LoadedPipelines;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The pipelines objects are scanned with now, swapped whole on reload.
pub struct LivePipelines {
    current: arc_swap::ArcSwap<LoadedPipelines>,
    generation: AtomicU64,
}

impl LivePipelines {
    pub fn new(pipelines: LoadedPipelines) -> Self {
        Self {
            current: arc_swap::ArcSwap::from_pointee(pipelines),
            generation: AtomicU64::new(1),
        }
    }

    /// The pipelines to scan one object with; it keeps them to the end
    /// even if a reload happens meanwhile.
    pub fn snapshot(&self) -> Arc<LoadedPipelines> {
        self.current.load_full()
    }

    /// 1 at start, +1 per successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `pipelines` in place for the next objects; returns the new
    /// generation.
    pub(crate) fn swap(&self, pipelines: LoadedPipelines) -> u64 {
        self.current.store(Arc::new(pipelines));
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}
