//! `ctl describe`: an object's identity, spec and status in readable form,
//! followed by the Events about it (found with an `involvedObject.*` field
//! selector, as kubectl does).

use crate::api::{server_error, Api, RawRequest, ResourceInfo};
use crate::commands::parse_targets;
use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;

/// Arguments of `ctl describe`.
#[derive(Args)]
pub struct DescribeArgs {
    /// `TYPE NAME...` or `TYPE/NAME...`; a TYPE alone describes every object of it.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Label selector when no name is given.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// Run `ctl describe`.
pub async fn run(args: DescribeArgs, api: &mut Api) -> Result<()> {
    let targets = parse_targets(api, &args.targets).await?;
    let ns = api.namespace.clone();
    let mut first = true;
    for (info, names) in targets {
        let objects: Vec<Value> = if names.is_empty() {
            let mut req = RawRequest::get(info.collection_path(Some(&ns)));
            if let Some(l) = &args.selector {
                req = req.param("labelSelector", l.clone());
            }
            let list = api.request(req).await.map_err(server_error)?;
            list.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
        } else {
            let mut out = Vec::new();
            for name in &names {
                out.push(
                    api.request(RawRequest::get(info.object_path(&ns, name)))
                        .await
                        .map_err(server_error)?,
                );
            }
            out
        };
        for obj in objects {
            if !first {
                println!("\n");
            }
            first = false;
            let events = events_for(api, &info, &obj).await?;
            println!("{}", render(&info, &obj, &events, Utc::now()));
        }
    }
    Ok(())
}

/// Events whose involvedObject is `obj`, oldest first.
async fn events_for(api: &Api, info: &ResourceInfo, obj: &Value) -> Result<Vec<Value>> {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut selector = format!(
        "involvedObject.name={name},involvedObject.namespace={namespace},involvedObject.kind={}",
        info.kind
    );
    if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let req = RawRequest::get(format!("/api/v1/namespaces/{namespace}/events")).param("fieldSelector", selector);
    let list = api.request(req).await.map_err(server_error)?;
    let mut events = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    events.sort_by_key(|e| last_seen(e).to_string());
    Ok(events)
}

fn last_seen(e: &Value) -> &str {
    [
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| e.pointer(p).and_then(Value::as_str))
    .find(|s| !s.is_empty())
    .unwrap_or("")
}

fn map_lines(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(&v.to_string())))
            .collect::<Vec<_>>()
            .join("\n              "),
        _ => "<none>".to_string(),
    }
}

fn indented_yaml(v: &Value) -> String {
    serde_yaml::to_string(v)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn age(t: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(t) else {
        return "<unknown>".to_string();
    };
    let secs = now.signed_duration_since(t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The text `ctl describe` prints for one object.
pub fn render(info: &ResourceInfo, obj: &Value, events: &[Value], now: DateTime<Utc>) -> String {
    let meta = obj.get("metadata").cloned().unwrap_or(Value::Null);
    let s = |p: &str| meta.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = String::new();
    out.push_str(&format!("Name:         {}\n", s("/name")));
    if info.namespaced {
        out.push_str(&format!("Namespace:    {}\n", s("/namespace")));
    }
    out.push_str(&format!("Kind:         {} ({})\n", info.kind, info.api_version()));
    out.push_str(&format!("Labels:       {}\n", map_lines(meta.get("labels"))));
    let annotations = meta.get("annotations").and_then(Value::as_object).map(|a| {
        let mut a = a.clone();
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        Value::Object(a)
    });
    out.push_str(&format!("Annotations:  {}\n", map_lines(annotations.as_ref())));
    out.push_str(&format!("Created:      {}\n", s("/creationTimestamp")));
    out.push_str(&format!("UID:          {}\n", s("/uid")));
    if let Some(obj_map) = obj.as_object() {
        for (key, value) in obj_map {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            let mut title = key.clone();
            if let Some(f) = title.get_mut(0..1) {
                f.make_ascii_uppercase();
            }
            if value.is_object() || value.is_array() {
                out.push_str(&format!("{title}:\n{}\n", indented_yaml(value)));
            } else {
                out.push_str(&format!(
                    "{title}:  {}\n",
                    value.as_str().map(str::to_string).unwrap_or(value.to_string())
                ));
            }
        }
    }
    if events.is_empty() {
        out.push_str("Events:       <none>");
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let g = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
                let mut from = g("/source/component");
                if from.is_empty() {
                    from = g("/reportingComponent");
                }
                vec![
                    g("/type"),
                    g("/reason"),
                    age(last_seen(e), now),
                    from,
                    g("/message").trim().to_string(),
                ]
            })
            .collect();
        let grid = crate::printer::Grid {
            headers: ["Type", "Reason", "Age", "From", "Message"].map(String::from).to_vec(),
            rows,
        };
        let mut widths = crate::printer::widths(&grid);
        widths.iter_mut().for_each(|w| *w = (*w).max(4));
        out.push_str("Events:\n");
        out.push_str(&format!("  {}\n", crate::printer::line(&grid.headers, &widths)));
        let dashes: Vec<String> = grid.headers.iter().map(|h| "-".repeat(h.len())).collect();
        out.push_str(&format!("  {}", crate::printer::line(&dashes, &widths)));
        for row in &grid.rows {
            out.push_str(&format!("\n  {}", crate::printer::line(row, &widths)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_identity_spec_and_events() {
        let info = ResourceInfo {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            singular: "deployment".into(),
            namespaced: true,
            short_names: vec![],
            subresources: vec![],
        };
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 3}
        });
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z")
            .expect("t")
            .with_timezone(&Utc);
        let ev = json!({"type": "Normal", "reason": "ScalingReplicaSet", "message": "Scaled up to 3",
                        "lastTimestamp": "2026-01-01T00:09:00Z", "source": {"component": "deployment-controller"}});
        let text = render(&info, &obj, &[ev], now);
        assert!(text.contains("Name:         web"));
        assert!(text.contains("Labels:       app=web"));
        assert!(text.contains("Annotations:  <none>"), "{text}");
        assert!(text.contains("Spec:\n  replicas: 3"));
        assert!(
            text.contains("ScalingReplicaSet   60s    deployment-controller   Scaled up to 3"),
            "{text}"
        );
        assert!(render(&info, &obj, &[], now).ends_with("Events:       <none>"));
    }
}
