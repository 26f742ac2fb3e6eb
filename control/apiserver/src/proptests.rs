//! Cheap fuzzing of the request path: the pure parsing, validation and
//! encoding functions a request goes through never panic, whatever the
//! client sends (names, generateName, selectors, patch bodies, query
//! strings, Accept headers, paths).

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::http::negotiation;
use crate::http::params::{DeleteQuery, ListOptions, Query};
use crate::http::{request, wire};
use crate::kinds::validation;
use crate::kinds::BUILTIN;
use crate::meta::selectors::{FieldSelector, LabelSelector};
use crate::registry::{self, patch};

/// Strings biased towards the characters that matter to parsers: ASCII
/// punctuation, multi-byte characters and long runs.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        "[a-z0-9.=!,()\\\\ -]{0,40}",
        "[a-zé€😀]{50,70}",
        "(a|é|€|😀|-|\\.){0,90}",
    ]
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        tricky().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    tricky(),
                    Just("metadata".to_string()),
                    Just("spec".to_string()),
                    Just("op".to_string()),
                    Just("path".to_string()),
                    Just("$patch".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn names_and_generate_name_never_panic(name in tricky(), generate in tricky(), idx in 0..BUILTIN.len()) {
        let k = BUILTIN[idx];
        let r = k.resource();
        let generated = format!("{}abcde", registry::truncate_prefix(&generate));
        prop_assert!(generated.len() <= 63 + 3, "prefix cut to 58 bytes, at most 3 short of a char");
        for n in [name.as_str(), generated.as_str()] {
            let mut obj = json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": {"name": n, "generateName": generate, "namespace": "default"}, "spec": {}});
            k.default(&mut obj);
            k.empty_status(&mut obj);
            let _ = validation::validate_object(k, &obj, k.validate(&obj));
            let _ = k.validate_update(&obj, &obj);
        }
    }

    #[test]
    fn selectors_never_panic(sel in tricky(), idx in 0..BUILTIN.len(), obj in json_value()) {
        if let Ok(s) = LabelSelector::parse(&sel) {
            let _ = s.matches(&obj);
        }
        if let Ok(s) = FieldSelector::parse(&sel, BUILTIN[idx].resource()) {
            let _ = s.matches(&obj);
        }
    }

    #[test]
    fn patches_never_panic(cur in json_value(), p in json_value()) {
        let _ = patch::merge_patch(&cur, &p);
        let _ = patch::json_patch(&cur, &p);
        let _ = patch::strategic_merge(&cur, &p);
    }

    #[test]
    fn queries_headers_and_paths_never_panic(raw in tricky(), accept in tricky(), path in tricky(), v in json_value()) {
        let q = Query::parse(Some(&raw));
        let _ = ListOptions::parse(&q, false);
        let _ = ListOptions::parse(&q, true);
        let _ = DeleteQuery::parse(&q);
        let _ = q.pretty();
        let _ = negotiation::negotiate(Some(&accept));
        let _ = request::parse_path(&crate::kinds::Catalog::new(), &path);
        let _ = request::parse_path(&crate::kinds::Catalog::new(), &format!("/api/v1/namespaces/{path}"));
        let bytes = wire::to_vec(&v, false);
        prop_assert_eq!(serde_json::from_slice::<Value>(&bytes).ok(), Some(v));
    }

    #[test]
    fn query_values_round_trip(key in "[a-zA-Z]{1,12}", value in ".{0,30}") {
        let raw = serde_urlencoded::to_string([(&key, &value)]).unwrap_or_default();
        let q = Query::parse(Some(&raw));
        prop_assert_eq!(q.get(&key), Some(value.as_str()));
    }
}

#[test]
fn generate_name_with_a_multibyte_character_at_byte_58() {
    // 57 ASCII bytes then 'é' (2 bytes) straddles the 58-byte cut.
    let prefix = format!("{}é-x", "a".repeat(57));
    assert_eq!(registry::truncate_prefix(&prefix), "a".repeat(57));
    let prefix = format!("{}€", "a".repeat(56));
    assert_eq!(registry::truncate_prefix(&prefix), "a".repeat(56));
    assert_eq!(registry::truncate_prefix("short-"), "short-");
    assert_eq!(registry::truncate_prefix(&"b".repeat(80)), "b".repeat(58));
    // Validation refuses the prefix itself, as ValidateObjectMeta does.
    let cms = crate::kinds::builtin("", "ConfigMap").unwrap();
    let generate = format!("{}é-", "a".repeat(57));
    let name = format!("{}bcdfg", registry::truncate_prefix(&generate));
    let errs = validation::validate_object(
        cms,
        &json!({"metadata": {"name": name, "generateName": generate}}),
        Vec::new(),
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "metadata.generateName");
    let ok = validation::validate_object(
        cms,
        &json!({"metadata": {"name": "cfg-bcdfg", "generateName": "cfg-"}}),
        Vec::new(),
    );
    assert!(ok.is_empty(), "{ok:?}");
}
