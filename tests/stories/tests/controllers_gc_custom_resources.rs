//! User story: garbage collection follows custom resources, as Kubernetes'
//! collector does. Real etcd, API server and controller-manager; the Widget
//! CRD is created only after the controller-manager started, so the
//! collector has to discover it.
//!
//! - A Widget owned by a ConfigMap is kept while the ConfigMap lives and
//!   deleted once it is gone (custom resources are dependents).
//! - A ConfigMap owned by a Widget is deleted once the Widget is (custom
//!   resources are owners).
//! - Foreground deletion of a Widget waits for its `blockOwnerDeletion`
//!   dependent, which is deleted first; orphan deletion strips the Widget's
//!   reference from its dependent and keeps it.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use sluice_tests::controllers::{eventually, serial, ControllerManager};
use sluice_tests::ControlPlane;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);
/// Longer than the collector's listing period (5 s) plus a pass: long enough
/// for a wrong decision to have been carried out.
const SETTLE: Duration = Duration::from_secs(8);
const HOLD: &str = "stories.sluice.dev/hold";

fn crd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("stories.sluice.dev", "v1", "Widget"), "widgets")
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("a well-formed object")
}

async fn create_widget_crd(client: &Client) {
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.stories.sluice.dev"},
        "spec": {
            "group": "stories.sluice.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
                }}
            }]
        }
    });
    crds.create(&PostParams::default(), &object(crd))
        .await
        .expect("CRD created");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &widget_resource());
    eventually(WAIT, "Widget CRD Established and served", || async {
        let crd = crds.get("widgets.stories.sluice.dev").await.ok()?;
        let established = crd.data["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        (established && widgets.list(&Default::default()).await.is_ok()).then_some(())
    })
    .await;
}

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str, block: bool) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "blockOwnerDeletion": block})
}

async fn create_widget(widgets: &Api<DynamicObject>, name: &str, owners: Value) -> DynamicObject {
    widgets
        .create(
            &PostParams::default(),
            &object(json!({
                "apiVersion": "stories.sluice.dev/v1",
                "kind": "Widget",
                "metadata": {"name": name, "ownerReferences": owners},
                "spec": {"size": "small"}
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("widget {name} created: {e}"))
}

async fn create_config_map(cms: &Api<ConfigMap>, name: &str, owners: Value, finalizers: Value) -> ConfigMap {
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers},
            "data": {"k": "v"}
        }))
        .expect("a well-formed ConfigMap"),
    )
    .await
    .unwrap_or_else(|e| panic!("config map {name} created: {e}"))
}

fn uid(o: &impl ResourceExt) -> String {
    o.uid().expect("created objects have a uid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_follows_custom_resources() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    // Let the collector run its first discovery without the CRD.
    tokio::time::sleep(Duration::from_secs(2)).await;
    create_widget_crd(&client).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &widget_resource());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);

    // 1. A Widget owned by a ConfigMap: kept while the owner lives, collected after.
    let settings = create_config_map(&cms, "settings", json!([]), json!([])).await;
    create_widget(
        &widgets,
        "dependent",
        json!([owner_ref("v1", "ConfigMap", "settings", &uid(&settings), false)]),
    )
    .await;
    // 2. A ConfigMap owned by a Widget.
    let owner = create_widget(&widgets, "owner", json!([])).await;
    create_config_map(
        &cms,
        "owned",
        json!([owner_ref(
            "stories.sluice.dev/v1",
            "Widget",
            "owner",
            &uid(&owner),
            false
        )]),
        json!([]),
    )
    .await;
    // 3. A Widget whose dependent blocks its foreground deletion (and holds itself with a finalizer).
    let blocked = create_widget(&widgets, "blocked", json!([])).await;
    create_config_map(
        &cms,
        "blocking",
        json!([owner_ref(
            "stories.sluice.dev/v1",
            "Widget",
            "blocked",
            &uid(&blocked),
            true
        )]),
        json!([HOLD]),
    )
    .await;
    // 4. A Widget deleted with orphan propagation.
    let orphaner = create_widget(&widgets, "orphaner", json!([])).await;
    create_config_map(
        &cms,
        "orphan",
        json!([owner_ref(
            "stories.sluice.dev/v1",
            "Widget",
            "orphaner",
            &uid(&orphaner),
            true
        )]),
        json!([]),
    )
    .await;

    // Live owners keep their dependents, of either kind.
    tokio::time::sleep(SETTLE).await;
    assert!(
        widgets.get_opt("dependent").await.unwrap().is_some(),
        "widget with a live owner kept"
    );
    for name in ["owned", "blocking", "orphan"] {
        let cm = cms.get_opt(name).await.unwrap();
        assert!(
            cm.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
            "config map {name} with a live Widget owner kept"
        );
    }

    // 1. Deleting the ConfigMap collects the Widget it owned.
    cms.delete("settings", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "widget whose ConfigMap owner is gone deleted", || async {
        widgets.get_opt("dependent").await.ok()?.is_none().then_some(())
    })
    .await;

    // 2. Deleting the Widget (background, the default) collects the ConfigMap it owned.
    widgets.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "config map whose Widget owner is gone deleted", || async {
        cms.get_opt("owned").await.ok()?.is_none().then_some(())
    })
    .await;

    // 3. Foreground deletion: the dependent is deleted first and the Widget waits for it.
    widgets.delete("blocked", &DeleteParams::foreground()).await.unwrap();
    eventually(WAIT, "blocking dependent being deleted", || async {
        cms.get_opt("blocking")
            .await
            .ok()??
            .metadata
            .deletion_timestamp
            .is_some()
            .then_some(())
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let waiting = widgets
        .get_opt("blocked")
        .await
        .unwrap()
        .expect("the Widget waits for its blocking dependent");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(
        waiting.finalizers().iter().any(|f| f == "foregroundDeletion"),
        "{:?}",
        waiting.finalizers()
    );
    cms.patch(
        "blocking",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(WAIT, "blocking dependent gone", || async {
        cms.get_opt("blocking").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually(WAIT, "foreground-deleted Widget gone once its dependent is", || async {
        widgets.get_opt("blocked").await.ok()?.is_none().then_some(())
    })
    .await;

    // 4. Orphan deletion: the reference is stripped, the dependent stays.
    widgets.delete("orphaner", &DeleteParams::orphan()).await.unwrap();
    eventually(WAIT, "orphaning Widget gone", || async {
        widgets.get_opt("orphaner").await.ok()?.is_none().then_some(())
    })
    .await;
    let orphan = cms.get("orphan").await.unwrap();
    assert!(orphan.metadata.deletion_timestamp.is_none());
    assert!(orphan.owner_references().is_empty(), "{:?}", orphan.owner_references());
    tokio::time::sleep(SETTLE).await;
    assert!(
        cms.get_opt("orphan").await.unwrap().is_some(),
        "an orphan is not collected"
    );
}
