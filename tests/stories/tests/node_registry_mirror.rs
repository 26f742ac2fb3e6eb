//! A node's containerd gets images only from the registry it mirrors.
//!
//! The node harness starts a private containerd configured like a cluster
//! node's (`xtask containerd config --registry`): every upstream registry
//! (docker.io, quay.io, ..., sluice.local) is mirrored through one registry,
//! each under its own path prefix. A user-style name (`busybox:1.35.0`)
//! pulls from the mirror's `docker.io/library/busybox`; the same path under
//! another upstream (`quay.io/library/busybox`) is a different repository the
//! mirror does not have; nothing is in containerd before a pull.
//!
//! Needs root. Build first: `cargo build --workspace --bins`.

use sluice_tests::node::{Containerd, BUSYBOX_IMAGE, PAUSE_IMAGE};
use std::process::Command;

fn images(containerd: &Containerd) -> String {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&containerd.socket)
        .args(["-n", "k8s.io", "images", "ls", "-q"])
        .output()
        .expect("ctr images ls");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn user_style_names_pull_through_the_mirror_and_upstreams_stay_apart() {
    let containerd = Containerd::start();
    assert_eq!(
        images(&containerd).trim(),
        "",
        "nothing is imported behind the kubelet's back"
    );

    containerd.pull(BUSYBOX_IMAGE);
    containerd.pull(PAUSE_IMAGE);
    let listed = images(&containerd);
    assert!(
        listed.contains("docker.io/library/busybox:1.35.0") && listed.contains(PAUSE_IMAGE),
        "{listed}"
    );

    let other = Command::new("ctr")
        .arg("--address")
        .arg(&containerd.socket)
        .args(["-n", "k8s.io", "images", "pull", "--hosts-dir"])
        .arg(&containerd.hosts_dir)
        .arg("quay.io/library/busybox:1.35.0")
        .output()
        .expect("ctr pull");
    assert!(
        !other.status.success(),
        "quay.io/library/busybox is not docker.io's busybox: {}",
        String::from_utf8_lossy(&other.stdout)
    );
}
