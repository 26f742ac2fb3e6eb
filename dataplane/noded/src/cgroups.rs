//! Pod cgroups on the host: removing what the runtime leaves behind.
//!
//! Every pod's containers live under the cgroup parent `<root>/pod<uid>`
//! (see [`crate::pod_spec::sandbox_config`]). runc creates that directory in
//! each hierarchy but never removes it, so once a pod's sandbox is gone noded
//! removes the pod's (then empty) cgroup directories, bottom-up, in every
//! hierarchy: cgroup v1 controllers, the hybrid `unified` tree, or a pure v2
//! mount. A directory that still holds tasks stays (rmdir fails, nothing is
//! forced).

use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// The directories of `cgroup_path` (e.g. `/sluice/n1/pod<uid>`) in every hierarchy under `mount`.
pub fn directories(mount: &Path, cgroup_path: &str) -> Vec<PathBuf> {
    let relative = cgroup_path.trim_start_matches('/');
    if relative.is_empty() || relative.split('/').any(|part| part == "..") {
        return Vec::new();
    }
    // A pure cgroup v2 machine has one tree at the mount point itself.
    if mount.join("cgroup.controllers").exists() {
        return vec![mount.join(relative)];
    }
    let Ok(entries) = std::fs::read_dir(mount) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        // Symlinks (`cpu` -> `cpu,cpuacct`) name a hierarchy that is listed anyway.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(relative))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Remove `dir` and the empty cgroups below it, deepest first; returns whether `dir` is gone.
pub fn remove_tree(dir: &Path) -> bool {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    // cgroupfs directories are removed with rmdir even though they list files.
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(err) => err.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Remove the cgroups of `cgroup_path` in every hierarchy; returns those that stayed (still busy).
pub fn remove(cgroup_path: &str) -> Vec<PathBuf> {
    directories(Path::new(CGROUP_MOUNT), cgroup_path)
        .into_iter()
        .filter(|dir| !remove_tree(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_are_each_listed_and_escapes_refused() {
        let mount = tempfile::tempdir().unwrap();
        for hierarchy in ["memory", "pids", "unified"] {
            std::fs::create_dir_all(mount.path().join(hierarchy).join("sluice/n1/podu")).unwrap();
        }
        std::fs::create_dir_all(mount.path().join("cpu")).unwrap();
        let dirs = directories(mount.path(), "/sluice/n1/podu");
        assert_eq!(
            dirs,
            ["memory", "pids", "unified"].map(|h| mount.path().join(h).join("sluice/n1/podu"))
        );
        assert!(directories(mount.path(), "/sluice/../etc").is_empty());
        assert!(directories(mount.path(), "/").is_empty());
    }

    #[test]
    fn a_pure_v2_mount_is_one_tree() {
        let mount = tempfile::tempdir().unwrap();
        std::fs::write(mount.path().join("cgroup.controllers"), "cpu memory").unwrap();
        assert_eq!(
            directories(mount.path(), "/sluice/n1/podu"),
            vec![mount.path().join("sluice/n1/podu")]
        );
    }

    #[test]
    fn trees_are_removed_deepest_first() {
        let mount = tempfile::tempdir().unwrap();
        let pod = mount.path().join("podu");
        std::fs::create_dir_all(pod.join("c1")).unwrap();
        std::fs::create_dir_all(pod.join("c2")).unwrap();
        assert!(remove_tree(&pod));
        assert!(!pod.exists());
        assert!(remove_tree(&pod), "already gone counts as removed");
    }
}
