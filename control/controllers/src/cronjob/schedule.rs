//! When a CronJob is due, pure: the most recent scheduled time not yet
//! run, and whether many were missed (Kubernetes' `mostRecentScheduleTime`).
//!
//! Runs are counted from the last scheduled time (or the CronJob's
//! creation), but never from further back than `startingDeadlineSeconds`.
//! Only the most recent missed time is run — a controller that was down
//! for an hour starts one Job, not sixty — and more than 100 missed times
//! are reported, since they usually mean a clock problem.

use chrono::{DateTime, Duration, Utc};
use sluice_cron::{Schedule, Tz};

/// How many scheduled times passed without a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// At most the one being started.
    None,
    /// A few (all but the most recent are skipped).
    Few,
    /// More than 100.
    Many,
}

/// The scheduled time to run now, if any, and how many were missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The most recent scheduled time at or before now, after the last run.
    pub scheduled: Option<DateTime<Utc>>,
    /// How many were missed.
    pub missed: Missed,
}

/// Most missed times before [`Missed::Many`].
const MANY: i64 = 100;

/// The run due at `now` for a CronJob created at `created` whose last run
/// was scheduled at `last`.
pub fn due(
    schedule: &Schedule,
    tz: Tz,
    created: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    starting_deadline_seconds: Option<i64>,
    now: DateTime<Utc>,
) -> Due {
    let none = Due {
        scheduled: None,
        missed: Missed::None,
    };
    let mut earliest = last.unwrap_or(created);
    if let Some(sds) = starting_deadline_seconds {
        earliest = earliest.max(now - Duration::seconds(sds));
    }
    let Some(t1) = schedule.next_after(earliest, tz) else {
        return none;
    };
    if now < t1 {
        return none;
    }
    let Some(t2) = schedule.next_after(t1, tz) else {
        return Due {
            scheduled: Some(t1),
            missed: Missed::None,
        };
    };
    if now < t2 {
        return Due {
            scheduled: Some(t1),
            missed: Missed::None,
        };
    }
    // Roughly how many intervals fit between t1 and now; then walk the
    // last couple of them exactly (schedules need not be regular).
    let interval = (t2 - t1).num_seconds().max(1);
    let missed = (now - t1).num_seconds() / interval + 1;
    let mut t = t1 + Duration::seconds((missed - 2).max(0) * interval);
    let mut most_recent = None;
    // A bounded walk: irregular schedules may need a few more steps.
    for _ in 0..10_000 {
        match schedule.next_after(t, tz) {
            Some(next) if next <= now => {
                most_recent = Some(next);
                t = next;
            }
            _ => break,
        }
    }
    Due {
        scheduled: most_recent.or(Some(t1)),
        missed: if missed > MANY { Missed::Many } else { Missed::Few },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn nothing_due_before_the_first_time() {
        let s = sluice_cron::parse("*/5 * * * *").unwrap();
        let d = due(
            &s,
            Tz::UTC,
            at("2026-01-01T10:01:00Z"),
            None,
            None,
            at("2026-01-01T10:04:59Z"),
        );
        assert_eq!(d.scheduled, None);
        let d = due(
            &s,
            Tz::UTC,
            at("2026-01-01T10:01:00Z"),
            None,
            None,
            at("2026-01-01T10:05:10Z"),
        );
        assert_eq!(
            d,
            Due {
                scheduled: Some(at("2026-01-01T10:05:00Z")),
                missed: Missed::None
            }
        );
    }

    #[test]
    fn a_controller_down_for_an_hour_runs_the_most_recent_time_once() {
        let s = sluice_cron::parse("*/1 * * * *").unwrap();
        let d = due(
            &s,
            Tz::UTC,
            at("2026-01-01T09:00:00Z"),
            Some(at("2026-01-01T09:00:00Z")),
            None,
            at("2026-01-01T10:00:30Z"),
        );
        assert_eq!(
            d,
            Due {
                scheduled: Some(at("2026-01-01T10:00:00Z")),
                missed: Missed::Few
            }
        );
        // Run at 10:00 recorded: nothing more until 10:01.
        let d = due(
            &s,
            Tz::UTC,
            at("2026-01-01T09:00:00Z"),
            Some(at("2026-01-01T10:00:00Z")),
            None,
            at("2026-01-01T10:00:40Z"),
        );
        assert_eq!(d.scheduled, None);
    }

    #[test]
    fn many_missed_times_are_reported_and_the_deadline_limits_the_look_back() {
        let s = sluice_cron::parse("*/1 * * * *").unwrap();
        let created = at("2026-01-01T00:00:00Z");
        let now = at("2026-01-01T10:00:30Z");
        let d = due(&s, Tz::UTC, created, None, None, now);
        assert_eq!(d.missed, Missed::Many);
        assert_eq!(d.scheduled, Some(at("2026-01-01T10:00:00Z")));
        // startingDeadlineSeconds 200: only the last 3 minutes count.
        let d = due(&s, Tz::UTC, created, None, Some(200), now);
        assert_eq!(d.missed, Missed::Few);
        assert_eq!(d.scheduled, Some(at("2026-01-01T10:00:00Z")));
        // Irregular schedules are walked exactly.
        let s = sluice_cron::parse("30 6-16/4 * * 1-5").unwrap();
        // 2026-01-05 is a Monday; times 06:30, 10:30, 14:30.
        let d = due(
            &s,
            Tz::UTC,
            at("2026-01-05T00:00:00Z"),
            None,
            None,
            at("2026-01-05T15:00:00Z"),
        );
        assert_eq!(d.scheduled, Some(at("2026-01-05T14:30:00Z")));
    }
}
