//! Pod and container `securityContext` turned into the CRI security
//! contexts, as the kubelet does it.
//!
//! * The effective context of a container is the pod's with the
//!   container's fields on top ([`effective`]): `runAsUser`, `runAsGroup`,
//!   `runAsNonRoot`, `seccompProfile` (and SELinux/AppArmor/Windows options,
//!   refused at admission) may be set at either level, the container
//!   winning; `capabilities`, `privileged`, `readOnlyRootFilesystem`,
//!   `allowPrivilegeEscalation` and `procMount` exist only on containers.
//! * The pod's `fsGroup` and `supplementalGroups` (in that order) go to every
//!   container (volumes are given to the `fsGroup` by [`crate::volumes`]); without `runAsUser` the image's user
//!   is passed (numeric as `run_as_user`, otherwise `run_as_username`), an
//!   image without a user counting as uid 0.
//! * `runAsNonRoot` is checked before the container is created
//!   ([`verify_run_as_non_root`]); a failure is the kubelet's
//!   `CreateContainerConfigError` with its message.
//! * `allowPrivilegeEscalation: false` is `no_new_privs`; `procMount:
//!   Default` the kubelet's masked and read-only `/proc` paths; seccomp is
//!   `Unconfined` unless a profile is set (the kubelet's default without
//!   `--seccomp-default`), and the sandbox always runs `RuntimeDefault`.
//! * The sandbox is privileged when any container of the pod is (the
//!   runtime refuses privileged containers in other sandboxes).

use crate::cri::api;
use crate::format;
use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile, SecurityContext};

/// Paths the kubelet masks in a container's `/proc` and `/sys` with `procMount: Default`.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the kubelet makes read-only with `procMount: Default`.
pub const DEFAULT_READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The user an image runs as when nothing overrides it, from the CRI image
/// status: a uid, or a user name that is not a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    /// A numeric user (an image without a user is uid 0).
    Uid(i64),
    /// A user name the runtime resolves inside the image.
    Name(String),
}

impl ImageUser {
    /// What the kubelet reads from an image status (`None`: the image is unknown, root).
    pub fn of(image: Option<&api::Image>) -> ImageUser {
        match image {
            Some(i) if i.uid.is_some() => ImageUser::Uid(i.uid.as_ref().map(|u| u.value).unwrap_or(0)),
            Some(i) if !i.username.is_empty() => ImageUser::Name(i.username.clone()),
            _ => ImageUser::Uid(0),
        }
    }
}

/// The container's effective security context: the pod's, overridden field by field by the container's.
pub fn effective(pod: &Pod, container: &Container) -> SecurityContext {
    let mut sc = container.security_context.clone().unwrap_or_default();
    if let Some(p) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) {
        sc.run_as_user = sc.run_as_user.or(p.run_as_user);
        sc.run_as_group = sc.run_as_group.or(p.run_as_group);
        sc.run_as_non_root = sc.run_as_non_root.or(p.run_as_non_root);
        if sc.seccomp_profile.is_none() {
            sc.seccomp_profile = p.seccomp_profile.clone();
        }
        if sc.se_linux_options.is_none() {
            sc.se_linux_options = p.se_linux_options.clone();
        }
        if sc.app_armor_profile.is_none() {
            sc.app_armor_profile = p.app_armor_profile.clone();
        }
        if sc.windows_options.is_none() {
            sc.windows_options = p.windows_options.clone();
        }
    }
    sc
}

/// The kubelet's `runAsNonRoot` check; `Err` is the waiting message of `CreateContainerConfigError`.
pub fn verify_run_as_non_root(pod: &Pod, container: &Container, image_user: &ImageUser) -> Result<(), String> {
    let sc = effective(pod, container);
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let who = format!("(pod: {:?}, container: {})", format::pod(pod), container.name);
    if let Some(uid) = sc.run_as_user {
        return match uid {
            0 => Err(format!("container's runAsUser breaks non-root policy {who}")),
            _ => Ok(()),
        };
    }
    match image_user {
        ImageUser::Name(name) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root {who}"
        )),
        ImageUser::Uid(0) => Err(format!("container has runAsNonRoot and image will run as root {who}")),
        ImageUser::Uid(uid) if !(1..=i64::from(i32::MAX)).contains(uid) => Err(format!(
            "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be 1-({})): must be between 0 and {}, inclusive {who}",
            i32::MAX,
            i32::MAX
        )),
        ImageUser::Uid(_) => Ok(()),
    }
}

fn seccomp(profile: Option<&SeccompProfile>) -> api::SecurityProfile {
    let profile_type = match profile.map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => api::security_profile::ProfileType::RuntimeDefault,
        Some("Localhost") => api::security_profile::ProfileType::Localhost,
        _ => api::security_profile::ProfileType::Unconfined,
    };
    api::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: profile.and_then(|p| p.localhost_profile.clone()).unwrap_or_default(),
    }
}

/// The pod's supplemental groups (`fsGroup` first, then `supplementalGroups`), as the kubelet orders them.
fn supplemental_groups(pod: &Pod) -> Vec<i64> {
    let sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    sc.and_then(|s| s.fs_group)
        .into_iter()
        .chain(sc.and_then(|s| s.supplemental_groups.clone()).unwrap_or_default())
        .collect()
}

/// The CRI security context of `container` (namespaces are set by the caller).
pub fn container_security(
    pod: &Pod,
    container: &Container,
    image_user: &ImageUser,
) -> api::LinuxContainerSecurityContext {
    let sc = effective(pod, container);
    let (run_as_user, run_as_username) = match (sc.run_as_user, image_user) {
        (Some(uid), _) => (Some(uid), String::new()),
        (None, ImageUser::Uid(uid)) => (Some(*uid), String::new()),
        (None, ImageUser::Name(name)) => (None, name.clone()),
    };
    let unmasked = sc.proc_mount.as_deref() == Some("Unmasked");
    let paths = |list: &[&str]| {
        if unmasked {
            Vec::new()
        } else {
            list.iter().map(ToString::to_string).collect()
        }
    };
    api::LinuxContainerSecurityContext {
        capabilities: sc.capabilities.as_ref().map(|c| api::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged: sc.privileged.unwrap_or(false),
        run_as_user: run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: sc.run_as_group.map(|value| api::Int64Value { value }),
        run_as_username,
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: supplemental_groups(pod),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: paths(DEFAULT_MASKED_PATHS),
        readonly_paths: paths(DEFAULT_READONLY_PATHS),
        seccomp: Some(seccomp(sc.seccomp_profile.as_ref())),
        ..Default::default()
    }
}

/// Whether any container (init, regular or ephemeral) of the pod is privileged.
pub fn has_privileged_container(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    let privileged = |sc: Option<&SecurityContext>| sc.and_then(|s| s.privileged) == Some(true);
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

/// The CRI security context of the pod's sandbox (namespaces are set by the caller).
pub fn sandbox_security(pod: &Pod) -> api::LinuxSandboxSecurityContext {
    let sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    api::LinuxSandboxSecurityContext {
        run_as_user: sc.and_then(|s| s.run_as_user).map(|value| api::Int64Value { value }),
        run_as_group: sc.and_then(|s| s.run_as_group).map(|value| api::Int64Value { value }),
        supplemental_groups: supplemental_groups(pod),
        privileged: has_privileged_container(pod),
        seccomp: Some(api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}, "spec": spec}))
            .unwrap()
    }

    fn first(p: &Pod) -> &Container {
        &p.spec.as_ref().unwrap().containers[0]
    }

    #[test]
    fn the_container_overrides_the_pod_field_by_field() {
        let p = pod(json!({
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true,
                                "supplementalGroups": [4000, 5000],
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {"runAsUser": 2000,
                "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]
        }));
        let sc = effective(&p, first(&p));
        assert_eq!(
            (sc.run_as_user, sc.run_as_group, sc.run_as_non_root),
            (Some(2000), Some(3000), Some(true))
        );
        let cri = container_security(&p, first(&p), &ImageUser::Uid(0));
        assert_eq!(cri.run_as_user.map(|u| u.value), Some(2000));
        assert_eq!(cri.run_as_group.map(|g| g.value), Some(3000));
        assert_eq!(cri.supplemental_groups, [4000, 5000]);
        assert!(cri.readonly_rootfs && cri.no_new_privs && !cri.privileged);
        let caps = cri.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert_eq!(
            cri.seccomp.unwrap().profile_type,
            api::security_profile::ProfileType::RuntimeDefault as i32
        );
        assert_eq!(cri.masked_paths.len(), DEFAULT_MASKED_PATHS.len());
        assert_eq!(cri.readonly_paths.len(), DEFAULT_READONLY_PATHS.len());
    }

    #[test]
    fn without_a_user_the_image_user_is_passed_and_seccomp_is_unconfined() {
        let p = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        let cri = container_security(&p, first(&p), &ImageUser::Name("nobody".into()));
        assert_eq!((cri.run_as_user, cri.run_as_username.as_str()), (None, "nobody"));
        let cri = container_security(&p, first(&p), &ImageUser::Uid(0));
        assert_eq!(cri.run_as_user.map(|u| u.value), Some(0));
        assert!(
            !cri.no_new_privs,
            "allowPrivilegeEscalation unset keeps privilege escalation"
        );
        assert_eq!(
            cri.seccomp.unwrap().profile_type,
            api::security_profile::ProfileType::Unconfined as i32
        );
        let image = api::Image {
            uid: Some(api::Int64Value { value: 65534 }),
            ..Default::default()
        };
        assert_eq!(ImageUser::of(Some(&image)), ImageUser::Uid(65534));
        assert_eq!(ImageUser::of(Some(&api::Image::default())), ImageUser::Uid(0));
    }

    #[test]
    fn run_as_non_root_is_checked_with_the_kubelet_messages() {
        let with = |pod_sc: serde_json::Value, c_sc: serde_json::Value| {
            pod(
                json!({"securityContext": pod_sc, "containers": [{"name": "app", "image": "i", "securityContext": c_sc}]}),
            )
        };
        let p = with(json!({"runAsNonRoot": true}), json!({}));
        assert_eq!(
            verify_run_as_non_root(&p, first(&p), &ImageUser::Uid(0)),
            Err(
                "container has runAsNonRoot and image will run as root (pod: \"web_shop(u-1)\", container: app)".into()
            )
        );
        assert_eq!(
            verify_run_as_non_root(&p, first(&p), &ImageUser::Name("www".into())),
            Err("container has runAsNonRoot and image has non-numeric user (www), cannot verify user is non-root (pod: \"web_shop(u-1)\", container: app)".into())
        );
        assert_eq!(verify_run_as_non_root(&p, first(&p), &ImageUser::Uid(1000)), Ok(()));
        let p = with(json!({"runAsNonRoot": true}), json!({"runAsUser": 0}));
        assert_eq!(
            verify_run_as_non_root(&p, first(&p), &ImageUser::Uid(1000)),
            Err("container's runAsUser breaks non-root policy (pod: \"web_shop(u-1)\", container: app)".into())
        );
        let p = with(json!({"runAsUser": 1000}), json!({"runAsNonRoot": true}));
        assert_eq!(verify_run_as_non_root(&p, first(&p), &ImageUser::Uid(0)), Ok(()));
        // The container may allow what the pod forbids.
        let p = with(json!({"runAsNonRoot": true}), json!({"runAsNonRoot": false}));
        assert_eq!(verify_run_as_non_root(&p, first(&p), &ImageUser::Uid(0)), Ok(()));
    }

    #[test]
    fn a_privileged_container_makes_the_sandbox_privileged() {
        let p = pod(
            json!({"securityContext": {"runAsUser": 7, "fsGroup": 9, "supplementalGroups": [10]},
            "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i", "securityContext": {"privileged": true}}]}),
        );
        let s = sandbox_security(&p);
        assert!(s.privileged);
        assert_eq!(s.run_as_user.map(|u| u.value), Some(7));
        assert_eq!(s.supplemental_groups, [9, 10]);
        assert_eq!(
            s.seccomp.unwrap().profile_type,
            api::security_profile::ProfileType::RuntimeDefault as i32
        );
        assert!(!sandbox_security(&pod(json!({"containers": [{"name": "a", "image": "i"}]}))).privileged);
    }
}
