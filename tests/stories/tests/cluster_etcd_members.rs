//! An operator runs the control plane on a 3-member etcd cluster
//! (`cargo xtask up --etcd-members 3`) and loses one member while a client
//! keeps writing ConfigMaps: every write the API server acknowledged (201)
//! is still readable afterwards, writes keep succeeding once etcd has a
//! leader again, and `etcdctl endpoint status` over TLS shows the two
//! remaining members agreeing on a leader. A second `up` (with no
//! `--etcd-members`: the cluster remembers it) brings the third member back.

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster};
use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "ledger";
const WRITERS: usize = 2;

/// `etcdctl` over TLS with the API server's etcd client certificate.
fn etcdctl(cluster: &TestCluster, endpoints: &[String], args: &[&str]) -> Output {
    let pki = cluster.home().join("pki");
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=3s", "--command-timeout=5s"])
        .arg(format!("--cacert={}", pki.join("etcd/ca.crt").display()))
        .arg(format!("--cert={}", pki.join("apiserver-etcd-client.crt").display()))
        .arg(format!("--key={}", pki.join("apiserver-etcd-client.key").display()))
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// `etcdctl endpoint status -w json` of `endpoints`: (endpoint, member id, leader id) each.
fn endpoint_status(cluster: &TestCluster, endpoints: &[String]) -> Result<Vec<(String, u64, u64)>, String> {
    let out = etcdctl(cluster, endpoints, &["endpoint", "status", "-w", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let list: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["Endpoint"].as_str().unwrap_or_default().to_string(),
                s["Status"]["header"]["member_id"].as_u64().unwrap_or_default(),
                s["Status"]["leader"].as_u64().unwrap_or_default(),
            )
        })
        .collect())
}

/// A write the API server refused: when it was sent, when it failed, what kubectl said.
struct Failed {
    sent: Instant,
    at: Instant,
    error: String,
}

/// What the writers saw: acknowledged ConfigMaps (name → value) and failed writes.
#[derive(Default)]
struct Writes {
    acknowledged: BTreeMap<String, String>,
    failed: Vec<Failed>,
    last_ok: Option<Instant>,
}

#[test]
fn losing_one_of_three_etcd_members_under_writes_loses_no_acknowledged_configmap() {
    let cluster = TestCluster::up(0, &["--etcd-members", "3"]);
    let members: Vec<String> = (0..3).map(|i| cluster.etcd_member_url(i)).collect();
    assert_eq!(
        std::fs::read_to_string(cluster.home().join("etcd-members"))
            .expect("etcd-members recorded")
            .trim(),
        "3"
    );

    // All three members are up and agree on one leader.
    let status = endpoint_status(&cluster, &members).expect("etcdctl endpoint status of all three members");
    assert_eq!(status.len(), 3, "{status:?}");
    let leader = status[0].2;
    assert!(
        status.iter().all(|s| s.2 == leader && leader != 0),
        "one leader for all: {status:?}"
    );
    // The leader goes: the hardest member to lose (an election follows).
    let victim = status
        .iter()
        .position(|s| s.1 == leader)
        .expect("the leader is one of the members");
    let victim_name = format!("etcd-{victim}");
    let victim_pid = cluster.pid(&victim_name).expect("pid file of the leader");

    cluster.kubectl_ok(&["create", "namespace", NS]);

    // Writers: each creates ConfigMaps one after another and remembers
    // those the API server acknowledged.
    let writes = Arc::new(Mutex::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (writes, stop) = (writes.clone(), stop.clone());
            let kubeconfig = cluster.kubeconfig();
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let (name, value) = (format!("entry-{w}-{n}"), format!("value {w}/{n}"));
                    n += 1;
                    let sent = Instant::now();
                    let out = Command::new("kubectl")
                        .arg("--kubeconfig")
                        .arg(&kubeconfig)
                        .args(["--request-timeout=10s", "-n", NS, "create", "configmap", &name])
                        .arg(format!("--from-literal=v={value}"))
                        .output()
                        .expect("run kubectl");
                    let mut w = writes.lock().expect("writes");
                    if out.status.success() {
                        w.acknowledged.insert(name, value);
                        w.last_ok = Some(Instant::now());
                    } else {
                        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                        w.failed.push(Failed {
                            sent,
                            at: Instant::now(),
                            error: format!("{name}: {err}"),
                        });
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(4));
    let before_kill = writes.lock().expect("writes").acknowledged.len();
    assert!(before_kill > 0, "no write succeeded before the kill");
    let status = Command::new("kill")
        .args(["-KILL", &victim_pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {victim_pid} ({victim_name})");
    let killed_at = Instant::now();
    eprintln!("killed {victim_name} (pid {victim_pid}, the leader) after {before_kill} acknowledged writes");

    // Keep writing until writes have succeeded again for a while (at most 30 s).
    let resumed = wait_for(Duration::from_secs(30), || {
        let w = writes.lock().expect("writes");
        let ok_after = w.acknowledged.len().saturating_sub(before_kill);
        (killed_at.elapsed() > Duration::from_secs(6)
            && ok_after > 0
            && w.last_ok.is_some_and(|t| t.elapsed() < Duration::from_secs(1)))
        .then_some(ok_after)
    });
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let writes = std::mem::take(&mut *writes.lock().expect("writes"));
    let failed_after_kill: Vec<_> = writes.failed.iter().filter(|f| f.at >= killed_at).collect();
    let since_kill = |t: Instant| t.saturating_duration_since(killed_at);
    eprintln!(
        "{} writes acknowledged ({before_kill} before the kill), {} failed ({} after the kill){}",
        writes.acknowledged.len(),
        writes.failed.len(),
        failed_after_kill.len(),
        failed_after_kill
            .iter()
            .take(5)
            .map(|f| format!(
                "\n  sent +{:?}, failed +{:?}: {}",
                since_kill(f.sent),
                since_kill(f.at),
                f.error
            ))
            .collect::<String>()
    );
    let resumed = resumed.unwrap_or_else(|| {
        panic!(
            "writes did not resume within 30 s of losing {victim_name}: {:?}\n{}",
            failed_after_kill
                .iter()
                .rev()
                .take(3)
                .map(|f| &f.error)
                .collect::<Vec<_>>(),
            cluster.logs_tail()
        )
    });
    eprintln!(
        "{resumed} writes acknowledged after the kill; the last failure {:?} after it",
        failed_after_kill.last().map(|f| since_kill(f.at))
    );
    assert!(
        writes.failed.iter().all(|f| f.at >= killed_at),
        "writes failed before the kill: {:?}",
        writes.failed.iter().map(|f| &f.error).collect::<Vec<_>>()
    );
    // A blip while the members elect a new leader and the API server stops
    // sending to the lost one, no more: a write sent more than 5 s after the
    // kill succeeds. (One in flight across the election may still fail when
    // etcd's own request timeout, 7 s, ends it.)
    let late: Vec<_> = failed_after_kill
        .iter()
        .filter(|f| since_kill(f.sent) > Duration::from_secs(5))
        .map(|f| format!("sent +{:?}: {}", since_kill(f.sent), f.error))
        .collect();
    assert!(late.is_empty(), "writes sent 5 s after the kill still fail: {late:?}");

    // Every acknowledged ConfigMap reads back with its value.
    let list: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["-n", NS, "get", "configmaps", "-o", "json"])).expect("json");
    let stored: BTreeMap<String, String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|cm| {
            Some((
                cm["metadata"]["name"].as_str()?.to_string(),
                cm["data"]["v"].as_str()?.to_string(),
            ))
        })
        .collect();
    let lost: Vec<_> = writes
        .acknowledged
        .iter()
        .filter(|(name, value)| stored.get(*name) != Some(*value))
        .collect();
    assert!(lost.is_empty(), "acknowledged ConfigMaps lost or changed: {lost:?}");
    let (name, value) = writes.acknowledged.iter().next_back().expect("one write");
    let one = cluster.kubectl_ok(&["-n", NS, "get", "configmap", name, "-o", "jsonpath={.data.v}"]);
    assert_eq!(one.trim(), value);

    // etcd: the two remaining members answer over TLS and agree on a leader among them.
    let remaining: Vec<String> = (0..3).filter(|&i| i != victim).map(|i| members[i].clone()).collect();
    let status = endpoint_status(&cluster, &remaining).expect("etcdctl endpoint status of the remaining members");
    assert_eq!(status.len(), 2, "{status:?}");
    let new_leader = status[0].2;
    assert!(
        status.iter().all(|s| s.2 == new_leader) && status.iter().any(|s| s.1 == new_leader),
        "the remaining members agree on a leader among them: {status:?}"
    );
    let dead = etcdctl(&cluster, &members[victim..=victim], &["endpoint", "health"]);
    assert!(!dead.status.success(), "{victim_name} still answers");

    // `up` again, without --etcd-members: the recorded 3 come back.
    cluster.start(&[]);
    let status = endpoint_status(&cluster, &members).expect("etcdctl endpoint status after up");
    assert_eq!(status.len(), 3, "{status:?}");
    assert!(cluster.pid(&victim_name).is_some_and(|pid| pid != victim_pid));
    let after = cluster.kubectl_ok(&["-n", NS, "get", "configmaps", "-o", "name"]);
    assert_eq!(after.lines().filter(|l| l.contains("/entry-")).count(), stored.len());
}
