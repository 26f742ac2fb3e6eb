//! `ctl get`: list or read objects, printed as the server's Table or as
//! YAML/JSON/names, optionally watching for changes afterwards (`-w`).

use crate::api::{server_error, Api, RawRequest, ResourceInfo, ACCEPT_TABLE};
use crate::commands::parse_targets;
use crate::printer::{self, Format, Grid, TableOptions};
use anyhow::{bail, Result};
use clap::Args;
use futures::TryStreamExt;
use kube::api::WatchEvent;
use serde_json::Value;

/// Arguments of `ctl get`.
#[derive(Args)]
pub struct GetArgs {
    /// `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...` (e.g. `pods`, `deploy,svc,po`, `deploy/web`).
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Label selector, e.g. `app=web,tier!=db`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector, e.g. `status.phase=Running`.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes and print them as they happen.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// What one type's get returned.
struct Fetched {
    info: ResourceInfo,
    /// Tables (one per request) when a table was asked for.
    tables: Vec<Value>,
    /// Objects when YAML/JSON/name was asked for.
    objects: Vec<Value>,
    /// resourceVersion of the list (to start a watch from).
    resource_version: String,
}

/// Run `ctl get`.
pub async fn run(args: GetArgs, api: &mut Api) -> Result<()> {
    let format = Format::parse(args.output.as_deref())?;
    let targets = parse_targets(api, &args.targets).await?;
    if args.watch && targets.len() != 1 {
        bail!("you may only specify a single resource type when watching");
    }
    let namespace = (!args.all_namespaces).then(|| api.namespace.clone());
    let several = targets.len() > 1;
    let mut fetched = Vec::new();
    for (info, names) in targets {
        fetched.push(fetch(api, &info, &names, namespace.as_deref(), &args, format).await?);
    }

    let with_namespace = args.all_namespaces;
    let mut printed_any = false;
    let mut watch_widths: Option<Vec<usize>> = None;
    match format {
        Format::Table | Format::Wide => {
            for f in &fetched {
                let opts = TableOptions {
                    wide: format == Format::Wide,
                    with_namespace: with_namespace && f.info.namespaced,
                    name_prefix: several.then(|| f.info.type_name()),
                };
                let mut merged: Option<Grid> = None;
                for t in &f.tables {
                    let g = printer::grid(t, &opts);
                    match &mut merged {
                        Some(m) => m.rows.extend(g.rows),
                        None => merged = Some(g),
                    }
                }
                if let Some(g) = merged {
                    if let Some(text) = printer::render(&g) {
                        if printed_any {
                            println!();
                        }
                        println!("{text}");
                        printed_any = true;
                        watch_widths = Some(printer::widths(&g));
                    }
                }
            }
        }
        Format::Yaml | Format::Json => {
            let all: Vec<Value> = fetched.iter().flat_map(|f| f.objects.clone()).collect();
            if !all.is_empty() {
                println!("{}", printer::objects(&all, format)?);
                printed_any = true;
            }
        }
        Format::Name => {
            for f in &fetched {
                for o in &f.objects {
                    let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                    println!("{}/{name}", f.info.type_name());
                    printed_any = true;
                }
            }
        }
    }
    if !printed_any && !args.watch {
        match &namespace {
            Some(ns) if fetched.iter().any(|f| f.info.namespaced) => eprintln!("No resources found in {ns} namespace."),
            _ => eprintln!("No resources found"),
        }
    }
    if args.watch {
        let f = &fetched[0];
        let opts = TableOptions {
            wide: format == Format::Wide,
            with_namespace: with_namespace && f.info.namespaced,
            name_prefix: None,
        };
        watch(
            api,
            &f.info,
            namespace.as_deref(),
            &args,
            format,
            &opts,
            f.resource_version.clone(),
            watch_widths,
        )
        .await?;
    }
    Ok(())
}

fn accept(format: Format) -> &'static str {
    if format.wants_table() {
        ACCEPT_TABLE
    } else {
        "application/json"
    }
}

/// Objects of a list response, with apiVersion/kind filled in (lists omit them per item).
fn list_items(list: &Value, info: &ResourceInfo) -> Vec<Value> {
    list.get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    let mut i = i.clone();
                    if let Some(o) = i.as_object_mut() {
                        o.entry("apiVersion")
                            .or_insert_with(|| Value::String(info.api_version()));
                        o.entry("kind").or_insert_with(|| Value::String(info.kind.clone()));
                    }
                    i
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A response that should have been a Table but is not (an older server):
/// build a NAME/AGE-less Table from it so printing still works.
fn as_table(v: Value, info: &ResourceInfo) -> Value {
    if v.get("kind").and_then(Value::as_str) == Some("Table") {
        return v;
    }
    let objects = if v.get("items").is_some() {
        list_items(&v, info)
    } else {
        vec![v.clone()]
    };
    serde_json::json!({
        "kind": "Table",
        "metadata": v.get("metadata").cloned().unwrap_or(Value::Null),
        "columnDefinitions": [{"name": "Name", "type": "string", "format": "name", "priority": 0}],
        "rows": objects.iter().map(|o| serde_json::json!({
            "cells": [o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)],
            "object": o,
        })).collect::<Vec<_>>(),
    })
}

async fn fetch(
    api: &Api,
    info: &ResourceInfo,
    names: &[String],
    namespace: Option<&str>,
    args: &GetArgs,
    format: Format,
) -> Result<Fetched> {
    let mut out = Fetched {
        info: info.clone(),
        tables: Vec::new(),
        objects: Vec::new(),
        resource_version: String::new(),
    };
    if names.is_empty() {
        let mut req = RawRequest::get(info.collection_path(namespace));
        req.accept = accept(format);
        if let Some(l) = &args.selector {
            req = req.param("labelSelector", l.clone());
        }
        if let Some(f) = &args.field_selector {
            req = req.param("fieldSelector", f.clone());
        }
        let list = api.request(req).await.map_err(server_error)?;
        out.resource_version = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if format.wants_table() {
            out.tables.push(as_table(list, info));
        } else {
            out.objects = list_items(&list, info);
        }
    } else {
        let ns = namespace.unwrap_or("default");
        for name in names {
            let mut req = RawRequest::get(info.object_path(ns, name));
            req.accept = accept(format);
            let obj = api.request(req).await.map_err(server_error)?;
            if format.wants_table() {
                out.tables.push(as_table(obj, info));
            } else {
                out.objects.push(obj);
            }
        }
    }
    Ok(out)
}

/// Stream changes after the initial listing until interrupted; reconnects
/// from the last seen resourceVersion when the server ends a watch.
#[allow(clippy::too_many_arguments)]
async fn watch(
    api: &Api,
    info: &ResourceInfo,
    namespace: Option<&str>,
    args: &GetArgs,
    format: Format,
    opts: &TableOptions,
    mut resource_version: String,
    mut widths: Option<Vec<usize>>,
) -> Result<()> {
    loop {
        let mut req = RawRequest::get(info.collection_path(namespace))
            .param("watch", "true")
            .param("timeoutSeconds", "240");
        req.accept = accept(format);
        if !resource_version.is_empty() {
            req = req.param("resourceVersion", resource_version.clone());
        }
        if let Some(l) = &args.selector {
            req = req.param("labelSelector", l.clone());
        }
        if let Some(f) = &args.field_selector {
            req = req.param("fieldSelector", f.clone());
        }
        let stream = api
            .client
            .request_events::<Value>(req.build()?)
            .await
            .map_err(server_error)?;
        futures::pin_mut!(stream);
        while let Some(event) = stream.try_next().await.map_err(server_error)? {
            let object = match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
                WatchEvent::Bookmark(b) => {
                    resource_version = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) if status.code == 410 => {
                    // Our version is too old: start over from "now".
                    resource_version.clear();
                    break;
                }
                WatchEvent::Error(status) => bail!("Error from server ({}): {}", status.reason, status.message),
            };
            if let Some(rv) = object
                .pointer("/metadata/resourceVersion")
                .or_else(|| object.pointer("/rows/0/object/metadata/resourceVersion"))
                .and_then(Value::as_str)
                .filter(|rv| !rv.is_empty())
            {
                resource_version = rv.to_string();
            }
            print_event(&object, info, format, opts, &mut widths)?;
        }
    }
}

fn print_event(
    object: &Value,
    info: &ResourceInfo,
    format: Format,
    opts: &TableOptions,
    widths: &mut Option<Vec<usize>>,
) -> Result<()> {
    match format {
        Format::Table | Format::Wide => {
            let table = as_table(object.clone(), info);
            let g = printer::grid(&table, opts);
            let w = match widths {
                Some(w) => w.clone(),
                None => {
                    let w = printer::widths(&g);
                    println!("{}", printer::line(&g.headers, &w));
                    *widths = Some(w.clone());
                    w
                }
            };
            for row in &g.rows {
                println!("{}", printer::line(row, &w));
            }
        }
        Format::Name => {
            let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            println!("{}/{name}", info.type_name());
        }
        Format::Yaml => println!("---\n{}", printer::objects(std::slice::from_ref(object), format)?),
        Format::Json => println!("{}", printer::objects(std::slice::from_ref(object), format)?),
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    Ok(())
}
