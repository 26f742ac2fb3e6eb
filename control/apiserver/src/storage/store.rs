//! Object storage on etcd.
//!
//! One key per object, `/registry/<group>/<plural>/<namespace>/<name>`
//! (`/registry/<group>/<plural>/<name>` for cluster-scoped resources; group
//! `core` for the legacy group). Values are the object's JSON without
//! `metadata.resourceVersion`: the resourceVersion IS the key's etcd mod
//! revision and is filled in on every read. Every write is one etcd
//! transaction guarded by a compare (key absent for create, unchanged mod
//! revision for update/delete), and may carry side keys (Service IP/port
//! allocations) created or deleted atomically with the object.

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
    WatchStream,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::kinds::Resource;
use crate::status::ApiError;

/// The etcd key of one object.
pub fn object_key(r: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if r.namespaced => {
            format!("/registry/{}/{}/{}/{}", r.storage_group(), r.plural, ns, name)
        }
        _ => format!("/registry/{}/{}/{}", r.storage_group(), r.plural, name),
    }
}

/// The key prefix of a collection (one namespace, or all of them).
pub fn collection_prefix(r: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("/registry/{}/{}/{}/", r.storage_group(), r.plural, ns),
        _ => format!("/registry/{}/{}/", r.storage_group(), r.plural),
    }
}

/// The end of the key range covering every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An object read from etcd.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The object, with `metadata.resourceVersion` set.
    pub object: Value,
    /// The key's mod revision (= resourceVersion).
    pub revision: i64,
}

/// Decode a stored value and stamp its resourceVersion.
/// The value is decrypted first (see [`super::encryption`]); `key` is its etcd key.
pub fn decode(key: &[u8], value: &[u8], revision: i64) -> Result<Value, ApiError> {
    let plain = super::encryption::from_storage(key, value).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut v: Value =
        serde_json::from_slice(&plain).map_err(|e| ApiError::internal(format!("corrupt object in storage: {e}")))?;
    set_resource_version(&mut v, revision);
    Ok(v)
}

/// Decode a stored value (decrypted first, as [`decode`] does) as `T`,
/// skipping whatever `T` does not read.
pub fn decode_as<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, ApiError> {
    let plain = super::encryption::from_storage(key, value).map_err(|e| ApiError::internal(e.to_string()))?;
    serde_json::from_slice(&plain).map_err(|e| ApiError::internal(format!("corrupt object in storage: {e}")))
}

/// Set `metadata.resourceVersion`.
pub fn set_resource_version(v: &mut Value, revision: i64) {
    if let Some(obj) = v.as_object_mut() {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(m) = meta.as_object_mut() {
            m.insert("resourceVersion".into(), Value::String(revision.to_string()));
        }
    }
}

/// Serialize an object for storage under `key` (without resourceVersion,
/// encrypted if the encryption configuration covers its resource).
pub fn encode(key: &[u8], v: &Value) -> Result<Vec<u8>, ApiError> {
    let plain = serde_json::to_vec(&WithoutResourceVersion(v)).unwrap_or_default();
    super::encryption::to_storage(key, plain).map_err(|e| ApiError::internal(e.to_string()))
}

/// An object serialized as it is, but for `metadata.resourceVersion` (etcd's
/// revision is the resourceVersion), without copying it first.
struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(obj) = self.0.as_object() else {
            return self.0.serialize(s);
        };
        let mut map = s.serialize_map(Some(obj.len()))?;
        for (k, v) in obj {
            match v.as_object().filter(|_| k == "metadata") {
                Some(meta) => map.serialize_entry(k, &Skipping(meta, "resourceVersion"))?,
                None => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// A map serialized without one key.
struct Skipping<'a>(&'a serde_json::Map<String, Value>, &'static str);

impl serde::Serialize for Skipping<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.iter().filter(|(k, _)| k.as_str() != self.1) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// What must hold for a write to apply.
#[derive(Debug, Clone, Copy)]
pub enum Precondition {
    /// The key must not exist (create).
    Absent,
    /// The key must still be at this mod revision (update, delete).
    Revision(i64),
}

/// What to do with the object key.
#[derive(Debug, Clone)]
pub enum Action {
    /// Write this value, an object as [`encode`] stores it (optionally
    /// attached to a lease).
    Put(Vec<u8>, Option<i64>),
    /// Remove the key.
    Delete,
}

impl Action {
    /// Write `obj` under `key` (optionally attached to a lease), encoded
    /// from the caller's copy rather than from one of its own.
    pub fn put(key: &str, obj: &Value, lease: Option<i64>) -> Result<Action, ApiError> {
        Ok(Action::Put(encode(key.as_bytes(), obj)?, lease))
    }
}

/// One atomic write of an object plus side keys.
#[derive(Debug, Clone)]
pub struct Write {
    /// Object key.
    pub key: String,
    /// Guard on the object key.
    pub precondition: Precondition,
    /// Put or delete.
    pub action: Action,
    /// Side keys that must be absent and are created (key, value).
    pub claim: Vec<(String, String)>,
    /// Side keys removed in the same transaction.
    pub release: Vec<String>,
}

/// Why a write did not apply.
#[derive(Debug)]
pub enum WriteFailure {
    /// The object key did not satisfy the precondition; its current state.
    ObjectChanged(Option<Stored>),
    /// A side key to claim is already taken.
    ClaimTaken,
}

/// Map an etcd error to an API error.
pub fn storage_error(e: etcd_client::Error) -> ApiError {
    let text = e.to_string();
    if text.contains("compacted") {
        return ApiError::expired(format!("too old resource version: {text}"));
    }
    if text.contains("future revision") {
        return ApiError::timeout(format!("Too large resource version: {text}"));
    }
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            ApiError::unavailable(format!("storage is unavailable: {text}"))
        }
        _ => ApiError::internal(format!("storage error: {text}")),
    }
}

/// Handle on etcd.
#[derive(Clone)]
pub struct Store {
    client: Client,
    written: Arc<Mutex<HashMap<String, i64>>>,
}

/// The collection a key belongs to, as [`collection_prefix`] writes it for
/// all namespaces: `/registry/<group>/<plural>/`.
fn collection_of(key: &str) -> Option<&str> {
    let mut slashes = key.match_indices('/').map(|(i, _)| i);
    let end = slashes.nth(3)?;
    Some(&key[..=end])
}

/// One page of a range read.
pub struct Page {
    /// (key, object) pairs in key order.
    pub items: Vec<(String, Stored)>,
    /// Revision the page was read at.
    pub revision: i64,
    /// Whether keys remain after the last one.
    pub more: bool,
}

/// Largest etcd response the API server accepts: an unpaginated list, or a
/// watch response carrying a backlog of changes.
const MAX_RANGE_RESPONSE_BYTES: usize = 1 << 30;

impl Store {
    /// Connect to etcd (over TLS when `etcd` says so).
    pub async fn connect(etcd: &super::etcd_config::EtcdConfig) -> anyhow::Result<Self> {
        let opts = etcd
            .connect_options()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_keep_alive(std::time::Duration::from_secs(10), std::time::Duration::from_secs(5));
        let client = Client::connect(etcd.servers(), Some(opts)).await?;
        super::etcd_config::watch_endpoints(&client, etcd.servers());
        Ok(Self {
            client,
            written: Arc::default(),
        })
    }

    /// The revision of the last write this server made to the collection
    /// `prefix` ([`collection_prefix`] of all namespaces; 0: none since it
    /// started). A cache that has applied every change up to it reflects
    /// every write this server has acknowledged there.
    pub fn last_write(&self, prefix: &str) -> i64 {
        self.written.lock().expect("written").get(prefix).copied().unwrap_or(0)
    }

    fn note_write(&self, key: &str, revision: i64) {
        let Some(collection) = collection_of(key) else { return };
        let mut written = self.written.lock().expect("written");
        match written.get_mut(collection) {
            Some(r) => *r = (*r).max(revision),
            None => {
                written.insert(collection.to_string(), revision);
            }
        }
    }

    /// Whether the value under `key` is stored other than a write would now
    /// store it (see [`super::encryption::is_stale`]); reads etcd only for
    /// resources an encryption rule covers. An unchanged update of a stale
    /// object is written anyway, as Kubernetes does.
    pub async fn is_stale(&self, key: &str) -> Result<bool, ApiError> {
        if !super::encryption::covers(key.as_bytes()) {
            return Ok(false);
        }
        let mut c = self.client.clone();
        let timer = crate::metrics::etcd_timer("get", key);
        let resp = c.get(key, None).await.map_err(storage_error)?;
        drop(timer);
        Ok(resp
            .kvs()
            .first()
            .is_some_and(|kv| super::encryption::is_stale(kv.key(), kv.value())))
    }

    /// The raw client (for health checks).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Read one object.
    pub async fn get(&self, key: &str) -> Result<Option<Stored>, ApiError> {
        let mut c = self.client.clone();
        let timer = crate::metrics::etcd_timer("get", key);
        let resp = c.get(key, None).await.map_err(storage_error)?;
        drop(timer);
        match resp.kvs().first() {
            Some(kv) => Ok(Some(Stored {
                object: decode(kv.key(), kv.value(), kv.mod_revision())?,
                revision: kv.mod_revision(),
            })),
            None => Ok(None),
        }
    }

    /// The etcd server's version, as its status reports it.
    pub async fn server_version(&self) -> Result<String, ApiError> {
        let mut c = self.client.clone();
        let status = c.status().await.map_err(storage_error)?;
        Ok(status.version().to_string())
    }

    /// The store's current revision.
    pub async fn current_revision(&self) -> Result<i64, ApiError> {
        let mut c = self.client.clone();
        let resp = c
            .get("/registry/", Some(GetOptions::new().with_count_only().with_limit(1)))
            .await
            .map_err(storage_error)?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Read keys in `[start, end)` at `revision` (0 = latest), at most `limit` (0 = all).
    pub async fn range(&self, start: &[u8], end: &[u8], revision: i64, limit: i64) -> Result<Page, ApiError> {
        // An unpaginated list can be far larger than gRPC's default 4 MiB
        // response limit (5,000 nodes are ~8 MiB).
        let mut c = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_RANGE_RESPONSE_BYTES);
        let mut opts = GetOptions::new().with_range(end.to_vec());
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        if limit > 0 {
            opts = opts.with_limit(limit);
        }
        let timer = crate::metrics::etcd_timer("list", &String::from_utf8_lossy(start));
        let resp = c.get(start.to_vec(), Some(opts)).await.map_err(storage_error)?;
        drop(timer);
        let mut items = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            items.push((
                key,
                Stored {
                    object: decode(kv.key(), kv.value(), kv.mod_revision())?,
                    revision: kv.mod_revision(),
                },
            ));
        }
        let rev = if revision > 0 {
            revision
        } else {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        };
        Ok(Page {
            items,
            revision: rev,
            more: resp.more(),
        })
    }

    /// Every object under `prefix`, at the latest revision.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Stored>, ApiError> {
        let page = self.range(prefix.as_bytes(), &prefix_end(prefix), 0, 0).await?;
        Ok(page.items.into_iter().map(|(_, s)| s).collect())
    }

    /// Keys (only) under a prefix, e.g. allocation records.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let mut c = self.client.clone();
        let _timer = crate::metrics::etcd_timer("list", prefix);
        let resp = c
            .get(prefix, Some(GetOptions::new().with_prefix().with_keys_only()))
            .await
            .map_err(storage_error)?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    /// Create a raw key if absent (bootstrap records). Returns whether it was created.
    pub async fn put_if_absent(&self, key: &str, value: Vec<u8>) -> Result<bool, ApiError> {
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let _timer = crate::metrics::etcd_timer("create", key);
        let resp = c.txn(txn).await.map_err(storage_error)?;
        if resp.succeeded() {
            self.note_write(key, resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        Ok(resp.succeeded())
    }

    /// Apply one write atomically. Returns the revision of the write.
    pub async fn write(&self, w: Write) -> Result<Result<i64, WriteFailure>, ApiError> {
        let operation = match (&w.action, w.precondition) {
            (Action::Delete, _) => "delete",
            (Action::Put(..), Precondition::Absent) => "create",
            (Action::Put(..), Precondition::Revision(_)) => "update",
        };
        let mut compares = vec![match w.precondition {
            Precondition::Absent => Compare::version(w.key.as_str(), CompareOp::Equal, 0),
            Precondition::Revision(rev) => Compare::mod_revision(w.key.as_str(), CompareOp::Equal, rev),
        }];
        let mut ops = Vec::new();
        for (k, v) in &w.claim {
            compares.push(Compare::version(k.as_str(), CompareOp::Equal, 0));
            ops.push(TxnOp::put(k.as_str(), v.as_str(), None));
        }
        for k in &w.release {
            ops.push(TxnOp::delete(k.as_str(), None::<DeleteOptions>));
        }
        match w.action {
            Action::Put(value, lease) => {
                let opts = lease.map(|l| PutOptions::new().with_lease(l));
                ops.push(TxnOp::put(w.key.as_str(), value, opts));
            }
            Action::Delete => ops.push(TxnOp::delete(w.key.as_str(), None)),
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else([TxnOp::get(w.key.as_str(), None)]);
        let mut c = self.client.clone();
        let timer = crate::metrics::etcd_timer(operation, &w.key);
        let resp = c.txn(txn).await.map_err(storage_error)?;
        drop(timer);
        if resp.succeeded() {
            let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            self.note_write(&w.key, revision);
            return Ok(Ok(revision));
        }
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let current = match current.as_ref().and_then(|g| g.kvs().first()) {
            Some(kv) => Some(Stored {
                object: decode(kv.key(), kv.value(), kv.mod_revision())?,
                revision: kv.mod_revision(),
            }),
            None => None,
        };
        let object_ok = match (w.precondition, &current) {
            (Precondition::Absent, None) => true,
            (Precondition::Revision(rev), Some(s)) => s.revision == rev,
            _ => false,
        };
        Ok(Err(if object_ok {
            WriteFailure::ClaimTaken
        } else {
            WriteFailure::ObjectChanged(current)
        }))
    }

    /// Grant a lease of `ttl` seconds.
    pub async fn grant_lease(&self, ttl: i64) -> Result<i64, ApiError> {
        let mut c = self.client.clone();
        let resp = c.lease_grant(ttl, None).await.map_err(storage_error)?;
        Ok(resp.id())
    }

    /// Watch every key under `prefix` from `start_revision` (inclusive), with previous values.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<WatchStream, ApiError> {
        // Bookmarks come from the watch's own ticker, not etcd's periodic
        // notifications (Sluice starts etcd with one every 100 ms).
        self.watch_with(prefix, start_revision, WatchOptions::new().with_prev_key())
            .await
    }

    /// Watch every key under `prefix` from `start_revision` (inclusive),
    /// without previous values: the watch cache holds them itself, so etcd
    /// neither sends nor the server decodes them a second time. With
    /// `periodic_progress`, etcd also sends its periodic progress
    /// notifications (`--experimental-watch-progress-notify-interval`).
    pub async fn watch_new_values(
        &self,
        prefix: &str,
        start_revision: i64,
        periodic_progress: bool,
    ) -> Result<WatchStream, ApiError> {
        let opts = WatchOptions::new();
        let opts = if periodic_progress {
            opts.with_progress_notify()
        } else {
            opts
        };
        self.watch_with(prefix, start_revision, opts).await
    }

    /// A watch of every key under `prefix` from `start_revision`, and `opts` besides.
    async fn watch_with(&self, prefix: &str, start_revision: i64, opts: WatchOptions) -> Result<WatchStream, ApiError> {
        // A watch resuming from an older revision gets etcd's backlog in
        // large responses (one response of a 5,000-node benchmark run was 4.3 MB): gRPC's
        // default 4 MiB limit failed such a watch on every retry, so a
        // watcher that fell behind never caught up. Kubernetes' etcd client
        // takes responses of any size too.
        let mut c = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_RANGE_RESPONSE_BYTES);
        let opts = opts.with_range(prefix_end(prefix)).with_start_revision(start_revision);
        c.watch(prefix, Some(opts)).await.map_err(storage_error)
    }

    /// Compact history up to `revision` (tests and maintenance).
    pub async fn compact(&self, revision: i64) -> Result<(), ApiError> {
        let mut c = self.client.clone();
        c.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical()))
            .await
            .map_err(storage_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{by_kind, by_path};

    #[test]
    fn keys_follow_the_registry_layout() {
        let pods = by_path("", "v1", "pods").unwrap();
        assert_eq!(object_key(pods, Some("default"), "a"), "/registry/core/pods/default/a");
        assert_eq!(collection_prefix(pods, Some("default")), "/registry/core/pods/default/");
        assert_eq!(collection_prefix(pods, None), "/registry/core/pods/");
        let ns = by_kind("", "Namespace").unwrap();
        assert_eq!(object_key(ns, None, "x"), "/registry/core/namespaces/x");
        let d = by_kind("apps", "Deployment").unwrap();
        assert_eq!(object_key(d, Some("n"), "d"), "/registry/apps/deployments/n/d");
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
    }

    #[test]
    fn a_key_belongs_to_the_collection_of_all_its_namespaces() {
        assert_eq!(
            collection_of("/registry/core/pods/default/a"),
            Some("/registry/core/pods/")
        );
        assert_eq!(
            collection_of("/registry/core/namespaces/x"),
            Some("/registry/core/namespaces/")
        );
        assert_eq!(
            collection_of("/registry/scheduling.k8s.io/priorityclasses/p"),
            Some("/registry/scheduling.k8s.io/priorityclasses/")
        );
        assert_eq!(collection_of("/registry/core"), None);
    }

    #[test]
    fn stored_bytes_leave_out_the_resource_version_only() {
        let obj = serde_json::json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "c", "resourceVersion": "42", "labels": {"resourceVersion": "kept"}},
            "data": {"resourceVersion": "kept"}
        });
        let bytes = encode(b"/registry/core/configmaps/default/c", &obj).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","labels":{"resourceVersion":"kept"}},"data":{"resourceVersion":"kept"}}"#
        );
        // Read back at a revision, the object is whole again.
        let read = decode(b"k", &encode(b"k", &obj).unwrap(), 42).unwrap();
        assert_eq!(read, obj);
    }
}
