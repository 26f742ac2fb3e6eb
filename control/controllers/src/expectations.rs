//! Expectations: what a controller wrote but its cache has not shown yet.
//!
//! A reconcile that creates or deletes objects must not act again on a cache
//! that predates its own writes (it would create twice). Like Kubernetes'
//! `ControllerExpectations`, each key remembers the names it created and
//! deleted; the next reconcile only manages again once the cache shows them
//! (or a timeout passed, in case a watch event was lost).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long unmet expectations hold back a controller before it re-lists.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

/// Per-key pending creations and deletions.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Remembers that `name` was created for `key`.
    pub fn expect_create(&self, key: &str, name: String) {
        let mut map = self.pending.lock().expect("expectations lock");
        let p = map.entry(key.into()).or_default();
        p.creates.insert(name);
        p.since.get_or_insert_with(Instant::now);
    }

    /// Remembers that `name` was deleted for `key`.
    pub fn expect_delete(&self, key: &str, name: String) {
        let mut map = self.pending.lock().expect("expectations lock");
        let p = map.entry(key.into()).or_default();
        p.deletes.insert(name);
        p.since.get_or_insert_with(Instant::now);
    }

    /// Settles expectations against the cache and says whether the key may
    /// act on the cache again. `exists(name)` tells whether the cache holds
    /// `name` at all; `live(name)` whether it holds it and it is not being deleted.
    pub fn satisfied(&self, key: &str, exists: impl Fn(&str) -> bool, live: impl Fn(&str) -> bool) -> bool {
        let mut map = self.pending.lock().expect("expectations lock");
        let Some(p) = map.get_mut(key) else { return true };
        p.creates.retain(|n| !exists(n));
        p.deletes.retain(|n| live(n));
        let expired = p.since.is_some_and(|s| s.elapsed() > EXPECTATION_TIMEOUT);
        if p.creates.is_empty() && p.deletes.is_empty() || expired {
            map.remove(key);
            true
        } else {
            false
        }
    }

    /// Forgets a key (its object is gone).
    pub fn forget(&self, key: &str) {
        self.pending.lock().expect("expectations lock").remove(key);
    }
}

/// Resource versions a controller wrote, so it can tell whether its cache
/// already shows its own last write of an object.
#[derive(Default)]
pub struct Freshness {
    written: Mutex<HashMap<String, u64>>,
}

impl Freshness {
    /// Remembers that `key` was written at `resource_version`.
    pub fn wrote(&self, key: &str, resource_version: Option<&str>) {
        if let Some(rv) = resource_version.and_then(|rv| rv.parse::<u64>().ok()) {
            self.written.lock().expect("freshness lock").insert(key.into(), rv);
        }
    }

    /// Whether the cached `resource_version` of `key` is at least the last one
    /// written (unknown or unparsable versions count as fresh).
    pub fn is_fresh(&self, key: &str, resource_version: Option<&str>) -> bool {
        let mut map = self.written.lock().expect("freshness lock");
        let Some(&written) = map.get(key) else { return true };
        match resource_version.and_then(|rv| rv.parse::<u64>().ok()) {
            Some(cached) if cached >= written => {
                map.remove(key);
                true
            }
            Some(_) => false,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_cache_shows_the_writes() {
        let e = Expectations::default();
        e.expect_create("ns/rs", "p1".into());
        e.expect_delete("ns/rs", "p0".into());
        assert!(!e.satisfied("ns/rs", |n| n == "p0", |n| n == "p0"));
        assert!(!e.satisfied("ns/rs", |n| n == "p1" || n == "p0", |n| n == "p1" || n == "p0"));
        // p0 still cached but terminating: the delete is seen.
        assert!(e.satisfied("ns/rs", |n| n == "p1" || n == "p0", |n| n == "p1"));
        assert!(e.satisfied("other", |_| false, |_| false));
    }
}
