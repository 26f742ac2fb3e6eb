//! When each pod of a run was first seen `Running`: a watch on the run's
//! label, shared by the drivers that time pod starts (node, storage).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::Api;

/// Pod name → (first seen Running, its node).
pub type Seen = Arc<Mutex<HashMap<String, (Instant, String)>>>;

/// Watches the pods labelled `selector`; returns once the watch has listed
/// (so no later create is missed), with the map it fills and its task.
pub async fn watch_running(pods: Api<Pod>, selector: &str) -> anyhow::Result<(Seen, tokio::task::JoinHandle<()>)> {
    let seen: Seen = Default::default();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let map = seen.clone();
    let stream = watcher::watcher(pods, watcher::Config::default().labels(selector));
    let task = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(event)) = stream.try_next().await {
            let now = Instant::now();
            match event {
                Event::InitDone => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Apply(p) | Event::InitApply(p)
                    if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") =>
                {
                    let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                    map.lock()
                        .unwrap()
                        .entry(p.metadata.name.clone().unwrap_or_default())
                        .or_insert((now, node));
                }
                _ => {}
            }
        }
    });
    ready_rx.await?;
    Ok((seen, task))
}
