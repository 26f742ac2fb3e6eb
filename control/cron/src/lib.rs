//! CronJob schedules as Kubernetes reads them (robfig/cron's standard
//! parser): five fields (minute, hour, day of month, month, day of week)
//! with ranges, steps, lists, `?` and month/day names; the descriptors
//! `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
//! `@hourly` and `@every <duration>`; and IANA time zones for
//! `spec.timeZone`.
//!
//! One implementation shared by the API server (validation) and the
//! CronJob controller (next run times). Field matching is the `croner`
//! crate's (POSIX/Vixie semantics: day of month OR day of week when both
//! are restricted); its extensions that Kubernetes refuses (`L`, `W`, `#`,
//! `+`, seconds and years) are refused here before it sees the pattern.

use std::time::Duration;

use chrono::{DateTime, Utc};
pub use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

/// Why a schedule or time zone is not valid; the texts are Kubernetes'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not five fields.
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount {
        /// How many fields the schedule has.
        found: usize,
        /// The fields, space separated.
        fields: String,
    },
    /// An `@` word that is no descriptor.
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    /// `@every` with a duration that does not parse.
    #[error("failed to parse duration {0}")]
    Every(String),
    /// A field that does not parse.
    #[error("{0}")]
    Syntax(String),
    /// `TZ=` or `CRON_TZ=` inside the schedule.
    #[error("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    TimeZoneInSchedule,
    /// An empty `timeZone`.
    #[error("timeZone must be nil or non-empty string")]
    EmptyTimeZone,
    /// `Local` as `timeZone`.
    #[error("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")]
    LocalTimeZone,
    /// A `timeZone` not in the time zone database.
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Cron(Box<croner::Cron>),
    /// `@every d`: runs every `d` (at least one second, whole seconds).
    Every(Duration),
}

/// Whether the schedule starts with `TZ=` or `CRON_TZ=` (which Kubernetes
/// refuses in favour of `spec.timeZone`).
pub fn has_time_zone_prefix(schedule: &str) -> bool {
    let s = schedule.trim_start();
    s.starts_with("TZ=") || s.starts_with("CRON_TZ=")
}

/// Parses a CronJob schedule.
pub fn parse(schedule: &str) -> Result<Schedule, Error> {
    if has_time_zone_prefix(schedule) {
        return Err(Error::TimeZoneInSchedule);
    }
    let s = schedule.trim();
    if let Some(word) = s.strip_prefix('@') {
        let pattern = match word.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            w if w.starts_with("every ") => {
                let d = word["every ".len()..].trim();
                let every = humantime::parse_duration(d).map_err(|_| Error::Every(d.to_string()))?;
                let every = Duration::from_secs(every.as_secs().max(1));
                return Ok(Schedule {
                    inner: Inner::Every(every),
                });
            }
            _ => return Err(Error::Descriptor(s.to_string())),
        };
        return parse_fields(pattern);
    }
    parse_fields(s)
}

fn parse_fields(s: &str) -> Result<Schedule, Error> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(Error::FieldCount {
            found: fields.len(),
            fields: fields.join(" "),
        });
    }
    for field in &fields {
        check_field(field)?;
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(&fields.join(" "))
        .map_err(|e| Error::Syntax(e.to_string()))?;
    Ok(Schedule {
        inner: Inner::Cron(Box::new(cron)),
    })
}

/// Every atom of a field is a number, `*`, `?` or a three-letter name.
fn check_field(field: &str) -> Result<(), Error> {
    for part in field.split(',') {
        for atom in part.split(['-', '/']) {
            let ok = atom == "*"
                || atom == "?"
                || (!atom.is_empty() && atom.bytes().all(|b| b.is_ascii_digit()))
                || (atom.len() == 3 && atom.bytes().all(|b| b.is_ascii_alphabetic()));
            if !ok {
                return Err(Error::Syntax(format!(
                    "failed to parse int from {atom}: invalid syntax"
                )));
            }
        }
    }
    Ok(())
}

/// The time zone named by `spec.timeZone` (`None`: UTC, the
/// controller-manager's zone).
pub fn time_zone(name: Option<&str>) -> Result<Tz, Error> {
    let Some(name) = name else { return Ok(Tz::UTC) };
    if name.is_empty() {
        return Err(Error::EmptyTimeZone);
    }
    if name.eq_ignore_ascii_case("Local") {
        return Err(Error::LocalTimeZone);
    }
    let bad_part = name.split('/').any(|p| {
        p == "."
            || p == ".."
            || p.starts_with('-')
            || p.is_empty()
            || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_+".contains(&b))
    });
    if bad_part {
        return Err(Error::UnknownTimeZone(name.to_string()));
    }
    name.parse::<Tz>().map_err(|_| Error::UnknownTimeZone(name.to_string()))
}

impl Schedule {
    /// The first run strictly after `after`, in `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match &self.inner {
            Inner::Cron(cron) => cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Inner::Every(d) => {
                let whole = DateTime::<Utc>::from_timestamp(after.timestamp(), 0)?;
                Some(whole + chrono::Duration::from_std(*d).ok()?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_fields_and_descriptors() {
        let s = parse("*/1 * * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:00:30Z"), Tz::UTC),
            Some(at("2026-01-01T10:01:00Z"))
        );
        let h = parse("@hourly").unwrap();
        assert_eq!(
            h.next_after(at("2026-01-01T10:00:00Z"), Tz::UTC),
            Some(at("2026-01-01T11:00:00Z"))
        );
        let w = parse("0 9 * * MON-FRI").unwrap();
        // 2026-01-03 is a Saturday.
        assert_eq!(
            w.next_after(at("2026-01-03T00:00:00Z"), Tz::UTC),
            Some(at("2026-01-05T09:00:00Z"))
        );
        let e = parse("@every 90s").unwrap();
        assert_eq!(
            e.next_after(at("2026-01-01T10:00:00.5Z"), Tz::UTC),
            Some(at("2026-01-01T10:01:30Z"))
        );
    }

    #[test]
    fn refuses_what_kubernetes_refuses() {
        assert_eq!(
            parse("* * * *").unwrap_err().to_string(),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert!(matches!(parse("0 0 * * * *"), Err(Error::FieldCount { found: 6, .. })));
        assert!(matches!(parse("@fortnightly"), Err(Error::Descriptor(_))));
        assert!(parse("0 0 L * *").is_err());
        assert!(parse("0 0 * * 5#2").is_err());
        assert!(parse("61 * * * *").is_err());
        assert_eq!(parse("TZ=UTC 0 * * * *").unwrap_err(), Error::TimeZoneInSchedule);
        assert_eq!(parse("CRON_TZ=UTC 0 * * * *").unwrap_err(), Error::TimeZoneInSchedule);
    }

    #[test]
    fn time_zones() {
        let tz = time_zone(Some("Europe/Berlin")).unwrap();
        let s = parse("0 9 * * *").unwrap();
        // 09:00 in Berlin in winter is 08:00 UTC.
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z"), tz),
            Some(at("2026-01-01T08:00:00Z"))
        );
        assert_eq!(time_zone(None).unwrap(), Tz::UTC);
        assert_eq!(time_zone(Some("")).unwrap_err(), Error::EmptyTimeZone);
        assert_eq!(time_zone(Some("Local")).unwrap_err(), Error::LocalTimeZone);
        assert_eq!(
            time_zone(Some("Mars/Olympus")).unwrap_err().to_string(),
            "unknown time zone Mars/Olympus"
        );
        assert!(time_zone(Some("../etc/passwd")).is_err());
    }
}
