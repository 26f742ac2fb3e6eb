//! Story: a user lists objects with label and field selectors, and a client
//! pages through a large collection while others write to it: every page
//! comes from the same snapshot.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sluice_tests::ControlPlane;

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn label_and_field_selectors() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let pods = "/api/v1/namespaces/default/pods";
    for (name, labels, node) in [
        ("web-1", json!({"app": "web", "tier": "front"}), "n1"),
        ("web-2", json!({"app": "web"}), "n2"),
        ("db-1", json!({"app": "db", "tier": "back"}), ""),
    ] {
        let mut pod = json!({"metadata": {"name": name, "labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if !node.is_empty() {
            pod["spec"]["nodeName"] = json!(node);
        }
        assert_eq!(raw.post(pods, &pod).await.status, 201);
    }
    let q = |sel: &str| format!("{pods}?{sel}");
    let cases = [
        ("labelSelector=app%3Dweb", vec!["web-1", "web-2"]),
        ("labelSelector=app%3D%3Dweb", vec!["web-1", "web-2"]),
        ("labelSelector=app!%3Dweb", vec!["db-1"]),
        ("labelSelector=app%20in%20(web,db)", vec!["db-1", "web-1", "web-2"]),
        ("labelSelector=app%20notin%20(web)", vec!["db-1"]),
        ("labelSelector=tier", vec!["db-1", "web-1"]),
        ("labelSelector=!tier", vec!["web-2"]),
        ("labelSelector=app%3Dweb,tier", vec!["web-1"]),
        ("fieldSelector=spec.nodeName%3Dn1", vec!["web-1"]),
        ("fieldSelector=spec.nodeName%3D", vec!["db-1"]),
        (
            "fieldSelector=status.phase%3DPending,metadata.name!%3Dweb-2",
            vec!["db-1", "web-1"],
        ),
        (
            "fieldSelector=metadata.namespace%3Ddefault&labelSelector=app%3Ddb",
            vec!["db-1"],
        ),
    ];
    for (sel, want) in cases {
        let r = raw.get(&q(sel)).await;
        assert_eq!(r.status, 200, "{sel}: {}", r.text());
        assert_eq!(names(&r.json()), want, "{sel}");
    }
    // All-namespaces list and bad selectors.
    assert_eq!(
        names(&raw.get("/api/v1/pods?labelSelector=app%3Dweb").await.json()),
        ["web-1", "web-2"]
    );
    assert_eq!(raw.get(&q("labelSelector=app%20in%20web")).await.status, 400);
    let r = raw.get(&q("fieldSelector=spec.bogus%3D1")).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("field label not supported"), "{}", r.text());
}

#[tokio::test]
async fn pages_come_from_one_snapshot_while_writes_happen() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let path = "/api/v1/namespaces/default/configmaps";
    stream::iter(0..60)
        .for_each_concurrent(16, |i| {
            let raw = raw.clone();
            async move {
                let r = raw
                    .post(path, &json!({"metadata": {"name": format!("cm-{i:03}")}}))
                    .await;
                assert_eq!(r.status, 201);
            }
        })
        .await;
    let first = raw.get(&format!("{path}?limit=7")).await.json();
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut seen = names(&first);
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_string();

    // Writers change the collection between pages.
    let writer = {
        let raw = raw.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                raw.post(path, &json!({"metadata": {"name": format!("late-{i:03}")}}))
                    .await;
                raw.delete(&format!("{path}/cm-{:03}", 59 - i)).await;
            }
        })
    };
    let mut pages = 1;
    while !token.is_empty() {
        let page = raw.get(&format!("{path}?limit=7&continue={token}")).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        assert_eq!(
            page["metadata"]["resourceVersion"], rv,
            "every page is read at the first page's revision"
        );
        seen.extend(names(&page));
        token = page["metadata"]["continue"].as_str().unwrap_or_default().to_string();
        pages += 1;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let want: Vec<String> = (0..60).map(|i| format!("cm-{i:03}")).collect();
    seen.sort();
    assert_eq!(seen, want, "exactly the snapshot, no late objects, nothing lost");
    assert_eq!(pages, 9);
}

/// A client pages through a collection nobody writes, at a revision
/// another collection's write made (an informer listing nodes at the
/// resourceVersion of a pod it created; every page after the first of a
/// list etcd served): every page comes back at once, not after the watch
/// cache gave up waiting for a revision that collection never reaches.
#[tokio::test]
async fn pages_of_a_quiet_collection_at_another_collections_revision_come_at_once() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let quiet = "/api/v1/namespaces/default/configmaps";
    for i in 0..40 {
        let r = raw
            .post(quiet, &json!({"metadata": {"name": format!("quiet-{i:02}")}}))
            .await;
        assert_eq!(r.status, 201);
    }
    let first = raw.get(&format!("{quiet}?limit=5")).await;
    assert_eq!(first.status, 200, "the cache holds the collection");
    // The revision of a write to another collection.
    let secret = json!({"metadata": {"name": "elsewhere"}, "stringData": {"k": "v"}});
    let written = raw.post("/api/v1/namespaces/default/secrets", &secret).await;
    assert_eq!(written.status, 201);
    let rv = written.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut seen = Vec::new();
    let mut url = format!("{quiet}?limit=5&resourceVersion={rv}&resourceVersionMatch=Exact");
    let mut pages = 0;
    loop {
        let started = std::time::Instant::now();
        let page = raw.get(&url).await;
        let took = started.elapsed();
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(
            took < std::time::Duration::from_millis(1500),
            "page {pages} took {took:?}"
        );
        let page = page.json();
        assert_eq!(
            page["metadata"]["resourceVersion"],
            rv.as_str(),
            "read at the revision asked for"
        );
        seen.extend(names(&page));
        pages += 1;
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => url = format!("{quiet}?limit=5&continue={token}"),
            _ => break,
        }
    }
    seen.sort();
    assert_eq!(seen, (0..40).map(|i| format!("quiet-{i:02}")).collect::<Vec<_>>());
    assert_eq!(pages, 8);
}

/// A list bigger than gRPC's default 4 MiB message (e.g. thousands of nodes)
/// still comes back whole when the client does not page.
#[tokio::test]
async fn an_unpaginated_list_larger_than_4_mib_is_served_whole() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let blob = "x".repeat(900 * 1024);
    for i in 0..6 {
        let cm = json!({"metadata": {"name": format!("big-{i}")}, "data": {"blob": blob}});
        let created = raw.post(cms, &cm).await;
        assert_eq!(created.status, 201, "{:?}", created.json());
    }
    let list = raw.get(cms).await;
    assert_eq!(list.status, 200, "{:?}", list.json()["message"]);
    let names: Vec<String> = names(&list.json())
        .into_iter()
        .filter(|n| n.starts_with("big-"))
        .collect();
    assert_eq!(names, (0..6).map(|i| format!("big-{i}")).collect::<Vec<_>>());
}

/// `apiserver_cache_list_total` for `resource_prefix` (0 before the first cached list).
async fn cache_lists(raw: &sluice_tests::RawClient, resource_prefix: &str) -> u64 {
    let text = raw.get("/metrics").await.text();
    let series = format!("apiserver_cache_list_total{{index=\"\",resource_prefix=\"{resource_prefix}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// Lists come from the watch cache and still read every write acknowledged
/// before them (KEP-2340's consistent reads): a client that creates an
/// object and lists at once sees it, `resourceVersion=N` waits for N, and
/// `resourceVersion=0` answers from memory.
#[tokio::test]
async fn lists_from_the_watch_cache_read_every_acknowledged_write() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let before = cache_lists(&raw, "/configmaps").await;
    for i in 0..40 {
        let created = raw
            .post(
                path,
                &json!({"metadata": {"name": format!("rw-{i:02}"), "labels": {"step": i.to_string()}}}),
            )
            .await;
        assert_eq!(created.status, 201);
        let rv: i64 = created.json()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // A consistent list (no resourceVersion) right after the write.
        let list = raw.get(&format!("{path}?labelSelector=step%3D{i}")).await.json();
        assert_eq!(
            names(&list),
            vec![format!("rw-{i:02}")],
            "the list missed the write it follows"
        );
        let list_rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(list_rv >= rv, "list at {list_rv} after a write at {rv}");
        // Not older than the write's revision.
        let list = raw
            .get(&format!(
                "{path}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan"
            ))
            .await
            .json();
        assert!(names(&list).contains(&format!("rw-{i:02}")));
        // Deleted: gone from the next list.
        if i % 10 == 9 {
            assert_eq!(raw.delete(&format!("{path}/rw-{i:02}")).await.status, 200);
            let list = raw.get(path).await.json();
            assert!(
                !names(&list).contains(&format!("rw-{i:02}")),
                "a deleted object was listed"
            );
        }
    }
    let any = raw.get(&format!("{path}?resourceVersion=0")).await;
    assert_eq!(any.status, 200);
    assert_eq!(
        names(&any.json()).iter().filter(|n| n.starts_with("rw-")).count(),
        36,
        "resourceVersion=0 lists the cache's objects"
    );
    let after = cache_lists(&raw, "/configmaps").await;
    // The `resourceVersion=N` list of each step and the one at
    // `resourceVersion=0` come from the cache on any etcd. Consistent lists
    // (without a resourceVersion) do too where etcd sends requested progress
    // in order; on an older etcd (this machine's 3.4.23) only when the cache
    // already holds etcd's revision, else from etcd.
    const STORY_LISTS: u64 = 40 + 1;
    assert!(
        after - before >= STORY_LISTS,
        "the watch cache served {} of the story's lists (apiserver_cache_list_total)",
        after - before
    );
    let bad = raw.get(&format!("{path}?resourceVersion=abc")).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
}

/// What an informer relies on: a list, then a watch from the list's
/// resourceVersion, together see every object. Here the informer's first
/// list of a resource (which starts the watch cache's feed for it) comes
/// while another client creates objects of it as fast as it can; every
/// object must reach the informer, from the list or from the watch.
/// (etcd before 3.4.25 can answer a progress request on a feed it is still
/// catching up before sending the feed's events; a cache that believed it
/// served lists without those objects at a resourceVersion past them, and
/// the informer never saw them.)
#[tokio::test]
async fn an_informer_starting_during_a_burst_of_creates_sees_every_object() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    for plural in ["configmaps", "secrets", "podtemplates", "serviceaccounts"] {
        let ar = kube::discovery::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: match plural {
                "configmaps" => "ConfigMap",
                "secrets" => "Secret",
                "podtemplates" => "PodTemplate",
                _ => "ServiceAccount",
            }
            .into(),
            plural: plural.into(),
        };
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(client.clone(), "default", &ar);
        let total = 150;
        let (first_created, mut ready) = tokio::sync::watch::channel(0usize);
        let writer = {
            let api = api.clone();
            let ar = ar.clone();
            tokio::spawn(async move {
                stream::iter(0..total)
                    .for_each_concurrent(4, |i| {
                        let (api, ar, first_created) = (api.clone(), ar.clone(), &first_created);
                        async move {
                            let mut obj = kube::api::DynamicObject::new(&format!("burst-{i:03}"), &ar);
                            obj.metadata.labels = Some([("burst".to_string(), "yes".to_string())].into());
                            if ar.kind == "PodTemplate" {
                                obj.data =
                                    json!({"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}});
                            }
                            api.create(&kube::api::PostParams::default(), &obj)
                                .await
                                .expect("create");
                            first_created.send_modify(|n| *n += 1);
                        }
                    })
                    .await;
            })
        };
        // The informer starts a few creates into the burst.
        ready.wait_for(|n| *n >= 10).await.expect("the writer runs");
        let lp = kube::api::ListParams::default().labels("burst=yes");
        let list = api.list(&lp).await.expect("list");
        let mut seen: std::collections::BTreeSet<String> =
            list.items.iter().filter_map(|o| o.metadata.name.clone()).collect();
        let rv = list.metadata.resource_version.unwrap_or_default();
        let wp = kube::api::WatchParams::default().labels("burst=yes").timeout(20);
        let events = api.watch(&wp, &rv).await.expect("watch starts");
        let mut events = std::pin::pin!(events);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while seen.len() < total {
            match tokio::time::timeout_at(deadline, events.try_next()).await {
                Ok(Ok(Some(kube::api::WatchEvent::Added(o)))) => {
                    seen.extend(o.metadata.name);
                }
                Ok(Ok(Some(_))) => {}
                _ => break,
            }
        }
        writer.await.expect("the writer finishes");
        let missed: Vec<String> = (0..total)
            .map(|i| format!("burst-{i:03}"))
            .filter(|n| !seen.contains(n))
            .collect();
        assert!(
            missed.is_empty(),
            "{plural}: the informer (list at {rv}, then watch) never saw {missed:?}"
        );
    }
}

/// `--watch-cache=false`, as Kubernetes' flag: lists and watches read etcd,
/// with the same answers (the list benchmark's baseline), and the cache
/// serves none of them.
#[tokio::test]
async fn without_the_watch_cache_lists_and_watches_read_etcd() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, WatchEvent, WatchParams};

    let cp = ControlPlane::start_with(&["--watch-cache=false"]).await;
    let raw = cp.raw().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let mut last_rv = String::new();
    for i in 0..5 {
        let created = raw
            .post(path, &json!({"metadata": {"name": format!("etcd-{i}")}}))
            .await;
        assert_eq!(created.status, 201);
        last_rv = created.json()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let list = raw.get(path).await.json();
        assert!(
            names(&list).contains(&format!("etcd-{i}")),
            "the list missed the write it follows"
        );
    }
    let any = raw.get(&format!("{path}?resourceVersion=0")).await.json();
    assert_eq!(names(&any).iter().filter(|n| n.starts_with("etcd-")).count(), 5);
    let page = raw.get(&format!("{path}?limit=2")).await.json();
    assert_eq!(names(&page).len(), 2);
    let token = page["metadata"]["continue"].as_str().expect("a continue token");
    let rest = raw.get(&format!("{path}?limit=10&continue={token}")).await.json();
    assert!(names(&rest).len() >= 3, "the second page: {:?}", names(&rest));

    // A watch from the last write's resourceVersion sees the next one.
    let api: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    let mut events = api
        .watch(&WatchParams::default().timeout(10), &last_rv)
        .await
        .expect("watch")
        .boxed();
    let created = raw.post(path, &json!({"metadata": {"name": "etcd-watched"}})).await;
    assert_eq!(created.status, 201);
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(event) = events.try_next().await.expect("watch event") {
            if let WatchEvent::Added(cm) = event {
                return cm.metadata.name;
            }
        }
        None
    })
    .await
    .expect("the watch answered in time");
    assert_eq!(seen.as_deref(), Some("etcd-watched"));
    assert_eq!(cache_lists(&raw, "/configmaps").await, 0, "the cache served a list");

    // A value Go's ParseBool refuses stops the server before it starts.
    let out = std::process::Command::new(sluice_tests::workspace_bin("apiserver"))
        .args(["serve", "--cert-dir", "/nonexistent", "--watch-cache=maybe"])
        .output()
        .expect("run apiserver");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--watch-cache") && err.contains("invalid syntax"), "{err}");
}

/// A merge patch of `path` that must succeed; the object after it.
async fn merge_patch(raw: &sluice_tests::RawClient, path: &str, patch: Value) -> Value {
    let r = raw.patch(path, "application/merge-patch+json", &patch).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The watch cache holds an object decoded only while its last change is
/// among the newest ones, and encoded after that. A user who lists with
/// selectors, reads and updates objects nobody has touched for thousands
/// of changes sees exactly what they would see of recently changed ones:
/// here pods from before the cache started (held encoded from its first
/// list) and pods whose creation 2,100 later changes pushed out of the
/// decoded part.
#[tokio::test]
async fn objects_the_watch_cache_holds_encoded_are_listed_filtered_updated_and_watched_as_any_other() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let pods = "/api/v1/namespaces/default/pods";
    let create = |name: &'static str, app: &'static str, node: &'static str| {
        let raw = raw.clone();
        async move {
            let mut pod = json!({"metadata": {"name": name, "labels": {"app": app}, "annotations": {"note": "<a&b>"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
            if !node.is_empty() {
                pod["spec"]["nodeName"] = json!(node);
            }
            let r = raw.post(pods, &pod).await;
            assert_eq!(r.status, 201, "{}", r.text());
        }
    };
    create("old-web", "web", "n1").await;
    create("old-db", "db", "n2").await;
    // The first list starts the cache's feed of pods.
    assert_eq!(raw.get(pods).await.status, 200);
    create("new-web", "web", "").await;
    create("churn", "churn", "").await;
    // 2,100 changes (16 writers, each updating a pod of its own).
    const WRITERS: usize = 16;
    const EACH: usize = 132;
    stream::iter(0..WRITERS)
        .for_each_concurrent(WRITERS, |w| {
            let raw = raw.clone();
            async move {
                let name = format!("churn-{w:02}");
                let r = raw
                    .post(pods, &json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
                    .await;
                assert_eq!(r.status, 201, "{}", r.text());
                for i in 0..EACH {
                    let step = json!({"metadata": {"annotations": {"step": i.to_string()}}});
                    merge_patch(&raw, &format!("{pods}/{name}"), step).await;
                }
            }
        })
        .await;
    // A consistent list's resourceVersion: at least every write's.
    let rv = raw.get(&format!("{pods}?limit=1")).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let before = cache_lists(&raw, "/pods").await;
    // Lists at least as new as the last write come from the cache.
    let list = |sel: &str| {
        let raw = raw.clone();
        let url = format!("{pods}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan&{sel}");
        async move {
            let r = raw.get(&url).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        }
    };
    let churned: Vec<String> = (0..WRITERS).map(|w| format!("churn-{w:02}")).collect();
    let everything = list("").await;
    assert_eq!(names(&everything).len(), 4 + WRITERS);
    for p in everything["items"].as_array().unwrap() {
        if churned.iter().any(|c| p["metadata"]["name"] == c.as_str()) {
            assert_eq!(
                p["metadata"]["annotations"]["step"],
                (EACH - 1).to_string(),
                "the last state"
            );
        }
    }
    assert_eq!(names(&list("labelSelector=app%3Dchurn").await), ["churn"]);
    assert_eq!(names(&list("labelSelector=app%3Dweb").await), ["new-web", "old-web"]);
    assert_eq!(
        names(&list("labelSelector=app%20in%20(web,db)&fieldSelector=spec.nodeName%3Dn2").await),
        ["old-db"]
    );
    assert_eq!(
        names(&list("labelSelector=app&fieldSelector=spec.nodeName%3D,status.phase%3DPending").await),
        ["churn", "new-web"]
    );
    assert_eq!(
        names(&list("labelSelector=app&fieldSelector=metadata.name!%3Dchurn").await),
        ["new-web", "old-db", "old-web"]
    );
    // As JSON, each object is written as Kubernetes writes it (Go's
    // escaping), whether the cache copies it as held or encodes it.
    let text = raw
        .get(&format!(
            "{pods}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan&labelSelector=app"
        ))
        .await
        .text();
    assert_eq!(text.matches(r#""note":"\u003ca\u0026b\u003e""#).count(), 4, "{text}");
    assert!(text.ends_with("]}\n") && !text.contains("<a&b>"), "{text}");
    let whole = list("labelSelector=app%3Dweb").await;
    let old_web = whole["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "old-web")
        .unwrap()
        .clone();
    assert_eq!(
        old_web,
        raw.get(&format!("{pods}/old-web")).await.json(),
        "a listed object is the object as read"
    );
    assert_eq!(
        cache_lists(&raw, "/pods").await - before,
        8,
        "the lists were served by the watch cache (apiserver_cache_list_total)"
    );

    // Updates of objects held encoded: a filtered watcher sees the first
    // as MODIFIED and the relabelled one leave its selection as DELETED.
    merge_patch(
        &raw,
        &format!("{pods}/new-web"),
        json!({"metadata": {"annotations": {"seen": "yes"}}}),
    )
    .await;
    let relabelled = merge_patch(
        &raw,
        &format!("{pods}/old-web"),
        json!({"metadata": {"labels": {"app": "db"}}}),
    )
    .await;
    let events: Vec<(String, String)> = raw
        .get(&format!(
            "{pods}?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb&timeoutSeconds=1"
        ))
        .await
        .text()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] != "BOOKMARK")
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("MODIFIED".to_string(), "new-web".to_string()),
            ("DELETED".to_string(), "old-web".to_string())
        ]
    );
    let rv = relabelled["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let dbs = raw
        .get(&format!(
            "{pods}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan&labelSelector=app%3Ddb"
        ))
        .await
        .json();
    assert_eq!(names(&dbs), ["old-db", "old-web"]);
}

/// A consistent list (what kubectl sends) of a large collection comes from
/// the watch cache while other collections are written, as in a real
/// cluster (nodes renew their Leases every 10 s), and still holds every
/// write acknowledged before it. This machine's etcd (3.4.23) may send a
/// requested progress notification before its events, so the cache cannot
/// ask it where it stands; it learns it from etcd's periodic notifications
/// (Sluice starts etcd with `--experimental-watch-progress-notify-interval=100ms`)
/// and waits for the next one where that is cheaper than reading etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_list_of_a_large_collection_comes_from_the_cache_while_others_are_written() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let path = "/api/v1/namespaces/default/configmaps";
    // The cache starts feeding the collection while it is empty, as when an
    // informer starts on a new cluster...
    assert_eq!(raw.get(&format!("{path}?resourceVersion=0")).await.status, 200);
    // ...which then grows to 3,000 objects: reading 2,000 from etcd costs
    // about what waiting half of etcd's 100 ms interval does, the mean wait
    // for the next one.
    stream::iter(0..3_000)
        .map(|i| {
            let raw = raw.clone();
            async move {
                let r = raw
                    .post(path, &json!({"metadata": {"name": format!("many-{i:04}")}}))
                    .await;
                assert_eq!(r.status, 201, "{}", r.text());
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    // Two other clients write Secrets without pause, as nodes renew Leases.
    let latest_other = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (raw, latest_other, stop) = (raw.clone(), latest_other.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let s = json!({"metadata": {"name": format!("renewal-{w}-{n}")}, "stringData": {"k": "v"}});
                    let r = raw.post("/api/v1/namespaces/default/secrets", &s).await;
                    assert_eq!(r.status, 201, "{}", r.text());
                    let rv: i64 = r.json()["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    latest_other.fetch_max(rv, std::sync::atomic::Ordering::SeqCst);
                    n += 1;
                }
                n
            })
        })
        .collect();
    // A while without writes to the collection, in which the cache learns
    // etcd's interval from the notifications it gets.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let before = cache_lists(&raw, "/configmaps").await;
    const ROUNDS: usize = 10;
    for i in 0..ROUNDS {
        let created = raw
            .post(path, &json!({"metadata": {"name": format!("late-{i}")}}))
            .await;
        assert_eq!(created.status, 201);
        let mine: i64 = created.json()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let others = latest_other.load(std::sync::atomic::Ordering::SeqCst);
        let list = raw.get(path).await;
        assert_eq!(list.status, 200, "{}", list.text());
        let list = list.json();
        let list_rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(
            list_rv >= mine.max(others),
            "a consistent list at {list_rv} after writes acknowledged at {mine} (its own collection) and {others} (another)"
        );
        let names = names(&list);
        assert_eq!(names.len(), 3_000 + i + 1, "every object, once");
        assert!(
            names.contains(&format!("late-{i}")),
            "the list missed the write it follows"
        );
    }
    let served = cache_lists(&raw, "/configmaps").await - before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut renewals = 0;
    for w in writers {
        renewals += w.await.expect("a writer");
    }
    assert!(
        renewals > 50,
        "the other collection was written throughout ({renewals} writes)"
    );
    assert_eq!(
        served, ROUNDS as u64,
        "the watch cache served {served} of {ROUNDS} consistent lists (apiserver_cache_list_total); the rest read etcd"
    );
}
