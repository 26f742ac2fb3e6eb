//! Round trips of realistic objects of every kind: JSON → protobuf → JSON
//! gives the input back, and the bytes decode with k8s-pb's generated types.

use prost::Message;
use serde_json::{json, Value};

use super::*;

fn meta(name: &str) -> Value {
    json!({
        "name": name,
        "namespace": "default",
        "uid": "6f1f3c5e-7e0a-4a47-9a43-3c1e7d2b9f10",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2026-11-30T10:20:30Z",
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"note": "<b>&</b>"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u-1", "controller": true, "blockOwnerDeletion": false}],
        "finalizers": ["example.com/keep"],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2026-11-30T10:20:30Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}],
    })
}

fn pod_spec() -> Value {
    json!({
        "volumes": [
            {"name": "cfg", "configMap": {"name": "web-config", "defaultMode": 420, "optional": false}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}},
        ],
        "containers": [{
            "name": "web",
            "image": "nginx:1.27",
            "command": ["nginx"],
            "args": ["-g", "daemon off;"],
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
            "env": [
                {"name": "MODE", "value": "prod"},
                {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "mode", "optional": true}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            ],
            "envFrom": [{"secretRef": {"name": "web-secret"}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/web", "readOnly": true}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 3, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"tcpSocket": {"port": 80}, "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3},
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"runAsNonRoot": false, "runAsUser": 0, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        }],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "serviceAccountName": "default",
        "automountServiceAccountToken": false,
        "securityContext": {"fsGroup": 2000},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}},
        "schedulerName": "default-scheduler",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        "priority": 0,
        "enableServiceLinks": true,
    })
}

fn fixtures() -> Vec<Value> {
    let ts = "2026-11-30T10:20:30Z";
    vec![
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": meta("web-1-abcde"), "spec": pod_spec(), "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts}],
            "hostIP": "10.0.0.2", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}], "startTime": ts, "qosClass": "Burstable",
            "containerStatuses": [{"name": "web", "state": {"running": {"startedAt": ts}}, "lastState": {}, "ready": true, "restartCount": 0, "image": "nginx:1.27", "imageID": "sha256:abc", "containerID": "containerd://1", "started": true}],
        }}),
        json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": meta("web"), "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600, "paused": true,
        }, "status": {"observedGeneration": 3, "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": ts, "lastTransitionTime": ts, "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."}]}}),
        json!({"kind": "ReplicaSet", "apiVersion": "apps/v1", "metadata": meta("web-1"), "spec": {"replicas": 2, "minReadySeconds": 5, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()}}, "status": {"replicas": 0}}),
        json!({"kind": "Service", "apiVersion": "v1", "metadata": meta("web"), "spec": {
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http", "nodePort": 30080}, {"name": "alt", "protocol": "TCP", "port": 8080, "targetPort": 8080}],
            "selector": {"app": "web"}, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "NodePort",
            "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "externalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
        }, "status": {"loadBalancer": {}}}),
        json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta("web-config"), "immutable": false, "data": {"mode": "prod", "empty": ""}, "binaryData": {"blob": "AAECAw=="}}),
        json!({"kind": "Secret", "apiVersion": "v1", "metadata": meta("web-secret"), "data": {"password": "czNjcjN0", "empty": ""}, "type": "Opaque"}),
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "team-a", "uid": "u", "resourceVersion": "7", "creationTimestamp": ts, "labels": {"kubernetes.io/metadata.name": "team-a"}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}, "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "unschedulable": true, "taints": [{"key": "k", "value": "v", "effect": "NoSchedule", "timeAdded": ts}]}, "status": {
            "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"}, "allocatable": {"cpu": "1900m", "memory": "23Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": ts, "lastTransitionTime": ts, "reason": "KubeletReady", "message": "ready"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.18", "osImage": "Debian", "containerRuntimeVersion": "containerd://1.6.20", "kubeletVersion": "v1.35.0", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
        }}),
        json!({"kind": "Event", "apiVersion": "v1", "metadata": meta("web.1"), "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u", "apiVersion": "v1", "resourceVersion": "4", "fieldPath": "spec.containers{web}"}, "reason": "Pulled", "message": "pulled", "source": {"component": "kubelet", "host": "node-1"}, "firstTimestamp": ts, "lastTimestamp": ts, "count": 2, "type": "Normal", "eventTime": "2026-11-30T10:20:30.123456Z", "reportingComponent": "kubelet", "reportingInstance": "node-1"}),
        json!({"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": meta("web.2"), "eventTime": "2026-11-30T10:20:30.000001Z", "series": {"count": 3, "lastObservedTime": "2026-11-30T10:21:30.500000Z"}, "reportingController": "c", "reportingInstance": "i", "action": "Pull", "reason": "Pulled", "regarding": {"kind": "Pod", "name": "web"}, "note": "n", "type": "Normal"}),
        json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "metadata": meta("web-abc"), "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false}, "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1-abcde", "uid": "u"}, "nodeName": "node-1", "hints": {"forZones": [{"name": "z"}]}}], "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
        json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": meta("web"), "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "web-1-abcde"}}], "notReadyAddresses": [{"ip": "10.244.1.6"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]}),
        json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "metadata": meta("node-1"), "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2026-11-30T10:20:30.654321Z", "acquireTime": "2026-11-30T10:00:00.000000Z", "leaseTransitions": 0}}),
        json!({"kind": "ServiceAccount", "apiVersion": "v1", "metadata": meta("default"), "secrets": [{"name": "tok"}], "imagePullSecrets": [{"name": "reg"}], "automountServiceAccountToken": true}),
        json!({"kind": "PodTemplate", "apiVersion": "v1", "metadata": meta("tpl"), "template": {"metadata": {"labels": {"a": "b"}}, "spec": pod_spec()}}),
        json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]}),
        json!({"kind": "Job", "apiVersion": "batch/v1", "metadata": meta("pi"), "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6, "suspend": false, "completionMode": "NonIndexed", "template": {"spec": pod_spec()}, "ttlSecondsAfterFinished": 0, "podReplacementPolicy": "TerminatingOrFailed"}, "status": {"active": 1, "startTime": ts, "uncountedTerminatedPods": {}}}),
        json!({"kind": "CronJob", "apiVersion": "batch/v1", "metadata": meta("hourly"), "spec": {"schedule": "0 * * * *", "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid", "suspend": true, "jobTemplate": {"metadata": {}, "spec": {"template": {"spec": pod_spec()}}}, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1}, "status": {"lastScheduleTime": ts}}),
        json!({"kind": "DaemonSet", "apiVersion": "apps/v1", "metadata": meta("agent"), "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec()}, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}, "revisionHistoryLimit": 10}, "status": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}}),
        json!({"kind": "StatefulSet", "apiVersion": "apps/v1", "metadata": meta("db"), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}, "spec": pod_spec()}, "serviceName": "db", "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}, "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": ""}}], "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}}, "status": {"replicas": 0, "availableReplicas": 0}}),
        json!({"kind": "Role", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": meta("reader"), "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]}]}),
        json!({"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": meta("reader"), "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}], "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}}),
        json!({"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "agg"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}], "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}}),
        json!({"kind": "PriorityClass", "apiVersion": "scheduling.k8s.io/v1", "metadata": {"name": "high"}, "value": 1000000, "description": "d", "preemptionPolicy": "PreemptLowerPriority"}),
        json!({"kind": "ResourceQuota", "apiVersion": "v1", "metadata": meta("q"), "spec": {"hard": {"pods": "10", "requests.cpu": "4"}, "scopes": ["NotTerminating"]}, "status": {"hard": {"pods": "10"}, "used": {"pods": "0"}}}),
        json!({"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2", "metadata": meta("web"), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}, "status": {"desiredReplicas": 0}}),
        json!({"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v1", "metadata": meta("web"), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}, "status": {"currentReplicas": 0, "desiredReplicas": 0}}),
        json!({"kind": "PodDisruptionBudget", "apiVersion": "policy/v1", "metadata": meta("web"), "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}, "status": {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}}),
        json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {"name": "default", "namespace": "default"}, "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u"}}, "status": {"token": "abc", "expirationTimestamp": ts}}),
        json!({"kind": "CustomResourceDefinition", "apiVersion": "apiextensions.k8s.io/v1", "metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]}, "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": false,
            "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10.5, "default": 3},
                    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "additionalProperties": false},
                    "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                },
                "x-kubernetes-validations": [{"rule": "self.size <= 10", "message": "too big"}]},
            },
        }}, "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}, "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}], "conversion": {"strategy": "None"}},
        "status": {"conditions": [{"type": "Established", "status": "True", "lastTransitionTime": ts, "reason": "InitialNamesAccepted", "message": "ok"}], "acceptedNames": {"plural": "widgets", "kind": "Widget"}, "storedVersions": ["v1"]}}),
        json!({"kind": "APIService", "apiVersion": "apiregistration.k8s.io/v1", "metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15}, "status": {"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": ts, "reason": "Local", "message": "Local APIServices are always available"}]}}),
        json!({"kind": "MutatingWebhookConfiguration", "apiVersion": "admissionregistration.k8s.io/v1", "metadata": {"name": "hook"}, "webhooks": [{"name": "a.example.com", "clientConfig": {"service": {"namespace": "default", "name": "hook", "path": "/m", "port": 443}, "caBundle": "Y2E="}, "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}], "failurePolicy": "Fail", "matchPolicy": "Equivalent", "namespaceSelector": {}, "objectSelector": {}, "sideEffects": "None", "timeoutSeconds": 10, "admissionReviewVersions": ["v1"], "reinvocationPolicy": "Never"}]}),
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "99", "continue": "abc", "remainingItemCount": 0}, "items": [{"metadata": meta("a"), "spec": pod_spec()}, {"metadata": meta("b"), "spec": pod_spec()}]}),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "pods \"x\" not found", "reason": "NotFound", "details": {"name": "x", "kind": "pods"}, "code": 404}),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "invalid", "reason": "Invalid", "details": {"name": "x", "group": "apps", "kind": "Deployment", "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"}]}, "code": 422}),
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "preconditions": {"uid": "u"}, "dryRun": ["All"]}),
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "5"}, "items": [{"metadata": meta("a")}]}),
        json!({"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "default"}, "target": {"kind": "Node", "name": "node-1"}}),
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta("web"), "spec": {}, "status": {"replicas": 0, "selector": "app=web"}}),
        json!({"kind": "ControllerRevision", "apiVersion": "apps/v1", "metadata": meta("web-1"), "data": {"spec": {"template": {"x": 1}}}, "revision": 1}),
    ]
}

/// The first path where two JSON values differ.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => {
                        if let Some(d) = first_difference(l, r, &p) {
                            return Some(d);
                        }
                    }
                    (l, r) => return Some(format!("{p}: {l:?} vs {r:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{path}[{i}]"))),
        (l, r) if l == r => None,
        (l, r) => Some(format!("{path}: {l} vs {r}")),
    }
}

#[test]
fn json_protobuf_json_is_the_identity_for_every_fixture() {
    for f in fixtures() {
        let bytes = encode(&f).unwrap_or_else(|e| panic!("{} {}: {e}", f["apiVersion"], f["kind"]));
        assert_eq!(&bytes[..4], MAGIC);
        let back = decode(&bytes).unwrap();
        assert_eq!(
            first_difference(&back, &f, ""),
            None,
            "{} {}",
            f["apiVersion"],
            f["kind"]
        );
        assert_eq!(back, f);
    }
}

#[test]
fn bodies_decode_with_k8s_pb_types() {
    let pod = &fixtures()[0];
    let bytes = encode(pod).unwrap();
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(&bytes[4..]).unwrap();
    let tm = unknown.type_meta.clone().unwrap();
    assert_eq!(
        (tm.api_version.as_deref(), tm.kind.as_deref()),
        (Some("v1"), Some("Pod"))
    );
    assert_eq!(unknown.content_type.as_deref(), Some(""));
    let p = k8s_pb::api::core::v1::Pod::decode(unknown.raw.unwrap_or_default().as_slice()).unwrap();
    let spec = p.spec.clone().unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let c = &spec.containers[0];
    let limits = &c.resources.as_ref().unwrap().limits;
    assert_eq!(limits["cpu"].string.as_deref(), Some("500m"));
    let port = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .handler
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap()
        .port
        .clone()
        .unwrap();
    assert_eq!((port.r#type, port.str_val.as_deref()), (Some(1), Some("http")));
    let cm_ref = c.env[1]
        .value_from
        .as_ref()
        .unwrap()
        .config_map_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        cm_ref.local_object_reference.as_ref().unwrap().name.as_deref(),
        Some("web-config")
    );
    let created = p.metadata.as_ref().unwrap().creation_timestamp.unwrap();
    assert_eq!(created.seconds, Some(1_796_034_030));
    // And a message built with k8s-pb decodes to the JSON Kubernetes would write.
    let mut cm = k8s_pb::api::core::v1::ConfigMap {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("c".into()),
            namespace: Some(String::new()),
            ..Default::default()
        }),
        ..Default::default()
    };
    cm.data.insert("k".into(), "v".into());
    cm.binary_data.insert("b".into(), vec![0, 1]);
    let body = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
        }),
        raw: Some(cm.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut wire = MAGIC.to_vec();
    wire.extend(body.encode_to_vec());
    assert_eq!(
        decode(&wire).unwrap(),
        json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"k": "v"}, "binaryData": {"b": "AAE="}})
    );
}

#[test]
fn watch_frames_carry_unknown_envelopes() {
    let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c", "resourceVersion": "5"}});
    let mut stream = encode_watch_event("ADDED", &cm).unwrap();
    stream.extend(encode_watch_event("DELETED", &cm).unwrap());
    stream.extend_from_slice(&[0, 0]);
    let first = next_frame(&mut stream).unwrap();
    let ev = k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent::decode(first.as_slice()).unwrap();
    assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
    assert!(ev.object.unwrap().raw.unwrap().starts_with(MAGIC));
    assert_eq!(decode_watch_event(&first).unwrap(), ("ADDED".to_string(), cm.clone()));
    let second = next_frame(&mut stream).unwrap();
    assert_eq!(decode_watch_event(&second).unwrap().0, "DELETED");
    assert!(
        next_frame(&mut stream).is_none(),
        "a partial frame waits for more bytes"
    );
}

#[test]
fn go_zero_values_are_written_only_where_go_writes_them() {
    // What kubectl sends for `create deployment`: every non-pointer field on the wire.
    let d = k8s_pb::api::apps::v1::Deployment {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("web".into()),
            generate_name: Some(String::new()),
            namespace: Some(String::new()),
            generation: Some(0),
            creation_timestamp: Some(Default::default()),
            ..Default::default()
        }),
        spec: Some(k8s_pb::api::apps::v1::DeploymentSpec {
            replicas: Some(0),
            paused: Some(false),
            min_ready_seconds: Some(0),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    let body = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
        }),
        raw: Some(d.encode_to_vec()),
        ..Default::default()
    };
    let mut wire = MAGIC.to_vec();
    wire.extend(body.encode_to_vec());
    assert_eq!(
        decode(&wire).unwrap(),
        // `creationTimestamp: null` as kubectl's own JSON bodies carry it.
        json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "web", "creationTimestamp": null}, "spec": {"replicas": 0}, "status": {}})
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(matches!(decode(b"{}"), Err(Error::NotProtobuf)));
    assert!(matches!(decode(b"k8s\0\xff\xff"), Err(Error::Decode(_))));
    let e = encode(&json!({"kind": "Pod", "apiVersion": "v1", "spec": {"containers": "x"}})).unwrap_err();
    assert_eq!(e.to_string(), "spec.containers: expected array, got string");
    let e = encode(&json!({"kind": "Widget", "apiVersion": "example.com/v1"})).unwrap_err();
    assert!(matches!(e, Error::NoMessage { .. }));
    let e = encode(&json!({"kind": "ConfigMap", "apiVersion": "v1", "bogus": 1})).unwrap_err();
    assert_eq!(e.to_string(), "bogus: unknown field in api.core.v1.ConfigMap");
    let e = encode(&json!({"kind": "Secret", "apiVersion": "v1", "data": {"a": "%%%"}})).unwrap_err();
    assert!(e.to_string().starts_with("data.a: illegal base64 data"), "{e}");
}

proptest::proptest! {
    #[test]
    fn configmaps_round_trip(name in "[a-z][a-z0-9-]{0,20}", data in proptest::collection::btree_map("[a-zA-Z0-9._-]{1,10}", ".*", 0..5), bin in proptest::collection::btree_map("[a-z]{1,5}", proptest::collection::vec(proptest::num::u8::ANY, 0..20), 0..3), immutable in proptest::option::of(proptest::bool::ANY)) {
        use base64::Engine;
        let mut cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name}});
        if !data.is_empty() { cm["data"] = json!(data); }
        if !bin.is_empty() {
            cm["binaryData"] = bin.iter().map(|(k, v)| (k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect::<serde_json::Map<_, _>>().into();
        }
        if let Some(i) = immutable { cm["immutable"] = json!(i); }
        proptest::prop_assert_eq!(decode(&encode(&cm).unwrap()).unwrap(), cm);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let mut b = MAGIC.to_vec();
        b.extend(body);
        let _ = decode(&b);
        let _ = decode_watch_event(&b[4..]);
    }
}
