//! `ctl apply -f`: create or update objects from manifests.
//!
//! Each object is sent as a server-side apply patch
//! (`application/apply-patch+yaml`, field manager `ctl`, `force=true`), so the
//! server merges it into what exists; an object that does not exist yet is
//! created. For an existing object ctl first sends the same patch as a dry
//! run: when the result equals what is stored it reports `unchanged` and
//! writes nothing, otherwise it applies and reports `configured`.
//!
//! The server's apply merges the manifest into the object (strategic merge):
//! fields removed from a manifest are not removed from the object (there are
//! no managed fields yet); `kubectl apply`'s three-way merge does remove them.

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
    let namespace = m
        .namespace()
        .map(str::to_string)
        .unwrap_or_else(|| api.namespace.clone());
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
            let mut req = RawRequest::with_body(
                Method::POST,
                info.collection_path(Some(&namespace)),
                "application/json",
                body,
            )
            .param("fieldManager", FIELD_MANAGER);
            if dry_run {
                req = req.param("dryRun", "All");
            }
            api.request(req).await.map_err(server_error)?;
            return Ok(format!("{}/{name} created{dry}", info.type_name()));
        }
        Some(current) => {
            let apply = |dry: bool| {
                let mut req = RawRequest::with_body(
                    Method::PATCH,
                    path.clone(),
                    "application/apply-patch+yaml",
                    body.clone(),
                )
                .param("fieldManager", FIELD_MANAGER)
                .param("force", "true");
                if dry {
                    req = req.param("dryRun", "All");
                }
                req
            };
            // Ask the server what the result would be first: if nothing would
            // change, say so and write nothing (no needless new resourceVersion).
            let preview = api.request(apply(true)).await.map_err(server_error)?;
            if comparable(&preview) == comparable(current) {
                return Ok(format!("{}/{name} unchanged{dry}", info.type_name()));
            }
            if dry_run {
                preview
            } else {
                api.request(apply(false)).await.map_err(server_error)?
            }
        }
    };
    let verb = if before.as_ref().map(comparable) == Some(comparable(&after)) {
        "unchanged"
    } else {
        "configured"
    };
    Ok(format!("{}/{name} {verb}{dry}", info.type_name()))
}

/// An object without the fields every write changes (resourceVersion,
/// managedFields), to tell whether an apply changed anything.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparison_ignores_write_bookkeeping_only() {
        let a =
            json!({"metadata": {"name": "x", "resourceVersion": "5", "managedFields": []}, "spec": {"replicas": 1}});
        let b = json!({"metadata": {"name": "x", "resourceVersion": "9"}, "spec": {"replicas": 1}});
        let c = json!({"metadata": {"name": "x", "resourceVersion": "9"}, "spec": {"replicas": 2}});
        assert_eq!(comparable(&a), comparable(&b));
        assert_ne!(comparable(&a), comparable(&c));
    }
}
