//! Exponential back-off per (pod uid, key): container restarts
//! (CrashLoopBackOff, key = container name) and image pulls
//! (ImagePullBackOff, key = image).
//!
//! Restarts: the first restart after a crash is immediate; each further one
//! waits twice as long as the previous wait, from `initial` up to `max`. A
//! container that ran for `reset_after` before exiting starts over.
//!
//! Failures (image pulls, as the kubelet's `flowcontrol.Backoff`): the first
//! failure waits `initial`, each further one twice as long up to `max`; an
//! entry not updated for twice `max` starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Back-off state of every (pod uid, container name).
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    entries: HashMap<(String, String), Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    wait: Duration,
    not_before: Instant,
    updated: Instant,
}

impl Backoff {
    /// A back-off starting at `initial`, capped at `max` (Kubernetes: 10 s and 300 s).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            reset_after: Duration::from_secs(600),
            entries: HashMap::new(),
        }
    }

    /// May the container restart at `now`? `Err(remaining)` while backing off.
    pub fn check(&self, uid: &str, container: &str, now: Instant) -> Result<(), Duration> {
        match self.entries.get(&(uid.to_string(), container.to_string())) {
            Some(e) if now < e.not_before => Err(e.not_before - now),
            _ => Ok(()),
        }
    }

    /// Record a restart at `now` of a container that had run for `ran`.
    pub fn restarted(&mut self, uid: &str, container: &str, ran: Duration, now: Instant) {
        let key = (uid.to_string(), container.to_string());
        let wait = match self.entries.get(&key) {
            Some(_) if ran >= self.reset_after => Duration::ZERO,
            Some(e) if e.wait.is_zero() => self.initial,
            Some(e) => (e.wait * 2).min(self.max),
            None => Duration::ZERO,
        };
        self.entries.insert(
            key,
            Entry {
                wait,
                not_before: now + wait,
                updated: now,
            },
        );
    }

    /// Record a failure (e.g. of an image pull) at `now`: wait `initial`,
    /// then twice the previous wait up to `max`; returns the wait.
    pub fn failed(&mut self, uid: &str, key: &str, now: Instant) -> Duration {
        let id = (uid.to_string(), key.to_string());
        let wait = match self.entries.get(&id) {
            Some(e) if now.saturating_duration_since(e.updated) <= self.max * 2 && !e.wait.is_zero() => {
                (e.wait * 2).min(self.max)
            }
            _ => self.initial,
        };
        self.entries.insert(
            id,
            Entry {
                wait,
                not_before: now + wait,
                updated: now,
            },
        );
        wait
    }

    /// The whole current wait of an entry (what the kubelet prints as
    /// `back-off 20s`), if it has one.
    pub fn current(&self, uid: &str, key: &str) -> Option<Duration> {
        self.entries
            .get(&(uid.to_string(), key.to_string()))
            .map(|e| e.wait)
            .filter(|w| !w.is_zero())
    }

    /// Forget one entry (e.g. after a successful pull).
    pub fn forget(&mut self, uid: &str, key: &str) {
        self.entries.remove(&(uid.to_string(), key.to_string()));
    }

    /// Forget a pod's entries (pod deleted).
    pub fn forget_pod(&mut self, uid: &str) {
        self.entries.retain(|(u, _), _| u != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_after_a_long_run() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(30));
        let t = Instant::now();
        assert!(b.check("u", "c", t).is_ok());
        b.restarted("u", "c", Duration::ZERO, t); // first restart: immediate
        assert!(b.check("u", "c", t).is_ok());
        b.restarted("u", "c", Duration::ZERO, t); // then 10 s
        assert_eq!(b.check("u", "c", t), Err(Duration::from_secs(10)));
        b.restarted("u", "c", Duration::ZERO, t); // 20 s
        b.restarted("u", "c", Duration::ZERO, t); // 30 s (capped)
        assert_eq!(b.check("u", "c", t), Err(Duration::from_secs(30)));
        assert!(b.check("u", "c", t + Duration::from_secs(30)).is_ok());
        b.restarted("u", "c", Duration::from_secs(601), t);
        assert!(b.check("u", "c", t).is_ok(), "a long run resets the back-off");
        b.forget_pod("u");
        assert!(b.check("u", "c", t).is_ok());
    }

    #[test]
    fn failures_wait_from_the_initial_period_and_expire_after_twice_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let t = Instant::now();
        let waits: Vec<u64> = (0..7).map(|_| b.failed("u", "img", t).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.check("u", "img", t), Err(Duration::from_secs(300)));
        assert_eq!(b.current("u", "img"), Some(Duration::from_secs(300)));
        assert!(b.check("u", "other", t).is_ok(), "keys are independent");
        let later = t + Duration::from_secs(601);
        assert_eq!(
            b.failed("u", "img", later),
            Duration::from_secs(10),
            "an old entry starts over"
        );
        b.forget("u", "img");
        assert!(b.check("u", "img", later).is_ok());
        assert_eq!(b.current("u", "img"), None);
    }
}
