//! Story: a user lists objects with label and field selectors, and a client
//! pages through a large collection while others write to it: every page
//! comes from the same snapshot.

use futures::stream::{self, StreamExt};
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
