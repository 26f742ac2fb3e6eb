//! Defaulting: the values Kubernetes fills in that controllers rely on.
//!
//! Applied to the JSON object on every create and update, before
//! validation, so stored objects always carry them.

use serde_json::{json, Map, Value};

/// The object at `key` of `v`, created (or replacing null) if missing.
pub fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let o = v.as_object_mut()?;
    let e = o.entry(key).or_insert_with(|| json!({}));
    if e.is_null() {
        *e = json!({});
    }
    e.as_object_mut()
}

/// Set `key` to `value` unless it is already set (null counts as unset).
pub fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    match m.get(key) {
        None | Some(Value::Null) => {
            m.insert(key.to_string(), value);
        }
        _ => {}
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub fn image_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_containers(spec: &mut Map<String, Value>, list: &str) {
    if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
            default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
            default(c, "terminationMessagePath", json!("/dev/termination-log"));
            default(c, "terminationMessagePolicy", json!("File"));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default(p, "protocol", json!("TCP"));
                }
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
                    default_probe(p);
                }
            }
            default_requests_from_limits(c);
        }
    }
}

/// Kubernetes' probe defaults, so kubelets and `kubectl describe` see the
/// timings that are actually used instead of zeros.
fn default_probe(p: &mut Map<String, Value>) {
    default(p, "timeoutSeconds", json!(1));
    default(p, "periodSeconds", json!(10));
    default(p, "successThreshold", json!(1));
    default(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
        if h.get("path").and_then(Value::as_str).is_none_or(str::is_empty) {
            h.insert("path".into(), json!("/"));
        }
        default(h, "scheme", json!("HTTP"));
    }
}

/// A resource with a limit but no request is requested at its limit, as in
/// Kubernetes (the scheduler and the QoS class both rely on it).
fn default_requests_from_limits(c: &mut Map<String, Value>) {
    let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    default(res, "requests", json!({}));
    if let Some(req) = res.get_mut("requests").and_then(Value::as_object_mut) {
        for (k, v) in limits {
            default(req, &k, v);
        }
    }
}

/// Defaults of a PodSpec.
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    default_containers(spec, "containers");
    default_containers(spec, "initContainers");
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        default_host_network_ports(spec);
    }
}

/// In a host-network pod a container port is a port of the node: an unset
/// (or zero) `hostPort` becomes the `containerPort`, as Kubernetes defaults it.
fn default_host_network_ports(spec: &mut Map<String, Value>) {
    for list in ["containers", "initContainers"] {
        let containers = spec.get_mut(list).and_then(Value::as_array_mut);
        for c in containers.into_iter().flatten() {
            let ports = c.get_mut("ports").and_then(Value::as_array_mut);
            for p in ports.into_iter().flatten().filter_map(Value::as_object_mut) {
                if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                    if let Some(cp) = p.get("containerPort").cloned() {
                        p.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
}

pub fn default_template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template").and_then(Value::as_object_mut) {
        if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
            default_pod_spec(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::builtin as by_kind;

    #[test]
    fn host_network_container_ports_become_host_ports() {
        let ports = json!([{"containerPort": 8080}, {"containerPort": 53, "hostPort": 53, "protocol": "UDP"}]);
        let mut spec = json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i:1", "ports": ports}]});
        default_pod_spec(spec.as_object_mut().unwrap());
        assert_eq!(spec["containers"][0]["ports"][0]["hostPort"], 8080);
        assert_eq!(spec["containers"][0]["ports"][1]["hostPort"], 53);
        let mut plain = json!({"containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": 80}]}]});
        default_pod_spec(plain.as_object_mut().unwrap());
        assert!(plain["containers"][0]["ports"][0].get("hostPort").is_none());
    }

    #[test]
    fn pull_policy() {
        assert_eq!(image_pull_policy("nginx"), "Always");
        assert_eq!(image_pull_policy("nginx:latest"), "Always");
        assert_eq!(image_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(image_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(image_pull_policy("sluice.local/busybox:v1"), "IfNotPresent");
    }

    #[test]
    fn deployment_and_service_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": 80}]}]}}}});
        by_kind("apps", "Deployment").unwrap().default(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        by_kind("", "Service").unwrap().default(&mut s);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["sessionAffinity"], "None");
    }

    #[test]
    fn probes_of_pods_and_templates_get_kubernetes_defaults() {
        let probe = json!({"httpGet": {"port": 8080}});
        let spec = json!({"containers": [{"name": "c", "image": "i:1", "livenessProbe": probe, "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 2}}],
                          "initContainers": [{"name": "i", "image": "i", "startupProbe": {"httpGet": {"port": 1, "path": "", "scheme": "HTTPS"}}}]});
        let mut pod = json!({"spec": spec.clone()});
        by_kind("", "Pod").unwrap().default(&mut pod);
        let live = &pod["spec"]["containers"][0]["livenessProbe"];
        assert_eq!(
            (live["timeoutSeconds"].clone(), live["periodSeconds"].clone()),
            (json!(1), json!(10))
        );
        assert_eq!(
            (live["successThreshold"].clone(), live["failureThreshold"].clone()),
            (json!(1), json!(3))
        );
        assert_eq!(live["httpGet"]["path"], "/");
        assert_eq!(live["httpGet"]["scheme"], "HTTP");
        let ready = &pod["spec"]["containers"][0]["readinessProbe"];
        assert_eq!(ready["periodSeconds"], 2, "explicit values are kept");
        assert_eq!(ready["failureThreshold"], 3);
        assert!(ready.get("httpGet").is_none());
        let startup = &pod["spec"]["initContainers"][0]["startupProbe"];
        assert_eq!(startup["httpGet"]["path"], "/");
        assert_eq!(startup["httpGet"]["scheme"], "HTTPS");
        assert_eq!(startup["timeoutSeconds"], 1);
        assert_eq!(pod["spec"]["initContainers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["terminationMessagePolicy"], "File");
        for kind in ["Deployment", "ReplicaSet"] {
            let mut d = json!({"spec": {"template": {"spec": spec.clone()}}});
            by_kind("apps", kind).unwrap().default(&mut d);
            assert_eq!(
                d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["failureThreshold"], 3,
                "{kind}"
            );
        }
    }

    #[test]
    fn requests_default_to_limits() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}}]}});
        by_kind("", "Pod").unwrap().default(&mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "100m", "memory": "64Mi"})
        );
    }

    #[test]
    fn empty_statuses_as_kubernetes_returns_them() {
        use crate::kinds::builtin as by_kind;
        let cases = [
            (("", "Service"), json!({"loadBalancer": {}})),
            (("apps", "ReplicaSet"), json!({"replicas": 0})),
            (("apps", "Deployment"), json!({})),
            (("", "Pod"), json!({})),
            (("", "Namespace"), json!({})),
        ];
        for ((g, k), want) in cases {
            let mut obj = json!({"kind": k, "metadata": {"name": "x"}});
            by_kind(g, k).unwrap().empty_status(&mut obj);
            assert_eq!(obj["status"], want, "{k}");
        }
        let mut node = json!({"kind": "Node", "status": {"nodeInfo": {"kubeletVersion": "v1.31"}}});
        by_kind("", "Node").unwrap().empty_status(&mut node);
        assert_eq!(
            node["status"]["daemonEndpoints"],
            json!({"kubeletEndpoint": {"Port": 0}})
        );
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.31");
        assert_eq!(node["status"]["nodeInfo"]["machineID"], "");
        let mut svc = json!({"kind": "Service", "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
        by_kind("", "Service").unwrap().empty_status(&mut svc);
        assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ip"], "1.2.3.4");
        let mut cm = json!({"kind": "ConfigMap"});
        by_kind("", "ConfigMap").unwrap().empty_status(&mut cm);
        assert!(cm.get("status").is_none());
    }
}
