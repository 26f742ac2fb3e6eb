//! `ctl dataplane services|backends|conntrack|drops`: the eBPF data plane of
//! this machine's nodes, live from their pinned maps; `ctl dataplane flows`:
//! the recent flows of every node, from the node daemons ([`flows`]).
//!
//! Runs on a node (as root: reading bpffs needs CAP_BPF). It opens the maps
//! of each node daemon read-only through `sluice_datapath::inspect` (pin
//! root `/sys/fs/bpf/sluice/<node>`; `--node` picks one, `--pin-dir` any
//! other root, by default every node found), asks the API server for
//! Service and pod names when it is reachable ([`names`]), and prints
//! tables laid out like `ctl get` ([`view`]). `--follow` reads again every
//! `--interval` and adds rates; `-o json` prints the raw counters.

pub mod flows;
pub mod names;
pub mod view;

use crate::api::Api;
use crate::printer;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use names::Names;
use sluice_datapath::inspect::{self, Inspector};
use std::path::PathBuf;
use std::time::Duration;
use view::{NodeSnapshot, ViewOptions, What};

/// Arguments of `ctl dataplane`.
#[derive(Args)]
#[command(after_help = "Examples:
  ctl dataplane services                       # every frontend of every node on this machine
  ctl dataplane backends --service shop/web    # where shop/web's packets went, per backend
  ctl dataplane conntrack --node worker-1 -o wide
  ctl dataplane drops --follow                 # drop and reject counters, with rates, every second
  ctl dataplane flows --follow --verdict rejected   # new flows rejected anywhere in the cluster, as they happen
  ctl dataplane flows --service shop/web --pod web-1 -o json

Reads the pinned eBPF maps under /sys/fs/bpf/sluice/<node> (root needed); never writes them.
Service and pod names come from the API server when it answers; otherwise addresses are shown.
`flows` asks each node daemon instead (its kubelet port, with the kubeconfig's credentials).")]
pub struct DataplaneArgs {
    #[command(subcommand)]
    what: WhatCommand,
    /// Only this node's data plane (its pin directory /sys/fs/bpf/sluice/<NODE>).
    #[arg(long, global = true, conflicts_with = "pin_dir")]
    node: Option<String>,
    /// Read the maps pinned in this directory instead (a node daemon started with another pin root).
    #[arg(long, global = true)]
    pin_dir: Option<PathBuf>,
    /// Only rows of this Service, as NAMESPACE/NAME (needs the API server to name frontends).
    #[arg(long, global = true)]
    service: Option<String>,
    /// Output format: json or wide (more columns).
    #[arg(short = 'o', long, global = true)]
    output: Option<String>,
    /// Read the maps again every interval and print the table with rates since the previous read.
    #[arg(short = 'f', long, global = true)]
    follow: bool,
    /// Interval of --follow (e.g. 1s, 5s).
    #[arg(long, global = true, default_value = "1s")]
    interval: String,
}

#[derive(Subcommand, Clone)]
enum WhatCommand {
    /// Frontends (ClusterIP, NodePort, external, hostPort) with backend counts, packets and bytes.
    Services,
    /// Backends of each frontend: address, pod, state, packets, bytes and share of the frontend's packets.
    Backends,
    /// Tracked flows: client → frontend, the backend chosen, state and idle time (-o wide: both directions, NAT).
    Conntrack,
    /// Packets dropped or rejected, by reason (-o wide: every datapath event).
    Drops,
    /// New flows balanced (packet or socket level), masqueraded out of the cluster, dropped or rejected, as the node daemons saw them (like `hubble observe`).
    Flows(FlowsArgs),
}

/// Arguments of `ctl dataplane flows`.
#[derive(Args, Clone)]
struct FlowsArgs {
    /// Only flows from or to this pod (NAME or NAMESPACE/NAME).
    #[arg(long)]
    pod: Option<String>,
    /// Only flows with this verdict: forwarded, dropped or rejected.
    #[arg(long)]
    verdict: Option<String>,
    /// Show at most this many of each node's recent flows (after filtering; with --follow, before).
    #[arg(long, default_value_t = 20)]
    last: usize,
}

/// Where to read: (node name, pin root) pairs.
fn roots(args: &DataplaneArgs) -> Result<Vec<(String, PathBuf)>> {
    if let Some(dir) = &args.pin_dir {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(name, dir.clone())]);
    }
    let base = PathBuf::from(inspect::PIN_BASE);
    if let Some(node) = &args.node {
        if node.is_empty() || node.contains('/') || node == "." || node == ".." {
            bail!("invalid --node {node:?}: a node name");
        }
        return Ok(vec![(node.clone(), base.join(node))]);
    }
    let found = inspect::node_pin_roots(&base);
    if found.is_empty() {
        bail!(
            "no node data plane on this machine: nothing pinned under {} (is noded running here, with its data plane on? \
             use --pin-dir for another pin root)",
            base.display()
        );
    }
    Ok(found)
}

fn open(roots: &[(String, PathBuf)]) -> Result<Vec<(String, Inspector)>> {
    roots
        .iter()
        .map(|(node, dir)| {
            let node_label = if node.is_empty() { "-" } else { node.as_str() };
            Inspector::open(dir)
                .map(|i| (node_label.to_string(), i))
                .with_context(|| format!("opening the data plane of node {node_label} ({})", dir.display()))
        })
        .collect()
}

fn read(inspectors: &[(String, Inspector)]) -> Result<Vec<NodeSnapshot>> {
    inspectors
        .iter()
        .map(|(node, i)| {
            Ok(NodeSnapshot {
                node: node.clone(),
                snapshot: i
                    .snapshot()
                    .with_context(|| format!("reading {}", i.pin_root().display()))?,
            })
        })
        .collect()
}

fn render(
    what: WhatCommand,
    json: bool,
    follow: bool,
    nodes: &[NodeSnapshot],
    prev: Option<&[NodeSnapshot]>,
    names: &Names,
    opts: &ViewOptions,
) -> Result<String> {
    let kind = match what {
        WhatCommand::Services => What::Services,
        WhatCommand::Backends => What::Backends,
        WhatCommand::Conntrack => What::Conntrack,
        WhatCommand::Drops => What::Drops,
        WhatCommand::Flows(_) => bail!("flows are not read from the maps"),
    };
    if json {
        let rows = view::json_rows(kind, nodes, names, opts);
        let list = serde_json::json!({ "items": rows });
        // One line per read when following (JSON lines), indented otherwise.
        return Ok(if follow {
            serde_json::to_string(&list)?
        } else {
            serde_json::to_string_pretty(&list)?
        });
    }
    let grid = match kind {
        What::Services => view::services_grid(nodes, prev, names, opts),
        What::Backends => view::backends_grid(nodes, prev, names, opts),
        What::Conntrack => view::conntrack_grid(nodes, names, opts),
        What::Drops => view::drops_grid(nodes, prev, opts),
    };
    Ok(printer::render(&grid).unwrap_or_else(|| "No resources found.".to_string()))
}

/// Run `ctl dataplane`. `api` names Services and pods when it answers;
/// `namespace` (an explicit `-n`) keeps only that namespace's Services.
pub async fn run(args: DataplaneArgs, api: Option<&Api>, namespace: Option<&str>) -> Result<()> {
    let (json, wide) = match args.output.as_deref() {
        None | Some("") => (false, false),
        Some("json") => (true, false),
        Some("wide") => (false, true),
        Some(other) => bail!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,wide"
        ),
    };
    if let Some(s) = &args.service {
        if s.split('/').count() != 2 || s.split('/').any(str::is_empty) {
            bail!("invalid --service {s:?}: expected NAMESPACE/NAME");
        }
        if matches!(args.what, WhatCommand::Drops) {
            bail!("--service does not apply to drops: the data plane counts drop reasons per node, not per Service");
        }
    }
    if let WhatCommand::Flows(flow_args) = &args.what {
        if args.pin_dir.is_some() {
            bail!("--pin-dir does not apply to flows: they come from the node daemons, not from bpffs");
        }
        let verdict = match flow_args.verdict.as_deref() {
            None => None,
            Some(v) => Some(
                sluice_datapath::flows::FlowVerdict::parse(v)
                    .with_context(|| format!("invalid --verdict {v:?}: forwarded, dropped or rejected"))?,
            ),
        };
        let names = Names::fetch(api).await;
        let request = flows::FlowsRequest {
            node: args.node.clone(),
            filter: flows::FlowFilter {
                namespace: namespace.map(str::to_string),
                service: args.service.clone(),
                pod: flow_args.pod.clone(),
                verdict,
            },
            follow: args.follow,
            json,
            last: flow_args.last,
        };
        return flows::run(api, &names, request).await;
    }
    let interval = Duration::from_secs(
        crate::commands::logs::parse_duration_seconds(&args.interval)
            .context("--interval")?
            .max(1) as u64,
    );
    let roots = roots(&args)?;
    let inspectors = open(&roots)?;
    let names = Names::fetch(api).await;
    if (args.service.is_some() || namespace.is_some()) && !names.known {
        bail!("--service and -n need Service names from the API server, which did not answer (check --kubeconfig)");
    }
    let opts = ViewOptions {
        wide,
        service: args.service.clone(),
        namespace: namespace.map(str::to_string),
    };
    let mut prev: Option<Vec<NodeSnapshot>> = None;
    loop {
        let cur = read(&inspectors)?;
        let text = render(
            args.what.clone(),
            json,
            args.follow,
            &cur,
            prev.as_deref(),
            &names,
            &opts,
        )?;
        if args.follow && !json {
            println!(
                "{}  (every {}s, rates since the previous read)",
                chrono::Local::now().format("%H:%M:%S"),
                interval.as_secs()
            );
        }
        println!("{text}");
        if !args.follow {
            return Ok(());
        }
        println!();
        prev = Some(cur);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
