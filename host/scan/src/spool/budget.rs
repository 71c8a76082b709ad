//! The spool budget: how many bytes of objects may sit in spool files at
//! once. An object reserves its whole size before its first byte is
//! written and gives it back when its file is removed, so a flood of large
//! uploads waits its turn (a retry, later) instead of filling the disk
//! that every other scan needs.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in units of this many bytes (a semaphore
/// counts at most `u32::MAX` permits per request).
const UNIT: u64 = 64 * 1024;

#[derive(Debug)]
pub struct SpoolBudget {
    total: u64,
    /// Units the budget holds in all (`total` rounded down).
    capacity: u64,
    units: Arc<Semaphore>,
}

/// Bytes reserved for one spool file; released on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

/// Why a spool reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoom {
    #[error("{bytes} bytes is more than the spool budget could ever hold")]
    Never { bytes: u64 },
    #[error(
        "the spool budget ({total} bytes) has {free} bytes free and this object needs {bytes}; it is retried later"
    )]
    NotNow { bytes: u64, total: u64, free: u64 },
}

impl SpoolBudget {
    pub fn new(total_bytes: u64) -> Self {
        let units = (total_bytes / UNIT).min(Semaphore::MAX_PERMITS as u64) as usize;
        Self {
            total: total_bytes,
            capacity: units as u64,
            units: Arc::new(Semaphore::new(units)),
        }
    }

    /// Reserves room for `bytes`, now or not at all.
    pub fn try_reserve(&self, bytes: u64) -> Result<Reservation, NoRoom> {
        let needed = bytes.div_ceil(UNIT);
        let Ok(needed32) = u32::try_from(needed) else {
            return Err(NoRoom::Never { bytes });
        };
        // More than the whole budget would wait for ever (whole units:
        // 70 KiB of a 100 KiB budget is two units of its one).
        if needed > self.capacity {
            return Err(NoRoom::Never { bytes });
        }
        match self.units.clone().try_acquire_many_owned(needed32) {
            Ok(permit) => Ok(Reservation { _permit: permit }),
            Err(_) => Err(NoRoom::NotNow {
                bytes,
                total: self.total,
                free: self.free_bytes(),
            }),
        }
    }

    /// The budget's size.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The most bytes reservations can hold at once: whole units.
    pub fn capacity(&self) -> u64 {
        self.capacity * UNIT
    }

    /// What a reservation of `bytes` takes of the budget: whole units.
    pub fn reserved_size(bytes: u64) -> u64 {
        bytes.div_ceil(UNIT).saturating_mul(UNIT)
    }

    pub fn free_bytes(&self) -> u64 {
        self.units.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_come_back_when_dropped() {
        let budget = SpoolBudget::new(10 * UNIT);
        let first = budget.try_reserve(6 * UNIT).unwrap();
        let err = budget.try_reserve(5 * UNIT).unwrap_err();
        assert_eq!(
            err,
            NoRoom::NotNow {
                bytes: 5 * UNIT,
                total: 10 * UNIT,
                free: 4 * UNIT
            }
        );
        let second = budget.try_reserve(4 * UNIT).unwrap();
        drop(first);
        assert_eq!(budget.free_bytes(), 6 * UNIT);
        drop(second);
        assert!(budget.try_reserve(10 * UNIT).is_ok());
        assert_eq!(
            budget.try_reserve(11 * UNIT).unwrap_err(),
            NoRoom::Never { bytes: 11 * UNIT },
            "more than the whole budget never fits"
        );
    }

    #[test]
    fn what_whole_units_cannot_hold_never_fits() {
        // 100 KiB holds one unit; 70 KiB takes two: waiting would be for ever.
        let budget = SpoolBudget::new(100 << 10);
        assert_eq!(budget.capacity(), UNIT);
        assert_eq!(
            budget.try_reserve(70 << 10).unwrap_err(),
            NoRoom::Never { bytes: 70 << 10 }
        );
        assert_eq!(SpoolBudget::reserved_size(70 << 10), 2 * UNIT);
        assert!(budget.try_reserve(UNIT).is_ok());
    }
}
