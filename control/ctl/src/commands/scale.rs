//! `ctl scale`: set `spec.replicas` through the `scale` subresource.

use crate::api::{server_error, Api, RawRequest};
use crate::commands::parse_targets;
use anyhow::{bail, Result};
use clap::Args;
use http::Method;
use serde_json::json;

/// Arguments of `ctl scale`.
#[derive(Args)]
pub struct ScaleArgs {
    /// `TYPE NAME` or `TYPE/NAME`, e.g. `deploy/web`.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// The desired number of replicas.
    #[arg(long)]
    pub replicas: u32,
}

/// Run `ctl scale`.
pub async fn run(args: ScaleArgs, api: &mut Api) -> Result<()> {
    let ns = api.namespace.clone();
    let targets = parse_targets(api, &args.targets).await?;
    for (info, names) in targets {
        if !info.subresources.iter().any(|s| s == "scale") {
            bail!("{} cannot be scaled (no scale subresource)", info.type_name());
        }
        if names.is_empty() {
            bail!("specify the name of the {} to scale", info.type_name());
        }
        for name in names {
            let body = serde_json::to_vec(&json!({"spec": {"replicas": args.replicas}}))?;
            let path = format!("{}/scale", info.object_path(&ns, &name));
            api.request(RawRequest::with_body(
                Method::PATCH,
                path,
                "application/merge-patch+json",
                body,
            ))
            .await
            .map_err(server_error)?;
            println!("{}/{name} scaled", info.type_name());
        }
    }
    Ok(())
}
