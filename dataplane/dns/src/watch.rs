//! Feeding the zone: kube reflectors on Services, EndpointSlices and Pods (the
//! same `kube::runtime` watchers the Service proxy uses), and a loop that
//! rebuilds the [`Snapshot`] after each burst of changes.
//!
//! The first snapshot is published only when all three caches are filled,
//! so a starting server never answers NXDOMAIN for a name it merely has not
//! heard of yet.

use crate::records::Snapshot;
use crate::server::Zone;
use crate::DnsError;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{info, warn};

/// How long to wait after a change for more before rebuilding.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Keep `zone` fed until a watch ends for good (an error) — run it beside
/// the server; it never returns `Ok`.
pub async fn feed(client: Client, zone: Arc<Zone>) -> Result<(), DnsError> {
    let wake = Arc::new(Notify::new());
    let (services, services_w) = reflector::store::<Service>();
    let (slices, slices_w) = reflector::store::<EndpointSlice>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let cfg = watcher::Config::default;
    let services_watch = reflector::reflector(
        services_w,
        watcher(Api::<Service>::all(client.clone()), cfg()).default_backoff(),
    );
    let slices_watch = reflector::reflector(
        slices_w,
        watcher(Api::<EndpointSlice>::all(client.clone()), cfg()).default_backoff(),
    );
    let pods_watch = reflector::reflector(pods_w, watcher(Api::<Pod>::all(client), cfg()).default_backoff());
    let watches = futures::future::join3(
        drive("services", services_watch, wake.clone()),
        drive("endpointslices", slices_watch, wake.clone()),
        drive("pods", pods_watch, wake.clone()),
    );
    let rebuild = async {
        for (what, store) in [
            ("services", services.wait_until_ready().await.is_ok()),
            ("endpointslices", slices.wait_until_ready().await.is_ok()),
            ("pods", pods.wait_until_ready().await.is_ok()),
        ] {
            if !store {
                return Err(DnsError::WatchEnded(what));
            }
        }
        loop {
            publish(&zone, &services, &slices, &pods);
            wake.notified().await;
            tokio::time::sleep(DEBOUNCE).await;
        }
    };
    tokio::select! {
        r = rebuild => r,
        _ = watches => Err(DnsError::WatchEnded("services/endpointslices/pods")),
    }
}

fn publish(zone: &Zone, services: &Store<Service>, slices: &Store<EndpointSlice>, pods: &Store<Pod>) {
    let started = Instant::now();
    let first = !zone.is_ready();
    let (s, e, p) = (services.state(), slices.state(), pods.state());
    let snapshot = Snapshot::build(
        s.iter().map(|x| x.as_ref()),
        e.iter().map(|x| x.as_ref()),
        p.iter().map(|x| x.as_ref()),
    );
    let services_count = snapshot.services.len();
    zone.set_snapshot(snapshot);
    let took_us = started.elapsed().as_micros() as u64;
    if first {
        info!(
            services = services_count,
            took_us, "cluster DNS caches filled; answering"
        );
    } else {
        tracing::debug!(services = services_count, took_us, "cluster DNS records rebuilt");
    }
}

async fn drive<K>(
    what: &'static str,
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    wake: Arc<Notify>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitApply(_)) => {}
            Ok(_) => wake.notify_one(),
            Err(e) => warn!(what, error = %e, "watch failed; retrying with back-off"),
        }
    }
}
