//! Unit tests of the volume module's pure parts: messages, paths, mounts, ownership.

use super::*;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": spec
    }))
    .unwrap()
}

#[test]
fn failures_are_worded_like_the_kubelet() {
    let volume = Volume {
        name: "config".into(),
        ..Default::default()
    };
    assert_eq!(
        VolumeError::setup(&volume, "configmap \"app-config\" not found").failed_mount_message(),
        "MountVolume.SetUp failed for volume \"config\" : configmap \"app-config\" not found"
    );
    let claim = VolumeError::Claim {
        volume: "data".into(),
        namespace: "ns".into(),
        claim: "db".into(),
        message: "PVC is not bound".into(),
    };
    assert_eq!(
        claim.failed_mount_message(),
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data]: \
         error processing PVC ns/db: PVC is not bound"
    );
}

#[test]
fn host_paths_use_host_paths_and_claim_links() {
    let state = tempfile::tempdir().unwrap();
    let pv_dir = state.path().join("storage/pvc-1");
    std::fs::create_dir_all(&pv_dir).unwrap();
    let p = pod(serde_json::json!({"containers": [], "volumes": [
        {"name": "h", "hostPath": {"path": "/srv/x"}},
        {"name": "c", "persistentVolumeClaim": {"claimName": "db"}},
        {"name": "e", "emptyDir": {}}
    ]}));
    link(&volume_dir(state.path(), "u-1", "c"), &pv_dir).unwrap();
    link(&volume_dir(state.path(), "u-1", "c"), &pv_dir).unwrap();
    let paths = host_paths(state.path(), &p);
    assert_eq!(paths["h"], PathBuf::from("/srv/x"));
    assert_eq!(paths["c"], pv_dir);
    assert_eq!(paths["e"], state.path().join("pods/u-1/volumes/e"));
    std::fs::write(pv_dir.join("keep"), "data").unwrap();
    remove(state.path(), "u-1");
    assert!(
        pv_dir.join("keep").exists(),
        "removing the pod never follows the claim's link"
    );
    assert!(!pod_dir(state.path(), "u-1").exists());
}

#[test]
fn mounts_expand_sub_paths_and_make_api_volumes_read_only() {
    let root = tempfile::tempdir().unwrap();
    let cm = root.path().join("cm");
    let payload = atomic_writer::Payload::from([(
        "app.conf".to_string(),
        atomic_writer::FileProjection {
            data: b"x".to_vec(),
            mode: 0o644,
            user: None,
        },
    )]);
    atomic_writer::write(&cm, &payload).unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let p = pod(serde_json::json!({"containers": [{"name": "main", "volumeMounts": [
        {"name": "cm", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        {"name": "data", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/logs"},
        {"name": "data", "mountPath": "/ro", "readOnly": true}
    ]}], "volumes": [{"name": "cm", "configMap": {"name": "x"}}, {"name": "data", "emptyDir": {}}]}));
    let container = &p.spec.as_ref().unwrap().containers[0];
    let paths = BTreeMap::from([("cm".to_string(), cm.clone()), ("data".to_string(), data.clone())]);
    let env = [("POD_NAME".to_string(), "web-0".to_string())];
    let mounts = container_mounts(&p, container, &env, &paths).unwrap();
    let real_cm = std::fs::canonicalize(&cm).unwrap();
    assert!(mounts[0].host_path.starts_with(real_cm.to_str().unwrap()));
    assert!(
        mounts[0].host_path.contains("/..20"),
        "the file of the current data: {}",
        mounts[0].host_path
    );
    assert!(mounts[0].readonly, "configMap volumes are read-only");
    let real_data = std::fs::canonicalize(&data).unwrap();
    assert_eq!(mounts[1].host_path, real_data.join("web-0/logs").display().to_string());
    assert!(real_data.join("web-0/logs").is_dir(), "a missing subPath is created");
    assert!(!mounts[1].readonly);
    assert!(mounts[2].readonly);

    std::os::unix::fs::symlink("/etc", data.join("escape")).unwrap();
    assert!(sub_path(&data, "escape")
        .unwrap_err()
        .contains("not within volume path"));
    assert!(sub_path(&data, "../x").is_err());
    assert!(sub_path(&data, "/abs").is_err());
    let missing = BTreeMap::new();
    assert!(container_mounts(&p, container, &env, &missing)
        .unwrap_err()
        .contains("cannot find volume \"cm\""));
}

#[test]
fn empty_dir_size_limits_are_checked_against_disk_usage() {
    let state = tempfile::tempdir().unwrap();
    let p = pod(serde_json::json!({"containers": [], "volumes": [
        {"name": "scratch", "emptyDir": {"sizeLimit": "64Ki"}},
        {"name": "free", "emptyDir": {}}
    ]}));
    let dir = volume_dir(state.path(), "u-1", "scratch");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("small"), vec![1u8; 1024]).unwrap();
    assert_eq!(usage_over_limit(state.path(), &p), None);
    std::fs::write(dir.join("big"), vec![1u8; 128 * 1024]).unwrap();
    assert_eq!(
        usage_over_limit(state.path(), &p).unwrap(),
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"64Ki\". "
    );
}

#[test]
fn fs_group_owns_volumes_as_the_kubelet_sets_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/key"), "v").unwrap();
    std::fs::set_permissions(dir.path().join("sub/key"), std::fs::Permissions::from_mode(0o400)).unwrap();
    set_ownership(dir.path(), 4321, true).unwrap();
    let file = std::fs::metadata(dir.path().join("sub/key")).unwrap();
    assert_eq!((file.gid(), file.mode() & 0o7777), (4321, 0o440));
    let sub = std::fs::metadata(dir.path().join("sub")).unwrap();
    assert_eq!(sub.gid(), 4321);
    assert_eq!(sub.mode() & 0o2550, 0o2550, "setgid, group read and search");
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("f"), "x").unwrap();
    std::fs::set_permissions(scratch.path().join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    set_ownership(scratch.path(), 4321, false).unwrap();
    let f = std::fs::metadata(scratch.path().join("f")).unwrap();
    assert_eq!(f.mode() & 0o777, 0o660);
}
