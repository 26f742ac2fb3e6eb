//! `cargo xtask fresh-check`: the README's two commands on a brand-new machine.
//!
//! A developer machine accumulates hand-installed state (Debian packages, a
//! nightly with rust-src, bpf-linker, a warm target dir) that hides missing
//! install steps. This task proves the README in an environment that has none
//! of it:
//! - a Debian bookworm root filesystem made by `mmdebstrap` from the host's
//!   apt sources, with only what a new machine of this kind has (gcc, g++,
//!   make, git, curl, ca-certificates); cached as a tarball under
//!   `target/fresh-check/`, unpacked anew on every run;
//! - a `git clone` of the committed HEAD (uncommitted changes are not checked)
//!   with an empty target dir;
//! - the machine's Rust toolchain seen through an overlay, so nothing the
//!   check installs reaches the host, with the nightly's `rust-src` removed and
//!   no `bpf-linker`; `~/.cargo/bin` holds only rustup's proxies; the crates.io
//!   download cache is shared (through an overlay as well) to save time;
//! - `kubectl`, `cargo-nextest`, `node` and `npm` bind-mounted from the host
//!   (the machine image ships them), and the
//!   machine's extra CA certificates (`/usr/local/share/ca-certificates`, e.g.
//!   an egress proxy's CA that every machine of this kind trusts) copied in.
//!
//! Inside a private mount namespace whose root it becomes (pivot_root), it runs `cargo xtask up`
//! exactly as the README writes it, waits for the node, rolls out an nginx
//! Deployment pulled through the cluster registry and reaches it on a NodePort
//! (on the node's address inside the node namespace `up` made), runs
//! `cargo xtask down --purge`, then `cargo xtask test` (skip with
//! `--skip-tests`). Network namespaces, links and processes are shared with
//! the host kernel, so the check refuses to start while a cluster with the
//! default prefix runs; mounts vanish with the namespace.

use crate::util::{self, ensure_packages, step, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Arguments of `cargo xtask fresh-check`.
#[derive(Args)]
pub struct FreshCheckArgs {
    /// Only check `cargo xtask up` (and the app on it), not `cargo xtask test`.
    #[arg(long)]
    pub skip_tests: bool,
    /// Rebuild the cached root filesystem tarball.
    #[arg(long)]
    pub rebuild_rootfs: bool,
    /// Keep the unpacked root filesystem (for inspection) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

/// Packages a brand-new machine of this kind has besides Debian's minimal base.
const MACHINE_PACKAGES: &str = "ca-certificates,curl,git,gcc,g++,make,libc6-dev,xz-utils";

/// The manifest the check applies: what a user's first app looks like.
const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - {name: http, containerPort: 80}
        readinessProbe:
          httpGet: {path: /, port: http}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http, nodePort: 30080}
"#;

/// What runs inside the chroot: the README's commands, then the test command.
fn inner_script(skip_tests: bool) -> String {
    let test = if skip_tests {
        "echo '==> fresh-check: cargo xtask test skipped (--skip-tests)'"
    } else {
        "timed 'cargo xtask test' cargo xtask test"
    };
    format!(
        r#"set -euo pipefail
export HOME=/root PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive CARGO_TERM_COLOR=never
timed() {{ local what=$1; shift; local t0=$(date +%s); "$@"; echo "==> fresh-check: $what took $(( $(date +%s) - t0 ))s"; }}
echo "==> fresh-check: hidden from this root: $(for c in etcd containerd runc docker-registry skopeo bpftool bpf-linker protoc; do command -v $c >/dev/null || printf '%s ' $c; done)"
update-ca-certificates >/dev/null
rustup component remove rust-src --toolchain nightly >/dev/null 2>&1 || true
cd /src
trap 'echo "==> fresh-check: failed; tearing the cluster down"; cargo xtask down --purge || true' EXIT
timed 'cargo xtask up' cargo xtask up
export KUBECONFIG=/var/lib/sluice/admin.kubeconfig
kubectl wait --for=condition=Ready node/sluice-n1 --timeout=180s
kubectl apply -f /app.yaml
timed 'nginx rollout' kubectl rollout status deployment/web --timeout=300s
# The Service's NodePort is programmed a moment after the pods turn Ready (as
# with kube-proxy), so try for up to 10 s, as a user would.
body=
for _ in $(seq 20); do body=$(curl -sf --max-time 2 http://10.251.0.2:30080/) && break; sleep 0.5; done
echo "$body" | grep -q 'Welcome to nginx' || {{ echo "unexpected page: $body"; exit 1; }}
echo '==> fresh-check: nginx answered on node 1 NodePort 30080'
cargo xtask down --purge
trap - EXIT
left=$(ip netns list | grep -E '^(sluice-|cni-)' || true)
[ -z "$left" ] || {{ echo "network namespaces left after down: $left"; exit 1; }}
{test}
echo '==> fresh-check: passed'
"#
    )
}

/// Run the check.
pub fn fresh_check(args: FreshCheckArgs) -> Result<()> {
    ensure_packages(&[("mmdebstrap", "mmdebstrap"), ("unshare", "util-linux"), ("git", "git")])?;
    if Path::new("/var/lib/sluice/run/apiserver.pid").exists() || Path::new("/sys/class/net/sluice-br").exists() {
        bail!("a cluster with the default home or prefix runs on this machine; `cargo xtask down` it first (the check runs the README's commands exactly, with the defaults)");
    }
    let root = workspace_root();
    let cache = root.join("target/fresh-check");
    std::fs::create_dir_all(&cache)?;
    let tarball = cache.join("bookworm-rootfs.tar");
    if args.rebuild_rootfs || !tarball.is_file() {
        build_rootfs(&tarball)?;
    }
    let work = PathBuf::from(format!("/var/tmp/sluice-fresh-check-{}", std::process::id()));
    let result = run_in(&work, &tarball, &root, &args);
    if args.keep {
        step(&format!("kept {}", work.display()));
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

/// Safety net after a failed run: stop every process still rooted in the
/// fresh root (by pid, found through `/proc/<pid>/root`) and remove the
/// default bridge and node links if `down` could not.
fn reap_leftovers(rootfs: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    // A process's /proc/<pid>/root is the directory it sees as /: compare
    // (device, inode) with the fresh root, however it was mounted there.
    use std::os::unix::fs::MetadataExt;
    let Ok(fresh) = std::fs::metadata(rootfs) else { return };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(root) = std::fs::metadata(entry.path().join("root")) {
            if root.dev() == fresh.dev() && root.ino() == fresh.ino() {
                pids.push(pid);
            }
        }
    }
    if !pids.is_empty() {
        step(&format!(
            "stopping {} process(es) left in the fresh root: {pids:?}",
            pids.len()
        ));
        for &pid in &pids {
            let _ = crate::process::signal(pid, libc::SIGTERM);
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        for &pid in &pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = crate::process::signal(pid, libc::SIGKILL);
            }
        }
    }
    // The check refused to start while sluice-br existed, so a bridge of that
    // name, and node host veths `sluice-n<i>h`, are the check's own.
    if !Path::new("/sys/class/net/sluice-br").exists() {
        return;
    }
    step("removing the bridge sluice-br and node links that down left");
    let _ = Command::new("ip").args(["link", "del", "sluice-br"]).status();
    if let Ok(links) = std::fs::read_dir("/sys/class/net") {
        for link in links.flatten() {
            let name = link.file_name().to_string_lossy().into_owned();
            let node_link = name
                .strip_prefix("sluice-n")
                .and_then(|rest| rest.strip_suffix('h'))
                .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
            if node_link {
                let _ = Command::new("ip").args(["link", "del", &name]).status();
            }
        }
    }
}

/// Make the root filesystem tarball from the host's apt sources.
fn build_rootfs(tarball: &Path) -> Result<()> {
    step(&format!(
        "making a Debian bookworm root filesystem with mmdebstrap ({MACHINE_PACKAGES})"
    ));
    let sources = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("no apt sources on this machine")?;
    // mmdebstrap picks the output format from the extension: keep `.tar`.
    let partial = tarball.with_extension("partial.tar");
    util::run(Command::new("mmdebstrap").args([
        "--variant=minbase",
        &format!("--include={MACHINE_PACKAGES}"),
        "bookworm",
        &partial.display().to_string(),
        sources,
    ]))?;
    std::fs::rename(&partial, tarball)?;
    Ok(())
}

/// Unpack the root, set up the toolchain overlay and run the script inside.
fn run_in(work: &Path, tarball: &Path, repo: &Path, args: &FreshCheckArgs) -> Result<()> {
    let rootfs = work.join("root");
    std::fs::create_dir_all(&rootfs)?;
    step(&format!("unpacking the root filesystem into {}", rootfs.display()));
    util::run(Command::new("tar").arg("-xf").arg(tarball).arg("-C").arg(&rootfs))?;
    step("cloning the committed HEAD into /src");
    let head = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["rev-parse", "HEAD"])
            .output()?
            .stdout,
    )?;
    util::run(
        Command::new("git")
            .args(["clone", "--quiet", "--no-local"])
            .arg(repo)
            .arg(rootfs.join("src")),
    )?;
    util::run(
        Command::new("git")
            .arg("-C")
            .arg(rootfs.join("src"))
            .args(["checkout", "--quiet", head.trim()]),
    )?;
    std::fs::write(rootfs.join("app.yaml"), APP)?;
    std::fs::copy("/etc/resolv.conf", rootfs.join("etc/resolv.conf")).context("copying resolv.conf")?;
    let cas = Path::new("/usr/local/share/ca-certificates");
    if cas.is_dir() {
        let into = rootfs.join("usr/local/share/ca-certificates");
        std::fs::create_dir_all(&into)?;
        for entry in std::fs::read_dir(cas)? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::copy(&path, into.join(path.file_name().context("CA file name")?))?;
            }
        }
    }

    let home = PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?);
    let rustup = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".rustup"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cargo"));
    // ~/.cargo/bin: only rustup and its proxies (no cargo-installed tools).
    let bin = rootfs.join("root/.cargo/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(cargo_home.join("bin/rustup"), bin.join("rustup")).context("copying rustup")?;
    for proxy in [
        "cargo",
        "rustc",
        "rustdoc",
        "rustfmt",
        "cargo-fmt",
        "cargo-clippy",
        "clippy-driver",
    ] {
        std::os::unix::fs::symlink("rustup", bin.join(proxy))?;
    }
    for dir in ["rustup-upper", "rustup-work", "registry-upper", "registry-work"] {
        std::fs::create_dir_all(work.join(dir))?;
    }
    std::fs::create_dir_all(rootfs.join("root/.rustup"))?;
    std::fs::create_dir_all(rootfs.join("root/.cargo/registry"))?;
    std::fs::create_dir_all(cargo_home.join("registry"))?;
    std::fs::write(rootfs.join("inner.sh"), inner_script(args.skip_tests))?;

    let r = rootfs.display();
    let w = work.display();
    let setup = format!(
        r#"set -euo pipefail
mount --make-rprivate /
# The new root must be a mount point: `ip netns` makes / rslave inside it.
mount --bind {r} {r}
mount -t overlay overlay -o lowerdir={rustup},upperdir={w}/rustup-upper,workdir={w}/rustup-work {r}/root/.rustup
mount -t overlay overlay -o lowerdir={registry},upperdir={w}/registry-upper,workdir={w}/registry-work {r}/root/.cargo/registry
mount -t proc proc {r}/proc
mount --rbind /sys {r}/sys
mount --rbind /dev {r}/dev
mount -t tmpfs tmpfs {r}/run
mount -t tmpfs tmpfs {r}/tmp
touch {r}/usr/local/bin/kubectl
mount --bind "$(command -v kubectl)" {r}/usr/local/bin/kubectl
# Node.js and npm, as the machine image ships them (they build the dashboard).
touch {r}/usr/local/bin/node
mount --bind "$(command -v node)" {r}/usr/local/bin/node
mkdir -p {r}/usr/local/lib/node_modules/npm
mount --bind "$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")" {r}/usr/local/lib/node_modules/npm
ln -sf ../lib/node_modules/npm/bin/npm-cli.js {r}/usr/local/bin/npm
{nextest}# pivot_root, not a bare chroot: runc behaves as on a real machine only when the
# fresh root is the mount namespace's root (after a chroot, `runc exec` landed in
# the outer root, not the container's: `cat` in a container found no file).
cd {r}
mkdir -p .oldroot
pivot_root . .oldroot
exec /usr/sbin/chroot . /bin/bash -c 'umount -l /.oldroot && rmdir /.oldroot && exec /bin/bash /inner.sh'
"#,
        rustup = rustup.display(),
        registry = cargo_home.join("registry").display(),
        nextest = match on_host_path("cargo-nextest") {
            Some(bin) => format!(
                "touch {r}/usr/local/bin/cargo-nextest\nmount --bind {} {r}/usr/local/bin/cargo-nextest\n",
                bin.display()
            ),
            // `cargo xtask test` then installs it, as on a machine without it.
            None => String::new(),
        },
    );
    step("entering the fresh root (private mount namespace + pivot_root); the README's commands follow");
    let started = Instant::now();
    let status = Command::new("unshare")
        .args(["--mount", "--fork", "bash", "-c", &setup])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .status()
        .context("running unshare")?;
    step(&format!(
        "fresh-check finished in {:.0?} with {status}",
        started.elapsed()
    ));
    reap_leftovers(&rootfs);
    if !status.success() {
        bail!(
            "the fresh-machine check failed (see above); rerun with --keep to inspect {}",
            work.display()
        );
    }
    Ok(())
}

/// Where a command is on this machine's `PATH`.
fn on_host_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
