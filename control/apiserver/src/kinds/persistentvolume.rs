//! PersistentVolumes (core/v1, cluster-scoped): a piece of storage a claim
//! binds to. Defaults as Kubernetes (`persistentVolumeReclaimPolicy:
//! Retain`, `volumeMode: Filesystem`), a new volume's `status.phase` is
//! `Pending` with its `lastPhaseTransitionTime`; the PV controller
//! (`persistentvolume-binder`) moves it through Available, Bound, Released
//! and Failed through `/status`.
//!
//! Validation as Kubernetes' `ValidatePersistentVolume`: exactly one volume
//! source, `capacity.storage` required, access modes required and known
//! (`ReadWriteOncePod` alone), a `local` volume needs node affinity, and the
//! node affinity's shape. The node can mount only `csi` (through a
//! registered CSI driver), `hostPath` and `local` volumes, so every other
//! source is refused with a 422 naming it, and so is the deprecated
//! `Recycle` reclaim policy (no recycler pod runs here); `mountOptions` are
//! refused as Kubernetes refuses them for `hostPath` and `local` (a CSI
//! volume passes them to the driver). A `csi` source needs `driver` and
//! `volumeHandle`; its expansion secrets are refused (no CSI expansion
//! here). The source, `volumeMode` and node affinity are immutable.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, name, s, Column, AGE, NAME};
use crate::kinds::validation::Errors;
use crate::kinds::{status, table, Resource, Strategy};
use crate::meta::names::{check_dns1123_subdomain, check_label_key, check_label_value};
use crate::status::{ApiResult, FieldError};

/// The `PersistentVolume` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "PersistentVolume",
    plural: "persistentvolumes",
    singular: "persistentvolume",
    namespaced: false,
    short_names: &["pv"],
    categories: &[],
    subresources: &[status("PersistentVolume", "", "v1")],
    field_labels: None,
};

/// Access modes, sorted as Kubernetes lists them in errors.
pub const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
/// `volumeMode` values.
pub const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
/// `persistentVolumeReclaimPolicy` values.
pub const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
/// `status.phase` values of a volume.
pub const PHASES: &[&str] = &["Available", "Bound", "Failed", "Pending", "Released"];
/// `hostPath.type` values.
pub const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];
/// Node selector operators.
const NODE_SELECTOR_OPERATORS: &[&str] = &["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"];

/// The volume sources a PersistentVolumeSpec may hold (Go's inlined
/// `PersistentVolumeSource`); only `hostPath` and `local` can be mounted here.
const SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];
const MOUNTABLE: &[&str] = &["csi", "hostPath", "local"];

/// How `PersistentVolume` objects behave.
pub struct PersistentVolumes;

impl Strategy for PersistentVolumes {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::PersistentVolume>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::PersistentVolume>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj_mut(obj, "spec") else { return };
        default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        default(spec, "volumeMode", json!("Filesystem"));
        if let Some(hp) = spec.get_mut("hostPath").and_then(Value::as_object_mut) {
            default(hp, "type", json!(""));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert(
                "status".into(),
                json!({"phase": "Pending", "lastPhaseTransitionTime": now()}),
            );
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_spec(obj.get("spec").unwrap_or(&Value::Null));
        errs.extend(validate_status(obj));
        errs
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = validate_spec(new.get("spec").unwrap_or(&Value::Null));
        let source = |v: &Value| -> Vec<(String, Value)> {
            SOURCES
                .iter()
                .filter_map(|k| v.pointer(&format!("/spec/{k}")).map(|s| (k.to_string(), s.clone())))
                .collect()
        };
        if source(old) != source(new) {
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        errs.extend(crate::kinds::validation::immutable(
            old,
            new,
            "/spec/volumeMode",
            "spec.volumeMode",
        ));
        if old.pointer("/spec/nodeAffinity").is_some_and(|a| !a.is_null()) {
            errs.extend(crate::kinds::validation::immutable(
                old,
                new,
                "/spec/nodeAffinity",
                "nodeAffinity",
            ));
        }
        errs
    }

    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        validate_status(new)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn validate_status(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(phase) = obj.pointer("/status/phase").filter(|p| !p.is_null()) {
        if !phase.as_str().is_some_and(|p| PHASES.contains(&p)) {
            errs.push(FieldError::not_supported("status.phase", phase, PHASES));
        }
    }
    errs
}

/// Kubernetes' access mode checks (`spec.accessModes` of volumes and claims).
pub fn check_access_modes(errs: &mut Errors, modes: Option<&Value>, path: &str, required: &str) {
    let list = modes.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if list.is_empty() {
        errs.push(FieldError::required(path, required));
        return;
    }
    let mut once_pod = false;
    for m in list {
        match m.as_str() {
            Some(s) if ACCESS_MODES.contains(&s) => once_pod |= s == "ReadWriteOncePod",
            _ => errs.push(FieldError::not_supported(path, m, ACCESS_MODES)),
        }
    }
    if once_pod && list.len() > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// `volumeMode` and `storageClassName` checks shared with claims.
pub fn check_mode_and_class(errs: &mut Errors, spec: &Value, path: &str) {
    if let Some(mode) = spec.get("volumeMode").filter(|m| !m.is_null()) {
        if !mode.as_str().is_some_and(|m| VOLUME_MODES.contains(&m)) {
            errs.push(FieldError::not_supported(
                format!("{path}.volumeMode"),
                mode,
                VOLUME_MODES,
            ));
        } else if mode.as_str() == Some("Block") {
            errs.push(FieldError::forbidden(
                format!("{path}.volumeMode"),
                "raw block volumes are not supported by this cluster",
            ));
        }
    }
    if let Some(class) = spec.get("storageClassName").and_then(Value::as_str) {
        if !class.is_empty() {
            if let Err(e) = check_dns1123_subdomain(class) {
                errs.push(FieldError::invalid(
                    format!("{path}.storageClassName"),
                    &json!(class),
                    e,
                ));
            }
        }
    }
}

/// What Kubernetes says of a string that is not a quantity.
pub const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A storage quantity in bytes, or the error Kubernetes gives.
pub fn storage_bytes(v: Option<&Value>) -> Option<Result<i64, String>> {
    let v = v.filter(|v| !v.is_null())?;
    Some(match v {
        Value::String(q) => sluice_kube::quantity::parse_value(q).map_err(|_| QUANTITY_FORMAT.to_string()),
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not a quantity")),
        other => Err(format!("{other} is not a quantity")),
    })
}

/// Kubernetes' `ValidatePersistentVolumeSpec`.
pub fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    check_access_modes(&mut errs, spec.get("accessModes"), "spec.accessModes", "");
    match spec.get("capacity").and_then(Value::as_object) {
        None => errs.push(FieldError::required("spec.capacity", "")),
        Some(cap) if cap.is_empty() => errs.push(FieldError::required("spec.capacity", "")),
        Some(cap) => {
            for (k, v) in cap {
                if k != "storage" {
                    errs.push(FieldError::not_supported("spec.capacity", &json!(k), &["storage"]));
                    continue;
                }
                match storage_bytes(Some(v)) {
                    Some(Ok(n)) if n < 0 => errs.push(FieldError::invalid(
                        "spec.capacity[storage]",
                        v,
                        "must be greater than or equal to 0",
                    )),
                    Some(Err(e)) => errs.push(FieldError::invalid("spec.capacity[storage]", v, e)),
                    _ => {}
                }
            }
        }
    }
    let sources: Vec<&str> = SOURCES
        .iter()
        .copied()
        .filter(|k| spec.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match sources.as_slice() {
        [] => errs.push(FieldError::required("spec", "must specify a volume type")),
        [one] => check_source(&mut errs, spec, one),
        [_, rest @ ..] => {
            for extra in rest {
                errs.push(FieldError::forbidden(
                    format!("spec.{extra}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if let Some(p) = spec.get("persistentVolumeReclaimPolicy").filter(|p| !p.is_null()) {
        match p.as_str() {
            Some("Recycle") => errs.push(FieldError::forbidden(
                "spec.persistentVolumeReclaimPolicy",
                "the Recycle reclaim policy is deprecated and not supported by this cluster: use Retain or Delete",
            )),
            Some(s) if RECLAIM_POLICIES.contains(&s) => {}
            _ => errs.push(FieldError::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                p,
                RECLAIM_POLICIES,
            )),
        }
    }
    check_mode_and_class(&mut errs, spec, "spec");
    if sources != ["csi"]
        && spec
            .get("mountOptions")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.mountOptions",
            "may not specify mount options for this volume type",
        ));
    }
    if spec
        .get("volumeAttributesClassName")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.volumeAttributesClassName",
            "VolumeAttributesClasses are not supported by this cluster",
        ));
    }
    match spec.get("nodeAffinity").filter(|a| !a.is_null()) {
        Some(aff) => check_node_affinity(&mut errs, aff),
        None if sources == ["local"] => errs.push(FieldError::required(
            "spec.nodeAffinity",
            "Local volume requires node affinity",
        )),
        None => {}
    }
    errs.0
}

/// A `csi` source as Kubernetes' `validateCSIPersistentVolumeSource`:
/// `driver` (a DNS-1123 subdomain of at most 63 characters) and
/// `volumeHandle` required, secret references with name and namespace.
/// Expansion secrets are refused: no CSI volume is expanded here.
fn check_csi(errs: &mut Errors, csi: &Value) {
    let driver = csi.get("driver").and_then(Value::as_str).unwrap_or("");
    if driver.is_empty() {
        errs.push(FieldError::required("spec.csi.driver", ""));
    } else if driver.len() > 63 {
        errs.push(FieldError::invalid(
            "spec.csi.driver",
            &json!(driver),
            "must be no more than 63 characters",
        ));
    } else if let Err(msg) = check_dns1123_subdomain(&driver.to_lowercase()) {
        errs.push(FieldError::invalid("spec.csi.driver", &json!(driver), msg));
    }
    if csi.get("volumeHandle").and_then(Value::as_str).unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.csi.volumeHandle", ""));
    }
    for secret in ["controllerPublishSecretRef", "nodeStageSecretRef", "nodePublishSecretRef"] {
        let Some(r) = csi.get(secret).filter(|r| !r.is_null()) else { continue };
        for field in ["name", "namespace"] {
            if r.get(field).and_then(Value::as_str).unwrap_or("").is_empty() {
                errs.push(FieldError::required(format!("spec.csi.{secret}.{field}"), ""));
            }
        }
    }
    for secret in ["controllerExpandSecretRef", "nodeExpandSecretRef"] {
        if csi.get(secret).is_some_and(|r| !r.is_null()) {
            errs.push(FieldError::forbidden(
                format!("spec.csi.{secret}"),
                "expansion of CSI volumes is not supported by this cluster",
            ));
        }
    }
}

fn check_source(errs: &mut Errors, spec: &Value, source: &str) {
    if !MOUNTABLE.contains(&source) {
        errs.push(FieldError::forbidden(
            format!("spec.{source}"),
            "not supported by this cluster: only csi, hostPath and local volumes can be mounted",
        ));
        return;
    }
    if source == "csi" {
        check_csi(errs, spec.get("csi").unwrap_or(&Value::Null));
        return;
    }
    let base = format!("spec.{source}");
    let path = spec
        .pointer(&format!("/{source}/path"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if path.is_empty() {
        errs.push(FieldError::required(format!("{base}.path"), ""));
    } else if path.split('/').any(|seg| seg == "..") {
        errs.push(FieldError::invalid(
            format!("{base}.path"),
            &json!(path),
            "must not contain '..'",
        ));
    }
    if source == "hostPath" {
        if let Some(t) = spec.pointer("/hostPath/type").filter(|t| !t.is_null()) {
            if !t.as_str().is_some_and(|t| HOST_PATH_TYPES.contains(&t)) {
                errs.push(FieldError::not_supported("spec.hostPath.type", t, HOST_PATH_TYPES));
            }
        }
    }
    if source == "local" && !path.is_empty() && !path.starts_with('/') {
        errs.push(FieldError::invalid(
            "spec.local.path",
            &json!(path),
            "must be an absolute path",
        ));
    }
    if source == "local"
        && spec
            .pointer("/local/fsType")
            .and_then(Value::as_str)
            .is_some_and(|f| !f.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.local.fsType",
            "not supported by this cluster: local volumes are directories",
        ));
    }
}

/// Kubernetes' `validateVolumeNodeAffinity` and `ValidateNodeSelector`.
fn check_node_affinity(errs: &mut Errors, aff: &Value) {
    let Some(required) = aff.get("required").filter(|r| !r.is_null()) else {
        errs.push(FieldError::required(
            "spec.nodeAffinity.required",
            "must specify required node constraints",
        ));
        return;
    };
    let base = "spec.nodeAffinity.required.nodeSelectorTerms";
    let terms = required
        .get("nodeSelectorTerms")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if terms.is_empty() {
        errs.push(FieldError::required(base, "must have at least one node selector term"));
    }
    for (ti, term) in terms.iter().enumerate() {
        let exprs = term
            .get("matchExpressions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (ei, e) in exprs.iter().enumerate() {
            let p = format!("{base}[{ti}].matchExpressions[{ei}]");
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            if let Err(why) = check_label_key(key) {
                errs.push(FieldError::invalid(format!("{p}.key"), &json!(key), why));
            }
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let op = e.get("operator").cloned().unwrap_or(json!(""));
            match op.as_str().unwrap_or("") {
                "In" | "NotIn" => {
                    if values.is_empty() {
                        errs.push(FieldError::required(
                            format!("{p}.values"),
                            "must be specified when `operator` is 'In' or 'NotIn'",
                        ));
                    }
                    for (vi, v) in values.iter().enumerate() {
                        if let Err(why) = check_label_value(v.as_str().unwrap_or("")) {
                            errs.push(FieldError::invalid(format!("{p}.values[{vi}]"), v, why));
                        }
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !values.is_empty() {
                        errs.push(FieldError::forbidden(
                            format!("{p}.values"),
                            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                        ));
                    }
                }
                "Gt" | "Lt" => {
                    if values.len() != 1 {
                        errs.push(FieldError::required(
                            format!("{p}.values"),
                            "must be specified single value when `operator` is 'Lt' or 'Gt'",
                        ));
                    }
                }
                _ => errs.push(FieldError::not_supported(
                    format!("{p}.operator"),
                    &op,
                    NODE_SELECTOR_OPERATORS,
                )),
            }
        }
        let fields = term
            .get("matchFields")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (fi, f) in fields.iter().enumerate() {
            let p = format!("{base}[{ti}].matchFields[{fi}]");
            if f.get("key").and_then(Value::as_str) != Some("metadata.name") {
                errs.push(FieldError::not_supported(
                    format!("{p}.key"),
                    f.get("key").unwrap_or(&Value::Null),
                    &["metadata.name"],
                ));
            }
        }
    }
}

/// kubectl's short access mode names (`GetAccessModesAsString`).
pub fn access_modes_string(modes: &[Value]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (mode, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.iter().any(|m| m.as_str() == Some(mode)) {
            out.push(short);
        }
    }
    out.join(",")
}

/// The storage class of a volume or claim: `spec.storageClassName`, or the
/// beta annotation it replaced.
pub fn class_of(obj: &Value) -> &str {
    obj.pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .or_else(|| {
            obj.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .and_then(Value::as_str)
        })
        .unwrap_or("")
}

/// A phase as kubectl prints it: `Terminating` while deleting.
pub fn phase_cell(obj: &Value) -> String {
    if obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        "Terminating".to_string()
    } else {
        s(obj, &["status", "phase"]).to_string()
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted."),
    col(
        "Reclaim Policy",
        "string",
        0,
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    col("StorageClass", "string", 0, "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
    col("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    col("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
];

fn row(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match pv.pointer("/spec/claimRef").filter(|c| !c.is_null()) {
        Some(c) => format!("{}/{}", s(c, &["namespace"]), s(c, &["name"])),
        None => String::new(),
    };
    let vac = s(pv, &["spec", "volumeAttributesClassName"]);
    vec![
        name(pv),
        json!(s(pv, &["spec", "capacity", "storage"])),
        json!(access_modes_string(table::arr(pv, &["spec", "accessModes"]))),
        json!(s(pv, &["spec", "persistentVolumeReclaimPolicy"])),
        json!(phase_cell(pv)),
        json!(claim),
        json!(class_of(pv)),
        json!(if vac.is_empty() { "<unset>" } else { vac }),
        json!(s(pv, &["status", "reason"])),
        age(pv, now),
        json!(match s(pv, &["spec", "volumeMode"]) {
            "" => "<unset>",
            m => m,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv() -> Value {
        let mut pv = json!({
            "metadata": {"name": "pv1", "creationTimestamp": "2026-01-01T11:00:00Z"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/data/pv1"},
            },
        });
        PersistentVolumes.default(&mut pv);
        pv
    }

    fn lines(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn defaults_and_pending_on_create() {
        let mut v = pv();
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(v["spec"]["volumeMode"], "Filesystem");
        PersistentVolumes.prepare_for_create(&mut v);
        assert_eq!(v["status"]["phase"], "Pending");
        assert!(
            PersistentVolumes.validate(&v).is_empty(),
            "{:?}",
            PersistentVolumes.validate(&v)
        );
    }

    #[test]
    fn one_source_capacity_and_modes_are_required() {
        let v = json!({"spec": {}});
        assert_eq!(
            lines(&validate_spec(&v["spec"])),
            [
                "spec.accessModes: Required value",
                "spec.capacity: Required value",
                "spec: Required value: must specify a volume type",
            ]
        );
        let mut v = pv();
        v["spec"]["local"] = json!({"path": "/x"});
        v["spec"]["accessModes"] = json!(["ReadWriteOncePod", "ReadOnlyMany"]);
        assert_eq!(
            lines(&validate_spec(&v["spec"])),
            [
                "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
                "spec.local: Forbidden: may not specify more than 1 volume type",
            ]
        );
        let mut v = pv();
        v["spec"]["nfs"] = json!({"server": "x", "path": "/"});
        if let Some(spec) = v["spec"].as_object_mut() {
            spec.remove("hostPath");
        }
        assert_eq!(lines(&validate_spec(&v["spec"])).len(), 1);
        assert!(lines(&validate_spec(&v["spec"]))[0].starts_with("spec.nfs: Forbidden"));
    }

    #[test]
    fn local_needs_node_affinity_of_a_valid_shape() {
        let mut v = pv();
        if let Some(spec) = v["spec"].as_object_mut() {
            spec.remove("hostPath");
        }
        v["spec"]["local"] = json!({"path": "/mnt/disk"});
        assert_eq!(
            lines(&validate_spec(&v["spec"])),
            ["spec.nodeAffinity: Required value: Local volume requires node affinity"]
        );
        v["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In"}]}
        ]}});
        assert_eq!(
            lines(&validate_spec(&v["spec"])),
            ["spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]
        );
        v["spec"]["nodeAffinity"] = json!({});
        assert_eq!(
            lines(&validate_spec(&v["spec"])),
            ["spec.nodeAffinity.required: Required value: must specify required node constraints"]
        );
    }

    #[test]
    fn source_is_immutable_and_recycle_refused() {
        let old = pv();
        let mut new = old.clone();
        new["spec"]["hostPath"]["path"] = json!("/elsewhere");
        assert_eq!(
            lines(&PersistentVolumes.validate_update(&old, &new)),
            ["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"]
        );
        let mut v = pv();
        v["spec"]["persistentVolumeReclaimPolicy"] = json!("Recycle");
        assert_eq!(lines(&validate_spec(&v["spec"])).len(), 1);
    }

    #[test]
    fn table_is_kubectls() {
        let mut v = pv();
        v["spec"]["claimRef"] = json!({"namespace": "default", "name": "data"});
        v["spec"]["storageClassName"] = json!("manual");
        v["status"] = json!({"phase": "Bound"});
        let now = crate::kinds::table::parse_time("2026-01-01T12:00:00Z").expect("time");
        assert_eq!(
            row(&v, now),
            json!([
                "pv1",
                "1Gi",
                "RWO",
                "Retain",
                "Bound",
                "default/data",
                "manual",
                "<unset>",
                "",
                "60m",
                "Filesystem"
            ])
            .as_array()
            .expect("row")
            .clone()
        );
        assert_eq!(PersistentVolumes.columns().len(), 11);
    }
}
