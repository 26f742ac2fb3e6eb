//! Reading manifests: files, directories or stdin, multi-document YAML or JSON.
//!
//! Every document becomes one untyped object; `kind: List` documents are
//! flattened into their items, empty documents are skipped.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One object read from a manifest, with where it came from (for messages).
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The object as JSON.
    pub object: Value,
    /// File it was read from (`-` for stdin).
    pub source: String,
}

impl Manifest {
    /// `apiVersion` of the object.
    pub fn api_version(&self) -> &str {
        self.object.get("apiVersion").and_then(Value::as_str).unwrap_or("")
    }
    /// `kind` of the object.
    pub fn kind(&self) -> &str {
        self.object.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    /// `metadata.name` of the object.
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// `metadata.namespace` of the object, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.object.pointer("/metadata/namespace").and_then(Value::as_str)
    }
}

/// Read every object from the given `-f` arguments (files, directories, `-`).
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Manifest>> {
    if paths.is_empty() {
        bail!("must specify -f (a file, a directory or - for stdin)");
    }
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
            out.extend(parse(&text, "-")?);
        } else if p.is_dir() {
            for file in manifest_files(p)? {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                out.extend(parse(&text, &file.display().to_string())?);
            }
        } else {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            out.extend(parse(&text, &p.display().to_string())?);
        }
    }
    Ok(out)
}

/// The `.yaml`, `.yml` and `.json` files of a directory, sorted by name.
fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Parse the documents of one YAML (or JSON) text.
pub fn parse(text: &str, source: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            Value::deserialize(doc).with_context(|| format!("{source}: document {} is not valid YAML", i + 1))?;
        flatten(value, source, &mut out)?;
    }
    Ok(out)
}

fn flatten(value: Value, source: &str, out: &mut Vec<Manifest>) -> Result<()> {
    match value {
        Value::Null => Ok(()),
        Value::Object(ref o)
            if o.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && o.get("items").is_some() =>
        {
            for item in o.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
                flatten(item, source, out)?;
            }
            Ok(())
        }
        Value::Object(_) => {
            let m = Manifest {
                object: value,
                source: source.to_string(),
            };
            if m.api_version().is_empty() || m.kind().is_empty() {
                bail!("{source}: an object is missing apiVersion or kind");
            }
            out.push(m);
            Ok(())
        }
        _ => bail!("{source}: a document is not an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_lists_and_empty_documents() {
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b, namespace: x}}\n";
        let m = parse(text, "t.yaml").expect("parse");
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].kind(), m[0].name()), ("ConfigMap", "a"));
        assert_eq!((m[1].kind(), m[1].namespace()), ("Service", Some("x")));
        assert!(parse("apiVersion: v1\nmetadata: {name: a}\n", "t").is_err());
        assert!(parse("a: [\n", "t").is_err());
        let json = parse(
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}"#,
            "p.json",
        )
        .expect("json");
        assert_eq!(json[0].name(), "p");
    }

    #[test]
    fn directories_are_read_in_name_order() {
        let dir = std::env::temp_dir().join(format!("ctl-manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("b.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
        )
        .expect("write");
        std::fs::write(
            dir.join("a.yml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        )
        .expect("write");
        std::fs::write(dir.join("notes.txt"), "not a manifest").expect("write");
        let m = read_all(std::slice::from_ref(&dir)).expect("read");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(m.iter().map(Manifest::name).collect::<Vec<_>>(), ["a", "b"]);
    }
}
