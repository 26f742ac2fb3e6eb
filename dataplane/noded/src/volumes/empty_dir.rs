//! emptyDir volumes: a directory of the pod, on the node's disk or, with
//! `medium: Memory`, a tmpfs.
//!
//! The directory gets `mode` (0777 when unset). A Memory emptyDir is a tmpfs
//! mounted on the volume directory by noded with `size=` the `sizeLimit`, or
//! the node's allocatable memory when there is none (what bounds it anyway is
//! the pod's memory cgroup, which tmpfs pages are charged to); it is
//! unmounted when the pod's directory is removed ([`unmount_all_below`]).
//! A disk emptyDir's `sizeLimit` is enforced by [`super::usage_over_limit`]
//! which the pod worker checks, evicting the pod as the kubelet does.

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Prepare `dir` for `source`; `memory_bytes` is the tmpfs size when no `sizeLimit` is set.
pub fn set_up(dir: &Path, source: &EmptyDirVolumeSource, memory_bytes: Option<i64>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    match source.medium.as_deref().unwrap_or("") {
        "" => {}
        "Memory" => {
            if !is_mount_point(dir) {
                let limit = match &source.size_limit {
                    Some(q) => Some(sluice_kube::quantity::parse_value(&q.0).map_err(|e| e.to_string())?),
                    None => memory_bytes,
                };
                mount_tmpfs(dir, limit.filter(|l| *l > 0))?;
            }
        }
        other => return Err(format!("emptyDir medium {other:?} is not supported by this node")),
    }
    let mode = source.mode.map(|m| m as u32 & 0o7777).unwrap_or(0o777);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())
}

fn mount_tmpfs(dir: &Path, size: Option<i64>) -> Result<(), String> {
    let target = c_path(dir)?;
    let options = CString::new(match size {
        Some(bytes) => format!("mode=0777,size={bytes}"),
        None => "mode=0777".to_string(),
    })
    .map_err(|e| e.to_string())?;
    let fstype = c"tmpfs";
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mount -t tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The mount points in `/proc/self/mountinfo` (octal escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `dir` is a mount point.
pub fn is_mount_point(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    mount_points().contains(&dir)
}

/// Unmount (lazily) every mount at or below `root`, deepest first.
pub fn unmount_all_below(root: &Path) {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut below: Vec<PathBuf> = mount_points().into_iter().filter(|m| m.starts_with(&root)).collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    below.dedup();
    for m in below {
        let Ok(target) = c_path(&m) else { continue };
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            tracing::warn!(path = %m.display(), err = %std::io::Error::last_os_error(), "could not unmount");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn disk_empty_dirs_get_their_mode_and_memory_ones_a_tmpfs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        set_up(&dir, &EmptyDirVolumeSource::default(), None).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o777);
        let memory = EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Mi".into())),
            ..Default::default()
        };
        let mem = tmp.path().join("m");
        if set_up(&mem, &memory, None).is_err() {
            return; // not root: no mount(2)
        }
        assert!(is_mount_point(&mem));
        set_up(&mem, &memory, None).unwrap();
        let count = mount_points()
            .iter()
            .filter(|m| **m == std::fs::canonicalize(&mem).unwrap())
            .count();
        assert_eq!(count, 1, "mounted once");
        unmount_all_below(tmp.path());
        assert!(!is_mount_point(&mem));
    }
}
