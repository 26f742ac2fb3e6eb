//! Watch: a stream of ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events backed by
//! an etcd watch on the collection's key prefix.
//!
//! Semantics follow Kubernetes: watching from resourceVersion N sends every
//! change after N; without a resourceVersion (or "0") the current objects
//! are sent first as ADDED. With a selector, an object that stops matching
//! is sent as DELETED and one that starts matching as ADDED. A compacted
//! resourceVersion ends the stream with an ERROR event carrying a 410
//! Expired `Status`. Bookmarks come from etcd progress notifications.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::EventType;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::http::negotiation::Encoding;
use crate::kinds::{Kind, Resource};
use crate::registry::{ListQuery, Registry};
use crate::status::{ApiError, ApiResult};
use crate::storage::store::{self, decode};
use crate::storage::watch_cache::{Change, Encoded, HubEvent, Subscription};

/// How often bookmarks are requested when the client allows them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(2);

/// Parameters of a watch.
pub struct WatchRequest {
    /// Kind watched.
    pub kind: Kind,
    /// Its description.
    pub resource: &'static Resource,
    /// Namespace (None = all).
    pub namespace: Option<String>,
    /// Selectors.
    pub query: ListQuery,
    /// Start after this revision; None = send current state first.
    pub resource_version: Option<i64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents` (ends the initial state with a marked bookmark).
    pub send_initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Wrap each object with this function (Table rendering, PartialObjectMetadata), if set.
    pub wrap: Option<Wrap>,
    /// Also wrap BOOKMARK objects (PartialObjectMetadata, as Kubernetes converts them too).
    pub wrap_bookmarks: bool,
    /// JSON lines or protobuf frames.
    pub encoding: Encoding,
}

/// A function applied to every object a watch sends (e.g. rendering it as a Table row).
pub type Wrap = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

struct Emitter {
    tx: mpsc::Sender<Bytes>,
    wrap: Option<Wrap>,
    wrap_bookmarks: bool,
    encoding: Encoding,
}

impl Emitter {
    async fn send(&self, kind: &str, object: Value) -> bool {
        let object = match (&self.wrap, kind) {
            (Some(w), "ADDED" | "MODIFIED" | "DELETED") => w(&object),
            (Some(w), "BOOKMARK") if self.wrap_bookmarks => w(&object),
            _ => object,
        };
        self.tx
            .send(crate::http::wire::watch_event(self.encoding, kind, object))
            .await
            .is_ok()
    }
    /// Send a prepared change; false when the client went away.
    async fn deliver(&self, out: Option<Result<Bytes, (&'static str, Value)>>) -> bool {
        match out {
            None => true,
            Some(Ok(bytes)) => self.tx.send(bytes).await.is_ok(),
            Some(Err((kind, obj))) => self.send(kind, obj).await,
        }
    }
    async fn error(&self, e: ApiError) {
        let _ = self
            .tx
            .send(crate::http::wire::watch_event(self.encoding, "ERROR", e.to_status()))
            .await;
    }
}

/// Start a watch: returns the channel of encoded events, or an error to
/// return as the HTTP response (before any event is sent).
pub async fn start(reg: Arc<Registry>, req: WatchRequest) -> ApiResult<mpsc::Receiver<Bytes>> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let wrap_bookmarks = req.wrap_bookmarks;
    let encoding = req.encoding;
    let prefix = store::collection_prefix(req.kind.storage_resource(), req.namespace.as_deref());
    // Initial state, read at one revision.
    let mut initial = Vec::new();
    let start_rev = match req.resource_version {
        Some(rv) if !req.send_initial_events => rv,
        _ => {
            let mut q = req.query.clone();
            q.limit = 0;
            q.continue_token = None;
            q.exact_revision = None;
            let list = reg.list(&req.kind, req.namespace.as_deref(), &q).await?;
            initial = list["items"].as_array().cloned().unwrap_or_default();
            list["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        }
    };
    if req.resource_version.is_some() && !req.send_initial_events {
        // A resourceVersion etcd compacted away is 410 even if memory still has it.
        let end = store::prefix_end(&prefix);
        if let Err(e) = reg.store.range(prefix.as_bytes(), &end, start_rev.max(1), 1).await {
            if e.code == 410 {
                let em = Emitter {
                    tx,
                    wrap: None,
                    wrap_bookmarks,
                    encoding,
                };
                em.error(ApiError::expired(format!("too old resource version: {start_rev}")))
                    .await;
                return Ok(rx);
            }
            return Err(e);
        }
    }
    if let Some(sub) = reg
        .watch_cache
        .subscribe(&reg.store, req.kind.storage_resource(), start_rev)
        .await
    {
        tracing::debug!(
            resource = req.resource.plural,
            start_rev,
            replay = sub.replay.len(),
            "watch served from the cache"
        );
        tokio::spawn(run_shared(
            req,
            sub,
            prefix,
            start_rev,
            initial,
            Emitter {
                tx,
                wrap: None,
                wrap_bookmarks,
                encoding,
            },
        ));
        return Ok(rx);
    }
    let stream = reg.store.watch(&prefix, start_rev + 1).await?;
    tracing::debug!(
        resource = req.resource.plural,
        start_rev,
        "watch served by its own etcd watch"
    );
    tokio::spawn(run(
        reg,
        req,
        stream,
        start_rev,
        initial,
        Emitter {
            tx,
            wrap: None,
            wrap_bookmarks,
            encoding,
        },
    ));
    Ok(rx)
}

fn bookmark_object(r: &Resource, rev: i64, initial_end: bool) -> Value {
    let mut b =
        json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": {"resourceVersion": rev.to_string()}});
    if initial_end {
        b["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    b
}

/// Serve a watch from the shared fan-out.
async fn run_shared(
    req: WatchRequest,
    mut sub: Subscription,
    prefix: String,
    start_rev: i64,
    initial: Vec<Value>,
    mut em: Emitter,
) {
    em.wrap = req.wrap.clone();
    for obj in initial {
        if !em.send("ADDED", obj).await {
            return;
        }
    }
    if req.send_initial_events
        && req.bookmarks
        && !em
            .send("BOOKMARK", bookmark_object(req.resource, start_rev, true))
            .await
    {
        return;
    }
    // The shared pre-encoded line is JSON: protobuf watchers encode their own.
    let shares_lines = em.wrap.is_none() && req.encoding == Encoding::Json;
    let unfiltered = shares_lines && req.query.label.is_empty() && req.query.field.0.is_empty();
    let matches = |o: &Encoded| o.selected(&req.query.label, &req.query.field);
    let mut last = start_rev;
    let mut last_bookmark = start_rev;
    let deadline = req.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    // What a change means for this watcher: a shared pre-encoded line, an
    // event to encode, or nothing.
    let prepare = |c: &Arc<Change>| -> Option<Result<Bytes, (&'static str, Value)>> {
        if !c.key.starts_with(&prefix) {
            None
        } else if unfiltered {
            // Written once for every such watcher.
            c.line().map(Ok)
        } else if shares_lines {
            // A filtered watcher (a node's pods) mostly gets the very event
            // the unfiltered ones get: then it shares their line too.
            let kind = c.event_kind(&matches)?;
            if c.event_kind(&|_| true) == Some(kind) {
                c.line().map(Ok)
            } else {
                c.event(&matches).map(Err)
            }
        } else {
            c.event(&matches).map(Err)
        }
    };
    for c in std::mem::take(&mut sub.replay) {
        last = last.max(c.revision);
        if !em.deliver(prepare(&c)).await {
            return;
        }
    }
    loop {
        let sleep_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(sleep_until) => {
                if deadline.is_some() { return; }
            }
            _ = ticker.tick() => {
                if em.tx.is_closed() { return; }
            }
            ev = sub.live.recv() => match ev {
                Ok(HubEvent::Change(c)) => {
                    if c.revision <= last { continue; }
                    last = c.revision;
                    if !em.deliver(prepare(&c)).await { return; }
                }
                Ok(HubEvent::Progress(rev)) => {
                    if req.bookmarks && rev >= last_bookmark && rev >= last {
                        last_bookmark = rev;
                        if !em.send("BOOKMARK", bookmark_object(req.resource, rev, false)).await { return; }
                    }
                }
                // Hub stopped or this watcher fell too far behind: end the
                // stream; the client resumes from its last resourceVersion.
                Ok(HubEvent::Closed) | Err(_) => {
                    tracing::debug!(resource = req.resource.plural, "watch ends: hub closed or watcher lagged");
                    return;
                }
            }
        }
    }
}

async fn run(
    reg: Arc<Registry>,
    req: WatchRequest,
    stream: etcd_client::WatchStream,
    start_rev: i64,
    initial: Vec<Value>,
    mut em: Emitter,
) {
    em.wrap = req.wrap.clone();
    let (mut sender, mut responses) = stream.split();
    for obj in initial {
        if !em.send("ADDED", obj).await {
            return;
        }
    }
    let bookmark = |rev: i64, initial_end: bool| {
        let mut b = json!({"kind": req.resource.kind, "apiVersion": req.resource.api_version(), "metadata": {"resourceVersion": rev.to_string()}});
        if initial_end {
            b["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        b
    };
    if req.send_initial_events && req.bookmarks && !em.send("BOOKMARK", bookmark(start_rev, true)).await {
        return;
    }
    let deadline = req.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    let matches = |o: &Value| req.query.label.matches(o) && req.query.field.matches(o);
    let mut last_sent = start_rev;
    loop {
        let sleep_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(sleep_until) => {
                if deadline.is_some() { return; }
            }
            _ = ticker.tick() => {
                if em.tx.is_closed() { return; }
                if req.bookmarks {
                    if reg.watch_cache.progress_in_order() {
                        if sender.request_progress().await.is_err() {
                            em.error(ApiError::internal("watch progress request failed")).await;
                            return;
                        }
                    } else if !em.send("BOOKMARK", bookmark(last_sent, false)).await {
                        // An etcd that may answer before sending the events
                        // it covers: bookmark only what was sent.
                        return;
                    }
                }
            }
            msg = responses.message() => {
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => {
                        em.error(store::storage_error(e)).await;
                        return;
                    }
                };
                if resp.compact_revision() > 0 {
                    em.error(ApiError::expired(format!(
                        "too old resource version: {} ({})", start_rev, resp.compact_revision()
                    ))).await;
                    return;
                }
                if resp.canceled() {
                    em.error(ApiError::internal(format!("watch canceled: {}", resp.cancel_reason()))).await;
                    return;
                }
                if resp.events().is_empty() {
                    if !resp.created() && req.bookmarks {
                        let rev = resp.header().map(|h| h.revision()).unwrap_or(last_sent).max(last_sent);
                        if !em.send("BOOKMARK", bookmark(rev, false)).await { return; }
                        last_sent = rev;
                    }
                    continue;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let rev = kv.mod_revision();
                    last_sent = last_sent.max(rev);
                    let (kind, obj) = match ev.event_type() {
                        EventType::Put => {
                            let Ok(new) = decode(kv.key(), kv.value(), rev) else { continue };
                            let created = kv.create_revision() == kv.mod_revision();
                            let old = ev.prev_kv().and_then(|p| decode(p.key(), p.value(), p.mod_revision()).ok());
                            let new_match = matches(&new);
                            let old_match = !created && old.as_ref().is_some_and(&matches);
                            match (old_match, new_match) {
                                (_, true) if created => ("ADDED", new),
                                (true, true) => ("MODIFIED", new),
                                (false, true) => ("ADDED", new),
                                (true, false) => ("DELETED", new),
                                (false, false) => continue,
                            }
                        }
                        EventType::Delete => {
                            let Some(old) = ev.prev_kv().and_then(|p| decode(p.key(), p.value(), rev).ok()) else { continue };
                            if !matches(&old) { continue; }
                            ("DELETED", old)
                        }
                    };
                    if !em.send(kind, obj).await { return; }
                }
            }
        }
    }
}
