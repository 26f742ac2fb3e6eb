//! Restart back-off per container (CrashLoopBackOff).
//!
//! The first restart after a crash is immediate; each further one waits
//! twice as long as the previous wait, from `initial` up to `max`. A
//! container that ran for `reset_after` before exiting starts over.

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
            },
        );
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
}
