//! Go's `strconv` parsers where Kubernetes reads query parameters with them,
//! so every Sluice server reads `?follow=True` or `?pretty=1` as Kubernetes
//! does.

/// Go's `strconv.ParseBool`: `1`, `t`, `T`, `TRUE`, `true`, `True` and their
/// false counterparts; anything else is None.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn parse_bool_reads_what_go_reads() {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(v), Some(true), "{v}");
        }
        for v in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(v), Some(false), "{v}");
        }
        for v in ["", "yes", "tRUE", "2", " true"] {
            assert_eq!(parse_bool(v), None, "{v}");
        }
    }
}
