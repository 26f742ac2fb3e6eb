//! Pod spec fields this cluster cannot honour yet, refused at admission.
//!
//! Project rule: a field is honoured or refused with a 422 naming it, never
//! ignored. This module is the one place that says which pod-spec fields are
//! supported. It checks Pods (`spec...`) and the pod templates of Deployments
//! and ReplicaSets (`spec.template.spec...`), so a Deployment that could only
//! produce failing or misbehaving Pods is refused when it is applied. Errors
//! are `Forbidden` causes with Kubernetes field paths, e.g.
//! `spec.template.spec.containers[0].securityContext.runAsUser: Forbidden: ...`.
//!
//! A value that equals what Sluice does anyway (Kubernetes' default, or the
//! "off" value of a switch: `hostNetwork: false`, `securityContext: {}`,
//! `dnsPolicy: ClusterFirst`, `terminationMessagePolicy: File`) is accepted;
//! empty values (`null`, `""`, `[]`, `{}`) count as unset. On update only
//! fields whose value changed are refused, so objects stored before a field
//! was refused can still be updated, finalized and deleted.
//!
//! # Audit (read from `dataplane/noded` and `control/scheduler`)
//!
//! **Honoured** — `PodSpec`: `containers`, `volumes` (see below), `nodeName`,
//! `nodeSelector`, `affinity.nodeAffinity` (required and preferred, scheduler
//! NodeAffinity), `affinity.podAffinity`/`podAntiAffinity` and
//! `topologySpreadConstraints` (InterPodAffinity, PodTopologySpread; validated
//! in `pod_scheduling`), `shareProcessNamespace` (noded: one process
//! namespace per container, or the pod's), `tolerations` (TaintToleration), `restartPolicy`,
//! `terminationGracePeriodSeconds`, `imagePullSecrets` (noded's keyring),
//! `hostname` (sandbox hostname), `schedulerName` (the scheduler queues only
//! its own), `priorityClassName`, `priority` and
//! `preemptionPolicy` (set from the PriorityClass by the Priority admission
//! step, `registry::priority`; the scheduler orders its queue by priority
//! and preempts lower priorities unless the policy is `Never`), `serviceAccountName` /
//! `serviceAccount` (the downward API), `dnsPolicy` (all four) and
//! `dnsConfig` (noded's `pod_dns`), `enableServiceLinks` (noded's
//! `service_env`), `subdomain` (cluster DNS `<hostname>.<subdomain>`),
//! `hostNetwork` / `hostPID` / `hostIPC` (noded: CRI `NamespaceMode::NODE`;
//! a host-network pod gets no CNI and the node's address as its IP, its
//! `containerPort`s are defaulted to `hostPort`s), `hostAliases` (noded's
//! `etc_hosts`: the pod's `/etc/hosts` as the kubelet writes it),
//! `securityContext` (noded's `security_context`): `runAsUser`, `runAsGroup`,
//! `runAsNonRoot` (the kubelet's check), `supplementalGroups`, `fsGroup`
//! (also noded's `volumes`: every volume given to the group as the kubelet's
//! `SetVolumeOwnership`) with either `fsGroupChangePolicy` (volumes are
//! fresh at each sandbox start, so both mean the same),
//! `seccompProfile` `RuntimeDefault`/`Unconfined`. `Container`: `name`, `image`,
//! `imagePullPolicy`, `command`, `args`, `workingDir`, `env` (`value`,
//! `valueFrom.configMapKeyRef`, `secretKeyRef`, `fieldRef` on
//! `metadata.name|namespace|uid`, `metadata.labels['k']`,
//! `metadata.annotations['k']`, `spec.nodeName`, `spec.serviceAccountName`,
//! `status.podIP(s)`, `status.hostIP(s)`; `resourceFieldRef` on
//! `limits|requests.cpu|memory|ephemeral-storage` with `divisor`, limits
//! defaulting to the node's allocatable), `envFrom`, `ports` (`name` for probes,
//! `containerPort`, `protocol`; `hostPort` see below), `resources.requests`
//! and `limits` (cgroups, scheduler fit), `volumeMounts` (`name`,
//! `mountPath`, `readOnly`, `subPath`, `subPathExpr`), `livenessProbe` / `readinessProbe` /
//! `startupProbe` with `httpGet` (HTTP, `host`, `path`, `httpHeaders`),
//! `tcpSocket`, `grpc`, `exec` and their timings/thresholds, `stdin`,
//! `stdinOnce` and `tty` (passed to CRI), `terminationMessagePath` and
//! `terminationMessagePolicy` (`File`, `FallbackToLogsOnError`; noded's
//! `termination_message`), `securityContext` (merged over the pod's as the
//! kubelet does): `runAsUser`, `runAsGroup`, `runAsNonRoot`, `privileged`,
//! `readOnlyRootFilesystem`, `capabilities`, `allowPrivilegeEscalation`
//! (`no_new_privs`), `seccompProfile` `RuntimeDefault`/`Unconfined`,
//! `procMount: Default`. Volumes (noded's `volumes`): `emptyDir` (on disk
//! or `medium: Memory`, a tmpfs; `sizeLimit` evicts the pod as the kubelet
//! does; `mode`), `hostPath` (every `type`), `configMap`, `secret`,
//! `downwardAPI` (`metadata.*` fieldRefs, `resourceFieldRef`) and
//! `projected` (configMap, secret, downwardAPI sources; `items`,
//! `defaultMode`, `mode`, `defaultUser`, `user`, `optional`; kept up to
//! date; `serviceAccountToken` sources, tokens from TokenRequest), and
//! `persistentVolumeClaim` (the bound PV's hostPath or local path, `readOnly`).
//! `automountServiceAccountToken` (the ServiceAccount admission step,
//! `registry::serviceaccount_admission`, adds the `kube-api-access-*` volume).
//!
//! **Honoured by the node's data plane** — `ports[].hostPort`: the scheduler
//! reserves it (NodePorts) and noded's proxy programs `<node address>:<hostPort>`
//! → the pod's `containerPort` as an eBPF frontend (no CRI port mappings, no
//! iptables); `hostIP` is refused below.
//!
//! **Refused** — every entry of the tables below ([`POD_SPEC`],
//! [`CONTAINER`], [`CONTAINER_SECURITY_CONTEXT`], [`POD_SECURITY_CONTEXT`],
//! [`AFFINITY`], [`PROBE`], [`VOLUME_MOUNT`], [`PORT`], [`EMPTY_DIR`]), plus
//! volume sources other than those of [`VOLUME_SOURCES`], `hostPath.type`
//! values that are not Kubernetes', downwardAPI volume fieldPaths other than
//! `metadata.*` (as Kubernetes' own validation), `fieldRef`
//! paths other than those above, `resourceFieldRef` on other resources
//! (hugepages), `valueFrom.fileKeyRef`, and `httpGet.scheme` other than `HTTP`.
//!
//! **Init containers, sidecars and lifecycle hooks** — `initContainers` are
//! honoured by noded (`init_containers`: one at a time in order before the
//! app containers, retried per `restartPolicy`; with `restartPolicy: Always`
//! a sidecar that starts in order, keeps running, counts for readiness and
//! stops after the app containers). The container-field tables apply to them
//! as to containers; `validation` refuses, with Kubernetes' words, probes and
//! `lifecycle` on regular init containers, a container `restartPolicy` other
//! than `Always` on init containers and any on app containers. `lifecycle`
//! `postStart` and `preStop` with `exec`, `httpGet` (HTTP, `host`, `path`,
//! `httpHeaders`, named ports) and `sleep` are honoured (noded's
//! `lifecycle`); refused: [`LIFECYCLE`] (`stopSignal`), [`LIFECYCLE_HANDLER`]
//! (`tcpSocket`) and a hook's `httpGet.scheme` other than `HTTP`.
//!
//! **Ephemeral containers** (`kubectl debug`) are added only through the
//! `pods/ephemeralcontainers` subresource ([`ephemeral_update`], validated by
//! [`validate_ephemeral_update`] as Kubernetes' `ValidatePodEphemeralContainersUpdate`);
//! they are refused on Pod create (`cannot be set on create`), in pod
//! templates, and — as any spec change — on the Pod's own update. The
//! container-field tables above apply to them as to containers.
//!
//! Not audited: the semantics of `tolerations[].tolerationSeconds` (NoExecute
//! eviction), non-cpu/memory resource names in `resources`, and whether
//! every `Probe` timing field is applied exactly as the kubelet does.

use serde_json::Value;

use crate::status::{ApiError, ApiResult, FieldError};

/// One field Sluice cannot honour: its JSON name inside its object, which
/// values are still accepted, and why it is refused.
pub struct Unsupported {
    /// JSON field name inside the enclosing object.
    pub field: &'static str,
    /// Values accepted anyway (they equal what Sluice does); empty values
    /// are always accepted.
    pub accepts: Accepts,
    /// One-line reason, shown after `Forbidden: `.
    pub reason: &'static str,
}

/// The values of an unsupported field that are still accepted.
#[derive(Debug, Clone, Copy)]
pub enum Accepts {
    /// Only unset/empty.
    Nothing,
    /// This boolean (the value that means "off" or the default).
    Bool(bool),
    /// One of these strings.
    Strings(&'static [&'static str]),
    /// An object with this one key, set to one of these strings.
    Key(&'static str, &'static [&'static str]),
}

impl Accepts {
    fn accepts(self, v: &Value) -> bool {
        if is_unset(v) {
            return true;
        }
        match self {
            Accepts::Nothing => false,
            Accepts::Bool(b) => v.as_bool() == Some(b),
            Accepts::Strings(list) => v.as_str().is_some_and(|s| list.contains(&s)),
            Accepts::Key(key, list) => v
                .as_object()
                .is_some_and(|o| o.len() == 1 && o.get(key).and_then(Value::as_str).is_some_and(|t| list.contains(&t))),
        }
    }
}

const fn refuse(field: &'static str, reason: &'static str) -> Unsupported {
    Unsupported {
        field,
        accepts: Accepts::Nothing,
        reason,
    }
}

const fn only(field: &'static str, accepts: Accepts, reason: &'static str) -> Unsupported {
    Unsupported { field, accepts, reason }
}

/// `PodSpec` fields.
pub const POD_SPEC: &[Unsupported] = &[
    refuse(
        "activeDeadlineSeconds",
        "activeDeadlineSeconds is not enforced by this cluster yet",
    ),
    only(
        "hostUsers",
        Accepts::Bool(true),
        "user namespaces are not supported by this cluster yet",
    ),
    refuse(
        "hostnameOverride",
        "hostnameOverride is not supported by this cluster yet",
    ),
    only("os", Accepts::Key("name", &["linux"]), "only Linux pods are supported"),
    refuse("overhead", "pod overhead is not supported by this cluster yet"),
    refuse(
        "readinessGates",
        "readiness gates are not supported by this cluster yet",
    ),
    refuse(
        "resourceClaims",
        "resource claims are not supported by this cluster yet",
    ),
    refuse("resources", "pod-level resources are not supported by this cluster yet"),
    refuse(
        "runtimeClassName",
        "runtime classes are not supported by this cluster yet",
    ),
    only(
        "setHostnameAsFQDN",
        Accepts::Bool(false),
        "setHostnameAsFQDN is not supported by this cluster yet",
    ),
    refuse("workloadRef", "workloadRef is not supported by this cluster yet"),
];

/// `PodSpec.affinity` fields.
pub const AFFINITY: &[Unsupported] = &[];

/// `PodSecurityContext` fields noded cannot honour (the others reach the runtime).
pub const POD_SECURITY_CONTEXT: &[Unsupported] = &[
    refuse(
        "appArmorProfile",
        "appArmorProfile is not supported by this cluster yet",
    ),
    refuse(
        "seLinuxChangePolicy",
        "seLinuxChangePolicy is not supported by this cluster yet",
    ),
    refuse("seLinuxOptions", "seLinuxOptions are not supported by this cluster yet"),
    only(
        "seccompProfile",
        Accepts::Key("type", &["RuntimeDefault", "Unconfined"]),
        "Localhost seccomp profiles are not supported by this cluster yet (RuntimeDefault and Unconfined are)",
    ),
    only(
        "supplementalGroupsPolicy",
        Accepts::Strings(&["Merge"]),
        "supplementalGroupsPolicy Strict is not supported by this cluster yet",
    ),
    refuse("sysctls", "sysctls are not supported by this cluster yet"),
    refuse("windowsOptions", "only Linux pods are supported"),
];

/// `Container` fields (also checked: `securityContext`, probes, ports, mounts, env).
pub const CONTAINER: &[Unsupported] = &[
    refuse("resizePolicy", "in-place resize is not supported by this cluster yet"),
    refuse(
        "restartPolicyRules",
        "container restart rules are not supported by this cluster yet",
    ),
    refuse("volumeDevices", "block volumes are not supported by this cluster yet"),
];

/// `Container.securityContext` fields noded cannot honour (the others reach the runtime).
pub const CONTAINER_SECURITY_CONTEXT: &[Unsupported] = &[
    refuse(
        "appArmorProfile",
        "appArmorProfile is not supported by this cluster yet",
    ),
    only(
        "procMount",
        Accepts::Strings(&["Default"]),
        "procMount Unmasked needs user namespaces, which this cluster does not support yet",
    ),
    refuse("seLinuxOptions", "seLinuxOptions are not supported by this cluster yet"),
    only(
        "seccompProfile",
        Accepts::Key("type", &["RuntimeDefault", "Unconfined"]),
        "Localhost seccomp profiles are not supported by this cluster yet (RuntimeDefault and Unconfined are)",
    ),
    refuse("windowsOptions", "only Linux pods are supported"),
];

/// `Probe` fields.
pub const PROBE: &[Unsupported] = &[refuse(
    "terminationGracePeriodSeconds",
    "a probe-level terminationGracePeriodSeconds is not supported by this cluster yet",
)];

/// `Lifecycle` fields (`postStart` and `preStop` are honoured by noded's `lifecycle`).
pub const LIFECYCLE: &[Unsupported] = &[refuse(
    "stopSignal",
    "lifecycle stopSignal is not supported by this cluster yet",
)];

/// `LifecycleHandler` fields (`exec`, `httpGet` and `sleep` are honoured).
pub const LIFECYCLE_HANDLER: &[Unsupported] = &[refuse(
    "tcpSocket",
    "tcpSocket lifecycle hooks are not supported (Kubernetes keeps the field for compatibility and fails such hooks when they run)",
)];

/// `ContainerPort` fields.
pub const PORT: &[Unsupported] = &[refuse("hostIP", "hostIP is not supported by this cluster yet")];

/// `VolumeMount` fields.
pub const VOLUME_MOUNT: &[Unsupported] = &[
    only(
        "mountPropagation",
        Accepts::Strings(&["None"]),
        "mount propagation is not supported by this cluster yet",
    ),
    only(
        "recursiveReadOnly",
        Accepts::Strings(&["Disabled"]),
        "recursiveReadOnly is not supported by this cluster yet",
    ),
    refuse(
        "bindMountOptions",
        "bindMountOptions are not supported by this cluster yet",
    ),
];

/// `EmptyDirVolumeSource` fields.
pub const EMPTY_DIR: &[Unsupported] = &[only(
    "medium",
    Accepts::Strings(&["", "Memory"]),
    "emptyDir medium HugePages is not supported by this cluster yet",
)];

/// Volume sources noded materialises.
pub const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "configMap",
    "secret",
    "hostPath",
    "downwardAPI",
    "projected",
    "persistentVolumeClaim",
];

/// `hostPath.type` values (Kubernetes' `HostPathType`).
pub const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

/// `fieldRef.fieldPath` values of downwardAPI volume files (plus
/// `metadata.labels['k']` and `metadata.annotations['k']`), as Kubernetes allows them.
pub const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];

/// `env[].valueFrom.fieldRef.fieldPath` values noded resolves (plus
/// `metadata.labels['k']` and `metadata.annotations['k']`).
pub const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.podIPs",
    "status.hostIP",
    "status.hostIPs",
];

/// `env[].valueFrom.resourceFieldRef.resource` values noded resolves.
pub const RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

/// `null`, `""`, `[]`, `{}`, or an object of only such values.
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_unset),
        _ => false,
    }
}

/// Walks an object collecting refusals with their field path and JSON pointer.
struct Walk {
    found: Vec<(String, FieldError)>,
}

impl Walk {
    fn refuse(&mut self, path: &str, pointer: &str, reason: &str) {
        self.found
            .push((pointer.to_string(), FieldError::forbidden(path, reason)));
    }

    fn table(&mut self, obj: Option<&Value>, path: &str, pointer: &str, table: &[Unsupported]) {
        let Some(obj) = obj.and_then(Value::as_object) else {
            return;
        };
        for rule in table {
            if let Some(v) = obj.get(rule.field) {
                if !rule.accepts.accepts(v) {
                    self.refuse(
                        &format!("{path}.{}", rule.field),
                        &format!("{pointer}/{}", rule.field),
                        rule.reason,
                    );
                }
            }
        }
    }

    fn items<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = (usize, &'a Value)> {
        obj.get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
    }

    fn pod_spec(&mut self, spec: &Value, path: &str, pointer: &str) {
        self.table(Some(spec), path, pointer, POD_SPEC);
        self.table(
            spec.get("affinity"),
            &format!("{path}.affinity"),
            &format!("{pointer}/affinity"),
            AFFINITY,
        );
        self.found.extend(super::pod_scheduling::validate(spec, path, pointer));
        self.table(
            spec.get("securityContext"),
            &format!("{path}.securityContext"),
            &format!("{pointer}/securityContext"),
            POD_SECURITY_CONTEXT,
        );
        for (i, c) in Self::items(spec, "containers") {
            self.container(
                c,
                &format!("{path}.containers[{i}]"),
                &format!("{pointer}/containers/{i}"),
            );
        }
        for (i, c) in Self::items(spec, "initContainers") {
            self.container(
                c,
                &format!("{path}.initContainers[{i}]"),
                &format!("{pointer}/initContainers/{i}"),
            );
        }
        for (i, c) in Self::items(spec, "ephemeralContainers") {
            self.container(
                c,
                &format!("{path}.ephemeralContainers[{i}]"),
                &format!("{pointer}/ephemeralContainers/{i}"),
            );
        }
        for (i, v) in Self::items(spec, "volumes") {
            self.volume(v, &format!("{path}.volumes[{i}]"), &format!("{pointer}/volumes/{i}"));
        }
    }

    fn volume(&mut self, v: &Value, path: &str, pointer: &str) {
        let Some(o) = v.as_object() else { return };
        for (key, source) in o {
            if key == "name" || VOLUME_SOURCES.contains(&key.as_str()) {
                continue;
            }
            if !source.is_null() {
                self.refuse(
                    &format!("{path}.{key}"),
                    &format!("{pointer}/{key}"),
                    "only emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim volumes are supported by this cluster yet",
                );
            }
        }
        self.table(
            o.get("emptyDir"),
            &format!("{path}.emptyDir"),
            &format!("{pointer}/emptyDir"),
            EMPTY_DIR,
        );
        if let Some(t) = v.pointer("/hostPath/type") {
            if !Accepts::Strings(HOST_PATH_TYPES).accepts(t) {
                self.refuse(
                    &format!("{path}.hostPath.type"),
                    &format!("{pointer}/hostPath/type"),
                    "supported values: \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice",
                );
            }
        }
        let own = Self::items(v.get("downwardAPI").unwrap_or(&Value::Null), "items").map(|(j, item)| {
            (
                format!("{path}.downwardAPI.items[{j}]"),
                format!("{pointer}/downwardAPI/items/{j}"),
                item,
            )
        });
        let projected = Self::items(v.get("projected").unwrap_or(&Value::Null), "sources").flat_map(|(k, source)| {
            Self::items(source.get("downwardAPI").unwrap_or(&Value::Null), "items").map(move |(j, item)| {
                (
                    format!("{path}.projected.sources[{k}].downwardAPI.items[{j}]"),
                    format!("{pointer}/projected/sources/{k}/downwardAPI/items/{j}"),
                    item,
                )
            })
        });
        let items: Vec<(String, String, &Value)> = own.chain(projected).collect();
        for (ip, iptr, item) in items {
            self.downward_api_file(item, &ip, &iptr);
        }
    }

    /// A downwardAPI volume file: `metadata.*` fieldRefs only, and the resources noded resolves.
    fn downward_api_file(&mut self, item: &Value, path: &str, pointer: &str) {
        if let Some(fp) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            let keyed = |prefix: &str| {
                fp.strip_prefix(prefix)
                    .and_then(|k| k.strip_suffix("']"))
                    .is_some_and(|k| !k.is_empty())
            };
            if !(VOLUME_FIELD_PATHS.contains(&fp) || keyed("metadata.labels['") || keyed("metadata.annotations['")) {
                self.refuse(
                    &format!("{path}.fieldRef.fieldPath"),
                    &format!("{pointer}/fieldRef/fieldPath"),
                    "supported values: metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, metadata.labels['<key>'], metadata.annotations['<key>']",
                );
            }
        }
        if let Some(resource) = item.pointer("/resourceFieldRef/resource").and_then(Value::as_str) {
            if !RESOURCE_FIELDS.contains(&resource) {
                self.refuse(
                    &format!("{path}.resourceFieldRef.resource"),
                    &format!("{pointer}/resourceFieldRef/resource"),
                    "this resource is not supported by this cluster yet; supported: limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage",
                );
            }
        }
    }

    fn container(&mut self, c: &Value, path: &str, pointer: &str) {
        self.table(Some(c), path, pointer, CONTAINER);
        self.table(
            c.get("securityContext"),
            &format!("{path}.securityContext"),
            &format!("{pointer}/securityContext"),
            CONTAINER_SECURITY_CONTEXT,
        );
        if c.pointer("/resources/claims").is_some_and(|v| !is_unset(v)) {
            self.refuse(
                &format!("{path}.resources.claims"),
                &format!("{pointer}/resources/claims"),
                "resource claims are not supported by this cluster yet",
            );
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let Some(p) = c.get(probe) else { continue };
            let (pp, pptr) = (format!("{path}.{probe}"), format!("{pointer}/{probe}"));
            self.table(Some(p), &pp, &pptr, PROBE);
            if let Some(scheme) = p.pointer("/httpGet/scheme") {
                if !Accepts::Strings(&["HTTP"]).accepts(scheme) {
                    self.refuse(
                        &format!("{pp}.httpGet.scheme"),
                        &format!("{pptr}/httpGet/scheme"),
                        "HTTPS probes are not supported by this cluster yet",
                    );
                }
            }
        }
        let lifecycle = c.get("lifecycle");
        let (lp, lptr) = (format!("{path}.lifecycle"), format!("{pointer}/lifecycle"));
        self.table(lifecycle, &lp, &lptr, LIFECYCLE);
        for hook in ["postStart", "preStop"] {
            let Some(handler) = lifecycle.and_then(|l| l.get(hook)) else {
                continue;
            };
            let (hp, hptr) = (format!("{lp}.{hook}"), format!("{lptr}/{hook}"));
            self.table(Some(handler), &hp, &hptr, LIFECYCLE_HANDLER);
            if let Some(scheme) = handler.pointer("/httpGet/scheme") {
                if !Accepts::Strings(&["HTTP"]).accepts(scheme) {
                    self.refuse(
                        &format!("{hp}.httpGet.scheme"),
                        &format!("{hptr}/httpGet/scheme"),
                        "HTTPS lifecycle hooks are not supported by this cluster yet",
                    );
                }
            }
        }
        for (j, port) in Self::items(c, "ports") {
            self.table(
                Some(port),
                &format!("{path}.ports[{j}]"),
                &format!("{pointer}/ports/{j}"),
                PORT,
            );
        }
        for (j, m) in Self::items(c, "volumeMounts") {
            self.table(
                Some(m),
                &format!("{path}.volumeMounts[{j}]"),
                &format!("{pointer}/volumeMounts/{j}"),
                VOLUME_MOUNT,
            );
        }
        for (j, e) in Self::items(c, "env") {
            let Some(from) = e.get("valueFrom").and_then(Value::as_object) else {
                continue;
            };
            let (ep, eptr) = (
                format!("{path}.env[{j}].valueFrom"),
                format!("{pointer}/env/{j}/valueFrom"),
            );
            if from.get("fileKeyRef").is_some_and(|v| !v.is_null()) {
                self.refuse(
                    &format!("{ep}.fileKeyRef"),
                    &format!("{eptr}/fileKeyRef"),
                    "fileKeyRef is not supported by this cluster yet",
                );
            }
            if let Some(resource) = from
                .get("resourceFieldRef")
                .and_then(|r| r.get("resource"))
                .and_then(Value::as_str)
            {
                if !RESOURCE_FIELDS.contains(&resource) {
                    self.refuse(
                        &format!("{ep}.resourceFieldRef.resource"),
                        &format!("{eptr}/resourceFieldRef/resource"),
                        "this resource is not supported by this cluster yet; supported: limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage",
                    );
                }
            }
            if let Some(fp) = from
                .get("fieldRef")
                .and_then(|f| f.get("fieldPath"))
                .and_then(Value::as_str)
            {
                let keyed = |prefix: &str| {
                    fp.strip_prefix(prefix)
                        .and_then(|k| k.strip_suffix("']"))
                        .is_some_and(|k| !k.is_empty())
                };
                let ok = FIELD_PATHS.contains(&fp) || keyed("metadata.labels['") || keyed("metadata.annotations['");
                if !ok {
                    self.refuse(
                        &format!("{ep}.fieldRef.fieldPath"),
                        &format!("{eptr}/fieldRef/fieldPath"),
                        "this fieldPath is not supported by this cluster yet; supported: metadata.name, metadata.namespace, metadata.uid, metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.podIP, status.podIPs, status.hostIP, status.hostIPs",
                    );
                }
            }
        }
    }
}

/// Where an object keeps the pod spec checked here: its field path and
/// JSON pointer. Each kind with a pod spec passes its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSpecAt {
    /// Field path, as error messages show it.
    pub path: &'static str,
    /// JSON pointer into the object.
    pub pointer: &'static str,
}

/// A Pod's own spec.
pub const POD_SPEC_AT: PodSpecAt = PodSpecAt {
    path: "spec",
    pointer: "/spec",
};

/// The pod template of a workload (Deployment, ReplicaSet).
pub const TEMPLATE_SPEC_AT: PodSpecAt = PodSpecAt {
    path: "spec.template.spec",
    pointer: "/spec/template/spec",
};

/// The unsupported pod-spec fields set in the pod spec of `obj` at `at`. With `old` (an update),
/// only fields whose value differs from `old` are refused.
pub fn refuse_unsupported(at: PodSpecAt, old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
    let PodSpecAt { path, pointer } = at;
    let Some(spec) = obj.pointer(pointer) else {
        return Vec::new();
    };
    let mut walk = Walk { found: Vec::new() };
    walk.pod_spec(spec, path, pointer);
    // Ephemeral containers come only through `pods/ephemeralcontainers`.
    if spec.get("ephemeralContainers").is_some_and(|v| !is_unset(v)) {
        let reason = match (at == POD_SPEC_AT, old.is_none()) {
            (true, true) => Some("cannot be set on create"),
            (true, false) => None,
            (false, _) => Some("ephemeral containers not allowed in pod template"),
        };
        if let Some(reason) = reason {
            walk.refuse(
                &format!("{path}.ephemeralContainers"),
                &format!("{pointer}/ephemeralContainers"),
                reason,
            );
        }
    }
    walk.found
        .into_iter()
        .filter(|(ptr, _)| old.is_none_or(|old| old.pointer(ptr) != obj.pointer(ptr)))
        .map(|(_, e)| e)
        .collect()
}

/// `EphemeralContainer` fields beside those of the container-field tables
/// that an ephemeral container may set (Kubernetes'
/// `allowedEphemeralContainerFields`); every other field is refused with
/// "cannot be set for an Ephemeral Container".
const EPHEMERAL_FIELDS: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "env",
    "envFrom",
    "volumeMounts",
    "volumeDevices",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
    "targetContainerName",
];

/// What `PUT|PATCH pods/{name}/ephemeralcontainers` stores: the current
/// pod with only `spec.ephemeralContainers` taken from `proposed` (as
/// Kubernetes' `dropNonEphemeralContainerUpdates`), the new ones defaulted
/// as containers are (`imagePullPolicy`, termination message fields). A
/// `metadata.resourceVersion` in `proposed` is kept as the precondition.
pub fn ephemeral_update(cur: &Value, proposed: &Value) -> Value {
    let mut new = cur.clone();
    let mut list = proposed
        .pointer("/spec/ephemeralContainers")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(items) = list.as_array_mut() {
        for c in items.iter_mut().filter_map(Value::as_object_mut) {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
            let pull = crate::kinds::defaults::image_pull_policy(&image);
            for (key, value) in [
                ("imagePullPolicy", pull),
                ("terminationMessagePath", "/dev/termination-log"),
                ("terminationMessagePolicy", "File"),
            ] {
                if c.get(key).is_none_or(|v| v.is_null() || v == "") {
                    c.insert(key.into(), Value::String(value.into()));
                }
            }
        }
    }
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        if is_unset(&list) {
            spec.remove("ephemeralContainers");
        } else {
            spec.insert("ephemeralContainers".into(), list);
        }
    }
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        match proposed.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            Some(rv) if !rv.is_empty() => {
                meta.insert("resourceVersion".into(), Value::String(rv.into()));
            }
            _ => {
                meta.remove("resourceVersion");
            }
        }
    }
    new
}

/// One write of `pods/{name}/ephemeralcontainers`: `proposed` (the body,
/// or the current pod patched) decoded as a Pod, reduced to its ephemeral
/// containers by [`ephemeral_update`] and checked by
/// [`validate_ephemeral_update`] (422 naming the fields).
pub fn ephemeral_write(r: &crate::kinds::Resource, name: &str, cur: &Value, proposed: &Value) -> ApiResult<Value> {
    let decoded = crate::meta::typed::round_trip::<k8s_openapi::api::core::v1::Pod>(proposed)?;
    let new = ephemeral_update(cur, &decoded);
    let errs = validate_ephemeral_update(cur, &new);
    if errs.is_empty() {
        Ok(new)
    } else {
        Err(ApiError::invalid(r, name, errs))
    }
}

/// The checks of an ephemeral-containers update (Kubernetes'
/// `ValidatePodEphemeralContainersUpdate` and `validateEphemeralContainers`):
/// names are DNS labels unique among all containers, an image is given,
/// `targetContainerName` names a container or init container, no ports,
/// probes, lifecycle, resources or restart policy, no `subPath`, and the
/// ephemeral containers already added are neither removed nor changed.
pub fn validate_ephemeral_update(old: &Value, new: &Value) -> Vec<FieldError> {
    const PATH: &str = "spec.ephemeralContainers";
    let mut errs = Vec::new();
    let names_of = |list: &str| -> Vec<String> {
        new.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
            .collect()
    };
    let others: Vec<String> = names_of("containers")
        .into_iter()
        .chain(names_of("initContainers"))
        .collect();
    let mut seen = others.clone();
    let empty = Vec::new();
    let items = new
        .pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (i, c) in items.iter().enumerate() {
        let p = format!("{PATH}[{i}]");
        match c.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            None => errs.push(FieldError::required(format!("{p}.name"), "")),
            Some(n) => {
                if let Err(e) = crate::meta::names::check_dns1123_label(n) {
                    errs.push(FieldError::invalid(format!("{p}.name"), &Value::String(n.into()), e));
                }
                if seen.iter().any(|s| s == n) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), &Value::String(n.into())));
                } else {
                    seen.push(n.to_string());
                }
            }
        }
        if c.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("{p}.image"), ""));
        }
        if let Some(target) = c
            .get("targetContainerName")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if !others.iter().any(|o| o == target) {
                errs.push(FieldError {
                    reason: "FieldValueNotFound",
                    field: format!("{p}.targetContainerName"),
                    message: format!("Not found: {:?}", target),
                });
            }
        }
        if let Some(fields) = c.as_object() {
            for (key, value) in fields {
                if !EPHEMERAL_FIELDS.contains(&key.as_str()) && !is_unset(value) {
                    errs.push(FieldError::forbidden(
                        format!("{p}.{key}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
        for (j, m) in Walk::items(c, "volumeMounts") {
            for key in ["subPath", "subPathExpr"] {
                if m.get(key).is_some_and(|v| !is_unset(v)) {
                    errs.push(FieldError::forbidden(
                        format!("{p}.volumeMounts[{j}].{key}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
    for before in old
        .pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = before.get("name").and_then(Value::as_str).unwrap_or_default();
        match items
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        {
            None => errs.push(FieldError::forbidden(
                PATH,
                format!("existing ephemeral containers {name:?} may not be removed"),
            )),
            Some(after) if after != before => errs.push(FieldError::forbidden(
                PATH,
                format!("existing ephemeral containers {name:?} may not be changed"),
            )),
            Some(_) => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn init_containers_sidecars_and_hooks_are_admitted_but_not_what_noded_cannot_run() {
        let p = POD_SPEC_AT;
        let hook = json!({"postStart": {"exec": {"command": ["touch", "/x"]}},
                          "preStop": {"httpGet": {"path": "/stop", "port": 8080}}});
        let ok = pod(json!({
            "initContainers": [{"name": "i", "image": "busybox"},
                               {"name": "proxy", "image": "busybox", "restartPolicy": "Always", "lifecycle": hook,
                                "readinessProbe": {"exec": {"command": ["true"]}}}],
            "containers": [{"name": "c", "image": "busybox", "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}}]
        }));
        assert!(refuse_unsupported(p, None, &ok).is_empty());
        let refused = pod(json!({
            "initContainers": [{"name": "i", "image": "busybox", "volumeDevices": [{"name": "b", "devicePath": "/dev/b"}]}],
            "containers": [{"name": "c", "image": "busybox", "lifecycle": {
                "stopSignal": "SIGUSR1",
                "postStart": {"tcpSocket": {"port": 80}},
                "preStop": {"httpGet": {"port": 443, "scheme": "HTTPS"}}}}]
        }));
        assert_eq!(
            refuse_unsupported(p, None, &refused)
                .iter()
                .map(FieldError::to_line)
                .collect::<Vec<_>>(),
            [
                "spec.containers[0].lifecycle.stopSignal: Forbidden: lifecycle stopSignal is not supported by this cluster yet",
                "spec.containers[0].lifecycle.postStart.tcpSocket: Forbidden: tcpSocket lifecycle hooks are not supported (Kubernetes keeps the field for compatibility and fails such hooks when they run)",
                "spec.containers[0].lifecycle.preStop.httpGet.scheme: Forbidden: HTTPS lifecycle hooks are not supported by this cluster yet",
                "spec.initContainers[0].volumeDevices: Forbidden: block volumes are not supported by this cluster yet",
            ]
        );
    }

    #[test]
    fn default_valued_fields_are_accepted() {
        let p = POD_SPEC_AT;
        let mut spec = json!({
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "securityContext": {},
            "hostNetwork": false, "hostPID": false, "hostIPC": false, "shareProcessNamespace": false,
            "enableServiceLinks": true, "automountServiceAccountToken": false, "hostUsers": true,
            "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
            "priority": 0, "preemptionPolicy": "PreemptLowerPriority", "os": {"name": "linux"},
            "initContainers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}},
            "volumes": [{"name": "d", "emptyDir": {}}, {"name": "c", "configMap": {"name": "x"}},
                        {"name": "s", "secret": {"secretName": "y"}}]
        });
        let container = json!({
            "name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent", "workingDir": "/w",
            "terminationMessagePath": "/tmp/last-words", "terminationMessagePolicy": "FallbackToLogsOnError",
            "stdin": true, "tty": true, "stdinOnce": false, "lifecycle": {},
            "securityContext": {"privileged": false, "allowPrivilegeEscalation": true,
                                "readOnlyRootFilesystem": false, "procMount": "Default",
                                "seccompProfile": {"type": "Unconfined"}, "capabilities": {"add": [], "drop": []}},
            "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
            "volumeMounts": [{"name": "d", "mountPath": "/d", "mountPropagation": "None", "subPath": "x"}],
            "env": [{"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}},
            "livenessProbe": {"exec": {"command": ["true"]}},
            "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}
        });
        spec["containers"] = json!([container]);
        let errs = refuse_unsupported(p, None, &pod(spec));
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn security_contexts_host_namespaces_and_the_downward_api_are_honoured() {
        let spec = json!({
            "hostNetwork": true, "hostPID": true, "hostIPC": true, "dnsPolicy": "ClusterFirstWithHostNet",
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a.local"]}],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 2000, "runAsNonRoot": true,
                                "supplementalGroups": [3000], "seccompProfile": {"type": "RuntimeDefault"},
                                "fsGroup": 4000, "fsGroupChangePolicy": "OnRootMismatch"},
            "containers": [{
                "name": "c", "image": "i",
                "securityContext": {"privileged": true, "readOnlyRootFilesystem": true,
                                    "allowPrivilegeEscalation": false, "runAsUser": 0, "runAsNonRoot": false,
                                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"}, "procMount": "Default"},
                "env": [{"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                        {"name": "S", "valueFrom": {"resourceFieldRef": {"resource": "requests.ephemeral-storage"}}},
                        {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                        {"name": "H", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs"}}}],
                "terminationMessagePolicy": "FallbackToLogsOnError"
            }]
        });
        let errs = refuse_unsupported(POD_SPEC_AT, None, &pod(spec));
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn the_volume_types_noded_prepares_are_accepted() {
        let spec = json!({
            "volumes": [
                {"name": "h", "hostPath": {"path": "/srv", "type": "DirectoryOrCreate"}},
                {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                {"name": "d", "downwardAPI": {"items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "c", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}}]}},
                {"name": "p", "projected": {"defaultMode": 420, "sources": [{"configMap": {"name": "a"}}, {"secret": {"name": "b"}},
                    {"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}}
            ],
            "containers": [{"name": "c", "image": "i", "volumeMounts": [
                {"name": "h", "mountPath": "/h", "subPathExpr": "$(POD)"}]}]
        });
        let errs = refuse_unsupported(POD_SPEC_AT, None, &pod(spec));
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn unsupported_values_are_refused_with_their_paths() {
        let p = POD_SPEC_AT;
        let spec = json!({
            "hostUsers": false, "os": {"name": "windows"},
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "runAsNonRoot": true,
                                "seLinuxOptions": {"level": "s0:c1"},
                                "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "k"}]}},
            "topologySpreadConstraints": [{"maxSkew": 1}],
            "volumes": [{"name": "h", "hostPath": {"path": "/", "type": "Folder"}}, {"name": "m", "emptyDir": {"medium": "HugePages"}},
                        {"name": "n", "nfs": {"server": "s", "path": "/"}},
                        {"name": "d", "downwardAPI": {"items": [{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}],
            "containers": [{
                "name": "c", "image": "i",
                "lifecycle": {"stopSignal": "SIGINT"},
                "securityContext": {"capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": false,
                                    "procMount": "Unmasked", "seLinuxOptions": {"level": "s0:c1"},
                                    "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
                "ports": [{"containerPort": 80, "hostIP": "1.2.3.4"}],
                "env": [{"name": "R", "valueFrom": {"resourceFieldRef": {"resource": "limits.hugepages-2Mi"}}},
                        {"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}],
                "livenessProbe": {"httpGet": {"port": 443, "scheme": "HTTPS"}},
                "resources": {"claims": [{"name": "gpu"}]},
                "terminationMessagePolicy": "FallbackToLogsOnError"
            }]
        });
        let errs = refuse_unsupported(p, None, &pod(spec));
        assert_eq!(
            fields(&errs),
            [
                "spec.hostUsers",
                "spec.os",
                "spec.topologySpreadConstraints[0].topologyKey",
                "spec.topologySpreadConstraints[0].whenUnsatisfiable",
                "spec.securityContext.seLinuxOptions",
                "spec.securityContext.seccompProfile",
                "spec.containers[0].securityContext.procMount",
                "spec.containers[0].securityContext.seLinuxOptions",
                "spec.containers[0].securityContext.seccompProfile",
                "spec.containers[0].resources.claims",
                "spec.containers[0].livenessProbe.httpGet.scheme",
                "spec.containers[0].lifecycle.stopSignal",
                "spec.containers[0].ports[0].hostIP",
                "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource",
                "spec.containers[0].env[1].valueFrom.fieldRef.fieldPath",
                "spec.volumes[0].hostPath.type",
                "spec.volumes[1].emptyDir.medium",
                "spec.volumes[2].nfs",
                "spec.volumes[3].downwardAPI.items[0].fieldRef.fieldPath",
            ]
        );
    }

    #[test]
    fn templates_of_deployments_and_replicasets_are_checked() {
        use crate::kinds::Strategy;
        let obj = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
            "containers": [{"name": "c", "image": "i", "securityContext": {"procMount": "Unmasked"}}]}}}});
        assert_eq!(
            fields(&refuse_unsupported(TEMPLATE_SPEC_AT, None, &obj)),
            ["spec.template.spec.containers[0].securityContext.procMount"]
        );
        let workloads: [&dyn Strategy; 2] = [
            &crate::kinds::deployment::Deployments,
            &crate::kinds::replicaset::ReplicaSets,
        ];
        for k in workloads {
            assert!(
                fields(&k.validate(&obj)).contains(&"spec.template.spec.containers[0].securityContext.procMount"),
                "{}",
                k.resource().kind
            );
        }
    }

    #[test]
    fn updates_refuse_only_changed_fields() {
        let d = TEMPLATE_SPEC_AT;
        let with = |profile: &str, users: bool| {
            json!({"spec": {"template": {"spec": {"hostUsers": users,
                "containers": [{"name": "c", "image": "i", "securityContext": {
                    "seccompProfile": {"type": "Localhost", "localhostProfile": profile}}}]}}}})
        };
        // Stored before the field was refused: unchanged values pass.
        assert!(refuse_unsupported(d, Some(&with("a", true)), &with("a", true)).is_empty());
        assert_eq!(
            fields(&refuse_unsupported(d, Some(&with("a", true)), &with("b", false))),
            [
                "spec.template.spec.hostUsers",
                "spec.template.spec.containers[0].securityContext.seccompProfile"
            ]
        );
    }

    #[test]
    fn ephemeral_containers_only_come_through_the_subresource() {
        let with_debugger = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}],
            "ephemeralContainers": [{"name": "d", "image": "busybox"}]}});
        let errs = refuse_unsupported(POD_SPEC_AT, None, &with_debugger);
        assert_eq!(
            errs.iter().map(FieldError::to_line).collect::<Vec<_>>(),
            ["spec.ephemeralContainers: Forbidden: cannot be set on create"]
        );
        // Stored ones pass the pod's own updates and status writes.
        assert!(refuse_unsupported(POD_SPEC_AT, Some(&with_debugger), &with_debugger).is_empty());
        let template = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}],
            "ephemeralContainers": [{"name": "d", "image": "busybox"}]}}}});
        assert_eq!(
            fields(&refuse_unsupported(TEMPLATE_SPEC_AT, None, &template)),
            ["spec.template.spec.ephemeralContainers"]
        );
        // The container tables apply to them too.
        let unmasked = json!({"spec": {"containers": [{"name": "c", "image": "i"}], "ephemeralContainers": [
            {"name": "d", "image": "busybox", "securityContext": {"procMount": "Unmasked"}}]}});
        assert!(
            fields(&refuse_unsupported(POD_SPEC_AT, Some(&pod(json!({}))), &unmasked))
                .contains(&"spec.ephemeralContainers[0].securityContext.procMount")
        );
    }

    #[test]
    fn ephemeral_updates_take_only_the_ephemeral_containers_and_default_them() {
        let cur = json!({"metadata": {"name": "p", "resourceVersion": "5"}, "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}});
        let proposed = json!({"metadata": {"name": "p", "labels": {"x": "y"}}, "spec": {"containers": [],
            "ephemeralContainers": [{"name": "d", "image": "busybox:1.36", "targetContainerName": "c"}]}});
        let new = ephemeral_update(&cur, &proposed);
        assert_eq!(new["spec"]["containers"], cur["spec"]["containers"]);
        assert_eq!(new["status"], cur["status"]);
        assert!(new["metadata"].get("labels").is_none());
        assert!(new["metadata"].get("resourceVersion").is_none());
        let d = &new["spec"]["ephemeralContainers"][0];
        assert_eq!(
            (
                &d["imagePullPolicy"],
                &d["terminationMessagePolicy"],
                &d["terminationMessagePath"]
            ),
            (&json!("IfNotPresent"), &json!("File"), &json!("/dev/termination-log"))
        );
        assert!(validate_ephemeral_update(&cur, &new).is_empty());
    }

    #[test]
    fn ephemeral_containers_are_validated_as_kubernetes_does() {
        let old = json!({"spec": {"containers": [{"name": "c", "image": "i"}], "initContainers": [{"name": "i", "image": "i"}],
            "ephemeralContainers": [{"name": "first", "image": "busybox"}]}});
        let mut new = old.clone();
        new["spec"]["ephemeralContainers"] = json!([
            {"name": "first", "image": "busybox", "stdin": true},
            {"name": "c", "image": "busybox", "targetContainerName": "nope",
             "ports": [{"containerPort": 80}], "readinessProbe": {"exec": {"command": ["true"]}},
             "resources": {}, "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "x"}]},
            {"name": "Bad_Name"},
        ]);
        let lines: Vec<String> = validate_ephemeral_update(&old, &new)
            .iter()
            .map(FieldError::to_line)
            .collect();
        assert_eq!(
            lines,
            [
                "spec.ephemeralContainers[1].name: Duplicate value: \"c\"",
                "spec.ephemeralContainers[1].targetContainerName: Not found: \"nope\"",
                "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[1].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[1].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.ephemeralContainers[2].image: Required value",
                "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"first\" may not be changed",
            ]
        );
        let mut removed = old.clone();
        removed["spec"]["ephemeralContainers"] = json!([]);
        assert_eq!(
            validate_ephemeral_update(&old, &removed)[0].to_line(),
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"first\" may not be removed"
        );
    }

    #[test]
    fn every_table_reason_is_one_line() {
        for table in [
            POD_SPEC,
            AFFINITY,
            POD_SECURITY_CONTEXT,
            CONTAINER,
            CONTAINER_SECURITY_CONTEXT,
            PROBE,
            LIFECYCLE,
            LIFECYCLE_HANDLER,
            PORT,
            VOLUME_MOUNT,
            EMPTY_DIR,
        ] {
            for rule in table {
                assert!(!rule.reason.is_empty() && !rule.reason.contains('\n'), "{}", rule.field);
            }
        }
    }
}
