//! `cargo xtask test`: the README's test command.
//!
//! Installs what the tests need, builds every binary (integration tests start
//! the real binaries from `target/debug`) while the Debian-based images the
//! stories pull are built beside it (`target/sluice-images`), then the pause
//! image, the web dashboard (`control/dashboard/dist`), the doc tests
//! (`cargo test --doc`), and the whole workspace's tests with cargo-nextest
//! (one process per test, a few at once; `.config/nextest.toml`). The
//! closing lines give the time of each phase.

use crate::util::{self, ensure_packages, step, workspace_root};
use anyhow::Result;
use clap::Args;
use std::process::Command;

/// Arguments of `cargo xtask test`.
#[derive(Args)]
pub struct TestArgs {
    /// Extra arguments passed to `cargo nextest run` (e.g. a test name filter,
    /// `--test-threads 2`, `--no-capture`).
    #[arg(trailing_var_arg = true)]
    pub cargo_args: Vec<String>,
}

/// Debian packages the test suite needs, as (command, package).
pub const TEST_PACKAGES: &[(&str, &str)] = &[
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("bpftool", "bpftool"),
    ("ip", "iproute2"),
    ("iptables-save", "iptables"),
    ("nft", "nftables"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("umoci", "umoci"),
    ("busybox", "busybox-static"),
    ("curl", "curl"),
    // Stories stop processes with /bin/kill (`kill` alone would find the shell builtin).
    ("/bin/kill", "procps"),
    // The cluster registry and the images pushed to it (xtask images).
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("mmdebstrap", "mmdebstrap"),
    // htpasswd for the private-registry story.
    ("htpasswd", "apache2-utils"),
    // Continuous HTTP load through endpoint changes (cluster_zero_loss).
    ("hey", "hey"),
    // The dashboard story drives a real browser over WebDriver.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];

/// Run the whole test suite.
pub fn run_all(args: TestArgs) -> Result<()> {
    let mut phases = Phases::default();
    let result = run_phases(args, &mut phases);
    // Last, so that a run cut short (CI's time limit) still shows where its time went.
    phases.report();
    result
}

fn run_phases(args: TestArgs, phases: &mut Phases) -> Result<()> {
    phases.start("installing the test packages");
    ensure_packages(TEST_PACKAGES)?;
    let root = workspace_root();
    // The images the stories pull, built once before them: each cluster a
    // story starts pushes these, and a build inside a story would spend its
    // time budget. The Debian-based ones mostly download and unpack, so they
    // are built beside the compiler; the pause image holds a binary of this
    // workspace and follows the build.
    let out = crate::images::default_out_dir();
    let debian: Vec<&str> = crate::images::ALL
        .iter()
        .copied()
        .chain(["curl"])
        .filter(|name| *name != "pause")
        .collect();
    step(&format!("building the images {} beside the build", debian.join(", ")));
    let beside = {
        let out = out.clone();
        std::thread::spawn(move || crate::images::build(&out, false, &debian).map(|_| ()))
    };
    phases.start("building all binaries (integration tests run them)");
    let built = util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "--workspace", "--bins"]),
    );
    phases.start("finishing the images (pause; waiting for the others)");
    let images = beside.join().map_err(|_| anyhow::anyhow!("the image build panicked"))?;
    built?;
    images?;
    crate::images::build(&out, false, &["pause"])?;
    phases.start("building the web dashboard");
    crate::dashboard::ensure_built()?;
    ensure_nextest()?;
    if args.cargo_args.is_empty() {
        phases.start("running the dashboard's unit tests");
        crate::dashboard::unit_tests()?;
        phases.start("running the doc tests");
        util::run(
            Command::new("cargo")
                .current_dir(&root)
                .args(["test", "--workspace", "--doc"]),
        )?;
    }
    phases.start("building the tests (cargo nextest --no-run)");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["nextest", "run", "--workspace", "--no-run"]),
    )?;
    phases.start("running the test suite (cargo nextest)");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["nextest", "run", "--workspace"])
            .args(&args.cargo_args),
    )
}

/// How long each phase of the run took.
#[derive(Default)]
struct Phases {
    done: Vec<(String, std::time::Duration)>,
    current: Option<(String, std::time::Instant)>,
}

impl Phases {
    /// End the current phase (if any) and start `name`, with a progress line.
    fn start(&mut self, name: &str) {
        self.finish();
        step(name);
        self.current = Some((name.to_string(), std::time::Instant::now()));
    }

    fn finish(&mut self) {
        if let Some((name, at)) = self.current.take() {
            self.done.push((name, at.elapsed()));
        }
    }

    /// One line per phase, the unfinished one included.
    fn report(&mut self) {
        self.finish();
        let lines: Vec<String> = self
            .done
            .iter()
            .map(|(name, d)| format!("{:>6}s  {name}", d.as_secs()))
            .collect();
        eprintln!("==> time per phase:\n{}", lines.join("\n"));
    }
}

/// cargo-nextest ships with this kind of machine; install it when it does not.
fn ensure_nextest() -> Result<()> {
    let have = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(());
    }
    step("installing cargo-nextest (cargo install --locked)");
    util::run(Command::new("cargo").args(["install", "--locked", "cargo-nextest"]))
}

#[cfg(test)]
mod tests {
    use crate::util::workspace_root;
    use std::collections::{BTreeMap, BTreeSet};
    use std::process::Command;

    /// Every package's features as `cargo tree` resolves them over `edges`
    /// (a set each: a package can appear with more than one feature set).
    /// Build-dependencies are left out: they resolve apart, for the host.
    fn features(edges: &str) -> BTreeMap<String, BTreeSet<String>> {
        let out = Command::new(env!("CARGO"))
            .current_dir(workspace_root())
            .args(["tree", "--workspace", "--prefix", "none", "-f", "{p}|{f}", "-e", edges])
            .output()
            .expect("run cargo tree");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut features: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((p, f)) = line.trim_end_matches(" (*)").split_once('|') {
                features.entry(p.to_string()).or_default().insert(f.to_string());
            }
        }
        features
    }

    /// `cargo test` builds dev-dependencies; a feature only they turn on
    /// would make the test build compile every crate above it again. The
    /// `workspace-hack` member turns such features on for every build.
    #[test]
    fn workspace_hack_covers_dev_features() {
        let normal = features("normal");
        let with_dev = features("normal,dev");
        let differ: Vec<String> = with_dev
            .iter()
            .filter_map(|(p, f)| {
                let n = normal.get(p)?;
                (n != f).then(|| format!("{p}: {n:?} without dev-dependencies, {f:?} with them"))
            })
            .collect();
        assert!(
            differ.is_empty(),
            "add these features to tests/workspace-hack/Cargo.toml:\n{}",
            differ.join("\n")
        );
    }

    /// A binary that says `test = false` is not compiled by `cargo test`, so
    /// it must hold no tests: none in its file, and no module files that could.
    #[test]
    fn bins_without_tests_are_not_test_targets() {
        let out = Command::new(env!("CARGO"))
            .current_dir(workspace_root())
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .output()
            .expect("run cargo metadata");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let meta: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap(); // JSON is YAML
        let mut checked = 0;
        for target in meta["packages"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_sequence().unwrap())
        {
            if target["kind"][0] != "bin" || target["test"] != false {
                continue;
            }
            let path = target["src_path"].as_str().unwrap();
            let source = std::fs::read_to_string(path).unwrap();
            let has_tests = source.contains("#[test]") || source.contains("#[tokio::test");
            let module_files = source
                .lines()
                .any(|l| l.trim_start().trim_start_matches("pub ").starts_with("mod ") && l.trim_end().ends_with(';'));
            assert!(
                !has_tests && !module_files,
                "{path} has tests or module files: drop `test = false` from its [[bin]]"
            );
            checked += 1;
        }
        assert!(checked > 0, "no binary says test = false");
    }

    /// A story file whose tests take the harness's `serial()` lock runs them
    /// one after another; nextest must know it (a test group of one thread per
    /// file), or a waiting test holds one of the few slots for nothing.
    #[test]
    fn serial_story_files_have_a_test_group() {
        let root = workspace_root();
        let config = std::fs::read_to_string(root.join(".config/nextest.toml")).unwrap();
        let stories = root.join("tests/stories/tests");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&stories).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let tests = source.matches("#[tokio::test").count() + source.matches("#[test]").count();
            if source.contains("serial()") && tests > 1 {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                let filter = format!(
                    "filter = \"binary({stem})\"\ntest-group = \"serial-{}\"",
                    stem.replace('_', "-")
                );
                if !config.contains(&filter) {
                    missing.push(stem);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add a test group to .config/nextest.toml for {missing:?}"
        );
    }
}
