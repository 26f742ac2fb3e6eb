//! `ctl delete`: delete objects named on the command line, selected by
//! labels, or described by manifests.

use crate::api::{is_not_found, server_error, Api, RawRequest, ResourceInfo};
use crate::commands::parse_targets;
use crate::manifest;
use anyhow::{bail, Result};
use clap::Args;
use http::Method;
use serde_json::Value;
use std::path::PathBuf;

/// Arguments of `ctl delete`.
#[derive(Args)]
pub struct DeleteArgs {
    /// `TYPE NAME...` or `TYPE/NAME...` (or only TYPE with -l / --all).
    pub targets: Vec<String>,
    /// Delete the objects described in these manifests.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Delete the objects of TYPE matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of TYPE in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Treat "not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Seconds the object gets to terminate (0 = immediately).
    #[arg(long)]
    pub grace_period: Option<i64>,
}

/// Run `ctl delete`.
pub async fn run(args: DeleteArgs, api: &mut Api) -> Result<()> {
    let mut work: Vec<(ResourceInfo, String, String)> = Vec::new();
    if !args.files.is_empty() {
        for m in manifest::read_all(&args.files)? {
            let info = api.for_kind(m.api_version(), m.kind()).await?;
            let ns = m
                .namespace()
                .map(str::to_string)
                .unwrap_or_else(|| api.namespace.clone());
            work.push((info, ns, m.name().to_string()));
        }
    } else if args.targets.is_empty() {
        bail!("you must provide one or more resources by argument or filename (-f)");
    } else {
        let ns = api.namespace.clone();
        for (info, names) in parse_targets(api, &args.targets).await? {
            if names.is_empty() {
                if args.selector.is_none() && !args.all {
                    bail!("resource(s) were provided, but no name was specified (use a name, -l or --all)");
                }
                let mut req = RawRequest::get(info.collection_path(Some(&ns)));
                if let Some(l) = &args.selector {
                    req = req.param("labelSelector", l.clone());
                }
                let list = api.request(req).await.map_err(server_error)?;
                for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(n) = item.pointer("/metadata/name").and_then(Value::as_str) {
                        work.push((info.clone(), ns.clone(), n.to_string()));
                    }
                }
            } else {
                for n in names {
                    work.push((info.clone(), ns.clone(), n));
                }
            }
        }
    }
    let mut failures = 0;
    for (info, ns, name) in work {
        let mut req = RawRequest::with_body(
            Method::DELETE,
            info.object_path(&ns, &name),
            "application/json",
            Vec::new(),
        );
        req.body = None;
        if let Some(g) = args.grace_period {
            req = req.param("gracePeriodSeconds", g.to_string());
        }
        match api.request(req).await {
            Ok(_) => println!("{} \"{name}\" deleted", info.type_name()),
            Err(e) if is_not_found(&e) && args.ignore_not_found => {}
            Err(e) => {
                eprintln!("{:#}", server_error(e));
                failures += 1;
            }
        }
    }
    if failures > 0 {
        bail!("{failures} objects could not be deleted");
    }
    Ok(())
}
