//! The CNI plugin as containerd runs it, against real network namespaces.
//!
//! Each test makes a "node" namespace (playing the host, with one address on
//! a veth) and "pod" namespaces, runs the real `sluice-cni` binary
//! inside the node namespace with the CNI environment and config, and checks
//! what a runtime and a user would see: the result JSON, the pod's address,
//! ping between node and pod and between pods, what noded was told, and that
//! DEL leaves nothing behind. noded's side is a small in-test server of the
//! same gRPC service that records the calls.
//!
//! Needs root (network namespaces). Everything is removed on drop.

use sluice_proto::cni::v1::node_network_server::{NodeNetwork, NodeNetworkServer};
use sluice_proto::cni::v1::{
    AddPodRequest, AddPodResponse, CheckPodRequest, CheckPodResponse, DelPodRequest, DelPodResponse, PodInterface,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

const PLUGIN: &str = env!("CARGO_BIN_EXE_sluice-cni");
const NODE_ADDRESS: &str = "10.99.0.1";

/// A network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(role: &str, test: &str) -> Self {
        let name = format!("sl-cni-{}-{test}-{role}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("timeout")
            .args(["10", "ip", "netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// noded's NodeNetwork service, recording what the plugin tells it.
#[derive(Default, Clone)]
struct RecordingNoded {
    added: Arc<Mutex<Vec<PodInterface>>>,
    deleted: Arc<Mutex<Vec<DelPodRequest>>>,
}

#[tonic::async_trait]
impl NodeNetwork for RecordingNoded {
    async fn add_pod(
        &self,
        request: tonic::Request<AddPodRequest>,
    ) -> Result<tonic::Response<AddPodResponse>, tonic::Status> {
        let pod = request
            .into_inner()
            .pod
            .ok_or_else(|| tonic::Status::invalid_argument("no pod"))?;
        self.added.lock().unwrap().push(pod);
        Ok(tonic::Response::new(AddPodResponse {}))
    }
    async fn del_pod(
        &self,
        request: tonic::Request<DelPodRequest>,
    ) -> Result<tonic::Response<DelPodResponse>, tonic::Status> {
        self.deleted.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(DelPodResponse {}))
    }
    async fn check_pod(
        &self,
        request: tonic::Request<CheckPodRequest>,
    ) -> Result<tonic::Response<CheckPodResponse>, tonic::Status> {
        let pod = request.into_inner().pod.unwrap_or_default();
        let known = self
            .added
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.container_id == pod.container_id);
        Ok(tonic::Response::new(CheckPodResponse {
            ok: known,
            message: if known { String::new() } else { "unknown pod".into() },
        }))
    }
}

/// A node: its namespace, state dir, noded socket and (optionally) a noded server.
struct Node {
    netns: Netns,
    dir: tempfile::TempDir,
    noded: RecordingNoded,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    fn new(test: &str, with_noded: bool) -> Self {
        let netns = Netns::new("node", test);
        // The node's own address sits on a veth (the dummy driver is not available everywhere).
        sh(&[
            "ip",
            "-n",
            &netns.name,
            "link",
            "add",
            "node0",
            "type",
            "veth",
            "peer",
            "name",
            "node0p",
        ]);
        sh(&["ip", "-n", &netns.name, "link", "set", "node0p", "up"]);
        sh(&[
            "ip",
            "-n",
            &netns.name,
            "addr",
            "add",
            &format!("{NODE_ADDRESS}/24"),
            "dev",
            "node0",
        ]);
        sh(&["ip", "-n", &netns.name, "link", "set", "node0", "up"]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &netns.name,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let dir = tempfile::tempdir().expect("tempdir");
        let noded = RecordingNoded::default();
        let runtime = with_noded.then(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let listener = {
                let _guard = runtime.enter();
                tokio::net::UnixListener::bind(dir.path().join("noded.sock")).expect("bind noded socket")
            };
            let service = NodeNetworkServer::new(noded.clone());
            runtime.spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
            );
            runtime
        });
        Self {
            netns,
            dir,
            noded,
            _runtime: runtime,
        }
    }

    fn config(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "sluice",
            "type": "sluice-cni",
            "podCIDR": "10.244.7.0/24",
            "nodedSocket": self.dir.path().join("noded.sock"),
            "stateDir": self.dir.path().join("state"),
        })
        .to_string()
    }

    fn ipam_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("state/ipam"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Run the plugin inside the node namespace; (exit ok, stdout as JSON or Null).
    fn cni(&self, command: &str, container_id: &str, pod: Option<&Netns>) -> (bool, serde_json::Value) {
        let mut child = Command::new("timeout")
            .args(["20", "ip", "netns", "exec", &self.netns.name, PLUGIN])
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", pod.map(|p| p.path()).unwrap_or_default())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{container_id};K8S_POD_UID=uid-{container_id}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sluice-cni");
        child.stdin.take().unwrap().write_all(self.config().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = if stdout.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
        };
        (out.status.success(), json)
    }

    fn has_link(&self, name: &str) -> bool {
        self.netns.exec(&["ip", "link", "show", name]).status.success()
    }
}

fn ping(from: &Netns, to: &str) -> bool {
    from.exec(&["busybox", "ping", "-c", "1", "-W", "2", to])
        .status
        .success()
}

fn pod_ip(result: &serde_json::Value) -> String {
    let address = result["ips"][0]["address"].as_str().expect("ips[0].address");
    address.strip_suffix("/32").expect("a /32 pod address").to_owned()
}

#[test]
fn version_reports_cni_1_0() {
    let out = Command::new(PLUGIN).env("CNI_COMMAND", "VERSION").output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cniVersion"], "1.0.0");
    assert!(json["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "1.0.0"));
}

#[test]
fn missing_environment_is_a_cni_error_on_stdout() {
    let out = Command::new(PLUGIN)
        .env("CNI_COMMAND", "ADD")
        .env_remove("CNI_CONTAINERID")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["code"], 4);
    assert!(json["msg"].as_str().unwrap().contains("CNI_CONTAINERID"));
}

#[test]
fn add_connects_the_pod_check_verifies_and_del_removes_everything() {
    let node = Node::new("life", true);
    let pod = Netns::new("pod", "life");

    let (ok, result) = node.cni("ADD", "c1", Some(&pod));
    assert!(ok, "ADD failed: {result}");
    let ip = pod_ip(&result);
    assert!(ip.starts_with("10.244.7."), "pod IP {ip} from the podCIDR");
    assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
    let host_veth = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert!(host_veth.starts_with("lxc"));
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(result["interfaces"][1]["sandbox"], pod.path().display().to_string());

    // The pod has its address on eth0 and a default route via the gateway.
    let addr = pod.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(String::from_utf8_lossy(&addr.stdout).contains(&format!("{ip}/32")));
    let routes = String::from_utf8_lossy(&pod.exec(&["ip", "route"]).stdout).into_owned();
    assert!(routes.contains("default via 169.254.1.1 dev eth0"), "{routes}");

    // Host <-> pod connectivity, no bridge.
    assert!(ping(&node.netns, &ip), "node cannot reach the pod at {ip}");
    assert!(ping(&pod, NODE_ADDRESS), "pod cannot reach the node");

    // noded was told about the host veth, with the pod's identity.
    let added = node.noded.added.lock().unwrap().clone();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].host_veth, host_veth);
    assert_eq!(added[0].pod_ip, ip);
    assert_eq!(added[0].pod_name, "pod-c1");
    assert_eq!(added[0].pod_uid, "uid-c1");
    assert!(added[0].host_ifindex > 0);

    // A repeated ADD (runtime retry) keeps the same address.
    let (ok, again) = node.cni("ADD", "c1", Some(&pod));
    assert!(ok, "repeated ADD failed: {again}");
    assert_eq!(pod_ip(&again), ip);
    assert_eq!(node.ipam_entries().len(), 1);

    let (ok, out) = node.cni("CHECK", "c1", Some(&pod));
    assert!(ok, "CHECK failed: {out}");
    sh(&["ip", "-n", &node.netns.name, "link", "set", &host_veth, "down"]);
    let (ok, out) = node.cni("CHECK", "c1", Some(&pod));
    assert!(!ok, "CHECK must notice the host veth is down");
    assert_eq!(out["code"], 103);
    sh(&["ip", "-n", &node.netns.name, "link", "set", &host_veth, "up"]);

    let (ok, out) = node.cni("DEL", "c1", Some(&pod));
    assert!(ok, "DEL failed: {out}");
    assert!(!node.has_link(&host_veth), "host veth left behind");
    assert!(node.ipam_entries().is_empty(), "address not freed");
    assert!(
        !pod.exec(&["ip", "link", "show", "eth0"]).status.success(),
        "pod eth0 left behind"
    );
    assert_eq!(node.noded.deleted.lock().unwrap()[0].pod_ip, ip);
    let (ok, out) = node.cni("DEL", "c1", None);
    assert!(ok, "a second DEL (no netns) must succeed: {out}");
}

#[test]
fn pods_on_one_node_reach_each_other_through_the_host_routes() {
    let node = Node::new("pair", true);
    let (a, b) = (Netns::new("pa", "pair"), Netns::new("pb", "pair"));
    let (ok, ra) = node.cni("ADD", "ca", Some(&a));
    assert!(ok, "{ra}");
    let (ok, rb) = node.cni("ADD", "cb", Some(&b));
    assert!(ok, "{rb}");
    let (ip_a, ip_b) = (pod_ip(&ra), pod_ip(&rb));
    assert_ne!(ip_a, ip_b);
    assert!(ping(&a, &ip_b), "pod a cannot reach pod b");
    assert!(ping(&b, &ip_a), "pod b cannot reach pod a");
    for id in ["ca", "cb"] {
        assert!(node.cni("DEL", id, None).0);
    }
    assert!(node.ipam_entries().is_empty());
}

#[test]
fn add_fails_clearly_and_leaks_nothing_when_noded_is_not_running() {
    let node = Node::new("nonoded", false);
    let pod = Netns::new("pod", "nonoded");
    let (ok, out) = node.cni("ADD", "c9", Some(&pod));
    assert!(!ok, "ADD must fail without noded");
    assert_eq!(out["code"], 101, "{out}");
    assert!(out["msg"].as_str().unwrap().contains("noded"), "{out}");
    assert!(node.ipam_entries().is_empty(), "address leaked");
    let links = String::from_utf8_lossy(&node.netns.exec(&["ip", "-o", "link"]).stdout).into_owned();
    assert!(!links.contains("lxc"), "veth leaked: {links}");
    assert!(!pod.exec(&["ip", "link", "show", "eth0"]).status.success());
}
