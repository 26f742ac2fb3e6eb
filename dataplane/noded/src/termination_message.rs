//! Termination messages (`terminationMessagePath`,
//! `terminationMessagePolicy`), as the kubelet reads them.
//!
//! Every container instance gets its own empty, world-writable file under
//! `<pod dir>/containers/<name>/`, bind-mounted at its
//! `terminationMessagePath` ([`prepare`]); the path and the policy are kept
//! in the container's annotations, as the kubelet keeps them
//! ([`annotations`]). Whenever the status of an exited instance is read from
//! the runtime, [`enrich`] finds that file again through the runtime's mount
//! list and reads its last 4096 bytes; with `FallbackToLogsOnError`, an
//! empty file and a non-zero exit code, the last 80 log lines (at most 2048
//! bytes) are used instead. The text is appended to the runtime's own
//! message (`"<runtime message>: <text>"`) and, as the kubelet's status
//! manager does, cut to 12 KiB divided by the pod's number of containers
//! and init containers (also an annotation).

use crate::cri::api;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read from a termination message file (the file's end is kept).
pub const MAX_FILE_BYTES: u64 = 4096;
/// Bytes kept from the logs with `FallbackToLogsOnError`.
pub const MAX_LOG_BYTES: usize = 2048;
/// Log lines read with `FallbackToLogsOnError`.
pub const MAX_LOG_LINES: usize = 80;
/// What all of a pod's termination messages may take together.
pub const MAX_POD_BYTES: usize = 12 * 1024;

/// Annotation: the container's `terminationMessagePath` (the kubelet's key).
pub const PATH_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
/// Annotation: the container's `terminationMessagePolicy` (the kubelet's key).
pub const POLICY_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Annotation: the bytes this container's message may take (its share of [`MAX_POD_BYTES`]).
pub const LIMIT_ANNOTATION: &str = "sluice.io/termination-message-limit";

/// The annotations [`enrich`] reads, for the container config of `container` in `pod`.
pub fn annotations(pod: &Pod, container: &Container) -> HashMap<String, String> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len))
        .unwrap_or(0)
        .max(1);
    HashMap::from([
        (
            PATH_ANNOTATION.to_string(),
            container.termination_message_path.clone().unwrap_or_default(),
        ),
        (
            POLICY_ANNOTATION.to_string(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (LIMIT_ANNOTATION.to_string(), (MAX_POD_BYTES / containers).to_string()),
    ])
}

/// Create the instance's message file and return its mount (none without a `terminationMessagePath`).
pub fn prepare(pod_dir: &Path, container: &Container) -> std::io::Result<Option<api::Mount>> {
    use std::os::unix::fs::PermissionsExt;
    let Some(target) = container.termination_message_path.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let dir = pod_dir.join("containers").join(&container.name);
    std::fs::create_dir_all(&dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let file = dir.join(format!("{nanos:x}"));
    std::fs::File::create(&file)?;
    // Whatever user the container runs as must be able to write it.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))?;
    Ok(Some(api::Mount {
        container_path: target.to_string(),
        host_path: file.display().to_string(),
        ..Default::default()
    }))
}

/// The last `max` bytes of the file at `path`.
fn read_tail(path: &str, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max {
        f.seek(SeekFrom::Start(len - max))?;
    }
    let mut data = Vec::new();
    f.take(max).read_to_end(&mut data)?;
    Ok(data)
}

/// The text of the last `lines` lines of a CRI log (`<time> <stream> <P|F> <text>`), its last `max` bytes.
pub fn last_log_text(log: &str, lines: usize, max: usize) -> String {
    let mut out = String::new();
    let all: Vec<&str> = log.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        let mut parts = line.splitn(4, ' ');
        let (_time, _stream, tag) = (parts.next(), parts.next(), parts.next());
        out.push_str(parts.next().unwrap_or_default());
        if tag != Some("P") {
            out.push('\n');
        }
    }
    let mut cut = out.len().saturating_sub(max);
    while !out.is_char_boundary(cut) {
        cut += 1;
    }
    out.split_off(cut)
}

/// The termination message of an exited instance, as the kubelet reads it.
pub fn read(status: &api::ContainerStatus) -> String {
    let annotation = |key: &str| status.annotations.get(key).map(String::as_str).unwrap_or_default();
    let fallback = annotation(POLICY_ANNOTATION) == "FallbackToLogsOnError"
        && status.exit_code != 0
        && status.reason != "ContainerCannotRun";
    let path = annotation(PATH_ANNOTATION);
    let mounted = status
        .mounts
        .iter()
        .find(|m| !path.is_empty() && m.container_path == path);
    let (text, check_logs) = match mounted {
        None => (String::new(), fallback),
        Some(m) => match read_tail(&m.host_path, MAX_FILE_BYTES) {
            Ok(data) => {
                let empty = data.is_empty();
                (String::from_utf8_lossy(&data).into_owned(), fallback && empty)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), fallback),
            Err(e) => (format!("Error on reading termination log {}: {e}", m.host_path), false),
        },
    };
    if !check_logs {
        return text;
    }
    match std::fs::read_to_string(&status.log_path) {
        Ok(log) => last_log_text(&log, MAX_LOG_LINES, MAX_LOG_BYTES),
        Err(e) => format!("Error on reading termination message from logs: {e}"),
    }
}

/// `message` cut to `max` bytes (at a character boundary).
fn truncate(message: &mut String, max: usize) {
    if message.len() > max {
        let mut cut = max;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
}

/// Add the termination message to the runtime's status of an exited
/// instance noded created (others, and running ones, are left as they are).
pub fn enrich(status: &mut api::ContainerStatus) {
    if status.state != api::ContainerState::ContainerExited as i32 || !status.annotations.contains_key(PATH_ANNOTATION)
    {
        return;
    }
    let text = read(status);
    if !text.is_empty() {
        if !status.message.is_empty() {
            status.message.push_str(": ");
        }
        status.message.push_str(&text);
    }
    let limit = status
        .annotations
        .get(LIMIT_ANNOTATION)
        .and_then(|l| l.parse().ok())
        .unwrap_or(MAX_POD_BYTES);
    truncate(&mut status.message, limit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(policy: &str) -> Container {
        Container {
            name: "app".into(),
            termination_message_path: Some("/dev/termination-log".into()),
            termination_message_policy: Some(policy.into()),
            ..Default::default()
        }
    }

    fn exited(exit_code: i32, file: &Path, log: &Path) -> api::ContainerStatus {
        exited_as(&container("File"), exit_code, file, log)
    }

    fn exited_as(c: &Container, exit_code: i32, file: &Path, log: &Path) -> api::ContainerStatus {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "app"}]}})).unwrap();
        api::ContainerStatus {
            annotations: annotations(&pod, c),
            state: api::ContainerState::ContainerExited as i32,
            exit_code,
            mounts: vec![api::Mount {
                container_path: "/dev/termination-log".into(),
                host_path: file.display().to_string(),
                ..Default::default()
            }],
            log_path: log.display().to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn the_file_is_read_and_only_its_last_4096_bytes_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mount = prepare(dir.path(), &container("File")).unwrap().unwrap();
        assert_eq!(mount.container_path, "/dev/termination-log");
        let file = Path::new(&mount.host_path);
        std::fs::write(file, format!("{}END", "x".repeat(5000))).unwrap();
        let text = read(&exited(0, file, &dir.path().join("none")));
        assert_eq!(text.len(), 4096);
        assert!(text.ends_with("xEND"));
    }

    #[test]
    fn fallback_to_logs_only_on_error_with_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("msg");
        std::fs::write(&file, "").unwrap();
        let log = dir.path().join("0.log");
        std::fs::write(
            &log,
            "2026-12-01T10:00:00.1Z stdout F first\n2026-12-01T10:00:00.2Z stderr P par\n2026-12-01T10:00:00.3Z stderr F tial\n",
        )
        .unwrap();
        let c = container("FallbackToLogsOnError");
        assert_eq!(read(&exited_as(&c, 1, &file, &log)), "first\npartial\n");
        assert_eq!(read(&exited_as(&c, 0, &file, &log)), "");
        assert_eq!(read(&exited(1, &file, &log)), "");
        std::fs::write(&file, "bye").unwrap();
        assert_eq!(read(&exited_as(&c, 1, &file, &log)), "bye");
    }

    #[test]
    fn log_text_keeps_the_last_lines_and_bytes() {
        let log: String = (0..100).map(|i| format!("t stdout F line{i}\n")).collect();
        let text = last_log_text(&log, 80, 2048);
        assert!(text.starts_with("line20\n") && text.ends_with("line99\n"), "{text}");
        assert_eq!(last_log_text(&log, 80, 7), "line99\n");
    }

    #[test]
    fn messages_follow_the_runtime_message_within_the_pod_budget() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("msg");
        std::fs::write(&file, "z".repeat(4096)).unwrap();
        let mut status = exited(137, &file, &dir.path().join("none"));
        status.message = "OOM".into();
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [
            {"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}]}}))
        .unwrap();
        status.annotations = annotations(&pod, &container("File"));
        enrich(&mut status);
        assert_eq!(status.message.len(), 3072);
        assert!(status.message.starts_with("OOM: zzz"));
        // Running instances and other clients' containers are left alone.
        let mut running = exited(0, &file, &dir.path().join("none"));
        running.state = api::ContainerState::ContainerRunning as i32;
        enrich(&mut running);
        assert_eq!(running.message, "");
    }
}
