//! Output negotiation: which representation the `Accept` header asks for.
//!
//! As Kubernetes: the clauses of `Accept` are tried by preference (q-values,
//! then the more specific); a clause names a media type — `application/json`
//! (which `*/*` and `application/*` mean), or
//! `application/yaml`, or `application/vnd.kubernetes.protobuf` for kinds
//! Kubernetes has a protobuf message for ([`Encoding`]; custom resources have
//! none, so a protobuf clause is skipped for them and the next one, usually
//! JSON, is used) — and optionally a conversion `as=<Kind>;g=<group>;v=<version>`.
//! YAML has no stream form: a watch that negotiates it is refused
//! ([`stream_encoding`]), as Kubernetes refuses it.
//! The conversions served are `Table`, `PartialObjectMetadata` and
//! `PartialObjectMetadataList` in `meta.k8s.io` `v1`/`v1beta1`; a clause
//! asking for anything else is skipped, and when no clause is acceptable the
//! request fails with 406 NotAcceptable. A conversion that does not fit the
//! response (`PartialObjectMetadata` of a list, or `PartialObjectMetadataList`
//! of one object) is a 406 as well, worded as Kubernetes words it.

use serde_json::{json, Value};

use crate::kinds::Resource;
use crate::status::{ApiError, ApiResult};

/// Media types the server names in a 406: every serializer it has, in
/// Kubernetes' order (for custom resources too: their protobuf serializer
/// writes the metadata conversions).
const SERVED: &[&str] = &["application/json", "application/yaml", sluice_protobuf::MEDIA_TYPE];
/// Media types a watch can be streamed in.
const SERVED_STREAM: &[&str] = &[
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];

/// The body's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// `application/json`.
    #[default]
    Json,
    /// `application/vnd.kubernetes.protobuf` (see `sluice_protobuf`).
    Protobuf,
    /// `application/yaml`: the JSON form with keys sorted, as Kubernetes'
    /// YAML serializer (JSON converted to YAML) writes it.
    Yaml,
}

impl Encoding {
    /// Whether a request body of this Content-Type is protobuf.
    pub fn of_content_type(ct: &str) -> Encoding {
        let media = ct.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case(sluice_protobuf::MEDIA_TYPE) {
            Encoding::Protobuf
        } else {
            Encoding::Json
        }
    }
}

/// Whether objects of `r` have a protobuf form: every kind Kubernetes has a
/// message for (custom resources have none).
pub fn protobuf_served(r: &Resource) -> bool {
    sluice_protobuf::has_message(&r.api_version(), r.kind)
}

/// What the response body should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object (or list) itself.
    Object,
    /// A `meta.k8s.io` Table of this version.
    Table(&'static str),
    /// `PartialObjectMetadata` of this `meta.k8s.io` version.
    PartialObjectMetadata(&'static str),
    /// `PartialObjectMetadataList` of this `meta.k8s.io` version.
    PartialObjectMetadataList(&'static str),
}

/// The outcome of negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Representation.
    pub output: Output,
    /// `pretty=1` media type parameter.
    pub pretty: bool,
    /// JSON or protobuf.
    pub encoding: Encoding,
}

struct Clause<'a> {
    media: (&'a str, &'a str),
    params: Vec<(&'a str, &'a str)>,
    q: f64,
}

fn parse_accept(header: &str) -> Vec<Clause<'_>> {
    let mut clauses: Vec<Clause<'_>> = header
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let media = it.next()?.trim();
            let (ty, sub) = match media.split_once('/') {
                Some((t, s)) => (t.trim(), s.trim()),
                None if media == "*" => ("*", "*"),
                None => return None,
            };
            let mut params = Vec::new();
            let mut q = 1.0;
            for p in it {
                let Some((k, v)) = p.split_once('=') else { continue };
                let (k, v) = (k.trim(), v.trim());
                if k == "q" {
                    q = v.parse().unwrap_or(0.0);
                } else {
                    params.push((k, v));
                }
            }
            Some(Clause {
                media: (ty, sub),
                params,
                q,
            })
        })
        .collect();
    // Most preferred first; among equals, more specific first (goautoneg's order).
    clauses.sort_by(|a, b| {
        b.q.partial_cmp(&a.q)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| (a.media.0 == "*").cmp(&(b.media.0 == "*")))
            .then_with(|| (a.media.1 == "*").cmp(&(b.media.1 == "*")))
    });
    clauses
}

fn meta_version(v: &str) -> Option<&'static str> {
    match v {
        "v1" => Some("v1"),
        "v1beta1" => Some("v1beta1"),
        _ => None,
    }
}

/// Negotiate the output of a request from its `Accept` header, for a kind
/// with no protobuf form (custom resources).
pub fn negotiate(accept: Option<&str>) -> ApiResult<Negotiated> {
    negotiate_for(accept, false)
}

/// Negotiate the output of a request from its `Accept` header; `protobuf`:
/// whether the kind has a protobuf form ([`protobuf_served`]).
pub fn negotiate_for(accept: Option<&str>, protobuf: bool) -> ApiResult<Negotiated> {
    let header = accept.unwrap_or_default().trim();
    if header.is_empty() {
        return Ok(Negotiated {
            output: Output::Object,
            pretty: false,
            encoding: Encoding::Json,
        });
    }
    for c in parse_accept(header) {
        if c.q <= 0.0 {
            continue;
        }
        let encoding = match c.media {
            ("application", "json") | ("application", "*") | ("*", "*") => Encoding::Json,
            ("application", "yaml") => Encoding::Yaml,
            ("application", sub) if sub == &sluice_protobuf::MEDIA_TYPE["application/".len()..] => Encoding::Protobuf,
            _ => continue,
        };
        let get = |k: &str| c.params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let pretty = get("pretty") == Some("1");
        let convert = ["as", "g", "v"].iter().any(|k| get(k).is_some());
        let output = if !convert {
            Output::Object
        } else {
            let (kind, group, version) = (
                get("as").unwrap_or_default(),
                get("g").unwrap_or_default(),
                get("v").unwrap_or_default(),
            );
            let Some(version) = meta_version(version).filter(|_| group == "meta.k8s.io") else {
                continue;
            };
            match kind {
                "Table" => Output::Table(version),
                "PartialObjectMetadata" => Output::PartialObjectMetadata(version),
                "PartialObjectMetadataList" => Output::PartialObjectMetadataList(version),
                _ => continue,
            }
        };
        if encoding == Encoding::Protobuf {
            // Tables have no protobuf form; metadata conversions have one
            // for every kind, custom resources included (metadata informers).
            let ok = match output {
                Output::Object => protobuf,
                Output::Table(_) => false,
                Output::PartialObjectMetadata(v) => {
                    sluice_protobuf::has_message(&format!("meta.k8s.io/{v}"), "PartialObjectMetadata")
                }
                Output::PartialObjectMetadataList(v) => {
                    sluice_protobuf::has_message(&format!("meta.k8s.io/{v}"), "PartialObjectMetadataList")
                }
            };
            if !ok {
                continue;
            }
        }
        return Ok(Negotiated {
            output,
            pretty,
            encoding,
        });
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: {}",
        SERVED.join(", ")
    )))
}

/// The encoding of a watch stream: the negotiated one when it can stream
/// (not YAML, which is refused rather than passed over for a later clause,
/// as Kubernetes does), with the 406 naming the stream media types.
pub fn stream_encoding(negotiated: ApiResult<Negotiated>) -> ApiResult<Negotiated> {
    match negotiated {
        Ok(n) if n.encoding != Encoding::Yaml => Ok(n),
        _ => Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: {}",
            SERVED_STREAM.join(", ")
        ))),
    }
}

/// The encoding of an error response: the negotiated one, or JSON when
/// negotiation itself fails (as Kubernetes).
pub fn error_encoding(accept: Option<&str>, protobuf: bool) -> Encoding {
    negotiate_for(accept, protobuf).map(|n| n.encoding).unwrap_or_default()
}

/// Go's `%T` of the object Kubernetes holds when it converts: the internal
/// type, e.g. `*core.Pod`, `*apps.DeploymentList`.
fn go_type(r: &Resource, list: bool) -> String {
    let package = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("*{package}.{}{}", r.kind, if list { "List" } else { "" })
}

/// `meta.AsPartialObjectMetadata`: the object's metadata under the new kind.
pub fn partial_object_metadata(obj: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Convert one object for `output` (Table is rendered by the caller).
pub fn convert_object(r: &Resource, obj: Value, output: Output) -> ApiResult<Value> {
    match output {
        Output::PartialObjectMetadata(v) => Ok(partial_object_metadata(&obj, v)),
        Output::PartialObjectMetadataList(_) => Err(ApiError::not_acceptable(format!(
            "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
            go_type(r, false)
        ))),
        Output::Object | Output::Table(_) => Ok(obj),
    }
}

/// Convert a list for `output` (Table is rendered by the caller).
pub fn convert_list(r: &Resource, list: Value, output: Output) -> ApiResult<Value> {
    match output {
        Output::PartialObjectMetadata(_) => Err(ApiError::not_acceptable(format!(
            "you requested PartialObjectMetadata, but the requested object is a list ({})",
            go_type(r, true)
        ))),
        Output::PartialObjectMetadataList(v) => {
            let items: Vec<Value> = list["items"]
                .as_array()
                .map(|a| a.iter().map(|o| partial_object_metadata(o, v)).collect())
                .unwrap_or_default();
            let mut meta = serde_json::Map::new();
            for k in ["resourceVersion", "continue", "remainingItemCount"] {
                if let Some(x) = list.pointer(&format!("/metadata/{k}")) {
                    meta.insert(k.into(), x.clone());
                }
            }
            Ok(json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": format!("meta.k8s.io/{v}"),
                "metadata": meta,
                // Kubernetes leaves a nil slice for an empty list: `null`.
                "items": if items.is_empty() { Value::Null } else { Value::Array(items) },
            }))
        }
        Output::Object | Output::Table(_) => Ok(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_kind;

    fn out(h: &str) -> ApiResult<Output> {
        negotiate(Some(h)).map(|n| n.output)
    }

    #[test]
    fn accept_headers() {
        assert_eq!(negotiate(None).unwrap().output, Output::Object);
        assert_eq!(out("application/json").unwrap(), Output::Object);
        assert_eq!(out("*/*").unwrap(), Output::Object);
        assert_eq!(
            out("application/json;as=Table;v=v1;g=meta.k8s.io,application/json").unwrap(),
            Output::Table("v1")
        );
        assert_eq!(
            out("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1").unwrap(),
            Output::PartialObjectMetadata("v1")
        );
        assert_eq!(
            out("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1").unwrap(),
            Output::PartialObjectMetadataList("v1beta1")
        );
        // Unsupported conversions are skipped, falling back to later clauses.
        assert_eq!(
            out("application/json;as=Foo;g=meta.k8s.io;v=v1, application/json").unwrap(),
            Output::Object
        );
        assert_eq!(
            out("application/vnd.kubernetes.protobuf, application/json;q=0.9").unwrap(),
            Output::Object
        );
        for bad in [
            "application/json;as=Foo;g=meta.k8s.io;v=v1",
            "application/json;as=PartialObjectMetadata;g=apps;v=v1",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2",
            "application/json;as=PartialObjectMetadata",
            "application/vnd.kubernetes.protobuf",
            "text/html",
        ] {
            let e = out(bad).unwrap_err();
            assert_eq!((e.code, e.reason), (406, "NotAcceptable"), "{bad}");
            assert_eq!(
                e.message,
                "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
            );
        }
        assert!(negotiate(Some("application/json;pretty=1")).unwrap().pretty);
    }

    #[test]
    fn yaml_for_objects_and_conversions_but_not_streams() {
        let yaml = |h: &str| negotiate_for(Some(h), true).map(|n| (n.output, n.encoding));
        assert_eq!(yaml("application/yaml").unwrap(), (Output::Object, Encoding::Yaml));
        assert_eq!(
            yaml("application/yaml;as=Table;v=v1;g=meta.k8s.io").unwrap(),
            (Output::Table("v1"), Encoding::Yaml)
        );
        assert_eq!(
            yaml("application/json;q=0.5, application/yaml").unwrap().1,
            Encoding::Yaml
        );
        // A watch in YAML is refused, even with a later acceptable clause.
        let e = stream_encoding(negotiate_for(Some("application/yaml, application/json"), true)).unwrap_err();
        assert_eq!((e.code, e.reason), (406, "NotAcceptable"));
        assert_eq!(
            e.message,
            "only the following media types are accepted: application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch"
        );
        let ok = stream_encoding(negotiate_for(Some("application/vnd.kubernetes.protobuf"), true)).unwrap();
        assert_eq!(ok.encoding, Encoding::Protobuf);
        assert!(stream_encoding(negotiate_for(Some("text/html"), true)).is_err());
    }

    #[test]
    fn protobuf_for_kinds_that_have_it() {
        let proto = |h: &str| negotiate_for(Some(h), true).map(|n| (n.output, n.encoding));
        let cr = |h: &str| negotiate_for(Some(h), false).map(|n| (n.output, n.encoding));
        let pb = Encoding::Protobuf;
        let js = Encoding::Json;
        // What client-go sends for typed clients, and for lists of custom resources.
        let kubectl = "application/vnd.kubernetes.protobuf, */*";
        assert_eq!(proto(kubectl).unwrap(), (Output::Object, pb));
        assert_eq!(cr(kubectl).unwrap(), (Output::Object, js));
        let both = "application/vnd.kubernetes.protobuf, application/json";
        assert_eq!(cr(both).unwrap(), (Output::Object, js));
        // q-values decide, then specificity.
        assert_eq!(
            proto("application/json;q=0.5, application/vnd.kubernetes.protobuf;q=0.9").unwrap(),
            (Output::Object, pb)
        );
        assert_eq!(
            proto("application/vnd.kubernetes.protobuf;q=0.5, application/json").unwrap(),
            (Output::Object, js)
        );
        assert_eq!(proto("*/*;q=0.8, application/vnd.kubernetes.protobuf").unwrap().1, pb);
        assert_eq!(
            proto("application/vnd.kubernetes.protobuf;q=0, application/json")
                .unwrap()
                .1,
            js
        );
        // Tables are JSON only; metadata conversions exist in protobuf, for custom resources too.
        assert_eq!(
            proto("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json;as=Table;v=v1;g=meta.k8s.io").unwrap(),
            (Output::Table("v1"), js)
        );
        let meta =
            "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(cr(meta).unwrap(), (Output::PartialObjectMetadataList("v1"), pb));
        // Nothing acceptable: 406 naming what is served.
        let e = proto("text/html").unwrap_err();
        assert_eq!((e.code, e.reason), (406, "NotAcceptable"));
        assert_eq!(
            e.message,
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        );
        let e = cr("application/vnd.kubernetes.protobuf").unwrap_err();
        assert_eq!(
            e.message,
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        );
        assert_eq!(error_encoding(Some("application/vnd.kubernetes.protobuf"), true), pb);
        assert_eq!(error_encoding(Some("text/html"), true), js);
        assert_eq!(
            Encoding::of_content_type("application/vnd.kubernetes.protobuf; charset=x"),
            pb
        );
        assert_eq!(Encoding::of_content_type("application/json"), js);
    }

    #[test]
    fn conversions() {
        let pods = by_kind("", "Pod").unwrap();
        let pod =
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {}});
        let p = convert_object(pods, pod.clone(), Output::PartialObjectMetadata("v1")).unwrap();
        assert_eq!(
            p,
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "p", "labels": {"a": "b"}}})
        );
        let e = convert_object(pods, pod.clone(), Output::PartialObjectMetadataList("v1")).unwrap_err();
        assert_eq!(
            e.message,
            "you requested PartialObjectMetadataList, but the requested object is not a list (*core.Pod)"
        );
        let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": [pod]});
        let l = convert_list(pods, list.clone(), Output::PartialObjectMetadataList("v1")).unwrap();
        assert_eq!(l["kind"], "PartialObjectMetadataList");
        assert_eq!(l["metadata"], json!({"resourceVersion": "7"}));
        assert_eq!(l["items"][0]["metadata"]["name"], "p");
        let d = by_kind("apps", "Deployment").unwrap();
        let e = convert_list(d, list, Output::PartialObjectMetadata("v1")).unwrap_err();
        assert_eq!(
            e.message,
            "you requested PartialObjectMetadata, but the requested object is a list (*apps.DeploymentList)"
        );
        let empty = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": []});
        let l = convert_list(pods, empty, Output::PartialObjectMetadataList("v1")).unwrap();
        assert!(l["items"].is_null());
    }
}
