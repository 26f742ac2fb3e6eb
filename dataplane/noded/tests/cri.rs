//! A pod's life through CRI against a real containerd + runc, with Sluice's CNI.
//!
//! The test starts its own containerd (private root/state/socket, the local
//! pause image as sandbox image, `sluice-cni` as CNI plugin), serves noded's
//! node network service for the plugin, writes the node's conflist, and then
//! does what noded's pod worker does: a sandbox, a busybox httpd container,
//! an exec, stop and remove. It checks what a user would: the pod gets an
//! address from the podCIDR, answers HTTP on it, and leaves nothing behind.
//!
//! Needs root; run `cargo build -p xtask -p sluice-cni` first (the harness
//! runs those binaries from the target directory).

use sluice_noded::cri::{api, Cri};
use sluice_noded::network_service::{self, Endpoints};
use sluice_tests::node::{Containerd, BUSYBOX_IMAGE};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A podCIDR no other test on this machine uses (routes land in the root namespace).
const POD_CIDR: &str = "10.213.61.0/24";

fn sandbox_config(name: &str, uid: &str) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        labels: HashMap::from([("sluice.io/pod-uid".to_string(), uid.to_string())]),
        linux: Some(api::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_get(ip: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "2", &format!("http://{ip}:8080/")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busybox_httpd_pod_runs_serves_and_is_removed_without_leftovers() {
    let containerd = Containerd::start();
    // A node's containerd starts empty; the image comes from its registry mirror.
    containerd.pull(BUSYBOX_IMAGE);
    let state_dir = containerd.dir().join("noded");
    let noded_socket = containerd.dir().join("noded.sock");
    let endpoints = Endpoints::default();
    let _service = network_service::serve(&noded_socket, endpoints.clone()).expect("serve node network");
    sluice_noded::cni_config::write(
        &containerd.cni_conf_dir,
        POD_CIDR.parse().unwrap(),
        &noded_socket,
        &state_dir,
    )
    .expect("write conflist");

    let cri = Cri::connect(&containerd.socket).await.expect("connect CRI");
    let version = cri.version().await.expect("CRI version");
    assert_eq!(version.runtime_name, "containerd");
    wait_for("containerd to load the CNI config", Duration::from_secs(20), || async {
        cri.network_ready().await.unwrap_or(false)
    })
    .await;
    assert!(
        cri.image_status(BUSYBOX_IMAGE).await.unwrap().is_some(),
        "busybox image pulled through the mirror"
    );

    // The sandbox gets its address from the podCIDR through sluice-cni.
    let started = Instant::now();
    let config = sandbox_config("web", "uid-web-1");
    let sandbox = cri
        .run_pod_sandbox(config.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", containerd.log()));
    let status = cri.pod_sandbox_status(&sandbox).await.unwrap();
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    assert!(ip.starts_with("10.213.61."), "pod IP {ip:?} from {POD_CIDR}");
    let endpoint = endpoints.get(&sandbox).expect("noded was told about the sandbox");
    assert_eq!(endpoint.pod_ip, ip);
    assert_eq!(endpoint.pod_uid, "uid-web-1");

    let container = cri
        .create_container(
            &sandbox,
            api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "httpd".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: BUSYBOX_IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["sh".into(), "-c".into()],
                args: vec![
                    "mkdir -p /www && echo \"hello from $POD_NAME\" > /www/index.html && exec httpd -f -p 8080 -h /www"
                        .into(),
                ],
                envs: vec![api::KeyValue {
                    key: "POD_NAME".into(),
                    value: "web".into(),
                }],
                linux: Some(api::LinuxContainerConfig::default()),
                ..Default::default()
            },
            config,
        )
        .await
        .expect("create container");
    cri.start_container(&container).await.expect("start container");
    let running = cri.container_status(&container).await.unwrap();
    assert_eq!(running.state, api::ContainerState::ContainerRunning as i32);
    assert!(!running.image_ref.is_empty());
    eprintln!("sandbox + container running after {:?}", started.elapsed());

    let mut body = None;
    wait_for("httpd to answer on the pod IP", Duration::from_secs(10), || {
        body = http_get(&ip);
        std::future::ready(body.is_some())
    })
    .await;
    assert_eq!(body.unwrap().trim(), "hello from web");

    let exec = cri
        .exec_sync(
            &container,
            vec!["cat".into(), "/www/index.html".into()],
            Duration::from_secs(5),
        )
        .await
        .expect("exec");
    assert_eq!(
        exec.exit_code,
        0,
        "exec failed: stdout {:?}, stderr {:?}",
        String::from_utf8_lossy(&exec.stdout),
        String::from_utf8_lossy(&exec.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "hello from web");

    // Delete: stop with a short grace period, then remove; nothing is left.
    cri.stop_container(&container, Duration::from_secs(1))
        .await
        .expect("stop container");
    let stopped = cri.container_status(&container).await.unwrap();
    assert_eq!(stopped.state, api::ContainerState::ContainerExited as i32);
    cri.stop_pod_sandbox(&sandbox).await.expect("stop sandbox");
    cri.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
    assert!(cri.list_pod_sandboxes(&[]).await.unwrap().is_empty());
    assert!(cri.list_containers(None).await.unwrap().is_empty());
    assert!(endpoints.get(&sandbox).is_none(), "noded was told the pod is gone");
    let allocations = sluice_cni::ipam::IpamStore::new(&state_dir).list().unwrap();
    assert!(allocations.is_empty(), "address not freed: {allocations:?}");
    let routes = std::process::Command::new("ip")
        .args(["-o", "route", "show", "exact", &format!("{ip}/32")])
        .output()
        .unwrap();
    assert!(routes.stdout.is_empty(), "host route to the pod left behind");
    let veth = std::process::Command::new("ip")
        .args(["link", "show", &endpoint.host_veth])
        .output()
        .unwrap();
    assert!(!veth.status.success(), "host veth {} left behind", endpoint.host_veth);
}
