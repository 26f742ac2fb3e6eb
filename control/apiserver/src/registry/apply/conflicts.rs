//! Apply conflicts as Kubernetes reports them: 409 `Conflict`, the message
//! of the apiserver's `NewConflictError` and one `FieldManagerConflict`
//! cause per conflicting field.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::registry::apply::fieldset::{path_string, Path};
use crate::registry::apply::managers::{Entry, Operation};
use crate::status::ApiError;

/// A field the applier would change that another manager owns.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The owner.
    pub manager: Entry,
    /// The field.
    pub path: Path,
}

/// A manager as conflicts name it: `"kubectl"`, `"ops" with subresource
/// "status"`, `"kube-controller-manager" using apps/v1` (Update entries;
/// their identifier carries no time).
pub fn print_manager(e: &Entry) -> String {
    let mut s = format!("{:?}", e.manager);
    if !e.subresource.is_empty() {
        s = format!("{s} with subresource {:?}", e.subresource);
    }
    if e.operation == Operation::Update {
        s = format!("{s} using {}", e.api_version);
    }
    s
}

/// Kubernetes' manager identifier (`BuildManagerIdentifier`): the entry's
/// JSON without fields and time, and without apiVersion for appliers.
/// Conflicts are grouped and sorted by it.
fn identifier(e: &Entry) -> String {
    let mut m = serde_json::Map::new();
    if !e.manager.is_empty() {
        m.insert("manager".into(), json!(e.manager));
    }
    let op = match e.operation {
        Operation::Apply => "Apply",
        Operation::Update => "Update",
    };
    m.insert("operation".into(), json!(op));
    if e.operation == Operation::Update && !e.api_version.is_empty() {
        m.insert("apiVersion".into(), json!(e.api_version));
    }
    if !e.subresource.is_empty() {
        m.insert("subresource".into(), json!(e.subresource));
    }
    Value::Object(m).to_string()
}

/// The message: one conflict, or several grouped by manager (sorted).
pub fn message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            print_manager(&c.manager),
            path_string(&c.path)
        );
    }
    let mut by_manager: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for c in conflicts {
        by_manager
            .entry(identifier(&c.manager))
            .or_insert_with(|| (print_manager(&c.manager), Vec::new()))
            .1
            .push(path_string(&c.path));
    }
    let mut lines = Vec::new();
    for (_, (manager, paths)) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// The 409 for `conflicts`.
pub fn error(conflicts: &[Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", print_manager(&c.manager)),
                "field": path_string(&c.path),
            })
        })
        .collect();
    ApiError {
        code: 409,
        reason: "Conflict",
        message: message(conflicts),
        details: Some(json!({"causes": causes})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::apply::fieldset::{PathElement, Set};

    fn entry(manager: &str, operation: Operation, subresource: &str) -> Entry {
        Entry {
            manager: manager.into(),
            operation,
            api_version: "apps/v1".into(),
            time: Some("2024-01-01T00:00:00Z".into()),
            subresource: subresource.into(),
            fields: Set::new(),
        }
    }

    fn path(fields: &[&str]) -> Path {
        fields.iter().map(|f| PathElement::Field(f.to_string())).collect()
    }

    #[test]
    fn messages_match_kubernetes() {
        let one = [Conflict {
            manager: entry("kubectl", Operation::Apply, ""),
            path: path(&["spec", "replicas"]),
        }];
        assert_eq!(
            message(&one),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        let many = [
            Conflict {
                manager: entry("kube-controller-manager", Operation::Update, ""),
                path: path(&["spec", "replicas"]),
            },
            Conflict {
                manager: entry("b", Operation::Apply, "status"),
                path: path(&["status", "x"]),
            },
            Conflict {
                manager: entry("kube-controller-manager", Operation::Update, ""),
                path: path(&["spec", "paused"]),
            },
        ];
        assert_eq!(
            message(&many),
            "Apply failed with 3 conflicts: conflicts with \"b\" with subresource \"status\":\n- .status.x\nconflicts with \"kube-controller-manager\" using apps/v1:\n- .spec.replicas\n- .spec.paused"
        );
        let e = error(&one);
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        assert_eq!(
            e.details.unwrap()["causes"],
            json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.replicas"}])
        );
    }
}
