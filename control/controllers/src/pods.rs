//! Helpers the controllers share (Kubernetes' `controller_utils`): adoption
//! and release through owner references, label selectors, names and keys;
//! the pod lifecycle and owner references themselves are `sluice_kube`'s
//! (`pods`, `owners`), re-exported here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::Error;

pub use sluice_kube::owners::{controller_of, controller_ref};
pub use sluice_kube::pods::{availability, condition, is_active, is_ready, is_terminated, ready_since};

/// Makes `owner` the controller of `obj` (adoption of an orphan), guarded
/// by `obj`'s resourceVersion; an object that changed or is gone is left
/// for the next reconcile.
pub async fn adopt<K, O>(api: &Api<K>, obj: &impl Resource, owner: &O) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    O: Resource<DynamicType = ()>,
{
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.push(controller_ref(owner));
    patch_owner_refs(api, obj, refs).await
}

/// Removes the owner reference with `uid` from `obj` (release), guarded as [`adopt`].
pub async fn release<K>(api: &Api<K>, obj: &impl Resource, uid: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let refs: Vec<OwnerReference> = obj
        .meta()
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != uid)
        .collect();
    patch_owner_refs(api, obj, refs).await
}

async fn patch_owner_refs<K>(api: &Api<K>, obj: &impl Resource, refs: Vec<OwnerReference>) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch =
        serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.meta().resource_version}});
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Parses a label selector; an invalid one is an error naming the object.
pub fn selector(sel: Option<&LabelSelector>, object: &str) -> Result<Selector, Error> {
    let sel = sel.cloned().unwrap_or_default();
    Selector::try_from(sel).map_err(|e| Error::Invalid {
        object: object.into(),
        reason: e.to_string(),
    })
}

/// Whether a selector with no requirements (which must select nothing for
/// controllers, as in Kubernetes) or the labels match.
pub fn selects(sel: &Selector, labels: &BTreeMap<String, String>) -> bool {
    !sel.selects_all() && sel.matches(labels)
}

static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Alphabet Kubernetes uses for generated name suffixes (no vowels, no
/// look-alike characters).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Maps each byte of `s` into [`SAFE_ALPHABET`], as Kubernetes'
/// `SafeEncodeString` does for the decimal digits of pod-template-hash.
pub fn safe_encode_string(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// A 5-character random-looking suffix for generated object names.
pub fn random_suffix() -> String {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = Timestamp::now().as_nanosecond() as u64
        ^ (u64::from(std::process::id()) << 32)
        ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut h = fnv1a64(&seed.to_le_bytes());
    let mut s = String::new();
    for _ in 0..5 {
        s.push(SAFE_ALPHABET[(h % SAFE_ALPHABET.len() as u64) as usize] as char);
        h /= SAFE_ALPHABET.len() as u64;
    }
    s
}

/// 32-bit FNV-1a, the hash Kubernetes uses for pod-template-hash.
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `namespace/name` of an object, for logs and errors.
pub fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default()
    )
}

/// The reference to `pod` that Endpoints and EndpointSlices carry as `targetRef`.
pub fn target_ref(pod: &impl Resource) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: Some(pod.name_any()),
        namespace: pod.namespace(),
        uid: pod.uid(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_selector_selects_nothing() {
        let sel = selector(None, "x").unwrap();
        assert!(!selects(&sel, &BTreeMap::from([("a".into(), "b".into())])));
    }

    #[test]
    fn names_use_the_safe_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert_ne!(random_suffix(), random_suffix());
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    }
}
