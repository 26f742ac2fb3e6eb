//! User story: a platform engineer creates a NodePort Service and its
//! EndpointSlice through the real API server (real etcd); the node's Service
//! proxy programs the real eBPF datapath of a node (a network namespace with
//! backend pods behind veths, as the node daemon would set it up). From a
//! client host the node port answers from the endpoints, from a pod the
//! ClusterIP does; scaling the endpoints changes who answers; deleting the
//! Service removes its frontends; a frontend left over from an earlier run
//! is removed at start. Needs root (bpffs, eBPF, network namespaces).

mod common;

use common::netns::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;
use sluice_datapath::{Backend, Datapath, DatapathConfig, Protocol, ServiceSpec};
use sluice_proxy::{ProxyConfig, ProxyError};
use sluice_tests::ControlPlane;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NODE: &str = "n1";
const NODE_IP: &str = "198.18.0.1";
const CLIENT: &str = "198.18.0.100";
const POD: &str = "198.18.1.50";
const BACKENDS: [(&str, &str); 3] = [("b1", "198.18.1.11"), ("b2", "198.18.1.12"), ("b3", "198.18.1.13")];

/// The proxy of node `n1` running against its datapath; on drop (even on
/// panic) the proxy is stopped and the datapath uninstalled (pins removed).
struct NodeProxy {
    datapath: Option<Arc<Mutex<Datapath>>>,
    pin_root: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ProxyError>>>,
}

impl NodeProxy {
    fn start(client: kube::Client, datapath: Arc<Mutex<Datapath>>, pin_root: String) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = ProxyConfig::new(NODE);
        config.resync = Duration::from_secs(5);
        let task = tokio::spawn(sluice_proxy::run(client, datapath.clone(), config, async {
            let _ = stopped.await;
        }));
        Self {
            datapath: Some(datapath),
            pin_root,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stop the proxy and check it ended cleanly.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("proxy task").expect("proxy ends cleanly on shutdown");
        }
    }

    fn frontends(&self) -> BTreeSet<String> {
        let dp = self.datapath.as_ref().expect("datapath").lock().expect("datapath lock");
        dp.frontends().iter().map(|f| f.to_string()).collect()
    }
}

impl Drop for NodeProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(dp) = self.datapath.take() {
            if let Ok(Ok(dp)) = Arc::try_unwrap(dp).map(Mutex::into_inner) {
                let _ = dp.uninstall();
            }
        }
        // Whatever is left (an aborted task still holding the datapath): unpin by path.
        let _ = std::fs::remove_dir_all(&self.pin_root);
    }
}

/// Node `n1` with pods b1..b3 (TCP servers on 8080 answering their name) and
/// a client pod, a client host on the wire, and n1's datapath attached to the
/// pod veths and to eth0 (opened inside n1, as noded does on its node).
fn node_topology() -> (Topology, Datapath, String) {
    let mut topo = Topology::new();
    topo.add_host("client", CLIENT, false);
    topo.add_host("n1", NODE_IP, true);
    let mut pod_ifs = vec![topo.add_pod("pod", "n1", POD).1];
    for (name, addr) in BACKENDS {
        pod_ifs.push(topo.add_pod(name, "n1", addr).1);
        topo.tcp_server(name, 8080, name);
    }
    let pin_root = format!("/sys/fs/bpf/sluice-test-proxy-{}", std::process::id());
    let dp = in_ns(&topo.ns("n1"), || {
        let mut dp = Datapath::open_or_adopt(DatapathConfig::with_pin_root(&pin_root)).expect("open datapath");
        for i in &pod_ifs {
            dp.attach_pod_interface(i).expect("attach pod interface");
        }
        dp.attach_external_interface("eth0", NODE_IP.parse().unwrap())
            .expect("attach external interface");
        dp
    });
    (topo, dp, pin_root)
}

/// Who answers 30 connections to `ip:port` from namespace `ns` (failed
/// connections are counted as "-").
async fn answering(ns: String, ip: String, port: u16) -> BTreeSet<String> {
    tokio::task::spawn_blocking(move || {
        in_ns(&ns, || {
            (0..30)
                .map(|_| {
                    greet(addr(&ip, port))
                        .map(|(name, _, _)| name)
                        .unwrap_or_else(|_| "-".into())
                })
                .collect()
        })
    })
    .await
    .expect("client thread")
}

async fn eventually_answering(ns: &str, ip: &str, port: u16, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    loop {
        let got = answering(ns.to_string(), ip.to_string(), port).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{ip}:{port} from {ns}: answered by {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn eventually_frontends(proxy: &NodeProxy, want: &BTreeSet<String>) {
    let start = Instant::now();
    loop {
        let got = proxy.frontends();
        if &got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "frontends {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn slice(endpoints: &[(&str, bool)]) -> EndpointSlice {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(name, ready)| {
            let ip = BACKENDS.iter().find(|(n, _)| n == name).expect("backend").1;
            json!({"addresses": [ip], "nodeName": NODE, "conditions": {"ready": ready, "serving": ready, "terminating": false}})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abcde", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .expect("slice json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodeport_service_reaches_its_endpoints_follows_scaling_and_goes_away() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("sluice_proxy=debug,info")
        .with_test_writer()
        .try_init();
    let (topo, mut dp, pin_root) = node_topology();
    // A frontend left over from an earlier noded run, for a Service that no longer exists.
    dp.upsert_service(&ServiceSpec::node_port(
        31999,
        Protocol::Tcp,
        vec![Backend::new("198.18.1.11".parse().unwrap(), 8080).local()],
    ))
    .expect("stale frontend");
    let datapath = Arc::new(Mutex::new(dp));

    let cp = ControlPlane::start_with(&["--service-cluster-ip-range", "198.19.0.0/24"]).await;
    let client = cp.client().await;
    let mut proxy = NodeProxy::start(client.clone(), datapath, pin_root);
    // Only the API server's own `kubernetes` Service remains: the stale frontend is gone.
    let builtin: BTreeSet<String> = ["198.19.0.1:443/tcp".to_string()].into();
    eventually_frontends(&proxy, &builtin).await;

    // The user creates the Service and (as the endpoint controller would) its slice.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    }))
    .unwrap();
    let svc = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let spec = svc.spec.expect("spec");
    let cluster_ip = spec.cluster_ip.expect("clusterIP allocated");
    let node_port = spec.ports.unwrap()[0].node_port.expect("nodePort allocated") as u16;
    slices
        .create(&PostParams::default(), &slice(&[("b1", true), ("b2", true)]))
        .await
        .expect("create slice");

    let mut frontends = builtin.clone();
    frontends.extend([format!("{cluster_ip}:80/tcp"), format!("nodeport:{node_port}/tcp")]);
    eventually_frontends(&proxy, &frontends).await;
    eventually_answering(&topo.ns("client"), NODE_IP, node_port, &["b1", "b2"]).await;
    eventually_answering(&topo.ns("pod"), &cluster_ip, 80, &["b1", "b2"]).await;

    // Scale: b3 becomes ready, b1 stops being ready.
    let mut updated = slice(&[("b1", false), ("b2", true), ("b3", true)]);
    let current = slices.get("web-abcde").await.expect("slice");
    updated.metadata.resource_version = current.metadata.resource_version;
    slices
        .replace("web-abcde", &PostParams::default(), &updated)
        .await
        .expect("update slice");
    eventually_answering(&topo.ns("client"), NODE_IP, node_port, &["b2", "b3"]).await;
    eventually_answering(&topo.ns("pod"), &cluster_ip, 80, &["b2", "b3"]).await;

    // Delete the Service: both frontends go away (its slice alone programs nothing).
    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    eventually_frontends(&proxy, &builtin).await;

    proxy.stop().await;
}
