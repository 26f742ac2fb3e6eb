//! Writing a configMap, secret, downwardAPI or projected volume so that a
//! container never sees half of an update, as the kubelet's `AtomicWriter`.
//!
//! The files live in a timestamped directory `..<UTC time>.<nanos>` of the
//! volume; `..data` is a symbolic link to the current one, and each
//! top-level name of the payload is a symbolic link `name -> ..data/name`.
//! An update writes a new timestamped directory, points a temporary link
//! `..data_tmp` at it and renames that over `..data` (one atomic step for
//! every reader), then adds links for new names, removes the links of names
//! gone and the old directory. A payload equal to what is there changes
//! nothing. A `subPath` mount resolved the links when the container started
//! and keeps the old file (as in Kubernetes).

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path};
use std::time::{SystemTime, UNIX_EPOCH};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload: its bytes and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// The content.
    pub data: Vec<u8>,
    /// The file mode (permission bits).
    pub mode: u32,
    /// The owner's uid (`user` / `defaultUser`); unset: noded's.
    pub user: Option<u32>,
}

/// A volume's files by relative path.
pub type Payload = BTreeMap<String, FileProjection>;

/// Reject a path that is absolute, has `..` or empty components, or starts with `..`.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if path.starts_with("..") {
        return Err(format!("invalid path {path:?}: must not start with '..'"));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!("invalid path {path:?}: must be relative"));
    }
    if path.split('/').any(|c| c.is_empty() || c == "..") || p.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "invalid path {path:?}: must not contain '..' or empty elements"
        ));
    }
    Ok(())
}

/// Make `dir` hold exactly `payload`; returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> std::io::Result<bool> {
    for path in payload.keys() {
        validate_path(path).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    }
    std::fs::create_dir_all(dir)?;
    let old = std::fs::read_link(dir.join(DATA)).ok();
    if let Some(old) = &old {
        if holds(&dir.join(old), payload) && links_ok(dir, payload) {
            return Ok(false);
        }
    }
    let name = timestamped_name();
    let fresh = dir.join(&name);
    std::fs::DirBuilder::new().mode(0o755).create(&fresh)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755))?;
    for (path, file) in payload {
        let target = fresh.join(path);
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
        }
        std::fs::write(&target, &file.data)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode & 0o7777))?;
        if let Some(uid) = file.user {
            std::os::unix::fs::lchown(&target, Some(uid), None)?;
        }
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    let wanted: std::collections::BTreeSet<&str> = top_level(payload).collect();
    for top in &wanted {
        let link = dir.join(top);
        let expected = Path::new(DATA).join(top);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() && std::fs::read_link(&link).ok().as_deref() == Some(&expected) => {
                continue
            }
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&link)?,
            Ok(_) => std::fs::remove_file(&link)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&expected, &link)?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else { continue };
        if n.starts_with("..") || wanted.contains(n) {
            continue;
        }
        // A name no longer in the payload (or a file written before volumes were atomic).
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old {
        if old != Path::new(&name) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(true)
}

fn top_level(payload: &Payload) -> impl Iterator<Item = &str> {
    payload.keys().filter_map(|p| p.split('/').next())
}

/// Whether `dir` holds exactly the files of `payload` with their modes.
fn holds(dir: &Path, payload: &Payload) -> bool {
    let mut found = Vec::new();
    if list_files(dir, dir, &mut found).is_err() {
        return false;
    }
    found.len() == payload.len()
        && payload.iter().all(|(path, file)| {
            let target = dir.join(path);
            std::fs::metadata(&target).is_ok_and(|m| {
                m.permissions().mode() & 0o7777 == file.mode & 0o7777 && file.user.is_none_or(|u| m.uid() == u)
            }) && std::fs::read(&target).is_ok_and(|d| d == file.data)
        })
}

fn links_ok(dir: &Path, payload: &Payload) -> bool {
    top_level(payload).all(|top| std::fs::read_link(dir.join(top)).is_ok_and(|l| l == Path::new(DATA).join(top)))
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            list_files(root, &entry.path(), out)?;
        } else {
            out.push(entry.path().strip_prefix(root).unwrap_or(&entry.path()).to_path_buf());
        }
    }
    Ok(())
}

/// `..2026_12_01_17_04_05.123456789`: the UTC time of the write.
fn timestamped_name() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "..{y:04}_{m:02}_{d:02}_{:02}_{:02}_{:02}.{:09}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_nanos()
    )
}

/// The proleptic Gregorian date of a count of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
            user: None,
        }
    }

    #[test]
    fn updates_swap_the_data_link_and_keep_per_key_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let first = Payload::from([("a".into(), file("1", 0o644)), ("sub/b".into(), file("2", 0o400))]);
        assert!(write(dir, &first).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(std::fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        let data = std::fs::read_link(dir.join(DATA)).unwrap();
        assert!(data.to_str().unwrap().starts_with("..20"), "{data:?}");
        assert!(!write(dir, &first).unwrap(), "same payload, no change");
        let second = Payload::from([("a".into(), file("3", 0o644)), ("c".into(), file("4", 0o644))]);
        assert!(write(dir, &second).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert_eq!(std::fs::read_to_string(dir.join("c")).unwrap(), "4");
        assert!(!dir.join("sub").exists(), "names gone are removed");
        assert!(!dir.join(&data).exists(), "the old directory is removed");
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn paths_may_not_escape() {
        assert!(validate_path("../x").is_err());
        assert!(validate_path("/etc/x").is_err());
        assert!(validate_path("a//b").is_err());
        assert!(validate_path("..data").is_err());
        assert!(validate_path("a/b").is_ok());
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
