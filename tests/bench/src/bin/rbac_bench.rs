//! `rbac-bench`: the measuring half of `cargo xtask bench rbac` (not a test).
//!
//! What the authorizer costs a request. Starts a real etcd and API server
//! (release build), writes 1,000 Roles and 1,000 RoleBindings (each binding
//! one user to one role) into the namespace the bench writes to, plus a
//! ClusterRole and ClusterRoleBindings to other users, then sends paced
//! ConfigMap creates at 1,000 writes/s from two users, in alternating rounds:
//! - **RBAC on**: `bench-user`, allowed only by the last of those bindings, so
//!   every request walks every ClusterRoleBinding and RoleBinding;
//! - **RBAC off** (the baseline): `bench-admin` in `system:masters`, which the
//!   privileged-group authorizer allows before RBAC is consulted, as in
//!   Kubernetes.
//!
//! Both authenticate with client certificates of the same CA, so the only
//! difference is authorization. Writes a Markdown report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use sluice_tests::{ControlPlane, RawClient};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// Roles, and RoleBindings, in the bench namespace.
    #[arg(long, default_value_t = 1_000)]
    roles: usize,
    /// Paced write rate (writes/s).
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds per round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds per user (alternating, so drift affects both alike).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent clients (connections) per user.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Report path.
    #[arg(long, default_value = "bench-results/rbac.md")]
    out: PathBuf,
}

const NS: &str = "bench-rbac";

#[derive(Default)]
struct Stats {
    samples: Vec<f64>,
    errors: usize,
    elapsed: f64,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        sluice_bench::stats::percentile(&self.samples, p)
    }
    fn rate(&self) -> f64 {
        (self.samples.len() + self.errors) as f64 / self.elapsed.max(f64::EPSILON)
    }
}

/// `count` ConfigMap creates paced at `rate`/s over `clients` connections.
async fn paced(clients: &[RawClient], rate: u64, count: usize, prefix: &str) -> Stats {
    let next = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut tasks = Vec::new();
    for raw in clients {
        let raw = raw.clone();
        let next = next.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            loop {
                let i = {
                    let mut n = next.lock().await;
                    if *n >= count {
                        break;
                    }
                    *n += 1;
                    *n - 1
                };
                // Request i is due at start + i * interval (an open-loop
                // schedule: a slow answer does not slow the offered load).
                let due = start + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                let body = json!({"metadata": {"name": format!("{prefix}-{i:07}")}, "data": {"k": "v"}});
                let t = Instant::now();
                let status = raw
                    .post(&format!("/api/v1/namespaces/{NS}/configmaps"), &body)
                    .await
                    .status;
                if status == 201 {
                    st.samples.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    st.errors += 1;
                }
            }
            st
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        let st = t.await.expect("writer");
        all.samples.extend(st.samples);
        all.errors += st.errors;
    }
    all.elapsed = start.elapsed().as_secs_f64();
    all
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("==> starting etcd and the API server");
    let cp = ControlPlane::start_with(&["--event-ttl", "1h"]).await;
    let admin = cp.raw().await;
    let status = admin
        .post("/api/v1/namespaces", &json!({"metadata": {"name": NS}}))
        .await
        .status;
    anyhow::ensure!(status == 201, "namespace: {status}");

    eprintln!(
        "==> writing {} Roles and RoleBindings, and cluster-wide bindings",
        args.roles
    );
    let setup = Instant::now();
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let status = admin
        .post(
            &format!("{rbac}/clusterroles"),
            &json!({"metadata": {"name": "bench-secrets-reader"},
                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        )
        .await
        .status;
    anyhow::ensure!(status == 201, "clusterrole: {status}");
    for i in 0..args.roles / 10 {
        let status = admin
            .post(
                &format!("{rbac}/clusterrolebindings"),
                &json!({"metadata": {"name": format!("bench-crb-{i:04}")},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bench-secrets-reader"},
                        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("other-{i}")}]}),
            )
            .await
            .status;
        anyhow::ensure!(status == 201, "clusterrolebinding {i}: {status}");
    }
    for i in 0..args.roles {
        // Only the last binding names the bench user, and only its role
        // allows ConfigMap creates.
        let (user, rules) = if i + 1 == args.roles {
            (
                "bench-user".to_string(),
                json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]),
            )
        } else {
            (
                format!("user-{i}"),
                json!([{"apiGroups": [""], "resources": ["pods"], "resourceNames": [format!("p-{i}")], "verbs": ["get"]}]),
            )
        };
        let role = json!({"metadata": {"name": format!("role-{i:04}")}, "rules": rules});
        let binding = json!({"metadata": {"name": format!("binding-{i:04}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i:04}")},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]});
        for (what, body) in [("roles", role), ("rolebindings", binding)] {
            let status = admin
                .post(&format!("{rbac}/namespaces/{NS}/{what}"), &body)
                .await
                .status;
            anyhow::ensure!(status == 201, "{what} {i}: {status}");
        }
        if (i + 1) % 200 == 0 {
            eprintln!("    {} of {} written", i + 1, args.roles);
        }
    }
    let setup = setup.elapsed();

    let user_kc = cp.apiserver.user_kubeconfig("bench-user", &[]);
    let admin_kc = cp.apiserver.user_kubeconfig("bench-admin", &["system:masters"]);
    let mut on_clients = Vec::new();
    let mut off_clients = Vec::new();
    for _ in 0..args.clients {
        on_clients.push(cp.apiserver.raw_as(&user_kc).await);
        off_clients.push(cp.apiserver.raw_as(&admin_kc).await);
    }
    // The authorizer's snapshot follows the bindings by a watch: wait until
    // the bench user's binding is in effect.
    let ready = Instant::now();
    loop {
        let body = json!({"metadata": {"name": format!("probe-{}", ready.elapsed().as_micros())}});
        let status = on_clients[0]
            .post(&format!("/api/v1/namespaces/{NS}/configmaps"), &body)
            .await
            .status;
        if status == 201 {
            break;
        }
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "bench-user still gets {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm both paths (connections, caches) before measuring.
    paced(&off_clients, args.rate, args.rate as usize, "warm-off").await;
    paced(&on_clients, args.rate, args.rate as usize, "warm-on").await;

    let count = (args.rate * args.seconds) as usize;
    let (mut on, mut off) = (Stats::default(), Stats::default());
    for round in 0..args.rounds {
        eprintln!(
            "==> round {} of {}: {count} creates at {}/s as bench-admin (RBAC off), then as bench-user (RBAC on)",
            round + 1,
            args.rounds,
            args.rate
        );
        for (stats, clients, who) in [(&mut off, &off_clients, "off"), (&mut on, &on_clients, "on")] {
            let st = paced(clients, args.rate, count, &format!("r{round}-{who}")).await;
            stats.samples.extend(st.samples);
            stats.errors += st.errors;
            stats.elapsed += st.elapsed;
        }
    }

    let p99_ratio = on.pct(99.0) / off.pct(99.0);
    let p50_ratio = on.pct(50.0) / off.pct(50.0);
    let report = format!(
        "# RBAC benchmark\n\n\
Generated by `cargo xtask bench rbac` (release build). Not a test.\n\n\
Machine: 2 cores shared by etcd, the API server and the clients; HTTPS with client certificates.\n\n\
Setup: {roles} Roles and {roles} RoleBindings in namespace `{NS}` (each binding one user to one role), \
{crbs} ClusterRoleBindings to other users, written in {setup:.1} s. \
`bench-user` is allowed ConfigMap creates by the last RoleBinding only, so each of its requests walks \
every ClusterRoleBinding and RoleBinding (as Kubernetes' RBAC authorizer does). \
The baseline, `bench-admin` in `system:masters`, is allowed before RBAC is consulted.\n\n\
Load: ConfigMap creates paced at {rate}/s (open loop) over {clients} connections per user, \
{rounds} alternating rounds of {seconds} s per user.\n\n\
| user | requests | errors | achieved rate | p50 (ms) | p99 (ms) |\n|---|---|---|---|---|---|\n\
| bench-admin (RBAC off) | {off_n} | {off_e} | {off_r:.0}/s | {off_50:.2} | {off_99:.2} |\n\
| bench-user (RBAC on, {roles} bindings) | {on_n} | {on_e} | {on_r:.0}/s | {on_50:.2} | {on_99:.2} |\n\n\
RBAC on / off: p50 {p50_ratio:.2}x, p99 {p99_ratio:.2}x. Goal (issue 14): p99 within 5% (<= 1.05x).\n",
        roles = args.roles,
        crbs = args.roles / 10,
        setup = setup.as_secs_f64(),
        rate = args.rate,
        clients = args.clients,
        rounds = args.rounds,
        seconds = args.seconds,
        off_n = off.samples.len(),
        off_e = off.errors,
        off_r = off.rate(),
        off_50 = off.pct(50.0),
        off_99 = off.pct(99.0),
        on_n = on.samples.len(),
        on_e = on.errors,
        on_r = on.rate(),
        on_50 = on.pct(50.0),
        on_99 = on.pct(99.0),
    );
    println!("{report}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, report)?;
    Ok(())
}
