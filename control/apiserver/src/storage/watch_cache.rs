//! The watch cache: one etcd watch per resource, decoded once, fanned out to
//! every HTTP watch of that resource, and the resource's current objects,
//! from which lists are served.
//!
//! Each [`Hub`] starts from a list of its resource at one revision and then
//! applies every change etcd sends, so it holds every object at revision
//! `synced`. It also keeps the most recent changes in a window, so a client
//! watching from a resourceVersion inside the window is served from memory;
//! only the window's newest [`HOT`] changes keep their objects decoded, the
//! older ones are kept as JSON (a pod decoded into a `Value` takes
//! about ten times its JSON) and decoded again only for a watcher that
//! resumes from that far back; an encoded change shares its previous state's
//! JSON with the change before it of the same key, which holds it as its new
//! state;
//! anything older (or any hub failure) falls back to a dedicated etcd watch,
//! which also reports compaction as 410 Expired. Replay from the window and
//! the live subscription are taken under one lock, so no change is missed or
//! delivered twice.
//!
//! The hub's objects follow the same rule: an object whose last change is
//! among the window's hot ones is held decoded, shared with that change;
//! once the change is encoded, the object is held as the same bytes
//! ([`Held::Encoded`]), beside its labels and its resource's selectable
//! fields, so that a list can filter without decoding what it leaves out;
//! the objects of the hub's first list are held encoded from the start.
//! The JSON is written as a list item is ([`object_json`]), so a
//! compact JSON list copies it into its answer as it is.
//! Decoded objects were most of the server's memory: a heap profile
//! (heaptrack, 2,000 simulated nodes, 8,000 pods) put 443 MB of its 747 MB
//! peak in them. What it costs: the first guess of an update, a change's
//! previous state, and lists in any other form (Tables, protobuf, pretty
//! JSON, converted versions) decode what is held encoded.
//!
//! Lists ([`WatchCache::view`]) are consistent as in Kubernetes' KEP-2340: a
//! list without a resourceVersion asks etcd for its current revision (a
//! cheap header-only read), waits until the hub has applied everything up to
//! it (asking etcd for a progress notification so that an idle resource
//! catches up at once) and reads from memory; `resourceVersion=0` reads
//! whatever the cache holds; `resourceVersion=N` waits for N. A paginated
//! list keeps the rest of its snapshot for its `continue` token. When the
//! cache cannot answer in time (etcd partitioned, the hub restarting, a
//! revision it never held), the caller lists from etcd as before.
//!
//! `--watch-cache=false` (Kubernetes' flag) turns the cache off: every list
//! and watch then reads etcd directly, as the list benchmark's baseline does.
//!
//! A requested progress notification is believed only from an etcd that
//! sends it in order with the events (3.4.25, 3.5.8 and later; etcd issue
//! 15220). An older etcd (Debian's 3.4.23) can send it before the events of
//! the revision it reports: a hub believing it would serve a list without
//! those objects, at a resourceVersion its watchers then resume after, so an
//! informer would never see them. There, as in Kubernetes without
//! consistent reads from cache, a consistent list the hub cannot answer at
//! once goes to etcd, and `synced` moves only with events and etcd's own
//! periodic notifications (sent on the watch itself, so in order).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::EventType;
use serde_json::Value;
use tokio::sync::{broadcast, watch, Notify};

use crate::kinds::Resource;
use crate::meta::json::object_json;
use crate::meta::selectors::{self, FieldSelector, LabelSelector};
use crate::storage::store::{self, decode, Store};

/// Changes kept per resource for watchers that resume from a recent revision.
const WINDOW: usize = 20_000;
/// Live fan-out buffer per resource; a watcher further behind is disconnected
/// (it resumes from its last resourceVersion, usually from the window). The
/// buffer keeps its changes alive, decoded, until they are overwritten.
const FANOUT: usize = 2_048;
/// Newest changes of the window kept decoded (as many as the fan-out buffer
/// keeps alive anyway); the older ones are kept encoded ([`Cold`]).
const HOT: usize = FANOUT;
/// How often hubs ask etcd for progress (drives bookmarks).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// How long a list waits for the cache to reach the revision it needs
/// before it is served from etcd (Kubernetes: 3 s).
const LIST_WAIT: Duration = Duration::from_secs(3);
/// Snapshots kept for the `continue` tokens of paginated lists, and for how
/// long (an older token is served from etcd, at its revision).
const CONTINUATIONS: usize = 16;
const CONTINUATION_TTL: Duration = Duration::from_secs(60);

/// One change of one object, decoded once for every watcher.
#[derive(Debug)]
pub struct Change {
    /// etcd revision of the change (the object's new resourceVersion).
    pub revision: i64,
    /// The object's key.
    pub key: String,
    /// New state (None for deletes), shared with the hub's objects.
    pub new: Option<Arc<Value>>,
    /// Previous state (None for creates): the object the hub held before,
    /// shared with it, so at its own revision. A delete's event carries it
    /// at the deletion revision ([`Change::deleted_object`]).
    pub old: Option<Arc<Value>>,
    /// Whether the key was created by this change.
    pub created: bool,
    /// Encoded `{"type":..,"object":..}` line for the unfiltered case, built once.
    pub line: OnceLock<Bytes>,
}

impl Change {
    /// The event this change means for a watcher whose selectors `matches`
    /// tests, as its type and object; None when the watcher sees nothing
    /// (neither state matches, or there is no object to send).
    pub fn event(&self, matches: &dyn Fn(&Value) -> bool) -> Option<(&'static str, Value)> {
        let kind = self.event_kind(matches)?;
        let object = match &self.new {
            Some(new) => Value::clone(new),
            None => self.deleted_object()?,
        };
        Some((kind, object))
    }

    /// The type of [`Change::event`] alone. Its object follows from the
    /// change (the new state, or the last one for a delete), so two watchers
    /// given the same type get the same event: a filtered watcher whose type
    /// is the unfiltered one can share the unfiltered watchers' encoding.
    pub fn event_kind(&self, matches: &dyn Fn(&Value) -> bool) -> Option<&'static str> {
        match &self.new {
            Some(new) => {
                let new_match = matches(new);
                let old_match = !self.created && self.old.as_deref().is_some_and(matches);
                match (old_match, new_match) {
                    (_, true) if self.created => Some("ADDED"),
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
            None => {
                let old = self.old.as_ref()?;
                matches(old).then_some("DELETED")
            }
        }
    }

    /// The event an unfiltered watcher gets of this change.
    pub fn unfiltered_event(&self) -> Option<(&'static str, Value)> {
        self.event(&|_| true)
    }

    /// The object a DELETED event of this change carries: the last state,
    /// at the deletion's revision (as Kubernetes' watch cache sends it).
    pub fn deleted_object(&self) -> Option<Value> {
        let mut obj = Value::clone(self.old.as_ref()?);
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.revision.to_string()));
        }
        Some(obj)
    }
}

/// A change of the window's older part, encoded.
#[derive(Debug, Clone)]
struct Cold {
    revision: i64,
    key: String,
    created: bool,
    /// The new state, as JSON (None for deletes).
    new: Option<Bytes>,
    /// The previous state, as JSON (None for creates).
    old: Option<Bytes>,
}

impl Cold {
    /// Encode `c` (None when it has nothing to send to anyone). `previous`
    /// is the encoded new state of the window's change before `c` of the
    /// same key, with its revision: when `c`'s previous state is that one,
    /// its bytes are shared rather than encoded again.
    fn of(c: &Change, previous: Option<&(i64, Bytes)>) -> Option<Cold> {
        if c.new.is_none() && c.old.is_none() {
            return None;
        }
        let encode = |v: &Option<Arc<Value>>| v.as_deref().map(|v| Bytes::from(object_json(v)));
        let old = match (&c.old, previous) {
            (Some(old), Some((revision, bytes))) if resource_version(old) == Some(*revision) => Some(bytes.clone()),
            _ => encode(&c.old),
        };
        Some(Cold {
            revision: c.revision,
            key: c.key.clone(),
            created: c.created,
            new: encode(&c.new),
            old,
        })
    }

    /// The change again, decoded.
    fn decode(&self) -> Option<Change> {
        let decode = |b: &Option<Bytes>| -> Option<Option<Arc<Value>>> {
            match b {
                Some(b) => serde_json::from_slice::<Value>(b).ok().map(|v| Some(Arc::new(v))),
                None => Some(None),
            }
        };
        Some(Change {
            revision: self.revision,
            key: self.key.clone(),
            new: decode(&self.new)?,
            old: decode(&self.old)?,
            created: self.created,
            line: OnceLock::new(),
        })
    }
}

/// An object's `metadata.resourceVersion`, as a revision.
fn resource_version(object: &Value) -> Option<i64> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
}

/// An object as the hub holds it.
#[derive(Debug, Clone)]
pub enum Held {
    /// Decoded, shared with its last change while that change is hot.
    Decoded(Arc<Value>),
    /// As JSON, once its last change is encoded (or from the first list).
    Encoded(Arc<Encoded>),
}

impl Held {
    /// A copy of the object, decoded (None if its JSON no longer decodes,
    /// which the server's own encoding never gives).
    pub fn object(&self) -> Option<Value> {
        match self {
            Held::Decoded(v) => Some(Value::clone(v)),
            Held::Encoded(e) => e.decode(),
        }
    }

    /// The object, shared when it is held decoded.
    fn shared(&self) -> Option<Arc<Value>> {
        match self {
            Held::Decoded(v) => Some(v.clone()),
            Held::Encoded(e) => e.decode().map(Arc::new),
        }
    }
}

/// An object held as JSON (as a list writes it: Kubernetes' field order,
/// Go's escaping), with what selectors read of it.
#[derive(Debug)]
pub struct Encoded {
    json: Bytes,
    /// `metadata.labels`.
    labels: std::collections::BTreeMap<String, String>,
    /// The resource's selectable fields (its field labels, else
    /// `metadata.name` and `metadata.namespace`), as field selectors see them.
    fields: Vec<(&'static str, String)>,
}

impl Encoded {
    /// `json` is `object` encoded; `r` is its resource.
    fn new(r: &Resource, object: &Value, json: Bytes) -> Self {
        const META: &[&str] = &["metadata.name", "metadata.namespace"];
        let fields = r
            .field_labels
            .unwrap_or(META)
            .iter()
            .map(|f| (*f, selectors::field_value(object, f)))
            .collect();
        Self {
            json,
            labels: selectors::labels_of(object),
            fields,
        }
    }

    /// The object as a list item is written ([`object_json`]).
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The object, decoded.
    pub fn decode(&self) -> Option<Value> {
        serde_json::from_slice(&self.json).ok()
    }

    /// Whether the object matches both selectors; None when the field
    /// selector reads a field not kept here (the caller decodes).
    pub fn matches(&self, label: &LabelSelector, field: &FieldSelector) -> Option<bool> {
        if !label.matches_labels(&self.labels) {
            return Some(false);
        }
        for (path, eq, value) in &field.0 {
            let (_, actual) = self.fields.iter().find(|(f, _)| f == path)?;
            if (actual == value) != *eq {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// One change of the window.
#[derive(Debug, Clone)]
enum Kept {
    Hot(Arc<Change>),
    Cold(Cold),
}

impl Kept {
    fn revision(&self) -> i64 {
        match self {
            Kept::Hot(c) => c.revision,
            Kept::Cold(c) => c.revision,
        }
    }
}

/// What a hub broadcasts.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// An object changed.
    Change(Arc<Change>),
    /// Every change up to this revision has been broadcast.
    Progress(i64),
    /// The hub stopped; watchers end their streams (clients resume).
    Closed,
}

struct HubState {
    /// Changes with revision > `covered_from` are all in `window` or were
    /// evicted (then `covered_from` moved up).
    covered_from: i64,
    window: VecDeque<Kept>,
    /// Per key, the newest encoded change's revision and new state, for
    /// the next change of the key to share as its previous state
    /// ([`Cold::of`]); dropped with that change when it leaves the window.
    cold_new: HashMap<String, (i64, Bytes)>,
    alive: bool,
    /// Every object of the resource at revision `synced`, by key.
    objects: BTreeMap<String, Held>,
    /// The revision `objects` reflects: every change up to it is applied.
    synced: i64,
    /// False once an object failed to decode: lists then come from etcd,
    /// which reports the error.
    complete: bool,
}

/// The fan-out of one resource.
pub struct Hub {
    /// The resource (its selectable fields are kept beside encoded objects).
    resource: &'static Resource,
    state: Mutex<HubState>,
    tx: broadcast::Sender<HubEvent>,
    /// `synced`, for lists waiting on it.
    synced: watch::Sender<i64>,
    /// Asks the hub's task for a progress notification now.
    progress: Notify,
    /// Whether etcd's requested progress notifications can be believed.
    progress_in_order: bool,
}

/// At what revision a list is to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAt {
    /// Consistent: at least etcd's current revision (no resourceVersion).
    Latest,
    /// Whatever the cache holds (`resourceVersion=0`).
    Any,
    /// At least this revision (`resourceVersion=N`, match NotOlderThan or unset).
    NotOlderThan(i64),
    /// Exactly this revision (`resourceVersionMatch=Exact`, or a `continue` token).
    Exact(i64),
}

/// Objects of one list, read from the cache at one revision, in key order.
pub struct View {
    /// The revision the objects are at.
    pub revision: i64,
    /// (key, object) under the prefix, from the first list page's start key on.
    pub items: Arc<Vec<(String, Held)>>,
    /// Index of the first item to serve.
    pub offset: usize,
}

/// The rest of a paginated list, kept for its `continue` token.
struct Continuation {
    prefix: String,
    revision: i64,
    items: Arc<Vec<(String, Held)>>,
    kept: Instant,
}

/// A subscription: replayed changes (after the requested revision), then live events.
pub struct Subscription {
    /// Changes already in the window after the requested revision.
    pub replay: Vec<Arc<Change>>,
    /// Live events.
    pub live: broadcast::Receiver<HubEvent>,
}

/// All hubs of the server.
#[derive(Default)]
pub struct WatchCache {
    /// `--watch-cache=false`: no hub is started; lists and watches read etcd.
    disabled: bool,
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
    continuations: Mutex<VecDeque<Continuation>>,
    /// Whether etcd sends requested progress in order (asked once).
    progress_in_order: tokio::sync::OnceCell<bool>,
}

impl WatchCache {
    /// A cache that serves nothing (`--watch-cache=false`).
    pub fn disabled() -> Self {
        Self {
            disabled: true,
            ..Self::default()
        }
    }

    /// The live hub of `r`, started on first use: a list of the resource at
    /// one revision, then a watch from the revision after it.
    async fn hub(&self, store: &Store, r: &'static Resource) -> Option<Arc<Hub>> {
        if self.disabled {
            return None;
        }
        let key = store::collection_prefix(r, None);
        let existing = self.hubs.lock().expect("hubs").get(&key).cloned();
        if let Some(h) = existing {
            if h.state.lock().expect("hub state").alive {
                return Some(h);
            }
            let mut hubs = self.hubs.lock().expect("hubs");
            if hubs.get(&key).is_some_and(|x| Arc::ptr_eq(x, &h)) {
                hubs.remove(&key);
            }
        }
        let progress_in_order = *self
            .progress_in_order
            .get_or_try_init(|| async {
                let version = store.server_version().await?;
                let in_order = progress_in_order(&version);
                if !in_order {
                    tracing::warn!(
                        %version,
                        "etcd may send a requested progress notification before its events (fixed in 3.4.25 and 3.5.8): consistent lists the watch cache cannot answer at once are read from etcd"
                    );
                }
                Ok::<_, crate::status::ApiError>(in_order)
            })
            .await
            .ok()?;
        let end = store::prefix_end(&key);
        let page = store.range(key.as_bytes(), &end, 0, 0).await.ok()?;
        let start = page.revision;
        let objects = page
            .items
            .into_iter()
            .map(|(k, s)| {
                let json = Bytes::from(object_json(&s.object));
                (k, Held::Encoded(Arc::new(Encoded::new(r, &s.object, json))))
            })
            .collect();
        let stream = store.watch_new_values(&key, start + 1).await.ok()?;
        let (tx, _) = broadcast::channel(FANOUT);
        let hub = Arc::new(Hub {
            resource: r,
            state: Mutex::new(HubState {
                covered_from: start,
                window: VecDeque::new(),
                cold_new: HashMap::new(),
                alive: true,
                objects,
                synced: start,
                complete: true,
            }),
            tx,
            synced: watch::Sender::new(start),
            progress: Notify::new(),
            progress_in_order,
        });
        let mut hubs = self.hubs.lock().expect("hubs");
        if let Some(h) = hubs.get(&key) {
            return Some(h.clone());
        }
        hubs.insert(key, hub.clone());
        tokio::spawn(run_hub(hub.clone(), stream, start));
        Some(hub)
    }

    /// Whether etcd's requested progress notifications can be believed
    /// (false until a hub has asked etcd its version).
    pub fn progress_in_order(&self) -> bool {
        self.progress_in_order.get().copied().unwrap_or(false)
    }

    /// The object at `key` as the live hub of `r` holds it, if there is one
    /// (no hub is started for this): a guess at etcd's current state, which
    /// may be behind it.
    pub fn cached(&self, r: &'static Resource, key: &str) -> Option<store::Stored> {
        let hub = self
            .hubs
            .lock()
            .expect("hubs")
            .get(&store::collection_prefix(r, None))
            .cloned()?;
        let st = hub.state.lock().expect("hub state");
        if !st.alive || !st.complete {
            return None;
        }
        let held = st.objects.get(key)?.clone();
        drop(st);
        let object = held.object()?;
        let revision = resource_version(&object)?;
        Some(store::Stored { object, revision })
    }

    /// Subscribe to `r`'s changes after `revision`, if a live hub covers it.
    pub async fn subscribe(&self, store: &Store, r: &'static Resource, revision: i64) -> Option<Subscription> {
        let hub = self.hub(store, r).await?;
        let st = hub.state.lock().expect("hub state");
        if !st.alive || revision < st.covered_from {
            return None;
        }
        let kept: Vec<Kept> = st.window.iter().filter(|c| c.revision() > revision).cloned().collect();
        let live = hub.tx.subscribe();
        drop(st);
        // Decoded outside the lock; a change that no longer decodes (it
        // decoded when it happened) ends the replay, so the watcher falls
        // back to etcd rather than miss it.
        let mut replay = Vec::with_capacity(kept.len());
        for k in kept {
            match k {
                Kept::Hot(c) => replay.push(c),
                Kept::Cold(c) => replay.push(Arc::new(c.decode()?)),
            }
        }
        Some(Subscription { replay, live })
    }

    /// The objects of `r` under `prefix` (a collection or one namespace of
    /// it) from `start` on, at the revision `at` asks for; None when the
    /// cache cannot serve it (the caller reads etcd).
    pub async fn view(
        &self,
        store: &Store,
        r: &'static Resource,
        prefix: &str,
        start: &str,
        at: ListAt,
    ) -> Option<View> {
        if let ListAt::Exact(rev) = at {
            if let Some(v) = self.continuation(prefix, rev, start) {
                return Some(v);
            }
        }
        let hub = self.hub(store, r).await?;
        let target = match at {
            ListAt::Latest => store.current_revision().await.ok()?,
            ListAt::Any => 0,
            ListAt::NotOlderThan(rev) | ListAt::Exact(rev) => rev,
        };
        // Without believable progress, an idle hub would only time out: etcd answers at once.
        if at == ListAt::Latest && !hub.progress_in_order && *hub.synced.borrow() < target {
            return None;
        }
        if !hub.wait_synced(target).await {
            tracing::debug!(resource = r.plural, target, "watch cache behind; listing from etcd");
            return None;
        }
        let st = hub.state.lock().expect("hub state");
        if !st.alive || !st.complete || matches!(at, ListAt::Exact(rev) if rev != st.synced) {
            return None;
        }
        let end = String::from_utf8_lossy(&store::prefix_end(prefix)).into_owned();
        let from = if start.is_empty() { prefix } else { start };
        let items: Vec<(String, Held)> = st
            .objects
            .range::<str, _>((std::ops::Bound::Included(from), std::ops::Bound::Excluded(end.as_str())))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(View {
            revision: st.synced,
            items: Arc::new(items),
            offset: 0,
        })
    }

    /// Keep `view` for the `continue` token of a paginated list of
    /// `prefix` (the token names the key its next page starts at).
    pub fn keep(&self, prefix: &str, view: &View) {
        let mut c = self.continuations.lock().expect("continuations");
        c.retain(|k| k.kept.elapsed() < CONTINUATION_TTL);
        if let Some(k) = c.iter_mut().find(|k| Arc::ptr_eq(&k.items, &view.items)) {
            k.kept = Instant::now();
            return;
        }
        if c.len() >= CONTINUATIONS {
            c.pop_front();
        }
        c.push_back(Continuation {
            prefix: prefix.to_string(),
            revision: view.revision,
            items: view.items.clone(),
            kept: Instant::now(),
        });
    }

    fn continuation(&self, prefix: &str, revision: i64, start: &str) -> Option<View> {
        let c = self.continuations.lock().expect("continuations");
        let k = c
            .iter()
            .rev()
            .find(|k| k.revision == revision && k.prefix == prefix && k.kept.elapsed() < CONTINUATION_TTL)?;
        let offset = k.items.partition_point(|(key, _)| key.as_str() < start);
        Some(View {
            revision,
            items: k.items.clone(),
            offset,
        })
    }
}

impl Hub {
    /// Wait (up to [`LIST_WAIT`]) until every change up to `target` is applied.
    async fn wait_synced(&self, target: i64) -> bool {
        let mut rx = self.synced.subscribe();
        if *rx.borrow_and_update() >= target {
            return true;
        }
        let deadline = tokio::time::Instant::now() + LIST_WAIT;
        loop {
            // A resource nobody writes sends no events: etcd's progress
            // notification tells the hub it is current.
            self.progress.notify_one();
            let step = (tokio::time::Instant::now() + Duration::from_millis(500)).min(deadline);
            match tokio::time::timeout_at(step, rx.changed()).await {
                Ok(Err(_)) => return false,
                Ok(Ok(())) | Err(_) => {
                    if *rx.borrow_and_update() >= target {
                        return true;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return false;
                    }
                }
            }
        }
    }
}

async fn run_hub(hub: Arc<Hub>, stream: etcd_client::WatchStream, start: i64) {
    let (mut sender, mut responses) = stream.split();
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    let mut last = start;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if hub.progress_in_order {
                    if sender.request_progress().await.is_err() {
                        break;
                    }
                } else {
                    // Bookmarks at what the hub has applied, which is safe.
                    let synced = hub.state.lock().expect("hub state").synced;
                    let _ = hub.tx.send(HubEvent::Progress(synced));
                }
            }
            _ = hub.progress.notified(), if hub.progress_in_order => {
                if sender.request_progress().await.is_err() {
                    break;
                }
            }
            msg = responses.message() => {
                let resp = match msg {
                    Ok(Some(r)) => r,
                    _ => break,
                };
                if resp.canceled() || resp.compact_revision() > 0 {
                    break;
                }
                if resp.events().is_empty() {
                    // A requested notification (watch id -1) from an etcd
                    // that may send it early is not believed; the periodic
                    // one on this watch is.
                    let requested = resp.watch_id() == -1;
                    if !resp.created() && (hub.progress_in_order || !requested) {
                        let rev = resp.header().map(|h| h.revision()).unwrap_or(last).max(last);
                        let mut st = hub.state.lock().expect("hub state");
                        st.synced = st.synced.max(rev);
                        hub.synced.send_replace(st.synced);
                        let _ = hub.tx.send(HubEvent::Progress(rev));
                    }
                    continue;
                }
                // Decoded outside the lock; each change's previous state is
                // what the hub held, taken under it.
                let mut decoded = Vec::with_capacity(resp.events().len());
                let mut undecodable = false;
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let rev = kv.mod_revision();
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let (new, created) = match ev.event_type() {
                        EventType::Put => {
                            let new = decode(kv.key(), kv.value(), rev).ok().map(Arc::new);
                            undecodable |= new.is_none();
                            (new, kv.create_revision() == kv.mod_revision())
                        }
                        EventType::Delete => (None, false),
                    };
                    last = last.max(rev);
                    decoded.push((rev, key, new, created));
                }
                let mut st = hub.state.lock().expect("hub state");
                if undecodable {
                    st.complete = false;
                }
                for (revision, key, new, created) in decoded {
                    let old = match &new {
                        Some(obj) => st.objects.insert(key.clone(), Held::Decoded(obj.clone())),
                        None => st.objects.remove(&key),
                    };
                    let old = old.and_then(|h| h.shared());
                    let c = Arc::new(Change {
                        revision,
                        key,
                        new,
                        old,
                        created,
                        line: OnceLock::new(),
                    });
                    st.synced = st.synced.max(c.revision);
                    st.window.push_back(Kept::Hot(c.clone()));
                    if st.window.len() > WINDOW {
                        if let Some(old) = st.window.pop_front() {
                            st.covered_from = old.revision();
                            if let Kept::Cold(c) = &old {
                                if st.cold_new.get(&c.key).is_some_and(|(rev, _)| *rev == c.revision) {
                                    st.cold_new.remove(&c.key);
                                }
                            }
                        }
                    }
                    if let Some(i) = st.window.len().checked_sub(HOT + 1) {
                        // (Borrowed field by field.)
                        let st = &mut *st;
                        if let Some(Kept::Hot(c)) = st.window.get(i) {
                            if let Some(cold) = Cold::of(c, st.cold_new.get(&c.key)) {
                                match (&cold.new, &c.new) {
                                    (Some(json), Some(new)) => {
                                        st.cold_new.insert(cold.key.clone(), (cold.revision, json.clone()));
                                        // The object, if this is still its state, is held as these bytes.
                                        if let Some(held) = st.objects.get_mut(&cold.key) {
                                            if matches!(held, Held::Decoded(o) if Arc::ptr_eq(o, new)) {
                                                *held = Held::Encoded(Arc::new(Encoded::new(hub.resource, new, json.clone())));
                                            }
                                        }
                                    }
                                    _ => {
                                        st.cold_new.remove(&cold.key);
                                    }
                                }
                                st.window[i] = Kept::Cold(cold);
                            }
                        }
                    }
                    let _ = hub.tx.send(HubEvent::Change(c));
                }
                hub.synced.send_replace(st.synced);
            }
        }
    }
    hub.state.lock().expect("hub state").alive = false;
    let _ = hub.tx.send(HubEvent::Closed);
    tracing::warn!("watch hub stopped; watchers fall back to direct etcd watches until it restarts");
}

/// Whether an etcd of `version` sends requested progress notifications in
/// order with the watch's events (etcd pull request 15237: 3.4.25, 3.5.8).
fn progress_in_order(version: &str) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor)), Some(Some(patch))) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    match (major, minor) {
        (3, 4) => patch >= 25,
        (3, 5) => patch >= 8,
        (3, m) => m > 5,
        (m, _) => m > 3,
    }
}

#[cfg(test)]
mod tests {
    use super::{progress_in_order, Change, Cold, Encoded, Held};
    use crate::meta::selectors::{FieldSelector, LabelSelector};
    use serde_json::{json, Value};
    use std::sync::{Arc, OnceLock};

    fn pod(rv: i64, phase: &str) -> Arc<Value> {
        Arc::new(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv.to_string(), "labels": {"app": "web"}},
            "status": {"phase": phase},
        }))
    }

    fn change(revision: i64, new: Option<Arc<Value>>, old: Option<Arc<Value>>, created: bool) -> Change {
        Change {
            revision,
            key: "/registry/core/pods/shop/web".into(),
            new,
            old,
            created,
            line: OnceLock::new(),
        }
    }

    /// An object held encoded decodes to itself, and answers label and
    /// field selectors as the decoded object does, without being decoded;
    /// a field it does not keep leaves the answer to the caller.
    #[test]
    fn an_object_held_encoded_answers_selectors_as_the_decoded_object() {
        let pods = crate::kinds::builtin("", "Pod").expect("pods").resource();
        let mut obj = Value::clone(&pod(5, "Running"));
        obj["spec"] = json!({"nodeName": "node-1"});
        let json = serde_json::to_vec(&obj).expect("encodes");
        let held = Held::Encoded(Arc::new(Encoded::new(pods, &obj, json.into())));
        assert_eq!(held.object(), Some(obj.clone()));
        let Held::Encoded(e) = &held else { unreachable!() };
        for (labels, fields) in [
            ("", ""),
            ("app=web", ""),
            ("app=db", ""),
            ("app in (web,db),!gone", "spec.nodeName=node-1"),
            ("", "spec.nodeName=node-2"),
            ("", "status.phase!=Running"),
            ("", "metadata.name=web,metadata.namespace=shop"),
            ("app", "spec.nodeName=,status.phase=Running"),
        ] {
            let label = LabelSelector::parse(labels).expect("label selector");
            let field = FieldSelector::parse(fields, pods).expect("field selector");
            assert_eq!(
                e.matches(&label, &field),
                Some(label.matches(&obj) && field.matches(&obj)),
                "{labels:?} {fields:?}"
            );
        }
        let unknown = FieldSelector(vec![("spec.hostname".into(), true, "x".into())]);
        assert_eq!(e.matches(&LabelSelector::default(), &unknown), None);
    }

    /// An older change of the window, kept encoded, decodes to the same
    /// change: the same event for an unfiltered watcher, and the same new
    /// and previous objects for a filtered one.
    #[test]
    fn a_change_kept_encoded_decodes_to_the_same_change() {
        let created = change(5, Some(pod(5, "Pending")), None, true);
        let modified = change(7, Some(pod(7, "Running")), Some(pod(5, "Pending")), false);
        let deleted = change(9, None, Some(pod(7, "Running")), false);
        for c in [created, modified, deleted] {
            let cold = Cold::of(&c, None).expect("encoded");
            let back = cold.decode().expect("decoded");
            assert_eq!(
                (back.revision, &back.key, back.created),
                (c.revision, &c.key, c.created)
            );
            assert_eq!(back.new, c.new, "new object of revision {}", c.revision);
            let old = |c: &Change| c.old.as_deref().cloned();
            if c.new.is_some() {
                assert_eq!(old(&back), old(&c), "previous object of revision {}", c.revision);
            } else {
                assert_eq!(back.deleted_object(), c.deleted_object(), "deleted object");
            }
            assert_eq!(back.unfiltered_event(), c.unfiltered_event());
        }
        let deleted = change(9, None, Some(pod(7, "Running")), false);
        let (kind, object) = deleted.unfiltered_event().unwrap();
        assert_eq!(kind, "DELETED");
        assert_eq!(
            object["metadata"]["resourceVersion"], "9",
            "stamped at the deletion's revision"
        );
        assert!(
            Cold::of(&change(3, None, None, false), None).is_none(),
            "nothing to send, nothing kept"
        );
    }

    /// An encoded change whose previous state is the new state of the
    /// encoded change before it shares those bytes; any other previous
    /// state is encoded anew. Either way it decodes to the same change.
    #[test]
    fn an_encoded_change_shares_its_previous_state_with_the_change_before() {
        let created = change(5, Some(pod(5, "Pending")), None, true);
        let first = Cold::of(&created, None).expect("encoded");
        let kept = (first.revision, first.new.clone().expect("new state"));
        let modified = change(7, Some(pod(7, "Running")), Some(pod(5, "Pending")), false);
        let second = Cold::of(&modified, Some(&kept)).expect("encoded");
        let old = second.old.as_ref().expect("previous state");
        assert_eq!(old.as_ptr(), kept.1.as_ptr(), "the very bytes of the change before");
        assert_eq!(second.decode().expect("decoded").old, modified.old);
        let elsewhere = (4, kept.1.clone());
        let third = Cold::of(&modified, Some(&elsewhere)).expect("encoded");
        assert_ne!(
            third.old.as_ref().expect("previous state").as_ptr(),
            kept.1.as_ptr(),
            "another revision's bytes are not taken"
        );
        assert_eq!(third.decode().expect("decoded").old, modified.old);
    }

    /// A filtered watcher sees a change as Kubernetes' cacher shows it
    /// (leaving the selection is DELETED, entering it ADDED), and whenever
    /// its event type is the unfiltered one, the whole event is the same
    /// (so it may share the unfiltered encoding).
    #[test]
    fn filtered_watchers_see_selection_changes_and_share_what_is_the_same() {
        let running = |o: &Value| o["status"]["phase"] == "Running";
        let cases = [
            (change(5, Some(pod(5, "Running")), None, true), Some("ADDED")),
            (change(6, Some(pod(6, "Pending")), None, true), None),
            (
                change(7, Some(pod(7, "Running")), Some(pod(5, "Pending")), false),
                Some("ADDED"),
            ),
            (
                change(8, Some(pod(8, "Running")), Some(pod(7, "Running")), false),
                Some("MODIFIED"),
            ),
            (
                change(9, Some(pod(9, "Failed")), Some(pod(8, "Running")), false),
                Some("DELETED"),
            ),
            (
                change(10, Some(pod(10, "Failed")), Some(pod(9, "Pending")), false),
                None,
            ),
            (change(11, None, Some(pod(9, "Running")), false), Some("DELETED")),
            (change(12, None, Some(pod(9, "Pending")), false), None),
        ];
        for (c, want) in cases {
            let kind = c.event_kind(&running);
            assert_eq!(kind, want, "revision {}", c.revision);
            assert_eq!(c.event(&running).map(|(k, _)| k), kind, "revision {}", c.revision);
            if kind.is_some() && kind == c.event_kind(&|_| true) {
                assert_eq!(c.event(&running), c.unfiltered_event(), "revision {}", c.revision);
            }
        }
    }

    #[test]
    fn requested_progress_is_believed_from_etcd_with_the_ordering_fix() {
        for v in ["3.4.25", "3.4.34", "3.5.8", "3.5.16", "3.6.0", "v3.6.4", "4.0.0"] {
            assert!(progress_in_order(v), "{v}");
        }
        for v in ["3.4.23", "3.4.24", "3.5.7", "3.5.0", "3.3.27", "", "3.x", "3.5"] {
            assert!(!progress_in_order(v), "{v}");
        }
    }
}
