//! What the converter knows about each protobuf message: its descriptor
//! (from the pinned `.proto` files, compiled by `build.rs`), each field's
//! JSON name and Go facts (`go_fields.txt`), and which messages have a JSON
//! form of their own (Quantity, Time, IntOrString, ...).
//!
//! Everything is computed once, for every message of the pool, so encoding a
//! large list never looks a name up twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use prost::Message as _;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s.fds"));
static GO_FIELDS: &str = include_str!("../proto/go_fields.txt");

/// Messages whose JSON is not an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `resource.Quantity`: a string (`"100m"`).
    Quantity,
    /// `metav1.Time`: RFC 3339 with seconds.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `metav1.Duration`: Go's duration string (`"1h0m0s"`).
    Duration,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `runtime.RawExtension`, `metav1.FieldsV1`, apiextensions `JSON`: any JSON, held as bytes.
    Raw,
    /// `JSONSchemaPropsOrArray`: a schema or an array of schemas.
    PropsOrArray,
    /// `JSONSchemaPropsOrBool`: a boolean or a schema.
    PropsOrBool,
    /// `JSONSchemaPropsOrStringArray`: a schema or an array of strings.
    PropsOrStringArray,
}

fn special(full_name: &str) -> Option<Special> {
    let (package, name) = full_name.rsplit_once('.')?;
    Some(match (package, name) {
        ("apimachinery.pkg.api.resource", "Quantity") => Special::Quantity,
        ("apimachinery.pkg.apis.meta.v1", "Time") => Special::Time,
        ("apimachinery.pkg.apis.meta.v1", "MicroTime") => Special::MicroTime,
        ("apimachinery.pkg.apis.meta.v1", "Duration") => Special::Duration,
        ("apimachinery.pkg.util.intstr", "IntOrString") => Special::IntOrString,
        ("apimachinery.pkg.runtime", "RawExtension") | ("apimachinery.pkg.apis.meta.v1", "FieldsV1") => Special::Raw,
        (p, n) if p.starts_with("apiextensions_apiserver.") => match n {
            "JSON" => Special::Raw,
            "JSONSchemaPropsOrArray" => Special::PropsOrArray,
            "JSONSchemaPropsOrBool" => Special::PropsOrBool,
            "JSONSchemaPropsOrStringArray" => Special::PropsOrStringArray,
            _ => return None,
        },
        _ => return None,
    })
}

/// One field of a message, as JSON sees it.
#[derive(Debug)]
pub struct Field {
    /// The protobuf field.
    pub desc: FieldDescriptor,
    /// Its JSON name.
    pub json: String,
    /// A Go pointer or a field without `omitempty`: a zero value is written.
    pub keep_zero: bool,
    /// A Go pointer (a zero `Time` behind one is left out; one held by value is `null`).
    pub ptr: bool,
    /// Go `json:",inline"`: its fields sit in the parent's object.
    pub inline: bool,
    /// The JSON form of the field's message type (or, for a map, of its values).
    pub special: Option<Special>,
    /// The field's message type (or, for a map, its values'), resolved on first use.
    target: OnceLock<Option<Arc<Message>>>,
}

impl Field {
    /// The message of this field's values, if they are messages.
    pub fn target(&self) -> Option<&Arc<Message>> {
        self.target
            .get_or_init(|| {
                let kind = if self.desc.is_map() {
                    match self.desc.kind() {
                        Kind::Message(entry) => entry.map_entry_value_field().kind(),
                        k => k,
                    }
                } else {
                    self.desc.kind()
                };
                match kind {
                    Kind::Message(m) => schema().message(m.full_name()).cloned(),
                    _ => None,
                }
            })
            .as_ref()
    }
}

/// A message, as JSON sees it.
#[derive(Debug)]
pub struct Message {
    /// The protobuf message.
    pub desc: MessageDescriptor,
    /// Fields in declaration order.
    pub fields: Vec<Field>,
    /// JSON name → index in `fields` (inline fields are not named).
    pub by_json: HashMap<String, usize>,
}

impl Message {
    /// Whether `key` is a JSON field of this message or of one inlined in it.
    pub fn knows(&self, key: &str, schema: &Schema) -> bool {
        self.by_json.contains_key(key)
            || self.fields.iter().filter(|f| f.inline).any(|f| {
                field_message(&f.desc)
                    .is_some_and(|m| schema.message(m.full_name()).is_some_and(|m| m.knows(key, schema)))
            })
    }
}

/// The message type of a (non-map) message field.
pub fn field_message(f: &FieldDescriptor) -> Option<MessageDescriptor> {
    match f.kind() {
        Kind::Message(m) => Some(m),
        _ => None,
    }
}

/// Go facts of one field, from `go_fields.txt`.
#[derive(Default, Clone)]
struct GoField {
    json: Option<String>,
    keep_zero: bool,
    ptr: bool,
    inline: bool,
}

/// All messages, by full name.
pub struct Schema {
    /// The descriptor pool.
    pub pool: DescriptorPool,
    messages: HashMap<String, Arc<Message>>,
}

impl Schema {
    fn build() -> Schema {
        // The set is compiled by build.rs from the pinned files; it always decodes.
        let pool = DescriptorPool::decode(DESCRIPTORS).expect("descriptor set compiled by build.rs");
        let mut go: HashMap<(&str, &str), GoField> = HashMap::new();
        for line in GO_FIELDS.lines().filter(|l| !l.starts_with('#')) {
            let mut it = line.split(' ');
            let (Some(message), Some(field)) = (it.next(), it.next()) else {
                continue;
            };
            let e = go.entry((message, field)).or_default();
            for flag in it {
                match flag {
                    "ptr" => {
                        e.keep_zero = true;
                        e.ptr = true;
                    }
                    "keep" => e.keep_zero = true,
                    "inline" => e.inline = true,
                    f => {
                        if let Some(j) = f.strip_prefix("json=") {
                            e.json = Some(j.to_string());
                        }
                    }
                }
            }
        }
        let mut messages = HashMap::new();
        for desc in pool.all_messages() {
            let mut fields = Vec::new();
            let mut by_json = HashMap::new();
            for f in desc.fields() {
                let g = go.get(&(desc.full_name(), f.name())).cloned().unwrap_or_default();
                let value_kind = if f.is_map() {
                    match f.kind() {
                        Kind::Message(entry) => entry.map_entry_value_field().kind(),
                        k => k,
                    }
                } else {
                    f.kind()
                };
                let special = match &value_kind {
                    Kind::Message(m) => special(m.full_name()),
                    _ => None,
                };
                let json = g.json.unwrap_or_else(|| f.name().to_string());
                if !g.inline {
                    by_json.insert(json.clone(), fields.len());
                }
                fields.push(Field {
                    desc: f,
                    json,
                    keep_zero: g.keep_zero,
                    ptr: g.ptr,
                    inline: g.inline,
                    special,
                    target: OnceLock::new(),
                });
            }
            messages.insert(
                desc.full_name().to_string(),
                Arc::new(Message { desc, fields, by_json }),
            );
        }
        Schema { pool, messages }
    }

    /// A message by full name.
    pub fn message(&self, full_name: &str) -> Option<&Arc<Message>> {
        self.messages.get(full_name)
    }
}

/// The schema of every Kubernetes message (built on first use).
pub fn schema() -> &'static Schema {
    SCHEMA.get_or_init(Schema::build)
}

static SCHEMA: OnceLock<Schema> = OnceLock::new();

/// Proto package (without its version) of each API group.
const GROUP_PACKAGES: &[(&str, &str)] = &[
    ("", "api.core"),
    ("admission.k8s.io", "api.admission"),
    ("admissionregistration.k8s.io", "api.admissionregistration"),
    ("apidiscovery.k8s.io", "api.apidiscovery"),
    ("internal.apiserver.k8s.io", "api.apiserverinternal"),
    ("apps", "api.apps"),
    ("authentication.k8s.io", "api.authentication"),
    ("authorization.k8s.io", "api.authorization"),
    ("autoscaling", "api.autoscaling"),
    ("batch", "api.batch"),
    ("certificates.k8s.io", "api.certificates"),
    ("coordination.k8s.io", "api.coordination"),
    ("discovery.k8s.io", "api.discovery"),
    ("events.k8s.io", "api.events"),
    ("extensions", "api.extensions"),
    ("flowcontrol.apiserver.k8s.io", "api.flowcontrol"),
    ("imagepolicy.k8s.io", "api.imagepolicy"),
    ("networking.k8s.io", "api.networking"),
    ("node.k8s.io", "api.node"),
    ("policy", "api.policy"),
    ("rbac.authorization.k8s.io", "api.rbac"),
    ("resource.k8s.io", "api.resource"),
    ("scheduling.k8s.io", "api.scheduling"),
    ("storage.k8s.io", "api.storage"),
    ("storagemigration.k8s.io", "api.storagemigration"),
    ("apiextensions.k8s.io", "apiextensions_apiserver.pkg.apis.apiextensions"),
    ("apiregistration.k8s.io", "kube_aggregator.pkg.apis.apiregistration"),
    ("meta.k8s.io", "apimachinery.pkg.apis.meta"),
    ("metrics.k8s.io", "metrics.pkg.apis.metrics"),
    ("custom.metrics.k8s.io", "metrics.pkg.apis.custom_metrics"),
    ("external.metrics.k8s.io", "metrics.pkg.apis.external_metrics"),
];

/// Kinds of meta.k8s.io/v1 that Kubernetes registers in every group-version.
const UNVERSIONED: &[&str] = &[
    "Status",
    "WatchEvent",
    "DeleteOptions",
    "ListOptions",
    "GetOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "APIVersions",
    "APIGroupList",
    "APIGroup",
    "APIResourceList",
];

/// The full names the message of `kind` in `apiVersion` (`v1`, `apps/v1`)
/// would have, in the order they are looked up: the kind in its group's
/// package, then among the meta.k8s.io kinds every group-version has. Every
/// kind of the groups above has a protobuf form if its package has the
/// message, with no per-kind list.
fn candidate_names(api_version: &str, kind: &str) -> impl Iterator<Item = String> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let in_group = GROUP_PACKAGES
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(_, package)| format!("{package}.{version}.{kind}"));
    let unversioned = UNVERSIONED
        .contains(&kind)
        .then(|| format!("apimachinery.pkg.apis.meta.v1.{kind}"));
    in_group.into_iter().chain(unversioned)
}

/// The message of `kind` in `apiVersion`, if Kubernetes has a protobuf
/// form for it ([`candidate_names`]). Builds the schema.
pub fn message_for(api_version: &str, kind: &str) -> Option<&'static Arc<Message>> {
    let s = schema();
    candidate_names(api_version, kind).find_map(|name| s.message(&name))
}

/// Whether `kind` in `apiVersion` has a message ([`candidate_names`]),
/// answered from the names of the pinned files' messages alone.
///
/// The server asks this of every request, to know what it may answer in;
/// building the whole schema for it (about 8 MB, heaptrack: the API server
/// of the 5,000-node scheduler benchmark) would hold that memory in a
/// server no client ever asks protobuf of, as Sluice's own components and
/// kubectl do not.
pub fn has_message_for(api_version: &str, kind: &str) -> bool {
    static NAMES: OnceLock<HashSet<String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        // The descriptors are compiled in by build.rs: they decode.
        let set = prost_types::FileDescriptorSet::decode(DESCRIPTORS).unwrap_or_default();
        set.file
            .iter()
            .flat_map(|f| {
                let package = f.package();
                f.message_type.iter().map(move |m| format!("{package}.{}", m.name()))
            })
            .collect()
    });
    candidate_names(api_version, kind).any(|name| names.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a kind has a message is answered as the schema answers it,
    /// without building the schema (nextest runs each test in a process of
    /// its own, so nothing else built it here).
    #[test]
    fn whether_a_kind_has_a_message_is_known_without_the_schema() {
        let kinds = [
            ("v1", "Pod"),
            ("v1", "Status"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "Status"),
            ("coordination.k8s.io/v1", "Lease"),
            ("meta.k8s.io/v1", "PartialObjectMetadataList"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("v1", "Widget"),
            ("stories.sluice.dev/v1", "Widget"),
            ("stories.sluice.dev/v1", "Status"),
            ("apps/v9", "Deployment"),
        ];
        let answers: Vec<bool> = kinds.iter().map(|(v, k)| has_message_for(v, k)).collect();
        assert!(SCHEMA.get().is_none(), "has_message_for built the schema");
        assert_eq!(
            answers,
            [true, true, true, true, true, true, true, false, false, true, false]
        );
        let built: Vec<bool> = kinds.iter().map(|(v, k)| message_for(v, k).is_some()).collect();
        assert_eq!(answers, built);
    }
}
