//! Cluster DNS on two real nodes: pods find Services by the names users
//! type, and no lookup is lost while a node's DNS server restarts.
//!
//! `cargo xtask up --nodes 2`, each noded forwarding outside names to an
//! upstream resolver the test runs in a network namespace of its own on the
//! cluster bridge (`--resolv-conf` naming it; it answers `outside.test`).
//! The user creates a Deployment `web` behind Service `web` (named port
//! `http`), two StatefulSet-style pods `db-0`/`db-1` (hostname + subdomain)
//! behind headless Service `db`, ExternalName Service `ext` → `outside.test`,
//! then a client pod on node 1. From that pod they see:
//! * `kube-system/kube-dns` at the 10th address of the service CIDR, with one
//!   endpoint per node (`kubectl get endpointslices`);
//! * the pod's resolv.conf: that nameserver, search
//!   `default.svc.cluster.local svc.cluster.local cluster.local` + the
//!   node's, `ndots:5`; the Service variables (`WEB_SERVICE_HOST`, ...);
//! * `nslookup web` and `web.default.svc.cluster.local` → the ClusterIP, and
//!   `nc` to `web`, `web.default`, `web.default.svc`, the FQDN gets a page;
//!   `db` → both pods, `db-0.db.default.svc.cluster.local` → db-0; SRV
//!   `_http._tcp.web...`; `ext` → CNAME `outside.test` + its address;
//!   reverse lookup of the ClusterIP and of db-0 (its endpoint name),
//!   `a-b-c-d.default.pod.cluster.local`; `outside.test` through the upstream;
//! * a loop of at least 1,000 lookups from the pod loses none while node 1's
//!   noded (its DNS server) is stopped with SIGTERM and started again.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use sluice_tests::cluster::{wait_for, PodView, TestCluster};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const OUTSIDE_IP: [u8; 4] = [192, 0, 2, 10];

/// A one-record DNS upstream on `ip:53` inside network namespace `netns`:
/// `outside.test` A 192.0.2.10, NXDOMAIN for anything else. Stops when `stop` is set.
fn upstream(netns: &str, ip: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let ns = std::fs::File::open(format!("/run/netns/{netns}")).expect("open the upstream's netns");
    let addr = format!("{ip}:53");
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a namespace fd we own.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let sock = UdpSocket::bind(&addr).expect("bind the upstream");
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if let Some(reply) = answer(&buf[..n]) {
                let _ = sock.send_to(&reply, peer);
            }
        }
    })
}

/// The upstream's answer to one query (raw DNS, one question).
fn answer(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    while *q.get(i)? != 0 {
        let len = q[i] as usize;
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let question_end = i + 5;
    let mut r = q.get(..question_end)?.to_vec();
    r[2] = 0x81 | (q[2] & 0x01); // response, recursion desired copied
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if labels.join(".") == "outside.test" {
        r[3] = 0x80; // recursion available, NOERROR
        if qtype == 1 {
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&OUTSIDE_IP);
        }
    } else {
        r[3] = 0x83; // NXDOMAIN
    }
    Some(r)
}

const APPS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:1.35.0
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: outside.test
"#;

fn db_pod(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: db}}}}
spec:
  hostname: {name}
  subdomain: db
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: db, image: "busybox:1.35.0", command: [sleep, "3600"]}}
"#
    )
}

fn client_pod(node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client, labels: {{app: client}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: "busybox:1.35.0", command: [sleep, "3600"]}}
"#
    )
}

fn sh(cluster: &TestCluster, pod: &PodView, script: &str) -> String {
    let out = cluster.exec_in_pod(pod, &["sh", "-c", script]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs its closure when dropped, on success and while a panic unwinds.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Run `script` in the pod until its output contains every one of `want`.
fn eventually(cluster: &TestCluster, pod: &PodView, script: &str, want: &[&str]) -> String {
    let mut last = String::new();
    wait_for(Duration::from_secs(30), || {
        last = sh(cluster, pod, script);
        want.iter().all(|w| last.contains(w)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "`{script}` never showed {want:?}; last output:\n{last}\n{}",
            cluster.logs_tail()
        )
    });
    last
}

#[test]
fn pods_find_services_by_name_and_lose_no_lookup_while_a_dns_server_restarts() {
    let cluster = TestCluster::new(2);
    // The upstream lives at the first client namespace's address on the bridge.
    let upstream_ip = {
        let n1 = cluster.node_ip(1);
        let (net, _) = n1.rsplit_once('.').unwrap();
        format!("{net}.201")
    };
    let resolv = cluster.home().join("upstream-resolv.conf");
    std::fs::write(&resolv, format!("nameserver {upstream_ip}\nsearch corp.test\n")).unwrap();
    let resolv_arg = format!("--noded-arg=--resolv-conf={}", resolv.display());
    cluster.start(&[&resolv_arg]);
    let upstream_ns = cluster.client();
    assert_eq!(upstream_ns.ip, upstream_ip);
    let stop = Arc::new(AtomicBool::new(false));
    let upstream = upstream(&upstream_ns.netns, &upstream_ip, stop.clone());

    // Where DNS answers: kube-dns at the 10th address, one endpoint per node.
    let dns_ip = format!(
        "{}.10",
        upstream_ip.rsplit_once('.').unwrap().0.replace("10.251.", "10.250.")
    );
    let svc = wait_for(Duration::from_secs(30), || {
        let out = cluster.kubectl(&["get", "svc", "-n", "kube-system", "kube-dns"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .expect("kubectl get svc -n kube-system kube-dns");
    assert!(svc.contains(&dns_ip) && svc.contains("53/UDP,53/TCP"), "{svc}");
    let (n1_ip, n2_ip) = (cluster.node_ip(1), cluster.node_ip(2));
    wait_for(Duration::from_secs(30), || {
        let s = cluster.kubectl_ok(&[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=kube-dns",
        ]);
        (s.contains(&n1_ip) && s.contains(&n2_ip)).then_some(())
    })
    .expect("a kube-dns endpoint on each node");

    cluster.apply(APPS);
    cluster.apply(&db_pod("db-0"));
    cluster.apply(&db_pod("db-1"));
    cluster.wait_running("app=web", 2, Duration::from_secs(120));
    let db = cluster.wait_running("app=db", 2, Duration::from_secs(120));
    let web_ip = cluster
        .kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .trim()
        .to_string();
    let n1 = cluster.node_name(1);
    cluster.apply(&client_pod(&n1));
    let client = cluster
        .wait_running("app=client", 1, Duration::from_secs(120))
        .remove(0);

    // The pod's resolver configuration and Service variables.
    let resolv_conf = sh(&cluster, &client, "cat /etc/resolv.conf");
    assert!(resolv_conf.contains(&format!("nameserver {dns_ip}")), "{resolv_conf}");
    assert!(
        resolv_conf.contains("search default.svc.cluster.local svc.cluster.local cluster.local corp.test"),
        "{resolv_conf}"
    );
    assert!(resolv_conf.contains("ndots:5"), "{resolv_conf}");
    let env = sh(&cluster, &client, "env");
    for want in [
        format!("WEB_SERVICE_HOST={web_ip}"),
        "WEB_SERVICE_PORT=80".to_string(),
        "WEB_SERVICE_PORT_HTTP=80".to_string(),
        format!("WEB_PORT=tcp://{web_ip}:80"),
        format!("WEB_PORT_80_TCP_ADDR={web_ip}"),
    ] {
        assert!(env.contains(&want), "{want} missing from:\n{env}");
    }

    // Names as users type them. busybox's nslookup searches only names
    // without a dot (the well-known busybox >= 1.28 behaviour), so dotted
    // short forms go through the C library's resolver (ndots:5), as `nc` does.
    for name in ["web", "web.default.svc.cluster.local"] {
        eventually(&cluster, &client, &format!("nslookup {name}"), &[&web_ip]);
    }
    for name in ["web", "web.default", "web.default.svc", "web.default.svc.cluster.local"] {
        eventually(
            &cluster,
            &client,
            &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {name} 80"),
            &["200 OK", "web-"],
        );
    }
    let db_ips: Vec<&str> = db.iter().map(|p| p.ip.as_deref().unwrap()).collect();
    eventually(&cluster, &client, "nslookup db", &db_ips);
    let db0 = db.iter().find(|p| p.name == "db-0").unwrap().ip.clone().unwrap();
    eventually(&cluster, &client, "nslookup db-0.db.default.svc.cluster.local", &[&db0]);
    eventually(
        &cluster,
        &client,
        "nslookup -type=srv _http._tcp.web.default.svc.cluster.local",
        &["0 100 80 web.default.svc.cluster.local"],
    );
    eventually(&cluster, &client, "nslookup ext", &["outside.test", "192.0.2.10"]);
    eventually(
        &cluster,
        &client,
        &format!("nslookup {web_ip}"),
        &["web.default.svc.cluster.local"],
    );
    eventually(&cluster, &client, "nslookup outside.test", &["192.0.2.10"]);
    // Pods by their dashed address, and their reverse names.
    let dashed = format!("{}.default.pod.cluster.local", db0.replace('.', "-"));
    eventually(&cluster, &client, &format!("nslookup {dashed}"), &[&db0]);
    eventually(
        &cluster,
        &client,
        &format!("nslookup {db0}"),
        &["db-0.db.default.svc.cluster.local"],
    );

    // A lookup loop while node 1's DNS server restarts.
    let looper = {
        let looping = client.clone();
        let cluster = &cluster;
        let script = format!(
            "rm -f /tmp/stop; i=0; f=0; while [ $i -lt 1000 ] || [ ! -f /tmp/stop ]; do \
             nslookup web.default.svc.cluster.local 2>&1 | grep -q {web_ip} || {{ f=$((f+1)); echo FAIL $i; }}; \
             i=$((i+1)); done; echo COUNT $i FAILED $f"
        );
        std::thread::scope(|s| {
            let handle = s.spawn(move || sh(cluster, &looping, &script));
            // The loop runs until told to stop. Should a step below fail,
            // the guard still tells it, so the scope's join (and the test)
            // ends with that failure instead of waiting forever.
            let end_loop = OnDrop(|| {
                sh(cluster, &client, "touch /tmp/stop");
            });
            std::thread::sleep(Duration::from_secs(2));
            let noded = format!("{n1}-noded");
            let pid = cluster.pid(&noded).expect("node 1's noded pid");
            let status = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            wait_for(Duration::from_secs(30), || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let gone = stat.is_empty()
                    || stat
                        .rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
                gone.then_some(())
            })
            .expect("noded stopped");
            std::thread::sleep(Duration::from_secs(2));
            cluster.start(&[&resolv_arg]);
            // Back: its endpoint ready again, then a little more looping.
            wait_for(Duration::from_secs(60), || {
                let s = cluster.kubectl_ok(&[
                    "get",
                    "endpointslice",
                    "-n",
                    "kube-system",
                    &format!("kube-dns-{n1}"),
                    "-o",
                    "jsonpath={.endpoints[0].conditions.ready}",
                ]);
                (s.trim() == "true").then_some(())
            })
            .expect("node 1's DNS endpoint ready again");
            std::thread::sleep(Duration::from_secs(3));
            drop(end_loop);
            handle.join().unwrap()
        })
    };
    let summary = looper.lines().last().unwrap_or_default().to_string();
    assert!(
        summary.contains("FAILED 0"),
        "lookups lost while the DNS server restarted:\n{looper}"
    );
    let count: usize = summary
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(count >= 1000, "{summary}");
    eprintln!("{summary} lookups across node 1's DNS restart");
    // The restart went the way that loses nothing: drained, then back.
    let log = std::fs::read_to_string(cluster.home().join("logs").join(format!("{n1}-noded.log"))).unwrap_or_default();
    assert!(
        log.contains("node DNS endpoint not ready; draining"),
        "node 1's noded did not drain its DNS endpoint"
    );
    assert!(
        log.matches("node DNS server up").count() >= 2,
        "node 1's DNS server did not come back"
    );

    stop.store(true, Ordering::Relaxed);
    upstream.join().unwrap();
}
