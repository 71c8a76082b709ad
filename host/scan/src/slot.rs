//! The slot an object is scanned in. Slots bound how many objects are
//! fetched and inspected at once (CPU, memory, spool). Once an object is
//! contained (its result tags written, its copies made), what is left is
//! waiting: for its result to be recorded (in a batch with others') and
//! published, and then for the deferred deletes. The slot is given back
//! for the next object at that point, and the object holds a *tail* place
//! instead. There are a few tail places per slot: a store or topic that
//! stalls fills them, slots are then kept to the end again, and the work
//! waiting stays bounded.

use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Tail places per slot: objects contained and waiting on their record,
/// alert and deletes.
pub const TAILS_PER_SLOT: usize = 4;

/// What one object holds while it is handled.
pub struct ScanSlot {
    held: Mutex<Held>,
    /// Permits held to the end whatever happens: a sweep item's, which
    /// bounds the sweep's share of the agent, tails included.
    _kept: Option<OwnedSemaphorePermit>,
}

enum Held {
    /// Nothing to give back: the caller bounds nothing (a dry run, an
    /// on-demand scan), or keeps the slot for more objects.
    Nothing,
    Slot {
        /// Freed when dropped.
        _permit: OwnedSemaphorePermit,
        tails: Arc<Semaphore>,
    },
    /// Held until the object's handling ends.
    Tail { _place: OwnedSemaphorePermit },
}

impl ScanSlot {
    /// A slot with nothing to give back.
    pub fn unbounded() -> Self {
        Self {
            held: Mutex::new(Held::Nothing),
            _kept: None,
        }
    }

    /// A slot, `permit`, given back for a place in `tails` once the
    /// object is contained.
    pub fn new(permit: OwnedSemaphorePermit, tails: Arc<Semaphore>) -> Self {
        Self {
            held: Mutex::new(Held::Slot { _permit: permit, tails }),
            _kept: None,
        }
    }

    /// Also holds `permit`, to the end.
    pub fn keeping(self, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self { _kept: permit, ..self }
    }

    /// The object is contained: its slot goes back if a tail place is
    /// free (otherwise it is kept to the end). Says whether it went back.
    pub fn contained(&self) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Held::Slot { tails, .. } = &*held else {
            return false;
        };
        match tails.clone().try_acquire_owned() {
            Ok(tail) => {
                // Dropping the slot's permits here frees it.
                *held = Held::Tail { _place: tail };
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the object still holds its slot.
    pub fn holds_slot(&self) -> bool {
        matches!(
            &*self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            Held::Slot { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_contained_object_gives_its_slot_back_for_a_tail_place() {
        let (slots, tails) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(1)));
        let slot = ScanSlot::new(slots.clone().try_acquire_owned().unwrap(), tails.clone());
        assert_eq!(slots.available_permits(), 0);
        assert!(slot.contained());
        assert_eq!((slots.available_permits(), tails.available_permits()), (1, 0));
        assert!(!slot.contained(), "given back once");
        drop(slot);
        assert_eq!(tails.available_permits(), 1, "the tail place ends with the object");
    }

    #[tokio::test]
    async fn with_every_tail_place_taken_the_slot_is_kept_to_the_end() {
        let (slots, tails) = (Arc::new(Semaphore::new(2)), Arc::new(Semaphore::new(1)));
        let first = ScanSlot::new(slots.clone().try_acquire_owned().unwrap(), tails.clone());
        let second = ScanSlot::new(slots.clone().try_acquire_owned().unwrap(), tails.clone());
        assert!(first.contained());
        assert!(!second.contained());
        assert!(second.holds_slot());
        assert_eq!(slots.available_permits(), 1);
        drop(second);
        assert_eq!(slots.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_kept_permit_stays_held_after_the_slot_goes_back() {
        let (slots, sweeps, tails) = (
            Arc::new(Semaphore::new(1)),
            Arc::new(Semaphore::new(1)),
            Arc::new(Semaphore::new(1)),
        );
        let slot = ScanSlot::new(slots.clone().try_acquire_owned().unwrap(), tails)
            .keeping(sweeps.clone().try_acquire_owned().ok());
        assert!(slot.contained());
        assert_eq!((slots.available_permits(), sweeps.available_permits()), (1, 0));
        drop(slot);
        assert_eq!(sweeps.available_permits(), 1);
    }

    #[test]
    fn an_unbounded_slot_has_nothing_to_give_back() {
        let slot = ScanSlot::unbounded();
        assert!(!slot.contained());
        assert!(!slot.holds_slot());
    }
}
