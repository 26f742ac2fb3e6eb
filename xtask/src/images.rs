//! `cargo xtask images`: the node's container images, built locally.
//!
//! No registry is reachable from a Sluice machine, so the two images every
//! node needs are built here from files already on the host and imported
//! straight into a containerd:
//! - [`BUSYBOX_IMAGE`]: busybox-static with one symlink per applet (so
//!   `httpd`, `sh`, `sleep`, `wget`... are all on `PATH`), the image pods use;
//! - [`PAUSE_IMAGE`]: the static `pause` binary of `dataplane/pause`, the
//!   sandbox image containerd's CRI plugin starts for every pod.
//!
//! Images are built with `umoci` into an OCI layout, packed as a tar and
//! cached under `target/sluice-images/`; `ctr images import` then loads them
//! under exactly ONE name each (CRI's image cache gets confused by aliases),
//! a registry-like name with a dot so CRI never tries to pull from docker.io.

use crate::util::{self, step, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The image pods run: busybox with all applets (`busybox httpd -f -p 8080 -h DIR`).
pub const BUSYBOX_IMAGE: &str = "sluice.local/busybox:latest";
/// The sandbox ("pause") image; containerd's `sandbox_image` must name it exactly.
pub const PAUSE_IMAGE: &str = "sluice.local/pause:3.10";
/// The containerd namespace the CRI plugin uses.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// Arguments of `cargo xtask images`.
#[derive(Args)]
pub struct ImagesArgs {
    /// Where the image tarballs are written (default: `target/sluice-images`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Import the images into the containerd listening on this socket (repeatable).
    #[arg(long = "import", value_name = "SOCKET")]
    pub import_to: Vec<PathBuf>,
    /// Rebuild the tarballs even when cached ones exist.
    #[arg(long)]
    pub rebuild: bool,
}

/// One image packed as an OCI-layout tarball, ready for `ctr images import`.
pub struct BuiltImage {
    /// Full reference, e.g. `sluice.local/busybox:latest`.
    pub reference: &'static str,
    /// The tarball.
    pub tar: PathBuf,
}

/// `cargo xtask images`: build (or reuse) both images and import them where asked.
pub fn images(args: ImagesArgs) -> Result<()> {
    let out = args.out.unwrap_or_else(default_out_dir);
    let built = build_all(&out, args.rebuild)?;
    for socket in &args.import_to {
        import_all(socket, &built)?;
    }
    for image in &built {
        println!("{}\t{}", image.reference, image.tar.display());
    }
    Ok(())
}

/// The default image cache directory.
pub fn default_out_dir() -> PathBuf {
    workspace_root().join("target").join("sluice-images")
}

/// Build both node images into `out` (cached unless `rebuild` or out of date).
pub fn build_all(out: &Path, rebuild: bool) -> Result<Vec<BuiltImage>> {
    util::ensure_packages(&[("umoci", "umoci"), ("busybox", "busybox-static"), ("tar", "tar")])?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let busybox = build_busybox(out, rebuild)?;
    let pause = build_pause(out, rebuild)?;
    Ok(vec![busybox, pause])
}

/// Import every built image into the containerd at `socket`, namespace `k8s.io`.
pub fn import_all(socket: &Path, images: &[BuiltImage]) -> Result<()> {
    for image in images {
        import(socket, image)?;
    }
    Ok(())
}

/// Import one image under its single reference.
pub fn import(socket: &Path, image: &BuiltImage) -> Result<()> {
    step(&format!("importing {} into {}", image.reference, socket.display()));
    let (base, _tag) = image
        .reference
        .rsplit_once(':')
        .context("image reference without a tag")?;
    // A freshly started containerd has been seen (rarely, under load) to answer an
    // import with "content digest ...: not found" for the index it has just written;
    // the same import then succeeds. Retry a few times before giving up.
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", CRI_NAMESPACE, "images", "import"])
            .args(["--base-name", base, "--index-name", image.reference])
            .arg(&image.tar)
            .output()
            .context("running ctr (is containerd installed?)")?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if attempt == ATTEMPTS {
            bail!(
                "ctr images import of {} failed {ATTEMPTS} times; last error: {stderr}",
                image.tar.display()
            );
        }
        eprintln!(
            "ctr images import of {} failed (attempt {attempt} of {ATTEMPTS}), retrying: {stderr}",
            image.tar.display()
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    unreachable!("the last attempt returns or bails")
}

/// busybox-static plus applet symlinks, `/tmp`, and minimal passwd/group files.
fn build_busybox(out: &Path, rebuild: bool) -> Result<BuiltImage> {
    let tar = out.join("busybox.tar");
    let busybox = which("busybox")?;
    if !rebuild && is_newer(&tar, &busybox) {
        return Ok(BuiltImage {
            reference: BUSYBOX_IMAGE,
            tar,
        });
    }
    step(&format!("building image {BUSYBOX_IMAGE}"));
    let applets = capture(Command::new(&busybox).arg("--list"))?;
    pack_image(
        out,
        "busybox",
        BUSYBOX_IMAGE,
        &tar,
        |rootfs| {
            for dir in ["bin", "sbin", "etc", "tmp", "var/www", "root"] {
                fs::create_dir_all(rootfs.join(dir))?;
            }
            fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
            fs::copy(&busybox, rootfs.join("bin/busybox"))?;
            for applet in applets
                .lines()
                .map(str::trim)
                .filter(|a| !a.is_empty() && *a != "busybox")
            {
                symlink("busybox", rootfs.join("bin").join(applet))?;
            }
            fs::write(
                rootfs.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            )?;
            fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
            Ok(())
        },
        &["--config.cmd=sh", "--config.env=PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    )?;
    Ok(BuiltImage {
        reference: BUSYBOX_IMAGE,
        tar,
    })
}

/// The static `pause` binary alone, as the entrypoint.
fn build_pause(out: &Path, rebuild: bool) -> Result<BuiltImage> {
    let tar = out.join("pause.tar");
    let binary = build_pause_binary()?;
    if !rebuild && is_newer(&tar, &binary) {
        return Ok(BuiltImage {
            reference: PAUSE_IMAGE,
            tar,
        });
    }
    step(&format!("building image {PAUSE_IMAGE}"));
    pack_image(
        out,
        "pause",
        PAUSE_IMAGE,
        &tar,
        |rootfs| {
            fs::copy(&binary, rootfs.join("pause"))?;
            Ok(())
        },
        &["--config.entrypoint=/pause"],
    )?;
    Ok(BuiltImage {
        reference: PAUSE_IMAGE,
        tar,
    })
}

/// Build `dataplane/pause` statically for the host (its own target dir, so the
/// `+crt-static` flag never touches the rest of the workspace's artifacts).
fn build_pause_binary() -> Result<PathBuf> {
    let host = host_triple()?;
    let target_dir = workspace_root().join("target").join("pause-static");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    util::run(
        Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--quiet",
                "--release",
                "--package",
                "sluice-pause",
                "--target",
                &host,
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env(
                "RUSTFLAGS",
                "-C target-feature=+crt-static -C strip=symbols -C debuginfo=0",
            ),
    )?;
    Ok(target_dir.join(host).join("release").join("pause"))
}

/// The host's target triple (`rustc -vV`).
fn host_triple() -> Result<String> {
    let info = capture(Command::new("rustc").arg("-vV"))?;
    info.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no host triple")
}

/// Make a one-layer image whose rootfs `fill` populates, configure it with
/// `umoci config` arguments, and write it atomically as `tar`.
fn pack_image(
    out: &Path,
    name: &str,
    reference: &str,
    tar: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
    config: &[&str],
) -> Result<()> {
    let tag = reference
        .rsplit_once(':')
        .map(|(_, t)| t)
        .context("reference without tag")?;
    let work = out.join(format!(".work-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let result = (|| -> Result<()> {
        let layout = work.join("oci");
        let image = format!("{}:{tag}", layout.display());
        let bundle = work.join("bundle");
        quiet(Command::new("umoci").args(["init", "--layout"]).arg(&layout))?;
        quiet(Command::new("umoci").args(["new", "--image", &image]))?;
        quiet(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle))?;
        fill(&bundle.join("rootfs")).with_context(|| format!("filling the {name} rootfs"))?;
        quiet(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle))?;
        quiet(Command::new("umoci").args(["config", "--image", &image]).args(config))?;
        quiet(Command::new("umoci").args(["gc", "--layout"]).arg(&layout))?;
        let partial = tar.with_extension(format!("tar.{}", std::process::id()));
        quiet(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&partial)
                .arg("."),
        )?;
        fs::rename(&partial, tar)?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&work);
    result.with_context(|| format!("building image {reference}"))
}

/// Whether `file` exists and is at least as new as `source`.
fn is_newer(file: &Path, source: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(file), modified(source)), (Some(f), Some(s)) if f >= s)
}

/// Absolute path of a program on PATH.
fn which(program: &str) -> Result<PathBuf> {
    let path = capture(Command::new("sh").arg("-c").arg(format!("command -v {program}")))?;
    Ok(PathBuf::from(path.trim()))
}

/// Run a command and return its stdout, failing with its stderr.
fn capture(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let output = cmd.output().with_context(|| format!("could not start {shown}"))?;
    if !output.status.success() {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Run a command, showing its output only when it fails.
fn quiet(cmd: &mut Command) -> Result<()> {
    capture(cmd).map(drop)
}
