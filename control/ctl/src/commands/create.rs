//! `ctl create -f`: create objects from manifests; an existing object is an
//! error (AlreadyExists), as with kubectl.

use crate::api::{server_error, Api, RawRequest};
use crate::commands::apply::FIELD_MANAGER;
use crate::manifest;
use anyhow::{bail, Result};
use clap::Args;
use http::Method;
use serde_json::Value;
use std::path::PathBuf;

/// Arguments of `ctl create`.
#[derive(Args)]
pub struct CreateArgs {
    /// Manifest file, directory, or `-` for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

/// Run `ctl create`.
pub async fn run(args: CreateArgs, api: &mut Api) -> Result<()> {
    let manifests = manifest::read_all(&args.files)?;
    let mut failures = 0;
    for m in &manifests {
        let result: Result<String> = async {
            let info = api.for_kind(m.api_version(), m.kind()).await?;
            let namespace = m
                .namespace()
                .map(str::to_string)
                .unwrap_or_else(|| api.namespace.clone());
            let mut object = m.object.clone();
            if info.namespaced {
                object["metadata"]["namespace"] = Value::String(namespace.clone());
            }
            let req = RawRequest::with_body(
                Method::POST,
                info.collection_path(Some(&namespace)),
                "application/json",
                serde_json::to_vec(&object)?,
            )
            .param("fieldManager", FIELD_MANAGER);
            let created = api.request(req).await.map_err(server_error)?;
            let name = created
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or(m.name());
            Ok(format!("{}/{name} created", info.type_name()))
        }
        .await;
        match result {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{e:#} (from {})", m.source);
                failures += 1;
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} objects could not be created", manifests.len());
    }
    Ok(())
}
