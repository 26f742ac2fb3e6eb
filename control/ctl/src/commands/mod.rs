//! One module per ctl command; [`run`] dispatches to them.

mod apply;
mod create;
pub mod dataplane;
mod delete;
mod describe;
mod get;
mod logs;
mod node;
mod scale;

use crate::api::{Api, ResourceInfo};
use anyhow::{bail, Result};
use clap::Subcommand;

/// The commands of ctl.
#[derive(Subcommand)]
pub enum Command {
    /// Display one or many objects (server-side columns, or -o yaml|json|wide|name).
    Get(get::GetArgs),
    /// Show an object in detail, with its events.
    Describe(describe::DescribeArgs),
    /// Create or update objects from manifests (server-side apply, field manager "ctl").
    Apply(apply::ApplyArgs),
    /// Create objects from manifests; fails for objects that already exist.
    Create(create::CreateArgs),
    /// Delete objects by type and name, by label selector, or from manifests.
    Delete(delete::DeleteArgs),
    /// Set the replica count of a Deployment or ReplicaSet.
    Scale(scale::ScaleArgs),
    /// Print or follow a container's log.
    Logs(logs::LogsArgs),
    /// Join nodes: bootstrap tokens and the join command line.
    Node(node::NodeArgs),
    /// Show this machine's eBPF data plane: services, backends, conntrack, drops (live from the pinned maps).
    Dataplane(dataplane::DataplaneArgs),
}

/// Run one command.
pub async fn run(command: Command, api: &mut Api) -> Result<()> {
    match command {
        Command::Get(args) => get::run(args, api).await,
        Command::Describe(args) => describe::run(args, api).await,
        Command::Apply(args) => apply::run(args, api).await,
        Command::Create(args) => create::run(args, api).await,
        Command::Delete(args) => delete::run(args, api).await,
        Command::Scale(args) => scale::run(args, api).await,
        Command::Logs(args) => logs::run(args, api).await,
        Command::Node(args) => node::run(args, api).await,
        Command::Dataplane(args) => dataplane::run(args, Some(api), None).await,
    }
}

/// Objects named on the command line, grouped by type: `TYPE[,TYPE...] [NAME...]`
/// or `TYPE/NAME [TYPE/NAME...]`.
pub async fn parse_targets(api: &mut Api, args: &[String]) -> Result<Vec<(ResourceInfo, Vec<String>)>> {
    let Some(first) = args.first() else {
        bail!("you must specify the type of resource, e.g. `pods` or `deploy/web`");
    };
    let mut out: Vec<(ResourceInfo, Vec<String>)> = Vec::new();
    if first.contains('/') {
        for a in args {
            let Some((ty, name)) = a.split_once('/') else {
                bail!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form");
            };
            let info = api.resolve(ty).await?;
            match out.iter_mut().find(|(i, _)| *i == info) {
                Some((_, names)) => names.push(name.to_string()),
                None => out.push((info, vec![name.to_string()])),
            }
        }
    } else {
        let names: Vec<String> = args[1..].to_vec();
        for ty in first.split(',').filter(|t| !t.is_empty()) {
            let info = api.resolve(ty).await?;
            out.push((info, names.clone()));
        }
    }
    Ok(out)
}
