//! `cargo xtask images`: the cluster's images, built from Debian packages
//! and our own binaries, pushed into the cluster registry.
//!
//! No internet registry is reachable from a Sluice machine, so the images
//! pods and nodes need are built here and pushed into the cluster registry
//! (see [`crate::registry`]) under the names users write, in the mirror
//! layout (`nginx` → repository `docker.io/library/nginx`):
//! - `busybox`: Debian's busybox-static with one symlink per applet (`sh`,
//!   `httpd`, `nc`, `wget`, `nslookup`, ...), default command `sh`, tagged
//!   with the package's upstream version and `latest`;
//! - `nginx`: `nginx-light` on Debian's essential set (`mmdebstrap`), serving
//!   its default page on port 80 in the foreground, logs to stdout/stderr;
//! - `redis`: `redis-server` likewise, on port 6379 with `--protected-mode no`;
//! - `curl`: Debian's `curl`, sleeping; built only on request (`--only curl`),
//!   for stories that talk to the API server from a pod;
//! - `pause`: the static binary of `dataplane/pause`, named for what it is,
//!   `sluice.local/pause:<workspace version>` ([`pause_image`]); containerd's
//!   `sandbox_image`, pulled through the mirror like everything else.
//!
//! Tags come from the versions actually installed, never from wishes. Each
//! image is cached as an OCI archive under `target/sluice-images/<name>.tar`
//! with its references in `<name>.refs`; pushing (skopeo) skips blobs the
//! registry already has, so a second run takes seconds. Users push their own
//! images with `cargo xtask images push SOURCE NAME[:TAG]`.
//!
//! Builds into one directory hold an exclusive lock on its `.lock` file: the
//! many `xtask up` a test run starts at once wait for one build and then
//! reuse it, rather than each running mmdebstrap beside the others. A failed
//! mmdebstrap (a mirror mid-sync, a download cut short) is tried again.

use crate::registry::{mirror_repository, Reference};
use crate::util::{self, step, workspace_root};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The images `up` builds and pushes, by short name.
pub const ALL: &[&str] = &["busybox", "pause", "nginx", "redis"];

/// The sandbox ("pause") image: our own binary under an honest name.
pub fn pause_image() -> String {
    format!("sluice.local/pause:{}", env!("CARGO_PKG_VERSION"))
}

/// Arguments of `cargo xtask images`.
#[derive(Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    action: Option<ImagesAction>,
    /// Where the OCI archives are cached (default: `target/sluice-images`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rebuild the archives even when cached ones exist.
    #[arg(long)]
    pub rebuild: bool,
    /// Build (and push) only these images (repeatable): busybox, pause, nginx, redis.
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Build only; push nowhere.
    #[arg(long)]
    pub no_push: bool,
    #[command(flatten)]
    pub target: RegistryTarget,
}

/// Which registry to push to.
#[derive(Args, Clone)]
pub struct RegistryTarget {
    /// Push to this registry (`host:port`, plain HTTP) instead of the cluster's.
    #[arg(long, value_name = "ADDR", global = true)]
    pub registry: Option<String>,
    /// The cluster whose registry to push to [default: $SLUICE_HOME, else /var/lib/sluice].
    #[arg(long, global = true)]
    pub home: Option<PathBuf>,
    /// Registry credentials (`user:password`).
    #[arg(long, value_name = "USER:PASSWORD", global = true)]
    pub creds: Option<String>,
}

impl RegistryTarget {
    /// The registry address: `--registry`, else the one `up` recorded for the cluster.
    fn address(&self) -> Result<Option<String>> {
        if let Some(addr) = &self.registry {
            return Ok(Some(addr.clone()));
        }
        let home = crate::cluster::home_dir(self.home.as_deref());
        Ok(crate::cluster::recorded_registry(&home))
    }
}

#[derive(Subcommand)]
enum ImagesAction {
    /// Push an image of your own into the cluster registry under the name pods use:
    /// `push ./app.tar myapp:1` makes `image: myapp:1` pullable on every node.
    Push {
        /// An OCI archive, a docker archive (`docker save`), an OCI layout
        /// directory, or any skopeo source (`oci:DIR:TAG`, `docker-archive:FILE`, ...).
        source: String,
        /// The name as pods write it (`myapp:1`, `quay.io/me/app:2`).
        name: String,
    },
}

/// One image cached as an OCI archive.
pub struct BuiltImage {
    /// Full references it is pushed as (`docker.io/library/nginx:1.22.1`, `...:latest`).
    pub references: Vec<String>,
    /// The OCI archive.
    pub archive: PathBuf,
}

/// `cargo xtask images ...`.
pub fn images(args: ImagesArgs) -> Result<()> {
    if let Some(ImagesAction::Push { source, name }) = &args.action {
        let addr = args
            .target
            .address()?
            .context("no cluster registry is recorded (run `cargo xtask up`) and no --registry given")?;
        // A name on the registry itself (`ADDR/team/app:1`) is stored as is;
        // any other in the mirror layout (`myapp:1` → `docker.io/library/myapp:1`).
        let parsed = Reference::parse(name)?;
        let reference = if parsed.host == addr {
            format!("{}:{}", parsed.path, parsed.tag)
        } else {
            parsed.full()
        };
        push(&addr, &skopeo_source(source)?, &reference, args.target.creds.as_deref())?;
        println!("pushed {name} as {addr}/{reference}: pods can use `image: {name}`");
        return Ok(());
    }
    let out = args.out.unwrap_or_else(default_out_dir);
    let names: Vec<&str> = if args.only.is_empty() {
        ALL.to_vec()
    } else {
        args.only.iter().map(String::as_str).collect()
    };
    let built = build(&out, args.rebuild, &names)?;
    if !args.no_push {
        match args.target.address()? {
            Some(addr) => push_all(&addr, &built, args.target.creds.as_deref())?,
            None => step("no cluster registry recorded (`cargo xtask up` starts one): built only"),
        }
    }
    for image in &built {
        println!("{}\t{}", image.references.join(","), image.archive.display());
    }
    Ok(())
}

/// The default image cache directory.
pub fn default_out_dir() -> PathBuf {
    workspace_root().join("target").join("sluice-images")
}

/// Build (or reuse) the named images into `out`.
pub fn build(out: &Path, rebuild: bool, names: &[&str]) -> Result<Vec<BuiltImage>> {
    util::ensure_packages(&[
        ("umoci", "umoci"),
        ("busybox", "busybox-static"),
        ("tar", "tar"),
        ("skopeo", "skopeo"),
    ])?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let _lock = lock(out)?;
    names
        .iter()
        .map(|name| match *name {
            "busybox" => build_busybox(out, rebuild),
            "pause" => build_pause(out, rebuild),
            "nginx" => build_debian(
                out,
                rebuild,
                &Debian {
                    name: "nginx",
                    package: "nginx-light",
                    hook: "ln -sf /dev/stdout \"$1/var/log/nginx/access.log\" && \
                           ln -sf /dev/stderr \"$1/var/log/nginx/error.log\"",
                    config: &[
                        "--config.cmd=nginx",
                        "--config.cmd=-g",
                        "--config.cmd=daemon off;",
                        "--config.exposedports=80/tcp",
                        "--config.stopsignal=SIGQUIT",
                    ],
                },
            ),
            "redis" => build_debian(
                out,
                rebuild,
                &Debian {
                    name: "redis",
                    package: "redis-server",
                    hook: "true",
                    config: &[
                        "--config.cmd=redis-server",
                        "--config.cmd=--protected-mode",
                        "--config.cmd=no",
                        "--config.exposedports=6379/tcp",
                    ],
                },
            ),
            // Only for tests (not in ALL): an HTTPS client with bearer tokens, as in-cluster clients.
            "curl" => build_debian(
                out,
                rebuild,
                &Debian {
                    name: "curl",
                    package: "curl",
                    hook: "true",
                    config: &["--config.cmd=sleep", "--config.cmd=infinity"],
                },
            ),
            other => bail!("unknown image {other:?} (known: {})", ALL.join(", ")),
        })
        .collect()
}

/// Hold the image directory's build lock until the returned file is dropped.
fn lock(out: &Path) -> Result<fs::File> {
    let path = out.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        step(&format!("waiting for another build of the images in {}", out.display()));
        file.lock().with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// Push every reference of every image to the registry at `addr`.
pub fn push_all(addr: &str, images: &[BuiltImage], creds: Option<&str>) -> Result<()> {
    for image in images {
        for reference in &image.references {
            step(&format!("pushing {reference} to {addr}"));
            push(
                addr,
                &format!("oci-archive:{}", image.archive.display()),
                reference,
                creds,
            )?;
        }
    }
    Ok(())
}

/// `skopeo copy SOURCE docker://ADDR/REFERENCE` over plain HTTP.
pub fn push(addr: &str, source: &str, reference: &str, creds: Option<&str>) -> Result<()> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if let Some(creds) = creds {
        cmd.args(["--dest-creds", creds]);
    }
    cmd.arg(source).arg(format!("docker://{addr}/{reference}"));
    quiet(&mut cmd).with_context(|| format!("pushing {source} to {addr}/{reference}"))
}

/// The skopeo transport for a path: OCI layout dir, OCI archive or docker archive.
fn skopeo_source(source: &str) -> Result<String> {
    let path = Path::new(source);
    if !path.exists() {
        if source.contains(':') {
            return Ok(source.to_string()); // already a skopeo source (`oci:dir:tag`, ...)
        }
        bail!("{source}: no such file or directory");
    }
    let abs = fs::canonicalize(path)?;
    if abs.is_dir() {
        if !abs.join("oci-layout").exists() {
            bail!("{source} is a directory but not an OCI layout (no oci-layout file)");
        }
        return Ok(format!("oci:{}", abs.display()));
    }
    let listing = capture(Command::new("tar").arg("-tf").arg(&abs))
        .with_context(|| format!("{source} is not an OCI archive, a docker archive or an OCI layout directory"))?;
    let has = |f: &str| listing.lines().any(|l| l.trim_start_matches("./") == f);
    if has("oci-layout") {
        Ok(format!("oci-archive:{}", abs.display()))
    } else if has("manifest.json") {
        Ok(format!("docker-archive:{}", abs.display()))
    } else {
        bail!("{source} is neither an OCI archive nor a docker archive")
    }
}

/// A cached archive with its recorded references, if fresh.
fn cached(out: &Path, name: &str, rebuild: bool, source: Option<&Path>) -> Option<BuiltImage> {
    let archive = out.join(format!("{name}.tar"));
    let refs = fs::read_to_string(out.join(format!("{name}.refs"))).ok()?;
    let fresh = match source {
        Some(source) => is_newer(&archive, source),
        None => archive.exists(),
    };
    (!rebuild && fresh).then(|| BuiltImage {
        references: refs.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect(),
        archive,
    })
}

/// Record what was built.
fn finish(out: &Path, name: &str, references: Vec<String>) -> Result<BuiltImage> {
    fs::write(out.join(format!("{name}.refs")), references.join("\n") + "\n")?;
    Ok(BuiltImage {
        references,
        archive: out.join(format!("{name}.tar")),
    })
}

/// `name:version` and `name:latest` as full references.
fn tags(name: &str, version: &str) -> Result<Vec<String>> {
    Ok(vec![
        mirror_repository(&format!("{name}:{version}"))?,
        mirror_repository(&format!("{name}:latest"))?,
    ])
}

/// The upstream part of a Debian version: `1:1.35.0-4+deb12u1` → `1.35.0`.
fn upstream_version(debian: &str) -> String {
    let v = debian.split_once(':').map_or(debian, |(_, v)| v);
    v.rsplit_once('-').map_or(v, |(v, _)| v).to_string()
}

/// busybox-static plus applet symlinks, `/tmp`, and minimal passwd/group files.
fn build_busybox(out: &Path, rebuild: bool) -> Result<BuiltImage> {
    let busybox = which("busybox")?;
    if let Some(image) = cached(out, "busybox", rebuild, Some(&busybox)) {
        return Ok(image);
    }
    let version =
        upstream_version(capture(Command::new("dpkg-query").args(["-W", "-f=${Version}", "busybox-static"]))?.trim());
    let references = tags("busybox", &version)?;
    step(&format!("building image {}", references[0]));
    let applets = capture(Command::new(&busybox).arg("--list"))?;
    pack_image(
        out,
        "busybox",
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
    finish(out, "busybox", references)
}

/// The static `pause` binary alone, as the entrypoint.
fn build_pause(out: &Path, rebuild: bool) -> Result<BuiltImage> {
    let binary = build_pause_binary()?;
    let reference = pause_image();
    if let Some(image) = cached(out, "pause", rebuild, Some(&binary)) {
        if image.references == [reference.clone()] {
            return Ok(image);
        }
    }
    step(&format!("building image {reference}"));
    pack_image(
        out,
        "pause",
        |rootfs| {
            fs::copy(&binary, rootfs.join("pause"))?;
            Ok(())
        },
        &["--config.entrypoint=/pause"],
    )?;
    finish(out, "pause", vec![Reference::parse(&reference)?.full()])
}

/// An image made of one Debian package on the essential set.
struct Debian {
    /// Image name (`nginx`).
    name: &'static str,
    /// The package to install (`nginx-light`).
    package: &'static str,
    /// Shell run on the host with the root filesystem as `$1`.
    hook: &'static str,
    /// `umoci config` flags.
    config: &'static [&'static str],
}

/// `mmdebstrap --variant=essential --include=PACKAGE` as one layer; tagged
/// with the upstream version of the package it installed.
fn build_debian(out: &Path, rebuild: bool, image: &Debian) -> Result<BuiltImage> {
    if let Some(built) = cached(out, image.name, rebuild, None) {
        return Ok(built);
    }
    util::ensure_packages(&[("mmdebstrap", "mmdebstrap")])?;
    step(&format!(
        "building image {} from Debian's {} (mmdebstrap; about a minute)",
        image.name, image.package
    ));
    let work = out.join(format!(".work-{}-{}", image.name, std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let result = (|| -> Result<BuiltImage> {
        let rootfs = work.join("rootfs.tar");
        let version_file = work.join("version");
        let suite = os_codename()?;
        let mirror = |suffix: &str, path: &str| format!("deb http://deb.debian.org/{path} {suite}{suffix} main");
        let mmdebstrap = || {
            quiet(
                Command::new("mmdebstrap")
                    .args(["--quiet", "--variant=essential", "--skip=output/dev"])
                    .arg(format!("--include={}", image.package))
                    .args(
                        [
                            "/usr/share/doc",
                            "/usr/share/man",
                            "/usr/share/info",
                            "/usr/share/locale",
                        ]
                        .map(|d| format!("--dpkgopt=path-exclude={d}/*")),
                    )
                    .arg(format!(
                        "--customize-hook=dpkg-query --admindir=\"$1/var/lib/dpkg\" -W -f='${{Version}}' {} > {}",
                        image.package,
                        version_file.display()
                    ))
                    .arg(format!("--customize-hook={}", image.hook))
                    .arg(&suite)
                    .arg(&rootfs)
                    .arg(mirror("", "debian"))
                    .arg(mirror("-updates", "debian"))
                    .arg(mirror("-security", "debian-security"))
                    .stdin(Stdio::null()),
            )
        };
        retry(MMDEBSTRAP_ATTEMPTS, mmdebstrap, |attempt, e| {
            step(&format!(
                "mmdebstrap for {} failed (attempt {attempt} of {MMDEBSTRAP_ATTEMPTS}), trying again: {}",
                image.name,
                last_line(&format!("{e:#}"))
            ))
        })?;
        let version = upstream_version(fs::read_to_string(&version_file)?.trim());
        let references = tags(image.name, &version)?;
        let layout = work.join("oci");
        let tagged = format!("{}:{version}", layout.display());
        quiet(Command::new("umoci").args(["init", "--layout"]).arg(&layout))?;
        quiet(Command::new("umoci").args(["new", "--image", &tagged]))?;
        quiet(
            Command::new("umoci")
                .args(["raw", "add-layer", "--image", &tagged])
                .arg(&rootfs),
        )?;
        quiet(
            Command::new("umoci")
                .args(["config", "--image", &tagged])
                .arg("--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
                .args(image.config),
        )?;
        quiet(Command::new("umoci").args(["gc", "--layout"]).arg(&layout))?;
        write_archive(&layout, &out.join(format!("{}.tar", image.name)))?;
        finish(out, image.name, references)
    })();
    let _ = fs::remove_dir_all(&work);
    result.with_context(|| format!("building image {}", image.name))
}

/// How many times mmdebstrap is run before a build gives up.
const MMDEBSTRAP_ATTEMPTS: u32 = 3;

/// Run `f` up to `attempts` times, telling `failed` of each failure but the last.
fn retry<T>(attempts: u32, mut f: impl FnMut() -> Result<T>, mut failed: impl FnMut(u32, &anyhow::Error)) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if attempt < attempts => {
                failed(attempt, &e);
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The last non-empty line of a message.
fn last_line(text: &str) -> &str {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(text).trim()
}

/// This machine's Debian suite (`bookworm`).
fn os_codename() -> Result<String> {
    let release = fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME")
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
/// `umoci config` arguments, and write it atomically as `<out>/<name>.tar`.
fn pack_image(out: &Path, name: &str, fill: impl FnOnce(&Path) -> std::io::Result<()>, config: &[&str]) -> Result<()> {
    let work = out.join(format!(".work-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let result = (|| -> Result<()> {
        let layout = work.join("oci");
        let image = format!("{}:latest", layout.display());
        let bundle = work.join("bundle");
        quiet(Command::new("umoci").args(["init", "--layout"]).arg(&layout))?;
        quiet(Command::new("umoci").args(["new", "--image", &image]))?;
        quiet(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle))?;
        fill(&bundle.join("rootfs")).with_context(|| format!("filling the {name} rootfs"))?;
        quiet(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle))?;
        quiet(Command::new("umoci").args(["config", "--image", &image]).args(config))?;
        quiet(Command::new("umoci").args(["gc", "--layout"]).arg(&layout))?;
        write_archive(&layout, &out.join(format!("{name}.tar")))
    })();
    let _ = fs::remove_dir_all(&work);
    result.with_context(|| format!("building image {name}"))
}

/// Tar an OCI layout into an OCI archive, atomically.
fn write_archive(layout: &Path, archive: &Path) -> Result<()> {
    let partial = archive.with_extension(format!("tar.{}", std::process::id()));
    quiet(
        Command::new("tar")
            .arg("-C")
            .arg(layout)
            .arg("-cf")
            .arg(&partial)
            .arg("."),
    )?;
    fs::rename(&partial, archive)?;
    Ok(())
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

/// Run a command and return its stdout, failing with its stderr and the end
/// of its stdout (mmdebstrap's chrooted dpkg reports there).
fn capture(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let output = cmd.output().with_context(|| format!("could not start {shown}"))?;
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let tail: Vec<&str> = stdout.trim().lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let stdout = if tail.is_empty() {
            String::new()
        } else {
            format!("\nits output ended with:\n{}", tail.join("\n"))
        };
        bail!(
            "{shown} failed ({}): {}{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Run a command, showing its output only when it fails.
fn quiet(cmd: &mut Command) -> Result<()> {
    capture(cmd).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_stops_at_the_first_success_and_reports_each_failure_before_it() {
        let mut calls = 0;
        let mut reported = Vec::new();
        let result = retry(
            3,
            || {
                calls += 1;
                if calls < 2 {
                    bail!("mirror mid-sync")
                }
                Ok(calls)
            },
            |attempt, e| reported.push(format!("{attempt}: {e}")),
        );
        assert_eq!(result.unwrap(), 2);
        assert_eq!(reported, ["1: mirror mid-sync"]);
    }

    #[test]
    fn retry_gives_up_with_the_last_error() {
        let mut calls = 0;
        let result: Result<()> = retry(
            3,
            || {
                calls += 1;
                bail!("failure {calls}")
            },
            |_, _| {},
        );
        assert_eq!(result.unwrap_err().to_string(), "failure 3");
        assert_eq!(calls, 3);
    }

    #[test]
    fn last_line_skips_trailing_blank_lines() {
        assert_eq!(
            last_line("a\nE: mmdebstrap failed to run\n\n"),
            "E: mmdebstrap failed to run"
        );
        assert_eq!(last_line(""), "");
    }

    #[test]
    fn a_second_build_of_one_directory_waits_for_the_first() {
        let dir = std::env::temp_dir().join(format!("sluice-images-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let held = lock(&dir).unwrap();
        let other = fs::File::options().write(true).open(dir.join(".lock")).unwrap();
        assert!(other.try_lock().is_err(), "the lock is exclusive while held");
        drop(held);
        assert!(other.try_lock().is_ok(), "and free once the build ends");
        fs::remove_dir_all(&dir).unwrap();
    }
}
