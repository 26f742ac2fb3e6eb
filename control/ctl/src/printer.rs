//! Output formats: server-side Tables as aligned text, objects as YAML, JSON
//! or `type/name`.
//!
//! Columns and cells come from the server (`meta.k8s.io/v1` Table); ctl only
//! lays them out, adds NAMESPACE for `-A`, and prefixes names with the type
//! when several types are printed together, as kubectl does.

use anyhow::{bail, Result};
use serde_json::{json, Value};

/// What `-o` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The server's Table, default columns.
    Table,
    /// The server's Table with the priority-1 columns too.
    Wide,
    /// Full objects as YAML.
    Yaml,
    /// Full objects as JSON.
    Json,
    /// `type/name` per object.
    Name,
}

impl Format {
    /// Parse `-o`.
    pub fn parse(value: Option<&str>) -> Result<Format> {
        Ok(match value {
            None | Some("") => Format::Table,
            Some("wide") => Format::Wide,
            Some("yaml") => Format::Yaml,
            Some("json") => Format::Json,
            Some("name") => Format::Name,
            Some(other) => bail!("unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"),
        })
    }

    /// Whether the server should be asked for a Table.
    pub fn wants_table(self) -> bool {
        matches!(self, Format::Table | Format::Wide)
    }
}

/// How to lay a Table out.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// Include priority-1 columns.
    pub wide: bool,
    /// Prepend a NAMESPACE column.
    pub with_namespace: bool,
    /// Prefix the name cell with `type/`.
    pub name_prefix: Option<String>,
}

/// A Table reduced to the columns to show, as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Upper-case headers.
    pub headers: Vec<String>,
    /// Cell text per row.
    pub rows: Vec<Vec<String>>,
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".to_string(),
        Value::Array(items) => items.iter().map(cell_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Select and stringify the columns of a server Table.
pub fn grid(table: &Value, opts: &TableOptions) -> Grid {
    let columns = table
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| opts.wide || c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let name_col = columns
        .iter()
        .position(|c| c.get("format").and_then(Value::as_str) == Some("name"))
        .or_else(|| {
            columns
                .iter()
                .position(|c| c.get("name").and_then(Value::as_str) == Some("Name"))
        });
    let mut headers: Vec<String> = Vec::new();
    if opts.with_namespace {
        headers.push("NAMESPACE".into());
    }
    headers.extend(shown.iter().map(|&i| {
        columns[i]
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_uppercase()
    }));
    let rows = table
        .get("rows")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let cells = row.get("cells").and_then(Value::as_array).cloned().unwrap_or_default();
                    let mut out = Vec::new();
                    if opts.with_namespace {
                        let ns = row
                            .pointer("/object/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        out.push(ns.to_string());
                    }
                    for &i in &shown {
                        let mut text = cells.get(i).map(cell_text).unwrap_or_default();
                        if Some(i) == name_col {
                            if let Some(prefix) = &opts.name_prefix {
                                text = format!("{prefix}/{text}");
                            }
                        }
                        out.push(text);
                    }
                    out
                })
                .collect()
        })
        .unwrap_or_default();
    Grid { headers, rows }
}

/// Column widths fitting the headers and every row.
pub fn widths(g: &Grid) -> Vec<usize> {
    let mut w: Vec<usize> = g.headers.iter().map(|h| h.chars().count()).collect();
    for row in &g.rows {
        for (i, c) in row.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    w
}

/// One line, columns padded to `widths` and separated by three spaces.
pub fn line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, c) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            out.push_str(c);
        } else {
            let w = widths.get(i).copied().unwrap_or(0);
            out.push_str(&format!("{c:<w$}   "));
        }
    }
    out.trim_end().to_string()
}

/// The whole grid as text (header included), or `None` when it has no rows.
pub fn render(g: &Grid) -> Option<String> {
    if g.rows.is_empty() {
        return None;
    }
    let w = widths(g);
    let mut out = line(&g.headers, &w);
    for row in &g.rows {
        out.push('\n');
        out.push_str(&line(row, &w));
    }
    Some(out)
}

/// Objects as YAML or JSON: one object as itself, several as a `List`.
pub fn objects(objects: &[Value], format: Format) -> Result<String> {
    let doc = if objects.len() == 1 {
        objects[0].clone()
    } else {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": objects})
    };
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&doc)?,
        _ => serde_yaml::to_string(&doc)?.trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Value {
        json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Ready", "type": "string", "priority": 0},
                {"name": "Restarts", "type": "integer", "priority": 0},
                {"name": "IP", "type": "string", "priority": 1}
            ],
            "rows": [
                {"cells": ["web-abc", "1/1", 0, "10.0.0.1"], "object": {"metadata": {"name": "web-abc", "namespace": "default"}}},
                {"cells": ["a", "0/1", 12, null], "object": {"metadata": {"name": "a", "namespace": "kube-system"}}}
            ]
        })
    }

    #[test]
    fn default_columns_hide_wide_ones() {
        let g = grid(&table(), &TableOptions::default());
        assert_eq!(g.headers, ["NAME", "READY", "RESTARTS"]);
        assert_eq!(
            render(&g).expect("rows"),
            "NAME      READY   RESTARTS\nweb-abc   1/1     0\na         0/1     12"
        );
    }

    #[test]
    fn wide_namespace_and_type_prefix() {
        let opts = TableOptions {
            wide: true,
            with_namespace: true,
            name_prefix: Some("pod".into()),
        };
        let g = grid(&table(), &opts);
        assert_eq!(g.headers, ["NAMESPACE", "NAME", "READY", "RESTARTS", "IP"]);
        assert_eq!(g.rows[0], ["default", "pod/web-abc", "1/1", "0", "10.0.0.1"]);
        assert_eq!(g.rows[1][4], "<none>");
    }

    #[test]
    fn empty_tables_render_nothing_and_formats_parse() {
        assert!(render(&grid(
            &json!({"columnDefinitions": [], "rows": []}),
            &TableOptions::default()
        ))
        .is_none());
        assert_eq!(Format::parse(Some("wide")).expect("wide"), Format::Wide);
        assert!(Format::parse(Some("xml")).is_err());
        let one = objects(&[json!({"kind": "Pod"})], Format::Yaml).expect("yaml");
        assert_eq!(one, "kind: Pod");
        let many = objects(&[json!({"kind": "Pod"}), json!({"kind": "Pod"})], Format::Json).expect("json");
        assert!(many.contains("\"kind\": \"List\""));
    }
}
