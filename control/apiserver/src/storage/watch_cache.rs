//! Shared watch fan-out: one etcd watch per resource, decoded once, fanned
//! out to every HTTP watch of that resource.
//!
//! Each [`Hub`] keeps the most recent changes of its resource in a window
//! (like Kubernetes' watch cache), so a client watching from a
//! resourceVersion inside the window is served from memory; anything older
//! (or any hub failure) falls back to a dedicated etcd watch, which also
//! reports compaction as 410 Expired. Replay from the window and the live
//! subscription are taken under one lock, so no change is missed or
//! delivered twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::EventType;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::kinds::Resource;
use crate::storage::store::{self, decode, Store};

/// Changes kept per resource for watchers that resume from a recent revision.
const WINDOW: usize = 20_000;
/// Live fan-out buffer per resource; a watcher further behind is disconnected
/// (it resumes from its last resourceVersion, usually from the window).
const FANOUT: usize = 8_192;
/// How often hubs ask etcd for progress (drives bookmarks).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// One change of one object, decoded once for every watcher.
#[derive(Debug)]
pub struct Change {
    /// etcd revision of the change (the object's new resourceVersion).
    pub revision: i64,
    /// The object's key.
    pub key: String,
    /// New state (None for deletes).
    pub new: Option<Value>,
    /// Previous state (None for creates), stamped with its own revision,
    /// or with the deletion revision for deletes.
    pub old: Option<Value>,
    /// Whether the key was created by this change.
    pub created: bool,
    /// Encoded `{"type":..,"object":..}` line for the unfiltered case, built once.
    pub line: OnceLock<Bytes>,
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
}

/// The fan-out of one resource.
pub struct Hub {
    state: Mutex<HubState>,
    tx: broadcast::Sender<HubEvent>,
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
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
}

impl WatchCache {
    /// Subscribe to `r`'s changes after `revision`, if a live hub covers it.
    /// Starts the hub on first use (from the current revision).
    pub async fn subscribe(&self, store: &Store, r: &'static Resource, revision: i64) -> Option<Subscription> {
        let key = store::collection_prefix(r, None);
        let hub = {
            let existing = self.hubs.lock().expect("hubs").get(&key).cloned();
            match existing {
                Some(h) => h,
                None => {
                    let start = store.current_revision().await.ok()?;
                    let stream = store.watch(&key, start + 1).await.ok()?;
                    let (tx, _) = broadcast::channel(FANOUT);
                    let hub = Arc::new(Hub {
                        state: Mutex::new(HubState {
                            covered_from: start,
                            window: VecDeque::new(),
                            alive: true,
                        }),
                        tx,
                    });
                    let mut hubs = self.hubs.lock().expect("hubs");
                    if let Some(h) = hubs.get(&key) {
                        h.clone()
                    } else {
                        hubs.insert(key.clone(), hub.clone());
                        tokio::spawn(run_hub(hub.clone(), stream, start));
                        hub
                    }
                }
            }
        };
        let st = hub.state.lock().expect("hub state");
        if !st.alive || revision < st.covered_from {
            if !st.alive {
                drop(st);
                let mut hubs = self.hubs.lock().expect("hubs");
                if hubs.get(&key).is_some_and(|h| Arc::ptr_eq(h, &hub)) {
                    hubs.remove(&key);
                }
            }
            return None;
        }
        let replay = st.window.iter().filter(|c| c.revision > revision).cloned().collect();
        Some(Subscription {
            replay,
            live: hub.tx.subscribe(),
        })
    }
}

async fn run_hub(hub: Arc<Hub>, stream: etcd_client::WatchStream, start: i64) {
    let (mut sender, mut responses) = stream.split();
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    let mut last = start;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
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
                    if !resp.created() {
                        let rev = resp.header().map(|h| h.revision()).unwrap_or(last).max(last);
                        let _st = hub.state.lock().expect("hub state");
                        let _ = hub.tx.send(HubEvent::Progress(rev));
                    }
                    continue;
                }
                let mut changes = Vec::with_capacity(resp.events().len());
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let rev = kv.mod_revision();
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let change = match ev.event_type() {
                        EventType::Put => Change {
                            revision: rev,
                            key,
                            new: decode(kv.key(), kv.value(), rev).ok(),
                            old: ev.prev_kv().and_then(|p| decode(p.key(), p.value(), p.mod_revision()).ok()),
                            created: kv.create_revision() == kv.mod_revision(),
                            line: OnceLock::new(),
                        },
                        EventType::Delete => Change {
                            revision: rev,
                            key,
                            new: None,
                            old: ev.prev_kv().and_then(|p| decode(p.key(), p.value(), rev).ok()),
                            created: false,
                            line: OnceLock::new(),
                        },
                    };
                    last = last.max(rev);
                    changes.push(Arc::new(change));
                }
                let mut st = hub.state.lock().expect("hub state");
                for c in changes {
                    st.window.push_back(c.clone());
                    if st.window.len() > WINDOW {
                        if let Some(old) = st.window.pop_front() {
                            st.covered_from = old.revision;
                        }
                    }
                    let _ = hub.tx.send(HubEvent::Change(c));
                }
            }
        }
    }
    hub.state.lock().expect("hub state").alive = false;
    let _ = hub.tx.send(HubEvent::Closed);
    tracing::warn!("watch hub stopped; watchers fall back to direct etcd watches until it restarts");
}
