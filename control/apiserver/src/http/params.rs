//! Query parameters, decoded as Kubernetes decodes them.
//!
//! Kubernetes turns `url.Values` into option structs (`ListOptions`,
//! `DeleteOptions`, ...) with the conversion functions of apimachinery's
//! `runtime` package; this module is the one place Sluice does the same:
//!
//! * the first value of a repeated parameter wins;
//! * booleans (`watch`, `allowWatchBookmarks`, `sendInitialEvents`, `force`,
//!   `orphanDependents`) are false only for `0` or a case-insensitive `false`
//!   (Go's `strings.EqualFold`); any other value, even an empty one, is true;
//! * `pretty` alone goes through Go's `strconv.ParseBool`, and an unparsable
//!   value means "not pretty";
//! * integers (`limit`, `timeoutSeconds`, `gracePeriodSeconds`) go through
//!   `strconv.ParseInt`; a bad one is a 400 carrying Go's error text;
//! * `ListOptions` are then validated as `ValidateListOptions` does
//!   (`resourceVersionMatch`, `sendInitialEvents`), a 422 on
//!   `ListOptions.meta.k8s.io`.

use crate::status::{ApiError, ApiResult, FieldError};

/// Query parameters of a request, in order.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parse a raw query string (undecodable pairs are dropped, as Go does).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs: Vec<(String, String)> = raw.and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
        Self(pairs)
    }
    /// A parameter's first value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated parameter (`command` of `pods/exec`), in order.
    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// A boolean parameter as Kubernetes decodes it (absent = false).
    pub fn flag(&self, k: &str) -> bool {
        self.get(k).is_some_and(kube_bool)
    }
    /// An optional boolean parameter (`*bool` in Kubernetes' options).
    pub fn opt_flag(&self, k: &str) -> Option<bool> {
        self.get(k).map(kube_bool)
    }
    /// An integer parameter; a present but unparsable one is a 400.
    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        self.get(k)
            .map(|v| parse_int(v).map_err(ApiError::bad_request))
            .transpose()
    }
    /// `pretty`: Go's `strconv.ParseBool`, anything unparsable is false.
    pub fn pretty(&self) -> bool {
        self.get("pretty").and_then(go_parse_bool).unwrap_or(false)
    }
    /// `dryRun=All`.
    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// A query boolean as apimachinery's `Convert_Slice_string_To_bool`: false
/// only for `0` and `false` in any case.
pub fn kube_bool(v: &str) -> bool {
    !(v == "0" || equal_fold(v, "false"))
}

/// Go's `strings.EqualFold` against an ASCII lower-case word: ASCII letters
/// match either case, and `s` also matches `ſ` (U+017F) and `k` the Kelvin
/// sign (U+212A), as Unicode simple folding says.
fn equal_fold(v: &str, word: &str) -> bool {
    let mut chars = v.chars();
    for w in word.chars() {
        let Some(c) = chars.next() else { return false };
        let same = c.to_ascii_lowercase() == w || (w == 's' && c == '\u{17F}') || (w == 'k' && c == '\u{212A}');
        if !same {
            return false;
        }
    }
    chars.next().is_none()
}

pub use sluice_kube::strconv::parse_bool as go_parse_bool;

/// Go's `strconv.ParseInt(v, 10, 64)`, with its error text.
pub fn parse_int(v: &str) -> Result<i64, String> {
    use std::num::IntErrorKind;
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(v));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    v.parse::<i64>().map_err(|e| match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
            format!("strconv.ParseInt: parsing {}: value out of range", go_quote(v))
        }
        _ => syntax(),
    })
}

pub use crate::meta::go::go_quote;

/// `resourceVersionMatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    /// Serve from at least the given resourceVersion.
    NotOlderThan,
    /// Serve exactly at the given resourceVersion.
    Exact,
}

/// `ListOptions` as decoded from the query (list and watch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOptions {
    /// `labelSelector` (unparsed).
    pub label_selector: String,
    /// `fieldSelector` (unparsed).
    pub field_selector: String,
    /// `watch`.
    pub watch: bool,
    /// `allowWatchBookmarks`.
    pub allow_watch_bookmarks: bool,
    /// `resourceVersion`.
    pub resource_version: String,
    /// `resourceVersionMatch` as sent.
    pub resource_version_match: String,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<i64>,
    /// `limit`.
    pub limit: i64,
    /// `continue`.
    pub continue_token: String,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
}

impl ListOptions {
    /// Decode (400 on an unparsable integer) and validate (422) the options
    /// of a list or, with `watch` (the verb, however it was asked for), a watch.
    pub fn parse(q: &Query, watch: bool) -> ApiResult<Self> {
        let opts = Self {
            label_selector: q.get("labelSelector").unwrap_or_default().to_string(),
            field_selector: q.get("fieldSelector").unwrap_or_default().to_string(),
            watch: watch || q.flag("watch"),
            allow_watch_bookmarks: q.flag("allowWatchBookmarks"),
            resource_version: q.get("resourceVersion").unwrap_or_default().to_string(),
            resource_version_match: q.get("resourceVersionMatch").unwrap_or_default().to_string(),
            timeout_seconds: q.int("timeoutSeconds")?,
            limit: q.int("limit")?.unwrap_or(0),
            continue_token: q.get("continue").unwrap_or_default().to_string(),
            send_initial_events: q.opt_flag("sendInitialEvents"),
        };
        let errs = opts.validate();
        if !errs.is_empty() {
            return Err(ApiError::invalid_kind("meta.k8s.io", "ListOptions", "", errs));
        }
        Ok(opts)
    }

    /// The parsed `resourceVersionMatch` (valid after [`ListOptions::parse`]).
    pub fn match_kind(&self) -> Option<ResourceVersionMatch> {
        match self.resource_version_match.as_str() {
            "NotOlderThan" => Some(ResourceVersionMatch::NotOlderThan),
            "Exact" => Some(ResourceVersionMatch::Exact),
            _ => None,
        }
    }

    /// `ValidateListOptions` (with the WatchList feature on).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let m = self.resource_version_match.as_str();
        let rvm = "resourceVersionMatch";
        if self.watch {
            if self.send_initial_events.is_some() && m != "NotOlderThan" {
                errs.push(FieldError::forbidden(
                    rvm,
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if !m.is_empty() {
                if self.send_initial_events.is_none() {
                    errs.push(FieldError::forbidden(
                        rvm,
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    ));
                }
                if m != "NotOlderThan" {
                    errs.push(FieldError::not_supported(rvm, &m.into(), &["NotOlderThan"]));
                }
                if !self.continue_token.is_empty() {
                    errs.push(FieldError::forbidden(
                        rvm,
                        "resourceVersionMatch is forbidden when continue is provided",
                    ));
                }
            }
            return errs;
        }
        if !m.is_empty() {
            if self.resource_version.is_empty() {
                errs.push(FieldError::forbidden(
                    rvm,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if !self.continue_token.is_empty() {
                errs.push(FieldError::forbidden(
                    rvm,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m != "Exact" && m != "NotOlderThan" {
                errs.push(FieldError::not_supported(
                    rvm,
                    &m.into(),
                    &["Exact", "NotOlderThan", ""],
                ));
            }
            if m == "Exact" && self.resource_version == "0" {
                errs.push(FieldError::forbidden(
                    rvm,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if self.send_initial_events.is_some() {
            errs.push(FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
        errs
    }
}

/// `DeleteOptions` from the query (used when the request has no body).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteQuery {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation_policy: Option<String>,
    /// `orphanDependents`.
    pub orphan_dependents: Option<bool>,
}

impl DeleteQuery {
    /// Decode; a bad integer is a 400.
    pub fn parse(q: &Query) -> ApiResult<Self> {
        Ok(Self {
            grace_period_seconds: q.int("gracePeriodSeconds")?,
            propagation_policy: q.get("propagationPolicy").map(String::from),
            orphan_dependents: q.opt_flag("orphanDependents"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_apimachinery() {
        for v in ["true", "True", "TRUE", "1", "t", "yes", "", "2", "anything"] {
            assert!(kube_bool(v), "{v:?}");
        }
        for v in ["false", "False", "FALSE", "fAlSe", "0", "fal\u{17F}e"] {
            assert!(!kube_bool(v), "{v:?}");
        }
        let q = Query::parse(Some("watch=True&pretty=t&force=0&x=1&x=2"));
        assert!(q.flag("watch"));
        assert!(!q.flag("force"));
        assert!(!q.flag("missing"));
        assert_eq!(q.opt_flag("missing"), None);
        assert!(q.pretty());
        assert_eq!(q.get("x"), Some("1"), "first value wins");
        assert!(!Query::parse(Some("pretty=yes")).pretty());
        assert!(Query::parse(Some("watch")).flag("watch"), "an empty value is true");
    }

    #[test]
    fn integers_fail_with_go_text() {
        assert_eq!(parse_int("42"), Ok(42));
        assert_eq!(parse_int("+7"), Ok(7));
        assert_eq!(parse_int("-3"), Ok(-3));
        assert_eq!(
            parse_int("abc").unwrap_err(),
            "strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            parse_int("").unwrap_err(),
            "strconv.ParseInt: parsing \"\": invalid syntax"
        );
        assert_eq!(
            parse_int("1_0").unwrap_err(),
            "strconv.ParseInt: parsing \"1_0\": invalid syntax"
        );
        assert_eq!(
            parse_int("99999999999999999999").unwrap_err(),
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
        let e = Query::parse(Some("limit=ten")).int("limit").unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(e.message, "strconv.ParseInt: parsing \"ten\": invalid syntax");
        assert_eq!(go_quote("a\"b\n\u{1}é"), "\"a\\\"b\\n\\x01é\"");
    }

    fn list(q: &str) -> ApiResult<ListOptions> {
        ListOptions::parse(&Query::parse(Some(q)), false)
    }

    #[test]
    fn list_options_validation() {
        let o = list("resourceVersion=5&resourceVersionMatch=Exact&limit=3").unwrap();
        assert_eq!(o.match_kind(), Some(ResourceVersionMatch::Exact));
        assert_eq!(o.limit, 3);
        let e = list("resourceVersionMatch=NotOlderThan").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
        );
        let e = list("resourceVersion=1&resourceVersionMatch=Newest").unwrap_err();
        assert_eq!(
            e.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\""
        );
        let e = list("resourceVersion=0&resourceVersionMatch=Exact").unwrap_err();
        assert!(
            e.message
                .contains("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""),
            "{}",
            e.message
        );
        let e = list("sendInitialEvents=true").unwrap_err();
        assert!(e
            .message
            .ends_with("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"));
        assert_eq!(list("timeoutSeconds=x").unwrap_err().code, 400);
    }

    #[test]
    fn watch_options_validation() {
        let w = |q: &str| ListOptions::parse(&Query::parse(Some(q)), true);
        assert!(w("sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=1").is_ok());
        let e = w("sendInitialEvents=true").unwrap_err();
        assert!(e.message.ends_with(
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
        ));
        let e = w("resourceVersionMatch=NotOlderThan").unwrap_err();
        assert!(e
            .message
            .contains("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"));
        let e = w("resourceVersionMatch=Exact&sendInitialEvents=false").unwrap_err();
        assert!(e.message.contains("[resourceVersionMatch: Forbidden"), "{}", e.message);
        assert!(e
            .message
            .contains("Unsupported value: \"Exact\": supported values: \"NotOlderThan\""));
    }
}
