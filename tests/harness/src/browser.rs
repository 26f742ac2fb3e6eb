//! A real browser for stories: Debian's Chromium, headless, driven over
//! WebDriver by `chromedriver` (started here on a free loopback port, stopped
//! by pid when the [`Browser`] drops) through the `fantoccini` client.
//!
//! Chromium runs with a new empty profile and without the background
//! networking it would otherwise try (this machine reaches no outside host).
//! The cluster's CA is not in the browser's trust store, as on a user's first
//! visit, so the session accepts the API server's certificate
//! (`acceptInsecureCerts`); the connection is still HTTPS.
//!
//! Screenshots go to `target/dashboard-screenshots/` (or
//! `$SLUICE_SCREENSHOT_DIR`) and are checked as they are taken: a PNG of the
//! window's viewport that is not a blank page.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// The browser window's size. Screenshots show its viewport: the window's
/// width, and its height less the browser's own bars.
pub const WINDOW: (u32, u32) = (1280, 900);

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Browser {
    /// Start chromedriver and open a Chromium session.
    pub fn start() -> Browser {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: `cargo xtask test` installs the chromium and chromium-driver packages"
            );
        }
        let port = crate::free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    "--force-device-scale-factor=1",
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = runtime.block_on(async {
            let start = Instant::now();
            loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
                {
                    Ok(c) => break c,
                    Err(e) if start.elapsed() < Duration::from_secs(30) => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("no WebDriver session from chromedriver at {url}: {e}"),
                }
            }
        });
        Browser {
            driver,
            client: Some(client),
            _profile: profile,
            runtime,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    /// Run `f` with the session (an async block on the browser's runtime).
    pub fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// Open `url`. A load the network failed (Chromium's error page, e.g.
    /// ERR_NETWORK_CHANGED: Chromium fails what is in flight whenever an
    /// address of the machine changes, as other tests' namespaces come and
    /// go) is loaded again, as a user would press Reload.
    pub fn goto(&self, url: &str) {
        for attempt in 1.. {
            self.run(self.client().goto(url))
                .unwrap_or_else(|e| panic!("opening {url}: {e}"));
            if !self.shows_network_error() || attempt == 5 {
                return;
            }
            eprintln!(
                "loading {url} failed ({}); loading it again",
                self.text("body").unwrap_or_default().trim()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The elements matching the CSS selector now.
    pub fn all(&self, css: &str) -> Vec<Element> {
        self.run(self.client().find_all(Locator::Css(css))).unwrap_or_default()
    }

    /// The first element matching `css`, waited for up to `timeout`.
    pub fn find(&self, css: &str, timeout: Duration) -> Element {
        self.wait_for(timeout, &format!("an element {css}"), || {
            self.all(css).into_iter().next()
        })
    }

    /// The text of the first element matching `css`, if any now.
    pub fn text(&self, css: &str) -> Option<String> {
        let el = self.all(css).into_iter().next()?;
        self.run(el.text()).ok()
    }

    /// An attribute of an element.
    pub fn attr(&self, el: &Element, name: &str) -> Option<String> {
        self.run(el.attr(name)).ok().flatten()
    }

    /// Click the first element matching `css` (waited for).
    pub fn click(&self, css: &str) {
        let el = self.find(css, Duration::from_secs(20));
        self.run(el.click()).unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Replace the value of the input matching `css` with `text`, typed as
    /// a user does (select all, delete, type), so the page sees input events.
    pub fn fill(&self, css: &str, text: &str) {
        // WebDriver keys: Control (held until Null), Backspace.
        const SELECT_ALL_AND_DELETE: &str = "\u{E009}a\u{E000}\u{E003}";
        let el = self.find(css, Duration::from_secs(20));
        self.run(async {
            el.send_keys(SELECT_ALL_AND_DELETE).await?;
            el.send_keys(text).await
        })
        .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Choose the option with `value` in the select matching `css`.
    pub fn select(&self, css: &str, value: &str) {
        let el = self.find(css, Duration::from_secs(20));
        self.run(el.select_by_value(value))
            .unwrap_or_else(|e| panic!("selecting {value:?} in {css}: {e}"));
    }

    /// Poll `check` every 200 ms until it gives a value; panic after `timeout` naming `what`.
    /// Meanwhile a page the network failed (Chromium's error page, see
    /// [`Browser::goto`]; a load can also fail after `goto` returned) is
    /// reloaded, as a user would press Reload, a few times at most.
    pub fn wait_for<T>(&self, timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        let (mut reloads, mut polls) = (0, 0u64);
        loop {
            polls += 1;
            if let Some(v) = check() {
                return v;
            }
            if start.elapsed() > timeout {
                let body = self.text("body").unwrap_or_default();
                panic!("waited {timeout:?} for {what}; the page shows:\n{body}");
            }
            if polls % 5 == 0 && reloads < 5 && self.shows_network_error() {
                reloads += 1;
                eprintln!(
                    "the page shows a network error ({}); reloading it",
                    self.text("body").unwrap_or_default().trim()
                );
                self.run(self.client().refresh())
                    .unwrap_or_else(|e| panic!("reloading the page: {e}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the page is Chromium's error page for a load the network failed.
    fn shows_network_error(&self) -> bool {
        self.run(self.client().current_url())
            .is_ok_and(|u| u.scheme() == "chrome-error")
            || self.text("body").is_some_and(|b| b.contains("ERR_NETWORK_CHANGED"))
    }

    /// Take a screenshot named `name` (`<dir>/<name>.png`), check it, and return its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.run(self.client().screenshot()).expect("screenshot");
        check_screenshot(&png).unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
        crate::kill(&mut self.driver);
    }
}

/// The built dashboard (`cargo xtask dashboard`), for an API server's `--dashboard-dir`.
pub fn dashboard_dir() -> PathBuf {
    let dir = crate::workspace_root().join("control/dashboard/dist");
    assert!(
        dir.join("index.html").is_file(),
        "{} has no index.html: build the dashboard with `cargo xtask dashboard` (`cargo xtask test` does)",
        dir.display()
    );
    dir
}

/// Where screenshots are written.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("SLUICE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/dashboard-screenshots"))
}

/// A screenshot is a PNG of the window's viewport showing something: its
/// compressed image data is larger than a flat page's (a blank 1280×900
/// page compresses to a few KiB).
pub fn check_screenshot(png: &[u8]) -> Result<(), String> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 33 || !png.starts_with(SIGNATURE) || &png[12..16] != b"IHDR" {
        return Err(format!("not a PNG ({} bytes)", png.len()));
    }
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    let (width, height) = (be(16), be(20));
    if width != WINDOW.0 || !(WINDOW.1 / 2..=WINDOW.1).contains(&height) {
        return Err(format!(
            "{width}×{height}, not the viewport of a {}×{} window",
            WINDOW.0, WINDOW.1
        ));
    }
    if png.len() < 12 * 1024 {
        return Err(format!("{} bytes: an empty page", png.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screenshot_must_be_a_png_of_the_window_with_content() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&WINDOW.0.to_be_bytes());
        png.extend_from_slice(&WINDOW.1.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        assert!(check_screenshot(&png).unwrap_err().contains("empty page"));
        png.resize(20 * 1024, 7);
        assert_eq!(check_screenshot(&png), Ok(()));
        let mut viewport = png.clone();
        viewport[20..24].copy_from_slice(&757u32.to_be_bytes());
        assert_eq!(check_screenshot(&viewport), Ok(()));
        let mut small = png.clone();
        small[16..20].copy_from_slice(&800u32.to_be_bytes());
        assert!(check_screenshot(&small).unwrap_err().contains("800×900"));
        assert!(check_screenshot(b"GIF89a").is_err());
    }
}
