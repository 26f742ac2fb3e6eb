//! The watch cache: one etcd watch per resource, decoded and encoded once,
//! fanned out to every HTTP watch of that resource, and the resource's
//! current objects, from which lists are served.
//!
//! Each [`Hub`] starts from a list of its resource at one revision and then
//! applies every change etcd sends, so it holds every object at revision
//! `synced`. It also keeps the most recent changes in a window, so a client
//! watching from a resourceVersion inside the window is served from memory;
//! anything older (or any hub failure) falls back to a dedicated etcd watch,
//! which also reports compaction as 410 Expired. Replay from the window and
//! the live subscription are taken under one lock, so no change is missed or
//! delivered twice.
//!
//! Objects are held as JSON only ([`Encoded`]), written as a list item is
//! ([`object_json`]: Kubernetes' field order, Go's escaping), beside their
//! labels and their resource's selectable fields, so that a watcher's or a
//! list's selectors are answered without decoding. A put's JSON is a part
//! of the `{"type":..,"object":..}` line every unfiltered JSON watcher is
//! sent (and every filtered one whose event is the same), written once when
//! etcd reports the change; a compact JSON list copies the same bytes into
//! its answer. One version of an object is one buffer, shared by the hub's
//! objects, the change that wrote it, the next change of its key (as its
//! previous state) and the fan-out buffer. Once the change that wrote a
//! version is [`PACK_AFTER`] changes behind the newest, the version is held
//! deflated and its line dropped ([`Body::Packed`]), whether it is still
//! the object's current state or was superseded since: every live watcher
//! has sent it by then, so only lists, a writer's guess of the current
//! state and a watcher resuming from far back read it, and they inflate it.
//! The objects of a hub's first list are held deflated from the start.
//! Current objects were most of what the cache held once the older
//! versions were deflated: in the scheduler benchmark, pods, Nodes and
//! Events that no longer change (`bench-results/scheduler.md`).
//! Decoded objects were most of the server's memory: a heap profile
//! (heaptrack, 2,000 simulated nodes, 8,000 pods) put 443 MB of a 747 MB
//! peak in them while every object was held decoded, and still 205 MB of
//! 550 MB while the window's newest 2,048 changes per resource were (a pod
//! decoded into a `Value` takes about ten times its JSON). What it costs:
//! the first guess of an update, events a watcher gets in another form
//! (protobuf, Tables, a selection change, a delete's last state) and lists
//! in another form decode what they need.
//!
//! Lists ([`WatchCache::view`]) are consistent as in Kubernetes' KEP-2340: a
//! list without a resourceVersion asks etcd for its current revision (a
//! cheap header-only read), waits until the hub has applied everything up to
//! it (asking etcd for a progress notification so that an idle resource
//! catches up at once) and reads from memory; `resourceVersion=0` reads
//! whatever the cache holds; `resourceVersion=N` waits for N. A paginated
//! list keeps the rest of its snapshot for its `continue` token; any other
//! exact revision (`resourceVersionMatch=Exact`, the next page of a list
//! etcd served) is read from etcd at once unless the hub stands at it, since
//! a resource nobody writes never reaches another resource's revision
//! (waiting for it cost an informer 3 s per page). When the
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
//! informer would never see them. There `synced` moves only with events and
//! etcd's own periodic notifications, which etcd sends on the watch itself
//! (so in order), to a watch that is current, after every
//! `--experimental-watch-progress-notify-interval` without events. Sluice
//! starts etcd with 100 ms (etcd's default is 10 minutes). Each
//! notification is a message per watch, so only hubs of collections of
//! [`PERIODIC_FROM`] objects or more ask for them (a hub watches again with
//! them when its collection grows past that). The hubs learn the interval
//! from the notifications they get ([`PeriodicProgress`]); a consistent list
//! the hub cannot answer at once then waits for the next one where that is
//! cheaper than reading etcd (mean wait: half the interval, against about
//! 25 µs per object read from etcd, measured by the list benchmark), and
//! goes to etcd otherwise, as in Kubernetes without consistent reads from
//! cache. Watches read straight from etcd (the cache off or behind) do not
//! ask for periodic notifications: their bookmarks have their own ticker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::EventType;
use serde_json::Value;
use tokio::sync::{broadcast, watch, Notify};

use crate::kinds::Resource;
use crate::meta::json::{json_watch_event, json_watch_event_and_object, json_watch_line, object_json};
use crate::meta::selectors::{self, FieldSelector, LabelSelector};
use crate::storage::store::{self, decode, Store};

/// Changes kept per resource for watchers that resume from a recent revision.
const WINDOW: usize = 20_000;
/// Live fan-out buffer per resource; a watcher further behind is disconnected
/// (it resumes from its last resourceVersion, usually from the window).
const FANOUT: usize = 2_048;
/// A version of an object is held deflated once the change that wrote it
/// is this many changes behind the newest: every live watcher has sent it
/// by then (a watcher [`FANOUT`] behind is disconnected), so only a list, a
/// writer's guess or a watcher resuming from further back inflates it.
const PACK_AFTER: usize = 2 * FANOUT;
/// At most this much of an object is a hub's deflate dictionary.
const DICTIONARY_MAX: usize = 8 * 1024;
/// How often hubs ask etcd for progress (drives bookmarks).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// What reading one object from etcd costs a list, about (`bench-results/list.md`:
/// 1,000 pods in 25 ms, 10,000 in 278 ms at p50).
const ETCD_READ_PER_OBJECT: Duration = Duration::from_micros(25);
/// etcd's periodic progress notifications are waited for only when they come
/// at least this often.
const PERIODIC_USABLE: Duration = Duration::from_secs(1);
/// Objects from which a hub asks for etcd's periodic progress notifications:
/// etcd reads a smaller collection faster than the mean wait for one at 100 ms
/// (2,000 objects' worth; half of that for a collection still growing).
const PERIODIC_FROM: usize = 1_000;
/// How long a list waits for the cache to reach the revision it needs
/// before it is served from etcd (Kubernetes: 3 s).
const LIST_WAIT: Duration = Duration::from_secs(3);
/// Snapshots kept for the `continue` tokens of paginated lists, and for how
/// long (an older token is served from etcd, at its revision).
const CONTINUATIONS: usize = 16;
const CONTINUATION_TTL: Duration = Duration::from_secs(60);

/// One change of one object, decoded and encoded once for every watcher.
#[derive(Debug)]
pub struct Change {
    /// etcd revision of the change (the object's new resourceVersion).
    pub revision: i64,
    /// The object's key.
    pub key: String,
    /// New state (None for deletes), shared with the hub's objects.
    pub new: Option<Arc<Encoded>>,
    /// Previous state (None for creates): the object the hub held before,
    /// shared with it (and with the change before of the same key), so at
    /// its own revision. A delete's event carries it at the deletion
    /// revision ([`Change::deleted_object`]).
    pub old: Option<Arc<Encoded>>,
    /// Whether the key was created by this change.
    pub created: bool,
    /// A delete's `{"type":"DELETED","object":..}` line, written when a
    /// watcher first needs it (a put's line is held by its new state).
    deleted_line: Mutex<DeletedLine>,
}

/// A delete's watch line, as far as it has been written.
#[derive(Debug)]
enum DeletedLine {
    Unwritten,
    Written(Bytes),
    /// The change is far behind the newest ([`PACK_AFTER`]): the line is
    /// written again for each late watcher, not kept.
    Dropped,
}

/// Whether a watcher's selectors select an object.
pub type Matches<'a> = dyn Fn(&Encoded) -> bool + 'a;

impl Change {
    /// A put of `new` (None: a delete) at `revision`, after `old`.
    fn new(revision: i64, key: String, new: Option<Arc<Encoded>>, old: Option<Arc<Encoded>>, created: bool) -> Self {
        Change {
            revision,
            key,
            new,
            old,
            created,
            deleted_line: Mutex::new(DeletedLine::Unwritten),
        }
    }

    /// This change is [`PACK_AFTER`] changes behind the newest: the version
    /// it wrote is held deflated from now on (current or not), and a
    /// delete's line is no longer kept. The version it superseded already
    /// is: it was written by an earlier change, or came with the hub's first
    /// list, which [`run_hub`] packs before it applies any change.
    fn pack(&self, packer: &mut Packer) {
        if let Some(new) = &self.new {
            new.pack(packer);
        }
        if self.new.is_none() {
            *self.deleted_line.lock().expect("deleted line") = DeletedLine::Dropped;
        }
    }

    /// The event this change means for a watcher whose selectors `matches`
    /// tests, as its type and object; None when the watcher sees nothing
    /// (neither state matches, or there is no object to send).
    pub fn event(&self, matches: &Matches) -> Option<(&'static str, Value)> {
        let kind = self.event_kind(matches)?;
        let object = match &self.new {
            Some(new) => new.decode()?,
            None => self.deleted_object()?,
        };
        Some((kind, object))
    }

    /// The type of [`Change::event`] alone. Its object follows from the
    /// change (the new state, or the last one for a delete), so two watchers
    /// given the same type get the same event: a filtered watcher whose type
    /// is the unfiltered one can share the unfiltered watchers' line.
    pub fn event_kind(&self, matches: &Matches) -> Option<&'static str> {
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

    /// The JSON line every unfiltered watcher gets of this change (None
    /// when there is nothing to send).
    pub fn line(&self) -> Option<Bytes> {
        let kind = self.event_kind(&|_| true)?;
        if let Some(new) = &self.new {
            return new.line(kind);
        }
        let mut held = self.deleted_line.lock().expect("deleted line");
        if let DeletedLine::Written(line) = &*held {
            return Some(line.clone());
        }
        // A delete's object is the last state at the deletion's revision.
        let line = json_watch_event(kind, &self.deleted_object()?);
        if matches!(*held, DeletedLine::Unwritten) {
            *held = DeletedLine::Written(line.clone());
        }
        Some(line)
    }

    /// The object a DELETED event of this change carries: the last state,
    /// at the deletion's revision (as Kubernetes' watch cache sends it).
    pub fn deleted_object(&self) -> Option<Value> {
        let mut obj = self.old.as_ref()?.decode()?;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.revision.to_string()));
        }
        Some(obj)
    }
}

/// An object's `metadata.resourceVersion`, as a revision.
fn resource_version(object: &Value) -> Option<i64> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
}

/// An object held as JSON (as a list writes it: Kubernetes' field order,
/// Go's escaping), with what selectors read of it.
#[derive(Debug)]
pub struct Encoded {
    /// The JSON: as written, or deflated once written long ago.
    body: Mutex<Body>,
    /// `metadata.labels`, shared with the object's previous version when
    /// they did not change (most writes leave them alone).
    labels: Arc<selectors::Labels>,
    /// The resource's selectable fields, as field selectors see them.
    fields: FieldValues,
}

/// The values of a resource's selectable fields (its field labels, else
/// `metadata.name` and `metadata.namespace`), in one buffer: a pod has
/// eleven, and as a vector of (name, `String`) pairs they took about 650
/// bytes and twelve allocations per version held (heaptrack, 2,000-node
/// scheduler benchmark), for one every recent change of every object.
#[derive(Debug)]
struct FieldValues {
    /// The fields' paths.
    names: &'static [&'static str],
    /// Their values, in the same order.
    values: selectors::PackedStrs,
}

impl FieldValues {
    /// The fields of `r` read from `object`.
    fn of(r: &Resource, object: &Value) -> Self {
        const META: &[&str] = &["metadata.name", "metadata.namespace"];
        let names = r.field_labels.unwrap_or(META);
        Self {
            names,
            values: names.iter().map(|f| selectors::field_value(object, f)).collect(),
        }
    }

    /// The value of the field at `path`, if it is one of these.
    fn get(&self, path: &str) -> Option<&str> {
        self.values.get(self.names.iter().position(|n| *n == path)?)
    }
}

/// How an [`Encoded`] holds its JSON.
#[derive(Debug)]
enum Body {
    /// As written; when it was written as the object of a watch line, that
    /// line (of which the JSON is a part) and its type.
    Plain {
        json: Bytes,
        line: Option<(&'static str, Bytes)>,
    },
    /// Deflated (a version written [`PACK_AFTER`] changes ago).
    Packed(Packed),
}

/// JSON deflated against a dictionary: an earlier object of the same
/// resource, which holds most of what objects of a kind share (field names,
/// managedFields, the template's values). Measured on the scheduler
/// benchmark's objects (zlib level 1, 300 of each): a pod of 2,237 bytes
/// deflates to 987 alone and to 282 against another pod; a Node of 1,840 to
/// 714 and 162; a Lease of 510 to 317 and 115.
#[derive(Debug)]
struct Packed {
    dictionary: Arc<[u8]>,
    data: Box<[u8]>,
    /// The JSON's length, so that it inflates into a buffer of that size.
    len: u32,
}

/// Deflates a hub's versions written long ago: one compressor's state reused
/// (zlib's is about 270 KB, more than allocating it per object is worth),
/// and one dictionary, the first version it packs (its last
/// [`DICTIONARY_MAX`] bytes: zlib hashes the dictionary for each object).
#[derive(Default)]
pub struct Packer {
    /// Made at the first pack: a hub with an empty first list and fewer
    /// than [`PACK_AFTER`] changes never packs.
    z: Option<flate2::Compress>,
    dictionary: Option<Arc<[u8]>>,
}

impl Packer {
    /// `json` deflated (None if deflate fails, which it does not on memory).
    fn deflate(&mut self, json: &[u8]) -> Option<Packed> {
        let dictionary = self
            .dictionary
            .get_or_insert_with(|| Arc::from(&json[json.len().saturating_sub(DICTIONARY_MAX)..]))
            .clone();
        let z = self
            .z
            .get_or_insert_with(|| flate2::Compress::new(flate2::Compression::fast(), false));
        z.reset();
        z.set_dictionary(&dictionary).ok()?;
        let mut out = Vec::with_capacity(json.len() / 4 + 64);
        loop {
            let read = usize::try_from(z.total_in()).ok()?;
            let status = z
                .compress_vec(json.get(read..)?, &mut out, flate2::FlushCompress::Finish)
                .ok()?;
            if status == flate2::Status::StreamEnd {
                return Some(Packed {
                    dictionary,
                    data: out.into_boxed_slice(),
                    len: u32::try_from(json.len()).ok()?,
                });
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

impl Packed {
    /// The JSON inflated (None if it does not inflate to its length, which
    /// what [`Packer`] wrote always does).
    fn inflate(&self) -> Option<Bytes> {
        // One decompressor per thread, reset for each object: a list
        // inflates thousands, and a new one allocates zlib's state and
        // window (about 40 KB) each time.
        thread_local! {
            static INFLATE: std::cell::RefCell<flate2::Decompress> =
                std::cell::RefCell::new(flate2::Decompress::new(false));
        }
        let len = usize::try_from(self.len).ok()?;
        // Room for one byte more than the length: a stream that does not
        // end there is not what was packed.
        let mut out = Vec::with_capacity(len + 1);
        INFLATE.with_borrow_mut(|d| {
            d.reset(false);
            d.set_dictionary(&self.dictionary).ok()?;
            let status = d
                .decompress_vec(&self.data, &mut out, flate2::FlushDecompress::Finish)
                .ok()?;
            (status == flate2::Status::StreamEnd && out.len() == len).then_some(())
        })?;
        Some(out.into())
    }
}

impl Encoded {
    /// `json` is `object` encoded; `r` is its resource.
    fn new(r: &Resource, object: &Value, json: Bytes) -> Self {
        Self::with_body(r, object, Body::Plain { json, line: None })
    }

    fn with_body(r: &Resource, object: &Value, body: Body) -> Self {
        Self {
            body: Mutex::new(body),
            labels: Arc::new(selectors::labels_of(object)),
            fields: FieldValues::of(r, object),
        }
    }

    /// `object` encoded as the object of a watch line of type `kind`: the
    /// object's JSON is a part of that line, which it keeps ([`Encoded::line`]).
    fn with_line(r: &Resource, object: &Value, kind: &'static str) -> Self {
        let (line, json) = json_watch_event_and_object(kind, object);
        Self::with_body(
            r,
            object,
            Body::Plain {
                json,
                line: Some((kind, line)),
            },
        )
    }

    fn body(&self) -> std::sync::MutexGuard<'_, Body> {
        self.body.lock().expect("encoded body")
    }

    /// The watch line of type `kind` with this object: the one it was
    /// written as when that is its type, else written now.
    fn line(&self, kind: &'static str) -> Option<Bytes> {
        if let Body::Plain {
            line: Some((k, line)), ..
        } = &*self.body()
        {
            if *k == kind {
                return Some(line.clone());
            }
        }
        Some(json_watch_line(kind, &self.json()?))
    }

    /// Hold the JSON deflated (and drop the watch line it was a part of).
    fn pack(&self, packer: &mut Packer) {
        let json = match &*self.body() {
            Body::Plain { json, .. } => json.clone(),
            Body::Packed(_) => return,
        };
        // Deflated outside the lock: only the hub's task packs.
        if let Some(packed) = packer.deflate(&json) {
            *self.body() = Body::Packed(packed);
        }
    }

    /// Whether the JSON is held deflated.
    #[cfg(test)]
    fn packed(&self) -> bool {
        matches!(*self.body(), Body::Packed(_))
    }

    /// Take `prev`'s labels if they are the same as these (one map for
    /// every version of an object whose labels did not change).
    fn share_labels(&mut self, prev: &Encoded) {
        if !Arc::ptr_eq(&self.labels, &prev.labels) && self.labels == prev.labels {
            self.labels = prev.labels.clone();
        }
    }

    /// The object as a list item is written ([`object_json`]); None if it
    /// was held deflated and no longer inflates, which never happens.
    pub fn json(&self) -> Option<Bytes> {
        match &*self.body() {
            Body::Plain { json, .. } => Some(json.clone()),
            Body::Packed(packed) => packed.inflate(),
        }
    }

    /// The object, decoded (None if its JSON no longer decodes, which the
    /// server's own encoding never gives).
    pub fn decode(&self) -> Option<Value> {
        serde_json::from_slice(&self.json()?).ok()
    }

    /// The object decoded, with the revision its resourceVersion names.
    fn stored(&self) -> Option<store::Stored> {
        let object = self.decode()?;
        let revision = resource_version(&object)?;
        Some(store::Stored { object, revision })
    }

    /// Whether the object matches both selectors; None when the field
    /// selector reads a field not kept here (the caller decodes).
    pub fn matches(&self, label: &LabelSelector, field: &FieldSelector) -> Option<bool> {
        if !label.matches_labels(&self.labels) {
            return Some(false);
        }
        for (path, eq, value) in &field.0 {
            let actual = self.fields.get(path)?;
            if (actual == value) != *eq {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Whether the object matches both selectors, decoding it when they
    /// read a field not kept beside it.
    pub fn selected(&self, label: &LabelSelector, field: &FieldSelector) -> bool {
        self.matches(label, field)
            .unwrap_or_else(|| self.decode().is_some_and(|o| label.matches(&o) && field.matches(&o)))
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
    window: VecDeque<Arc<Change>>,
    alive: bool,
    /// Every object of the resource at revision `synced`, by key.
    objects: BTreeMap<String, Arc<Encoded>>,
    /// The revision `objects` reflects: every change up to it is applied.
    synced: i64,
    /// False once an object failed to decode: lists then come from etcd,
    /// which reports the error.
    complete: bool,
    /// Changes that have just fallen [`PACK_AFTER`] behind, for the hub's
    /// task to pack outside the lock.
    to_pack: Vec<Arc<Change>>,
}

impl HubState {
    /// The objects under `prefix` (a collection or one namespace of it),
    /// from the key `from` on, in key order.
    fn objects_under<'a>(
        &'a self,
        prefix: &str,
        from: &str,
    ) -> std::collections::btree_map::Range<'a, String, Arc<Encoded>> {
        let end = String::from_utf8_lossy(&store::prefix_end(prefix)).into_owned();
        self.objects
            .range::<str, _>((std::ops::Bound::Included(from), std::ops::Bound::Excluded(end.as_str())))
    }

    /// Apply a put of `new` (None: a delete) of `key` at `revision`: the
    /// object the hub held becomes the change's previous state, the change
    /// joins the window (pushing its oldest out past [`WINDOW`]), and the
    /// change [`PACK_AFTER`] behind it is to be packed.
    fn apply(&mut self, revision: i64, key: String, new: Option<Arc<Encoded>>, created: bool) -> Arc<Change> {
        let mut new = new;
        if let (Some(obj), Some(prev)) = (new.as_mut().and_then(Arc::get_mut), self.objects.get(&key)) {
            obj.share_labels(prev);
        }
        let old = match &new {
            Some(obj) => self.objects.insert(key.clone(), obj.clone()),
            None => self.objects.remove(&key),
        };
        let c = Arc::new(Change::new(revision, key, new, old, created));
        self.synced = self.synced.max(revision);
        self.window.push_back(c.clone());
        if self.window.len() > WINDOW {
            if let Some(evicted) = self.window.pop_front() {
                self.covered_from = evicted.revision;
            }
        }
        if let Some(behind) = self.window.len().checked_sub(PACK_AFTER + 1) {
            self.to_pack.extend(self.window.get(behind).cloned());
        }
        c
    }
}

/// etcd's periodic progress notifications (`--experimental-watch-progress-notify-interval`)
/// as the hubs see them: how often an idle hub gets one, and when one last came.
/// The interval is measured over [`PERIODIC_RUN`] notifications in a row of
/// one hub without events between them: a busy hub task can take two at
/// once, which makes one gap look like nothing and the next like two.
#[derive(Default)]
struct PeriodicProgress {
    /// The last measured interval, in µs (0: none yet).
    interval_us: std::sync::atomic::AtomicU64,
    /// When any hub last got a notification, in µs since [`epoch`].
    last_us: std::sync::atomic::AtomicU64,
}

/// Gaps in a row an interval is measured over. Correctness never depends on
/// the estimate: one too short only makes a list give up waiting early, one
/// too long only sends more lists to etcd.
const PERIODIC_RUN: u32 = 4;

/// The clock [`PeriodicProgress`] counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl PeriodicProgress {
    /// A periodic notification came; `interval` when a hub's run of them measured one.
    fn seen(&self, interval: Option<Duration>) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(interval) = interval {
            self.interval_us.store(interval.as_micros().max(1) as u64, Relaxed);
        }
        self.last_us.store(epoch().elapsed().as_micros() as u64, Relaxed);
    }

    /// etcd's interval, while notifications keep coming (an idle hub that
    /// asked for them gets one every interval).
    fn interval(&self) -> Option<Duration> {
        use std::sync::atomic::Ordering::Relaxed;
        let interval = Duration::from_micros(self.interval_us.load(Relaxed));
        let last = Duration::from_micros(self.last_us.load(Relaxed));
        // Only hubs of large collections get them, and a busy hub gets none.
        let fresh = epoch().elapsed().saturating_sub(last) < Duration::from_secs(60);
        (!interval.is_zero() && fresh).then_some(interval)
    }
}

/// One hub's run of periodic notifications without events between them.
#[derive(Default)]
struct PeriodicRun {
    /// The run's first notification, and how many came after it.
    first: Option<(Instant, u32)>,
}

impl PeriodicRun {
    /// A notification came at `now`: the mean gap once the run is long enough.
    fn notified(&mut self, now: Instant) -> Option<Duration> {
        match &mut self.first {
            None => {
                self.first = Some((now, 0));
                None
            }
            Some((start, n)) => {
                *n += 1;
                if *n < PERIODIC_RUN {
                    return None;
                }
                let mean = (now - *start) / *n;
                self.first = Some((now, 0));
                Some(mean)
            }
        }
    }

    /// An event came: the run is broken.
    fn broken(&mut self) {
        self.first = None;
    }
}

/// How long a consistent list of `objects` waits for a periodic progress
/// notification that comes every `interval`, if waiting (half the interval
/// on average) is cheaper than reading them from etcd; None: read etcd.
fn periodic_wait(interval: Duration, objects: impl FnOnce(usize) -> usize) -> Option<Duration> {
    if interval > PERIODIC_USABLE {
        return None;
    }
    let needed = ((interval / 2).as_micros() / ETCD_READ_PER_OBJECT.as_micros()) as usize;
    // A hub that just had an event gets its notification one interval after
    // the next tick (up to two intervals); the rest is margin for a busy etcd.
    (objects(needed) >= needed).then_some(interval * 3)
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
    /// Shared by every hub of the server.
    periodic: Arc<PeriodicProgress>,
    /// Objects this server wrote, encoded by the writer ([`WatchCache::written`]).
    handoff: Mutex<Handoff>,
}

/// Writes the server made itself, handed to the hub so that it need not
/// decode from etcd what the writer had at hand. A writer encodes its
/// object once (the JSON its client is answered with, when it asked for
/// JSON) and the hub takes it when etcd reports that key at that revision;
/// anything else (a write by another server, one handed over late) the hub
/// decodes as before.
struct Handoff {
    /// The newest revision the hub has looked for: a write at or below it
    /// is not kept (the hub has passed it and would never take it).
    seen: i64,
    /// By key: the write's revision, whether it created the key, and its
    /// encoding.
    puts: HashMap<String, Handed>,
}

struct Handed {
    revision: i64,
    created: bool,
    /// Written with the watch line of the change's usual type.
    object: Arc<Encoded>,
}

/// Writes kept for the hub at most: a hub that stopped taking them (it is
/// replaced after a failure) holds no more than this.
const HANDOFF_MAX: usize = 4_096;

impl Handoff {
    /// Keep a write for the hub, unless the hub has passed its revision.
    fn put(&mut self, key: &str, h: Handed) {
        if h.revision > self.seen && self.puts.len() < HANDOFF_MAX {
            self.puts.insert(key.to_string(), h);
        }
    }

    /// The write of `key` at `revision`, if the writer handed it over as
    /// the change etcd reports (created or not). Called for every change
    /// the hub applies, in revision order, under the lock writers take.
    fn take(&mut self, key: &str, revision: i64, created: Option<bool>) -> Option<Handed> {
        self.seen = self.seen.max(revision);
        let h = self.puts.remove(key)?;
        if h.revision > revision {
            // A later write of the key, ahead of this change.
            self.puts.insert(key.to_string(), h);
            return None;
        }
        (h.revision == revision && Some(h.created) == created).then_some(h)
    }
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
    pub items: Arc<Vec<(String, Arc<Encoded>)>>,
    /// Index of the first item to serve.
    pub offset: usize,
}

/// The rest of a paginated list, kept for its `continue` token.
struct Continuation {
    prefix: String,
    revision: i64,
    items: Arc<Vec<(String, Arc<Encoded>)>>,
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
    /// etcd's periodic progress notifications, as the hubs see them.
    periodic: Arc<PeriodicProgress>,
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
        let objects_len = page.items.len();
        let objects = page
            .items
            .into_iter()
            .map(|(k, s)| {
                let json = Bytes::from(object_json(&s.object));
                (k, Arc::new(Encoded::new(r, &s.object, json)))
            })
            .collect();
        // etcd's periodic progress notifications cost it and the server a
        // message per hub every interval (30 idle hubs at 100 ms: about 8 % of
        // a core together); only hubs of collections whose consistent lists
        // may wait for them ask for them.
        let periodic = objects_len >= PERIODIC_FROM;
        let stream = store.watch_new_values(&key, start + 1, periodic).await.ok()?;
        let (tx, _) = broadcast::channel(FANOUT);
        let hub = Arc::new(Hub {
            resource: r,
            state: Mutex::new(HubState {
                covered_from: start,
                window: VecDeque::new(),
                alive: true,
                objects,
                synced: start,
                complete: true,
                to_pack: Vec::new(),
            }),
            tx,
            synced: watch::Sender::new(start),
            progress: Notify::new(),
            progress_in_order,
            periodic: self.periodic.clone(),
            handoff: Mutex::new(Handoff {
                seen: start,
                puts: HashMap::new(),
            }),
        });
        let mut hubs = self.hubs.lock().expect("hubs");
        if let Some(h) = hubs.get(&key) {
            return Some(h.clone());
        }
        hubs.insert(key, hub.clone());
        tokio::spawn(run_hub(hub.clone(), store.clone(), stream, start, periodic));
        Some(hub)
    }

    /// Whether etcd's requested progress notifications can be believed
    /// (false until a hub has asked etcd its version).
    pub fn progress_in_order(&self) -> bool {
        self.progress_in_order.get().copied().unwrap_or(false)
    }

    /// The hub of `r` if one was started (it may have stopped since).
    fn running(&self, r: &'static Resource) -> Option<Arc<Hub>> {
        self.hubs
            .lock()
            .expect("hubs")
            .get(&store::collection_prefix(r, None))
            .cloned()
    }

    /// This server wrote `object` (as stored, at `revision`) under `key`:
    /// if the resource's hub is running, `object` is encoded for it here and
    /// handed over (see [`Handoff`]). Returns the object's JSON as a list
    /// item is written ([`object_json`]), which a JSON answer can reuse.
    pub fn written(
        &self,
        r: &'static Resource,
        key: &str,
        revision: i64,
        created: bool,
        object: &Value,
    ) -> Option<Bytes> {
        let hub = self.running(r)?;
        if !hub.state.lock().expect("hub state").alive {
            return None;
        }
        let encoded = Encoded::with_line(hub.resource, object, put_type(created));
        let json = encoded.json();
        hub.handoff.lock().expect("handoff").put(
            key,
            Handed {
                revision,
                created,
                object: Arc::new(encoded),
            },
        );
        json
    }

    /// The object at `key` as the live hub of `r` holds it, if there is one
    /// (no hub is started for this): a guess at etcd's current state, which
    /// may be behind it.
    pub fn cached(&self, r: &'static Resource, key: &str) -> Option<store::Stored> {
        let hub = self.running(r)?;
        let st = hub.state.lock().expect("hub state");
        if !st.alive || !st.complete {
            return None;
        }
        let held = st.objects.get(key)?.clone();
        drop(st);
        held.stored()
    }

    /// What `read` takes of `r`'s hub once the hub has applied every change
    /// up to `min_revision`: what admission reads, as Kubernetes' admission
    /// plugins read informers. Starts the hub if there is none; None when
    /// it is behind `min_revision` or cannot serve (the caller reads etcd).
    async fn current<T>(
        &self,
        store: &Store,
        r: &'static Resource,
        min_revision: i64,
        read: impl FnOnce(&HubState) -> T,
    ) -> Option<T> {
        let hub = self.hub(store, r).await?;
        let st = hub.state.lock().expect("hub state");
        (st.alive && st.complete && st.synced >= min_revision).then(|| read(&st))
    }

    /// The object at `key`, by [`WatchCache::current`]'s rule; None also
    /// when the hub does not hold it.
    pub async fn current_object(
        &self,
        store: &Store,
        r: &'static Resource,
        key: &str,
        min_revision: i64,
    ) -> Option<store::Stored> {
        let held = self
            .current(store, r, min_revision, |st| st.objects.get(key).cloned())
            .await??;
        held.stored()
    }

    /// The objects under `prefix` (a collection or one namespace of it), by
    /// [`WatchCache::current`]'s rule.
    pub async fn current_list(
        &self,
        store: &Store,
        r: &'static Resource,
        prefix: &str,
        min_revision: i64,
    ) -> Option<Vec<store::Stored>> {
        let held: Vec<Arc<Encoded>> = self
            .current(store, r, min_revision, |st| {
                st.objects_under(prefix, prefix).map(|(_, v)| v.clone()).collect()
            })
            .await?;
        held.iter().map(|e| e.stored()).collect()
    }

    /// Subscribe to `r`'s changes after `revision`, if a live hub covers it.
    pub async fn subscribe(&self, store: &Store, r: &'static Resource, revision: i64) -> Option<Subscription> {
        let hub = self.hub(store, r).await?;
        let st = hub.state.lock().expect("hub state");
        if !st.alive || revision < st.covered_from {
            return None;
        }
        let replay = st.window.iter().filter(|c| c.revision > revision).cloned().collect();
        let live = hub.tx.subscribe();
        drop(st);
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
        // Without believable requested progress, only events and etcd's
        // periodic notifications move the hub: wait for them where that is
        // cheaper than reading etcd, else etcd answers at once.
        let mut wait = LIST_WAIT;
        if at == ListAt::Latest && !hub.progress_in_order && *hub.synced.borrow() < target {
            wait = periodic_wait(self.periodic.interval()?, |needed| {
                let st = hub.state.lock().expect("hub state");
                st.objects_under(prefix, prefix).take(needed).count()
            })?;
        }
        // One exact revision (a page after one etcd served, or
        // `resourceVersionMatch=Exact`) is served only by a hub standing at
        // it: waiting would pass it by, or wait for a revision a resource
        // nobody writes never reaches, while etcd reads any at once.
        if matches!(at, ListAt::Exact(rev) if rev != *hub.synced.borrow()) {
            return None;
        }
        if !hub.wait_synced(target, wait).await {
            tracing::debug!(resource = r.plural, target, "watch cache behind; listing from etcd");
            return None;
        }
        let st = hub.state.lock().expect("hub state");
        if !st.alive || !st.complete || matches!(at, ListAt::Exact(rev) if rev != st.synced) {
            return None;
        }
        let from = if start.is_empty() { prefix } else { start };
        let items: Vec<(String, Arc<Encoded>)> = st
            .objects_under(prefix, from)
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
    /// Wait (up to `limit`) until every change up to `target` is applied.
    async fn wait_synced(&self, target: i64, limit: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        if *rx.borrow_and_update() >= target {
            return true;
        }
        let deadline = tokio::time::Instant::now() + limit;
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

/// One event of the hub's etcd watch, decoded and encoded outside its lock.
enum Arrived {
    /// A put, written with the line of its usual type (ADDED or MODIFIED).
    Put {
        object: Arc<Encoded>,
        created: bool,
    },
    Delete,
    /// A value that does not decode.
    Undecodable,
}

/// The usual type of a put's watch line: ADDED when it created its key.
fn put_type(created: bool) -> &'static str {
    if created {
        "ADDED"
    } else {
        "MODIFIED"
    }
}

/// Apply the watch's events to the hub and fan them out, until the watch
/// ends. A hub watching without etcd's periodic progress notifications
/// watches again with them once the collection holds [`PERIODIC_FROM`] objects.
async fn run_hub(hub: Arc<Hub>, store: Store, stream: etcd_client::WatchStream, start: i64, mut periodic: bool) {
    let key = store::collection_prefix(hub.resource, None);
    let (mut sender, mut responses) = stream.split();
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    let mut last = start;
    let mut periodic_run = PeriodicRun::default();
    let mut packer = Packer::default();
    // The first list's objects are in no watcher's fan-out: held deflated
    // from the start.
    let first: Vec<Arc<Encoded>> = hub.state.lock().expect("hub state").objects.values().cloned().collect();
    for object in first {
        object.pack(&mut packer);
    }
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
                    if resp.created() {
                        continue;
                    }
                    // A requested notification (watch id -1) from an etcd
                    // that may send it early is not believed; the periodic
                    // one on this watch is. Watchers hear of periodic ones
                    // through the ticker's bookmarks only (they can come
                    // every 100 ms).
                    let requested = resp.watch_id() == -1;
                    if !requested {
                        hub.periodic.seen(periodic_run.notified(Instant::now()));
                    }
                    if hub.progress_in_order || !requested {
                        let rev = resp.header().map(|h| h.revision()).unwrap_or(last).max(last);
                        let mut st = hub.state.lock().expect("hub state");
                        st.synced = st.synced.max(rev);
                        hub.synced.send_replace(st.synced);
                        if requested {
                            let _ = hub.tx.send(HubEvent::Progress(rev));
                        }
                    }
                    continue;
                }
                periodic_run.broken();
                // Decoded and encoded outside the lock; each change's
                // previous state is what the hub held, taken under it.
                let mut arrived = Vec::with_capacity(resp.events().len());
                // What this server's writers handed over, taken in one go.
                // etcd sends the watch event and the write's answer at the
                // same moment; the writer hands its object over once its
                // task runs. Letting the tasks already woken run first makes
                // that come before this (in the scheduler benchmark, 21 % of
                // changes were handed over without it, 94 % with it).
                tokio::task::yield_now().await;
                let handed: Vec<Option<Handed>> = {
                    let mut handoff = hub.handoff.lock().expect("handoff");
                    resp.events()
                        .iter()
                        .map(|ev| {
                            let kv = ev.kv()?;
                            let key = std::str::from_utf8(kv.key()).ok()?;
                            let created = (ev.event_type() == EventType::Put)
                                .then(|| kv.create_revision() == kv.mod_revision());
                            handoff.take(key, kv.mod_revision(), created)
                        })
                        .collect()
                };
                for (ev, handed) in resp.events().iter().zip(handed) {
                    let Some(kv) = ev.kv() else { continue };
                    let rev = kv.mod_revision();
                    last = last.max(rev);
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let what = match (ev.event_type(), handed) {
                        (EventType::Delete, _) => Arrived::Delete,
                        (EventType::Put, Some(h)) => Arrived::Put {
                            object: h.object,
                            created: h.created,
                        },
                        (EventType::Put, None) => match decode(kv.key(), kv.value(), rev) {
                            Ok(object) => {
                                let created = kv.create_revision() == rev;
                                let new = Encoded::with_line(hub.resource, &object, put_type(created));
                                Arrived::Put {
                                    object: Arc::new(new),
                                    created,
                                }
                            }
                            Err(_) => Arrived::Undecodable,
                        },
                    };
                    arrived.push((rev, key, what));
                }
                let (rewatch_after, to_pack) = {
                    let mut st = hub.state.lock().expect("hub state");
                    for (revision, key, what) in arrived {
                        let c = match what {
                            Arrived::Put { object, created } => st.apply(revision, key, Some(object), created),
                            Arrived::Delete => st.apply(revision, key, None, false),
                            Arrived::Undecodable => {
                                // Lists go to etcd, which reports it.
                                st.complete = false;
                                st.objects.remove(&key);
                                st.synced = st.synced.max(revision);
                                continue;
                            }
                        };
                        let _ = hub.tx.send(HubEvent::Change(c));
                    }
                    hub.synced.send_replace(st.synced);
                    let rewatch = (!periodic && st.objects.len() >= PERIODIC_FROM).then_some(st.synced);
                    (rewatch, std::mem::take(&mut st.to_pack))
                };
                for c in to_pack {
                    c.pack(&mut packer);
                }
                if let Some(after) = rewatch_after {
                    // Everything up to `after` is applied: the new watch
                    // starts after it, and the old one ends when dropped.
                    match store.watch_new_values(&key, after + 1, true).await {
                        Ok(stream) => (sender, responses) = stream.split(),
                        Err(_) => break,
                    }
                    periodic = true;
                    periodic_run.broken();
                }
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
    use super::{
        decode, periodic_wait, progress_in_order, store, Bytes, Change, DeletedLine, Encoded, FieldValues, Handed,
        Handoff, HubState, Packed, Packer, PeriodicProgress, PeriodicRun, DICTIONARY_MAX, HANDOFF_MAX, PACK_AFTER,
        PERIODIC_RUN, WINDOW,
    };
    use crate::meta::json::{json_watch_event, object_json};
    use crate::meta::selectors::{FieldSelector, LabelSelector};
    use serde_json::{json, Value};
    use std::collections::{BTreeMap, HashMap, VecDeque};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn pods() -> &'static crate::kinds::Resource {
        crate::kinds::builtin("", "Pod").expect("pods").resource()
    }

    fn pod(rv: i64, phase: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv.to_string(), "labels": {"app": "web"}},
            "status": {"phase": phase},
        })
    }

    fn encoded(v: &Value) -> Arc<Encoded> {
        Arc::new(Encoded::new(pods(), v, object_json(v).into()))
    }

    fn change(revision: i64, new: Option<Value>, old: Option<Value>, created: bool) -> Change {
        Change::new(
            revision,
            "/registry/core/pods/shop/web".into(),
            new.as_ref().map(encoded),
            old.as_ref().map(encoded),
            created,
        )
    }

    fn empty_hub() -> HubState {
        HubState {
            covered_from: 0,
            window: VecDeque::new(),
            alive: true,
            objects: BTreeMap::new(),
            synced: 0,
            complete: true,
            to_pack: Vec::new(),
        }
    }

    /// An object held encoded decodes to itself, and answers label and
    /// field selectors as the decoded object does, without being decoded;
    /// a field it does not keep leaves the answer to the caller.
    #[test]
    fn an_object_held_encoded_answers_selectors_as_the_decoded_object() {
        let mut obj = pod(5, "Running");
        obj["spec"] = json!({"nodeName": "node-1", "hostname": "x"});
        let e = encoded(&obj);
        assert_eq!(e.decode(), Some(obj.clone()));
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
            let field = FieldSelector::parse(fields, pods()).expect("field selector");
            let want = label.matches(&obj) && field.matches(&obj);
            assert_eq!(e.matches(&label, &field), Some(want), "{labels:?} {fields:?}");
            assert_eq!(e.selected(&label, &field), want, "{labels:?} {fields:?}");
        }
        let unknown = FieldSelector(vec![("spec.hostname".into(), true, "x".into())]);
        assert_eq!(e.matches(&LabelSelector::default(), &unknown), None);
        assert!(e.selected(&LabelSelector::default(), &unknown), "decoded to answer");
    }

    /// What a writer hands the hub is what the hub would have decoded from
    /// etcd: the same JSON and the same watch line.
    #[test]
    fn a_handed_over_write_is_what_the_hub_would_decode() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "app", "labels": {"app": "web"},
                "managedFields": [{"manager": "m", "operation": "Update", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "100m"}}}], "terminationGracePeriodSeconds": 30},
            "status": {"phase": "Running", "podIP": "10.0.0.5"}});
        let key = b"/registry/core/pods/app/web-0";
        let stored = crate::storage::store::encode(key, &pod).expect("encodes");
        store::set_resource_version(&mut pod, 42);
        let decoded = decode(key, &stored, 42).expect("decodes");
        let r = &crate::kinds::pod::RESOURCE;
        for kind in ["ADDED", "MODIFIED"] {
            let handed = Encoded::with_line(r, &pod, kind);
            let read = Encoded::with_line(r, &decoded, kind);
            assert_eq!(handed.json(), read.json());
            assert_eq!(handed.line(kind), read.line(kind));
            assert_eq!(handed.fields.values, read.fields.values);
        }
    }

    /// The hub takes a handed-over write only for the change that made it
    /// (its key, revision, and whether it created the key), keeps a later
    /// write of the key for its own change, and drops one it has passed;
    /// a write at or below what the hub has seen is not kept at all.
    #[test]
    fn the_hub_takes_a_handed_over_write_only_for_its_own_change() {
        let r = &crate::kinds::pod::RESOURCE;
        let handed = |revision: i64, created: bool| {
            let obj = json!({"metadata": {"name": "a", "resourceVersion": revision.to_string()}});
            Handed {
                revision,
                created,
                object: Arc::new(Encoded::with_line(r, &obj, "MODIFIED")),
            }
        };
        let mut h = Handoff {
            seen: 10,
            puts: HashMap::new(),
        };
        h.put("k", handed(10, true));
        assert!(h.puts.is_empty(), "the hub has passed revision 10");
        h.put("k", handed(12, false));
        // An earlier change of the key (another server's write) leaves it.
        assert!(h.take("k", 11, Some(false)).is_none());
        assert!(h.puts.contains_key("k"));
        // Its own change takes it.
        assert_eq!(h.take("k", 12, Some(false)).map(|x| x.revision), Some(12));
        assert!(h.puts.is_empty());
        // A change that does not match (created, or a delete) drops it.
        h.put("k", handed(13, false));
        assert!(h.take("k", 13, Some(true)).is_none());
        assert!(h.puts.is_empty());
        h.put("k", handed(14, false));
        assert!(h.take("k", 15, None).is_none());
        assert!(h.puts.is_empty());
        assert_eq!(h.seen, 15);
        // Bounded.
        for i in 0..HANDOFF_MAX + 10 {
            h.put(&format!("k{i}"), handed(100 + i as i64, true));
        }
        assert_eq!(h.puts.len(), HANDOFF_MAX);
    }

    /// A put is written once: its object's JSON is the list item's JSON and
    /// a part of the watch line, which is the line the object's event is
    /// written as. A put whose usual type was guessed wrong gets its own line.
    #[test]
    fn a_put_is_written_once_as_its_watch_line_and_its_object() {
        let obj = pod(7, "Running");
        for kind in ["ADDED", "MODIFIED"] {
            let e = Encoded::with_line(pods(), &obj, kind);
            let line = e.line(kind).expect("a line");
            assert_eq!(line, json_watch_event(kind, &obj), "{kind}");
            let json = e.json().expect("json");
            assert_eq!(&json[..], &object_json(&obj)[..], "{kind}");
            let within = line.as_ptr() as usize..line.as_ptr() as usize + line.len();
            assert!(within.contains(&(json.as_ptr() as usize)), "{kind}: a part of the line");
        }
        let e = Arc::new(Encoded::with_line(pods(), &obj, "MODIFIED"));
        let line = e.line("MODIFIED").expect("a line");
        let modified = Change::new(7, "k".into(), Some(e.clone()), Some(encoded(&pod(5, "Pending"))), false);
        let sent = modified.line().expect("a line");
        assert_eq!(sent.as_ptr(), line.as_ptr(), "the very buffer written on arrival");
        // A put of a key the hub did not hold is ADDED, not MODIFIED.
        let unknown = Change::new(7, "k".into(), Some(e), None, false);
        assert_eq!(unknown.line(), Some(json_watch_event("ADDED", &obj)));
    }

    /// A delete is sent with the last state stamped at the deletion's
    /// revision (as Kubernetes' watch cache sends it), line and event alike.
    #[test]
    fn a_delete_carries_the_last_state_at_the_deletion_revision() {
        let deleted = change(9, None, Some(pod(7, "Running")), false);
        let (kind, object) = deleted.event(&|_| true).expect("an event");
        assert_eq!(kind, "DELETED");
        assert_eq!(object["metadata"]["resourceVersion"], "9");
        assert_eq!(deleted.line(), Some(json_watch_event("DELETED", &object)));
        assert!(change(3, None, None, false).line().is_none(), "nothing to send");
    }

    /// The hub's objects, its changes and the changes after them share one
    /// buffer per version of an object; the window keeps its newest
    /// [`WINDOW`] changes and says from which revision on it covers them.
    #[test]
    fn a_version_of_an_object_is_one_buffer_and_the_window_is_bounded() {
        let mut hub = empty_hub();
        let key = "/registry/core/pods/shop/web".to_string();
        let first = hub.apply(5, key.clone(), Some(encoded(&pod(5, "Pending"))), true);
        let second = hub.apply(7, key.clone(), Some(encoded(&pod(7, "Running"))), false);
        let kept = |c: &Change| c.new.clone().expect("a new state");
        assert!(Arc::ptr_eq(second.old.as_ref().expect("previous"), &kept(&first)));
        assert!(Arc::ptr_eq(&hub.objects[&key], &kept(&second)));
        let gone = hub.apply(9, key.clone(), None, false);
        assert!(Arc::ptr_eq(gone.old.as_ref().expect("previous"), &kept(&second)));
        assert!(hub.objects.is_empty());
        assert_eq!((hub.synced, hub.covered_from, hub.window.len()), (9, 0, 3));
        for rev in 10..(10 + WINDOW as i64) {
            hub.apply(
                rev,
                format!("/registry/core/pods/shop/p{rev}"),
                Some(encoded(&pod(rev, "Running"))),
                true,
            );
        }
        assert_eq!(hub.window.len(), WINDOW);
        assert_eq!(hub.covered_from, 9, "changes up to 9 left the window");
        assert_eq!(hub.window.front().map(|c| c.revision), Some(10));
    }

    /// A version written [`PACK_AFTER`] changes ago is held deflated, still
    /// current or superseded since, and still reads back as written (JSON,
    /// watch line, decoded, a delete's last state); what the newer changes
    /// wrote stays as written, and a delete that far behind no longer keeps
    /// its line.
    #[test]
    fn versions_written_long_ago_are_held_deflated_and_read_back_the_same() {
        let mut hub = empty_hub();
        let mut packer = Packer::default();
        let mut pack = |hub: &mut HubState| {
            for c in std::mem::take(&mut hub.to_pack) {
                c.pack(&mut packer);
            }
        };
        let key = "/registry/core/pods/shop/web".to_string();
        let first = pod(5, "Pending");
        let created = hub.apply(
            5,
            key.clone(),
            Some(Arc::new(Encoded::with_line(pods(), &first, "ADDED"))),
            true,
        );
        let updated = hub.apply(7, key.clone(), Some(encoded(&pod(7, "Running"))), false);
        let gone = hub.apply(8, key.clone(), None, false);
        let deleted_line = gone.line().expect("a DELETED line");
        let other = |rev: i64| format!("/registry/core/pods/shop/p{rev}");
        let mut rev = 10;
        let mut another = |hub: &mut HubState| {
            hub.apply(rev, other(rev), Some(encoded(&pod(rev, "Running"))), true);
            pack(hub);
            rev += 1;
        };
        for _ in 0..PACK_AFTER - 3 {
            another(&mut hub);
        }
        let held = |c: &Change| c.new.clone().expect("a new state");
        assert!(!held(&created).packed(), "written less than PACK_AFTER changes ago");
        // The create falls PACK_AFTER behind: the version it wrote is packed.
        another(&mut hub);
        assert!(held(&created).packed());
        assert!(!held(&updated).packed(), "its update is not that far behind yet");
        assert_eq!(held(&created).json(), Some(Bytes::from(object_json(&first))));
        assert_eq!(held(&created).decode(), Some(first.clone()));
        assert_eq!(created.line(), Some(json_watch_event("ADDED", &first)));
        // Then the update, and the delete: its last state is packed, its
        // line written anew.
        another(&mut hub);
        assert!(held(&updated).packed());
        assert!(matches!(
            *gone.deleted_line.lock().expect("line"),
            DeletedLine::Written(_)
        ));
        another(&mut hub);
        assert_eq!(gone.line(), Some(deleted_line.clone()));
        assert!(matches!(*gone.deleted_line.lock().expect("line"), DeletedLine::Dropped));
        assert_eq!(
            gone.event(&|_| true).map(|(_, o)| json_watch_event("DELETED", &o)),
            Some(deleted_line)
        );
        // Current objects written PACK_AFTER changes ago are packed and read
        // back as written; what the newest changes wrote is not packed.
        for _ in 0..5 {
            another(&mut hub);
        }
        let oldest = &hub.objects[&other(10)];
        assert!(oldest.packed());
        assert_eq!(oldest.decode(), Some(pod(10, "Running")));
        let newest = hub.window.iter().rev().take(PACK_AFTER);
        assert!(newest.filter_map(|c| c.new.as_ref()).all(|e| !e.packed()));
        assert_eq!(
            hub.objects.values().filter(|e| e.packed()).count(),
            hub.objects.len() - PACK_AFTER,
            "every current object but the newest PACK_AFTER"
        );
    }

    /// Deflate and inflate give back any bytes, small or large (several
    /// rounds of the output buffer), compressible or not; the first object
    /// packed is the dictionary, against which a similar one takes a
    /// fraction of its size.
    #[test]
    fn packed_bytes_inflate_to_what_was_packed() {
        let mut packer = Packer::default();
        let mut noise = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        let first = object_json(&pod(1, "Pending"));
        let big = serde_json::to_vec(&json!({"items": vec![pod(1, "Running"); 2_000]})).expect("json");
        for bytes in [&first[..], b"", b"{}", &noise, &big] {
            let packed = packer.deflate(bytes).expect("deflates");
            assert_eq!(&packed.dictionary[..], &first[..], "the first object packed");
            assert_eq!(packed.inflate().as_deref(), Some(bytes), "{} bytes", bytes.len());
        }
        let mut next = pod(2, "Running");
        next["metadata"]["name"] = json!("web-2");
        let next = object_json(&next);
        let packed = packer.deflate(&next).expect("deflates");
        assert!(
            packed.data.len() * 4 < next.len(),
            "an object like the dictionary deflates to a fraction: {} of {} bytes",
            packed.data.len(),
            next.len()
        );
        let truncated = Packed {
            dictionary: packed.dictionary.clone(),
            data: packed.data[..packed.data.len() / 2].into(),
            len: packed.len,
        };
        assert_eq!(truncated.inflate(), None, "truncated");
        let other = Packed {
            dictionary: Arc::from(&b"{}"[..]),
            data: packed.data.clone(),
            len: packed.len,
        };
        let shorter = Packed {
            dictionary: packed.dictionary.clone(),
            data: packed.data.clone(),
            len: packed.len - 1,
        };
        assert_eq!(shorter.inflate(), None, "inflates to another length");
        assert_ne!(other.inflate().as_deref(), Some(&next[..]), "another dictionary");
        // A large first object gives its tail only.
        let packed = Packer::default().deflate(&big).expect("deflates");
        assert_eq!(&packed.dictionary[..], &big[big.len() - DICTIONARY_MAX..]);
        assert_eq!(packed.inflate().as_deref(), Some(&big[..]));
    }

    /// Versions of an object whose labels did not change share one map of
    /// them; a version with other labels keeps its own, and each version
    /// still answers selectors by its own labels and fields.
    #[test]
    fn versions_with_the_same_labels_share_them() {
        let mut hub = empty_hub();
        let key = "/registry/core/pods/shop/web".to_string();
        let first = hub.apply(5, key.clone(), Some(encoded(&pod(5, "Pending"))), true);
        let second = hub.apply(7, key.clone(), Some(encoded(&pod(7, "Running"))), false);
        let mut relabeled = pod(9, "Running");
        relabeled["metadata"]["labels"]["tier"] = json!("front");
        let third = hub.apply(9, key.clone(), Some(encoded(&relabeled)), false);
        let labels = |c: &Change| c.new.as_ref().expect("a new state").labels.clone();
        assert!(
            Arc::ptr_eq(&labels(&first), &labels(&second)),
            "unchanged labels are shared"
        );
        assert!(
            !Arc::ptr_eq(&labels(&second), &labels(&third)),
            "changed labels are not"
        );
        let tier = LabelSelector::parse("tier=front").expect("label selector");
        let running = FieldSelector::parse("status.phase=Running", pods()).expect("field selector");
        let any = LabelSelector::default();
        let held = |c: &Change| c.new.clone().expect("a new state");
        assert_eq!(held(&first).matches(&any, &running), Some(false));
        assert_eq!(held(&second).matches(&any, &running), Some(true));
        assert_eq!(held(&second).matches(&tier, &FieldSelector::default()), Some(false));
        assert_eq!(held(&third).matches(&tier, &running), Some(true));
    }

    /// Every selectable field is read back from the one buffer, empty and
    /// non-ASCII values included; a path that is not one of the resource's
    /// fields is not found.
    #[test]
    fn field_values_read_back_as_written() {
        let mut obj = pod(3, "Running");
        obj["metadata"]["name"] = json!("wéb-0");
        obj["spec"] = json!({"nodeName": "node-1", "hostNetwork": true});
        let f = FieldValues::of(pods(), &obj);
        for path in pods().field_labels.expect("pods have field labels") {
            assert_eq!(
                f.get(path),
                Some(crate::meta::selectors::field_value(&obj, path).as_str()),
                "{path}"
            );
        }
        assert_eq!(f.get("metadata.name"), Some("wéb-0"));
        assert_eq!(f.get("spec.nodeName"), Some("node-1"));
        assert_eq!(f.get("status.nominatedNodeName"), Some(""));
        assert_eq!(f.get("spec.hostname"), None);
    }

    /// A filtered watcher sees a change as Kubernetes' cacher shows it
    /// (leaving the selection is DELETED, entering it ADDED), and whenever
    /// its event type is the unfiltered one, the whole event is the same
    /// (so it may share the unfiltered line).
    #[test]
    fn filtered_watchers_see_selection_changes_and_share_what_is_the_same() {
        let field = FieldSelector::parse("status.phase=Running", pods()).expect("field selector");
        let label = LabelSelector::default();
        let running = |o: &Encoded| o.selected(&label, &field);
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
            let event = c.event(&running);
            assert_eq!(event.as_ref().map(|(k, _)| *k), kind, "revision {}", c.revision);
            if kind.is_some() && kind == c.event_kind(&|_| true) {
                assert_eq!(event, c.event(&|_| true), "revision {}", c.revision);
                let (k, o) = event.expect("an event");
                assert_eq!(c.line(), Some(json_watch_event(k, &o)), "revision {}", c.revision);
            }
        }
    }

    #[test]
    fn a_consistent_list_waits_for_periodic_progress_only_where_etcd_would_take_longer() {
        let every_100ms = Duration::from_millis(100);
        // Half of 100 ms is what 2,000 objects cost etcd.
        assert_eq!(
            periodic_wait(every_100ms, |needed| needed),
            Some(Duration::from_millis(300))
        );
        assert_eq!(periodic_wait(every_100ms, |needed| needed - 1), None);
        let mut asked = 0;
        let _ = periodic_wait(every_100ms, |needed| {
            asked = needed;
            0
        });
        assert_eq!(asked, 2_000);
        // Rarer notifications are not waited for at all (etcd's default is 10 minutes).
        assert_eq!(periodic_wait(Duration::from_secs(2), |_| usize::MAX), None);
    }

    #[test]
    fn etcd_s_interval_is_measured_over_a_run_of_an_idle_hub_s_notifications() {
        let p = PeriodicProgress::default();
        assert_eq!(p.interval(), None, "nothing seen yet");
        let mut run = PeriodicRun::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Four gaps of 100 ms, two of them taken at once by a busy hub task.
        let times = [0, 100, 290, 300, 400];
        for (i, ms) in times.iter().enumerate() {
            let measured = run.notified(at(*ms));
            assert_eq!(measured.is_some(), i == 4, "after {i} notifications");
            p.seen(measured);
        }
        assert_eq!(p.interval(), Some(Duration::from_millis(100)));
        // An event breaks the run: the gap across it measures nothing.
        run.broken();
        assert_eq!(run.notified(at(5_000)), None);
        for ms in 1..PERIODIC_RUN as u64 {
            assert_eq!(run.notified(at(5_000 + ms * 250)), None);
        }
        // A new interval (etcd restarted with another) replaces the old.
        p.seen(run.notified(at(5_000 + PERIODIC_RUN as u64 * 250)));
        assert_eq!(p.interval(), Some(Duration::from_millis(250)));
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
