//! String formats, as the API server validates them for CRDs.
//!
//! Kubernetes validates `format` only on strings and only for a fixed list of formats
//! (kube-openapi's strfmt registry as restricted by apiextensions): `bsonobjectid`,
//! `uri`, `email`, `hostname`, `ipv4`, `ipv6`, `cidr`, `mac`, `uuid`, `uuid3`, `uuid4`,
//! `uuid5`, `isbn`, `isbn10`, `isbn13`, `creditcard`, `ssn`, `hexcolor`, `rgbcolor`,
//! `byte`, `password`, `date`, `duration`, `date-time` (also `datetime`). Every other
//! format, including the numeric `int32`, `int64`, `float` and `double`, is accepted
//! without a check, as Kubernetes does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;

fn re(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

fn matches(cell: &'static OnceLock<Option<Regex>>, pattern: &str, s: &str) -> bool {
    re(cell, pattern).is_some_and(|r| r.is_match(s))
}

/// Whether `s` is valid for `format`; unknown formats are always valid.
pub fn is_valid(format: &str, s: &str) -> bool {
    static EMAIL: OnceLock<Option<Regex>> = OnceLock::new();
    static HOSTNAME: OnceLock<Option<Regex>> = OnceLock::new();
    static MAC: OnceLock<Option<Regex>> = OnceLock::new();
    static UUID: OnceLock<Option<Regex>> = OnceLock::new();
    static UUID3: OnceLock<Option<Regex>> = OnceLock::new();
    static UUID4: OnceLock<Option<Regex>> = OnceLock::new();
    static UUID5: OnceLock<Option<Regex>> = OnceLock::new();
    static HEXCOLOR: OnceLock<Option<Regex>> = OnceLock::new();
    static RGBCOLOR: OnceLock<Option<Regex>> = OnceLock::new();
    static SSN: OnceLock<Option<Regex>> = OnceLock::new();
    static BSON: OnceLock<Option<Regex>> = OnceLock::new();
    match format {
        "bsonobjectid" => matches(&BSON, r"^[0-9a-fA-F]{24}$", s),
        "uri" => is_uri(s),
        "email" => matches(&EMAIL, r"^[^@\s]+@[^@\s]+$", s),
        "hostname" => {
            s.len() <= 255
                && matches(
                    &HOSTNAME,
                    r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$",
                    s,
                )
        }
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "mac" => matches(&MAC, r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$", s),
        "uuid" => matches(
            &UUID,
            r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid3" => matches(
            &UUID3,
            r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid4" => matches(
            &UUID4,
            r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid5" => matches(
            &UUID5,
            r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s,
        ),
        "isbn" => is_isbn10(s) || is_isbn13(s),
        "isbn10" => is_isbn10(s),
        "isbn13" => is_isbn13(s),
        "creditcard" => is_luhn(s),
        "ssn" => matches(&SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", s),
        "hexcolor" => matches(&HEXCOLOR, r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", s),
        "rgbcolor" => matches(
            &RGBCOLOR,
            r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
            s,
        ),
        "byte" => is_base64(s),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "date-time" | "datetime" => parse_date_time(s).is_some(),
        "duration" => parse_duration(s).is_some(),
        _ => true,
    }
}

fn is_uri(s: &str) -> bool {
    // Go's url.Parse accepts nearly everything; it refuses control characters and a
    // missing scheme before a colon.
    !s.chars().any(|c| c.is_control()) && !s.starts_with(':')
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else { return false };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => prefix <= 32,
        Ok(IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

fn is_base64(s: &str) -> bool {
    if !s.len().is_multiple_of(4) {
        return false;
    }
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return false;
    }
    body.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn isbn_digits(s: &str) -> Vec<char> {
    s.chars().filter(|c| *c != '-' && *c != ' ').collect()
}

fn is_isbn10(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 10 {
        return false;
    }
    let mut sum = 0u32;
    for (i, c) in d.iter().enumerate() {
        let v = match c {
            'X' | 'x' if i == 9 => 10,
            c => match c.to_digit(10) {
                Some(v) => v,
                None => return false,
            },
        };
        sum += (10 - i as u32) * v;
    }
    sum.is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 13 {
        return false;
    }
    let mut sum = 0u32;
    for (i, c) in d.iter().enumerate() {
        let Some(v) = c.to_digit(10) else { return false };
        sum += if i % 2 == 0 { v } else { 3 * v };
    }
    sum.is_multiple_of(10)
}

fn is_luhn(s: &str) -> bool {
    let digits: Vec<u32> = s
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .filter_map(|c| c.to_digit(10))
        .collect();
    if digits.len() < 12 || digits.len() != s.chars().filter(|c| *c != ' ' && *c != '-').count() {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Parses an RFC 3339 date-time (also accepting a space or lowercase `t` separator, and a
/// missing timezone as UTC, like strfmt).
pub fn parse_date_time(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    let normalized = s.replacen(' ', "T", 1).replacen('t', "T", 1);
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&normalized) {
        return Some(t);
    }
    chrono::NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc().fixed_offset())
}

/// Parses a duration as Go's `time.ParseDuration` (`1h30m`, `-1.5s`, `300ms`), also
/// accepting strfmt's `<n> <unit>` spellings (`3 days`, `1 week`).
pub fn parse_duration(s: &str) -> Option<chrono::Duration> {
    parse_go_duration(s).or_else(|| parse_strfmt_duration(s))
}

fn unit_nanos(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    })
}

fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = unit_nanos(&rest[..unit_end])?;
        rest = &rest[unit_end..];
        total += num * unit;
    }
    if !total.is_finite() || total.abs() > i64::MAX as f64 {
        return None;
    }
    let nanos = if neg { -total } else { total } as i64;
    Some(chrono::Duration::nanoseconds(nanos))
}

fn parse_strfmt_duration(s: &str) -> Option<chrono::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = s[..split].parse().ok()?;
    let unit = s[split..].trim();
    let secs: i64 = match unit {
        "ns" | "nanosecond" | "nanoseconds" => return Some(chrono::Duration::nanoseconds(n)),
        "us" | "microsecond" | "microseconds" => return Some(chrono::Duration::microseconds(n)),
        "ms" | "millisecond" | "milliseconds" => return Some(chrono::Duration::milliseconds(n)),
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86400,
        "w" | "wk" | "wks" | "week" | "weeks" => 7 * 86400,
        _ => return None,
    };
    chrono::Duration::try_seconds(n.checked_mul(secs)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_formats() {
        assert!(is_valid("date-time", "2024-01-02T03:04:05.123+02:00"));
        assert!(is_valid("date-time", "2024-01-02 03:04:05Z"));
        assert!(!is_valid("date-time", "2024-01-02"));
        assert!(is_valid("date", "2024-02-29"));
        assert!(!is_valid("date", "2023-02-29"));
        assert!(is_valid("duration", "1h30m"));
        assert!(is_valid("duration", "3 days"));
        assert!(!is_valid("duration", "soon"));
        assert!(is_valid("ipv6", "::1"));
        assert!(is_valid("cidr", "10.0.0.0/8"));
        assert!(!is_valid("cidr", "10.0.0.0/33"));
        assert!(is_valid("hostname", "example.com"));
        assert!(!is_valid("hostname", "-bad"));
        assert!(is_valid("mac", "aa:bb:cc:dd:ee:ff"));
        assert!(is_valid("email", "a@b.c"));
        assert!(is_valid("uuid4", "123e4567-e89b-42d3-a456-426614174000"));
        assert!(!is_valid("uuid4", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_valid("isbn10", "0-306-40615-2"));
        assert!(is_valid("isbn13", "978-0-306-40615-7"));
        assert!(is_valid("creditcard", "4111 1111 1111 1111"));
        assert!(is_valid("hexcolor", "#fff"));
        assert!(is_valid("rgbcolor", "rgb(1, 2, 255)"));
        assert!(is_valid("byte", ""));
        assert!(!is_valid("byte", "abc"));
    }

    #[test]
    fn numeric_and_unknown_formats_are_not_checked() {
        assert!(is_valid("int32", "anything"));
        assert!(is_valid("int64", "x"));
        assert!(is_valid("my-format", "x"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1h30m"), Some(chrono::Duration::minutes(90)));
        assert_eq!(parse_duration("-1.5s"), Some(chrono::Duration::milliseconds(-1500)));
        assert_eq!(parse_duration("0"), Some(chrono::Duration::zero()));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
