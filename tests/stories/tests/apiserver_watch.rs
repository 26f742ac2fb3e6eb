//! Story: a controller watches objects through the API server. It resumes
//! from the last resourceVersion it saw after the API server restarts and
//! gets every change exactly once; a resourceVersion that etcd compacted
//! away is a 410 so it knows to relist; selectors turn objects leaving or
//! entering the selection into DELETED/ADDED; bookmarks and timeouts work.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use sluice_tests::ControlPlane;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"v": "0"}})).unwrap()
}

/// Watch parameters without bookmarks (so event counts are exact).
fn plain(timeout: u32) -> WatchParams {
    let mut wp = WatchParams::default().timeout(timeout);
    wp.bookmarks = false;
    wp
}

/// The resourceVersion of a list of the ConfigMaps: where a watch starts after it.
async fn list_rv(api: &Api<ConfigMap>) -> String {
    api.list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("a list's resourceVersion")
}

/// (type, name, resourceVersion) of each event, until `n` events or the stream ends.
async fn collect(api: &Api<ConfigMap>, wp: &WatchParams, rv: &str, n: usize) -> Vec<(String, String, String)> {
    let stream = api.watch(wp, rv).await.expect("watch starts");
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        let next = tokio::time::timeout_at(deadline, stream.try_next()).await;
        let ev = match next {
            Ok(Ok(Some(ev))) => ev,
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(e)) => panic!("watch failed: {e}"),
        };
        let (kind, obj) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(b) => {
                out.push(("BOOKMARK".into(), String::new(), b.metadata.resource_version));
                continue;
            }
            WatchEvent::Error(e) => {
                out.push(("ERROR".into(), e.reason.clone(), e.code.to_string()));
                continue;
            }
        };
        out.push((
            kind.into(),
            obj.metadata.name.unwrap_or_default(),
            obj.metadata.resource_version.unwrap_or_default(),
        ));
    }
    out
}

#[tokio::test]
async fn watch_resumes_after_apiserver_restart_without_missing_or_duplicating() {
    let mut cp = ControlPlane::start().await;
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    let rv0 = list_rv(&api).await;
    for i in 1..=5 {
        api.create(&PostParams::default(), &cm(&format!("x{i}"), json!({})))
            .await
            .unwrap();
    }
    let wp = plain(30);
    let first = collect(&api, &wp, &rv0, 5).await;
    let names: Vec<&str> = first.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(names, ["x1", "x2", "x3", "x4", "x5"], "{first:?}");
    assert!(first.iter().all(|e| e.0 == "ADDED"));
    let last_rv = first.last().unwrap().2.clone();

    cp.restart_apiserver().await;
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    for i in 6..=8 {
        api.create(&PostParams::default(), &cm(&format!("x{i}"), json!({})))
            .await
            .unwrap();
    }
    api.patch(
        "x1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .unwrap();
    api.delete("x2", &DeleteParams::default()).await.unwrap();

    let second = collect(&api, &wp, &last_rv, 5).await;
    let got: Vec<(&str, &str)> = second.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        got,
        [
            ("ADDED", "x6"),
            ("ADDED", "x7"),
            ("ADDED", "x8"),
            ("MODIFIED", "x1"),
            ("DELETED", "x2")
        ]
    );
    let rvs: Vec<i64> = first.iter().chain(&second).map(|e| e.2.parse().unwrap()).collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]),
        "resourceVersions must increase: {rvs:?}"
    );
    // Nothing more arrives (no duplicates).
    let quiet = collect(&api, &plain(2), &second.last().unwrap().2, 1).await;
    assert!(quiet.is_empty(), "{quiet:?}");
}

/// A watcher that resumes from before the watch cache's window (here: from
/// before an API server restart) is served from etcd, whose backlog comes in
/// one response: six ConfigMaps of 900 KB are over gRPC's default 4 MiB
/// limit, which failed that watch with a 500 on every retry, so such a
/// watcher never caught up.
#[tokio::test]
async fn a_watch_resuming_behind_the_cache_gets_a_backlog_of_many_megabytes() {
    let mut cp = ControlPlane::start().await;
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    let rv0 = list_rv(&api).await;
    let payload = "x".repeat(900_000);
    for i in 1..=6 {
        let big: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("big{i}")}, "data": {"v": payload}})).unwrap();
        api.create(&PostParams::default(), &big).await.unwrap();
    }
    cp.restart_apiserver().await;
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    let got = collect(&api, &plain(30), &rv0, 6).await;
    let events: Vec<(&str, &str)> = got.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        events,
        [
            ("ADDED", "big1"),
            ("ADDED", "big2"),
            ("ADDED", "big3"),
            ("ADDED", "big4"),
            ("ADDED", "big5"),
            ("ADDED", "big6")
        ],
        "{got:?}"
    );
}

#[tokio::test]
async fn compacted_resource_version_is_410_expired() {
    let cp = ControlPlane::start().await;
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({}))).await.unwrap();
    let old = api.list(&ListParams::default().limit(1)).await.unwrap();
    let old_rv = old.metadata.resource_version.clone().unwrap();
    let token = old.metadata.continue_.clone().expect("a continue token");
    for i in 0..3 {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    cp.etcd.compact_now();

    // Watch from the compacted revision: an ERROR event with a 410 Expired Status.
    let events = collect(&api, &plain(10), &old_rv, 1).await;
    assert_eq!(
        events,
        [("ERROR".to_string(), "Expired".to_string(), "410".to_string())]
    );

    // Paging with a token from before the compaction, and an exact read: 410 too.
    let raw = cp.raw().await;
    let r = raw
        .get(&format!(
            "/api/v1/namespaces/default/configmaps?limit=1&continue={token}"
        ))
        .await;
    assert_eq!(r.status, 410, "{}", r.text());
    assert_eq!(r.json()["reason"], "Expired");
    let r = raw
        .get(&format!(
            "/api/v1/namespaces/default/configmaps?resourceVersion={old_rv}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(r.status, 410, "{}", r.text());
}

#[tokio::test]
async fn selector_watch_sees_objects_leave_and_enter() {
    let cp = ControlPlane::start().await;
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    let rv = list_rv(&api).await;
    api.create(&PostParams::default(), &cm("web", json!({"app": "web"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("db", json!({"app": "db"})))
        .await
        .unwrap();
    let relabel = |app: &str| Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    api.patch("web", &PatchParams::default(), &relabel("db")).await.unwrap();
    api.patch("web", &PatchParams::default(), &relabel("web"))
        .await
        .unwrap();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("web", &DeleteParams::default()).await.unwrap();
    api.delete("db", &DeleteParams::default()).await.unwrap();

    let wp = plain(10).labels("app=web");
    let events = collect(&api, &wp, &rv, 5).await;
    let got: Vec<(&str, &str)> = events.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        got,
        [
            ("ADDED", "web"),
            ("DELETED", "web"),
            ("ADDED", "web"),
            ("MODIFIED", "web"),
            ("DELETED", "web")
        ]
    );
}

#[tokio::test]
async fn watch_without_version_starts_with_current_state_and_bookmarks_and_timeouts_work() {
    let cp = ControlPlane::start().await;
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    api.create(&PostParams::default(), &cm("existing", json!({})))
        .await
        .unwrap();

    // resourceVersion "0": current objects first, as ADDED.
    let mut wp = WatchParams::default().timeout(5);
    wp.bookmarks = false;
    let events = collect(&api, &wp, "0", 1).await;
    assert_eq!(events[0].0, "ADDED");
    assert_eq!(events[0].1, "existing");

    // Bookmarks arrive on an idle watch and carry a resourceVersion not older than the last event.
    let rv = events[0].2.clone();
    let started = tokio::time::Instant::now();
    let mut wp = WatchParams::default().timeout(10);
    wp.bookmarks = true;
    let events = collect(&api, &wp, &rv, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "BOOKMARK");
    assert!(events[0].2.parse::<i64>().unwrap() >= rv.parse::<i64>().unwrap());
    assert!(started.elapsed() < Duration::from_secs(8));

    // timeoutSeconds ends the stream.
    let started = tokio::time::Instant::now();
    let mut wp = WatchParams::default().timeout(1);
    wp.bookmarks = false;
    let stream = api.watch(&wp, &rv).await.unwrap();
    let n = stream.count().await;
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn many_watchers_share_one_stream_with_the_same_semantics() {
    let cp = ControlPlane::start().await;
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    let rv = list_rv(&api).await;
    // A first watcher starts the shared stream (live path).
    let live = {
        let api = api.clone();
        let rv = rv.clone();
        tokio::spawn(async move { collect(&api, &plain(20), &rv, 5).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.create(&PostParams::default(), &cm("web", json!({"app": "web"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("db", json!({"app": "db"})))
        .await
        .unwrap();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    api.delete("web", &DeleteParams::default()).await.unwrap();
    let live = live.await.unwrap();
    let kinds: Vec<(&str, &str)> = live.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("ADDED", "web"),
            ("ADDED", "db"),
            ("MODIFIED", "web"),
            ("MODIFIED", "web"),
            ("DELETED", "web")
        ]
    );

    // Later watchers from the same resourceVersion replay the same changes from memory.
    let replayed = collect(&api, &plain(5), &rv, 5).await;
    assert_eq!(replayed, live);
    // With a selector, the same changes become leave/enter events.
    let selected = collect(&api, &plain(5).labels("app=web"), &rv, 4).await;
    let kinds: Vec<(&str, &str)> = selected.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("ADDED", "web"),
            ("DELETED", "web"),
            ("ADDED", "web"),
            ("DELETED", "web")
        ]
    );
    // From the middle of the window: only what came after.
    let tail = collect(&api, &plain(5), &live[2].2, 2).await;
    assert_eq!(tail, live[3..].to_vec());
}
