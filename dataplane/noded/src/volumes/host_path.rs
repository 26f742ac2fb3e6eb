//! hostPath volumes: a path of the node given to the pod as it is, after the
//! kubelet's check of `hostPath.type`.
//!
//! `""` checks nothing (the runtime creates a missing path as a directory);
//! `DirectoryOrCreate` and `FileOrCreate` create what is missing (a directory
//! of mode 0755, an empty file of mode 0644, owned by noded as the kubelet's
//! are by the kubelet); `Directory`, `File`, `Socket`, `CharDevice` and
//! `BlockDevice` require an existing path of that kind. A failed check is
//! worded as the kubelet's: `hostPath type check failed: /x is not a directory`.
//! hostPath volumes are never given to the pod's `fsGroup` (neither are
//! they by the kubelet).

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Check (and for the `...OrCreate` types, create) `path` as `type_` requires;
/// `Err` is the kubelet's message.
pub fn check_type(path: &Path, type_: Option<&str>) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).ok();
    let kind = meta.as_ref().map(|m| m.file_type());
    let failed = |what: &str| Err(format!("hostPath type check failed: {shown} is not {what}"));
    match type_.unwrap_or("") {
        "" => Ok(()),
        "DirectoryOrCreate" if kind.is_none() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|e| format!("hostPath type check failed: could not create directory {shown}: {e}")),
        "DirectoryOrCreate" | "Directory" => match kind {
            Some(k) if k.is_dir() => Ok(()),
            _ => failed("a directory"),
        },
        "FileOrCreate" if kind.is_none() => {
            if let Some(parent) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(|e| format!("hostPath type check failed: could not create file {shown}: {e}"))?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map(drop)
                .map_err(|e| format!("hostPath type check failed: could not create file {shown}: {e}"))
        }
        "FileOrCreate" | "File" => match kind {
            Some(k) if !k.is_dir() => Ok(()),
            _ => failed("a file"),
        },
        "Socket" => match kind {
            Some(k) if k.is_socket() => Ok(()),
            _ => failed("a socket file"),
        },
        "CharDevice" => match kind {
            Some(k) if k.is_char_device() => Ok(()),
            _ => failed("a character device"),
        },
        "BlockDevice" => match kind {
            Some(k) if k.is_block_device() => Ok(()),
            _ => failed("a block device"),
        },
        other => Err(format!("{other} is an invalid volume type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn types_are_checked_and_created_as_the_kubelet_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        check_type(&dir, Some("DirectoryOrCreate")).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755);
        check_type(&dir, Some("Directory")).unwrap();
        let file = tmp.path().join("c/f");
        check_type(&file, Some("FileOrCreate")).unwrap();
        assert!(std::fs::metadata(&file).unwrap().is_file());
        check_type(&file, Some("File")).unwrap();
        assert_eq!(
            check_type(&file, Some("Directory")).unwrap_err(),
            format!("hostPath type check failed: {} is not a directory", file.display())
        );
        assert_eq!(
            check_type(&dir, Some("File")).unwrap_err(),
            format!("hostPath type check failed: {} is not a file", dir.display())
        );
        let missing = tmp.path().join("missing");
        assert!(check_type(&missing, Some("Directory")).is_err());
        assert!(!missing.exists(), "Directory does not create");
        check_type(&missing, None).unwrap();
        check_type(&missing, Some("")).unwrap();
        assert!(check_type(&file, Some("Socket"))
            .unwrap_err()
            .ends_with("is not a socket file"));
        check_type(Path::new("/dev/null"), Some("CharDevice")).unwrap();
        assert!(check_type(Path::new("/dev/null"), Some("BlockDevice"))
            .unwrap_err()
            .ends_with("is not a block device"));
    }
}
