//! `ctl apply -f`: create or update objects from manifests.
//!
//! Each object is sent as a server-side apply patch
//! (`application/apply-patch+yaml`, field manager `ctl`, `force=true`), so the
//! server merges it into what exists; an object that does not exist yet is
//! created. ctl reads the object first only to report `created`,
//! `configured` or `unchanged` like kubectl does.

use crate::api::{is_not_found, server_error, Api, RawRequest};
use crate::manifest::{self, Manifest};
use anyhow::{bail, Result};
use clap::Args;
use http::Method;
use serde_json::Value;
use std::path::PathBuf;

/// Field manager ctl's changes are recorded under.
pub const FIELD_MANAGER: &str = "ctl";

/// Arguments of `ctl apply`.
#[derive(Args)]
pub struct ApplyArgs {
    /// Manifest file, directory, or `-` for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Validate on the server without persisting anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Run `ctl apply`.
pub async fn run(args: ApplyArgs, api: &mut Api) -> Result<()> {
    let manifests = manifest::read_all(&args.files)?;
    let mut failures = 0;
    for m in &manifests {
        match apply_one(api, m, args.dry_run).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{e:#} (from {})", m.source);
                failures += 1;
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} objects could not be applied", manifests.len());
    }
    Ok(())
}

async fn apply_one(api: &mut Api, m: &Manifest, dry_run: bool) -> Result<String> {
    let info = api.for_kind(m.api_version(), m.kind()).await?;
    let name = m.name();
    if name.is_empty() {
        bail!("{} has no metadata.name", m.kind());
    }
    let namespace = m.namespace().map(str::to_string).unwrap_or_else(|| api.namespace.clone());
    let path = info.object_path(&namespace, name);
    let mut object = m.object.clone();
    if info.namespaced {
        object["metadata"]["namespace"] = Value::String(namespace.clone());
    }
    let dry = if dry_run { " (server dry run)" } else { "" };

    let before = match api.request(RawRequest::get(path.clone())).await {
        Ok(o) => Some(o),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(server_error(e)),
    };
    let body = serde_json::to_vec(&object)?;
    let after = match &before {
        None => {
            let mut req = RawRequest::with_body(Method::POST, info.collection_path(Some(&namespace)), "application/json", body)
                .param("fieldManager", FIELD_MANAGER);
            if dry_run {
                req = req.param("dryRun", "All");
            }
            api.request(req).await.map_err(server_error)?;
            return Ok(format!("{}/{name} created{dry}", info.type_name()));
        }
        Some(_) => {
            let mut req = RawRequest::with_body(Method::PATCH, path, "application/apply-patch+yaml", body)
                .param("fieldManager", FIELD_MANAGER)
                .param("force", "true");
            if dry_run {
                req = req.param("dryRun", "All");
            }
            api.request(req).await.map_err(server_error)?
        }
    };
    let rv = |o: &Value| o.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
    let verb = if before.as_ref().and_then(rv) == rv(&after) { "unchanged" } else { "configured" };
    Ok(format!("{}/{name} {verb}{dry}", info.type_name()))
}
