//! The rule sets a host runs, by name: each declared by the config, filled
//! when its first version compiles, swapped whole for a newer one, and
//! never emptied by a version that does not compile. A scan takes the set
//! that is current when it starts and keeps it to the end.

use crate::RuleSet;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How a rule set may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest object a scan reads whole.
    pub max_object_bytes: u64,
    /// How long the rules may run over one object.
    pub timeout: Duration,
    /// How old the last good sync may be before scans stop (the rules
    /// source may have been unreachable all that time).
    pub max_age: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_object_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            max_age: None,
        }
    }
}

/// One named rule set's state.
#[derive(Debug, Default, Clone)]
struct Slot {
    current: Option<Arc<RuleSet>>,
    /// When its source was last read and found good (compiled or unchanged).
    confirmed_at: Option<Instant>,
    /// The last refusal (a compile error, an unreadable source).
    refused: Option<String>,
}

/// Why a rule set cannot run now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("no rule set `{0}` is configured")]
    Unknown(String),
    #[error("rule set `{name}` is not loaded yet{}", why.as_ref().map(|w| format!(": {w}")).unwrap_or_default())]
    NotLoaded { name: String, why: Option<String> },
    #[error("rule set `{name}` was last confirmed {age:?} ago, more than its max age{}", why.as_ref().map(|w| format!(": {w}")).unwrap_or_default())]
    Stale {
        name: String,
        age: Duration,
        why: Option<String>,
    },
}

/// Every rule set of the host.
#[derive(Debug, Default)]
pub struct Library {
    slots: RwLock<BTreeMap<String, Slot>>,
    pub limits: Limits,
}

/// What a rule set's scan needs from the object.
pub enum Bytes<'a> {
    Memory(&'a [u8]),
    File(&'a Path),
}

impl Library {
    /// A library of the rule sets `names`, none loaded yet.
    pub fn new(names: impl IntoIterator<Item = String>, limits: Limits) -> Self {
        Self {
            slots: RwLock::new(names.into_iter().map(|name| (name, Slot::default())).collect()),
            limits,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The version running now of `name`, if any.
    pub fn version(&self, name: &str) -> Option<String> {
        let slots = self.read();
        Some(slots.get(name)?.current.as_ref()?.version().to_owned())
    }

    /// Installs a newly compiled version (or confirms the same one).
    pub fn install(&self, set: RuleSet) {
        let mut slots = self.write();
        let slot = slots.entry(set.name().to_owned()).or_default();
        let unchanged = slot.current.as_ref().is_some_and(|c| c.version() == set.version());
        if !unchanged {
            slot.current = Some(Arc::new(set));
        }
        slot.confirmed_at = Some(Instant::now());
        slot.refused = None;
    }

    /// The source still holds the version running: it stays fresh.
    pub fn confirm(&self, name: &str) {
        if let Some(slot) = self.write().get_mut(name) {
            slot.confirmed_at = Some(Instant::now());
            slot.refused = None;
        }
    }

    /// A version that was refused (it does not compile, its source could
    /// not be read): the one before keeps running.
    pub fn refuse(&self, name: &str, why: String) {
        if let Some(slot) = self.write().get_mut(name) {
            slot.refused = Some(why);
        }
    }

    /// The last refusal of `name`, for readiness and `check`.
    pub fn refusal(&self, name: &str) -> Option<String> {
        self.read().get(name)?.refused.clone()
    }

    /// The set to scan with now.
    pub fn get(&self, name: &str) -> Result<Arc<RuleSet>, Unavailable> {
        let slots = self.read();
        let slot = slots.get(name).ok_or_else(|| Unavailable::Unknown(name.to_owned()))?;
        let current = slot.current.clone().ok_or_else(|| Unavailable::NotLoaded {
            name: name.to_owned(),
            why: slot.refused.clone(),
        })?;
        if let (Some(max_age), Some(at)) = (self.limits.max_age, slot.confirmed_at)
            && at.elapsed() > max_age
        {
            return Err(Unavailable::Stale {
                name: name.to_owned(),
                age: at.elapsed(),
                why: slot.refused.clone(),
            });
        }
        Ok(current)
    }

    /// Why the library cannot scan with every set: readiness.
    pub fn problems(&self) -> Vec<String> {
        self.names()
            .into_iter()
            .filter_map(|name| self.get(&name).err().map(|why| why.to_string()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Slot>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Slot>> {
        self.slots.write().unwrap_or_else(|e| e.into_inner())
    }
}
