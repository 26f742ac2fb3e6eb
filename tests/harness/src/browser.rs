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
//! The browser's console (its log, with every resource it failed to load)
//! is read as the story goes, and printed when a wait fails.
//!
//! Screenshots go to `target/dashboard-screenshots/` (or
//! `$SLUICE_SCREENSHOT_DIR`) and are checked as they are taken: a PNG of the
//! window's viewport that is not a blank page.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The browser window's size. Screenshots show its viewport: the window's
/// width, and its height less the browser's own bars.
pub const WINDOW: (u32, u32) = (1280, 900);

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    console: RefCell<Console>,
}

/// The browser's console as read so far.
#[derive(Default)]
struct Console {
    /// Every entry, oldest first (`LEVEL source: message`).
    entries: Vec<ConsoleEntry>,
    /// Where the current page's load began in `entries`.
    page_start: usize,
}

struct ConsoleEntry {
    level: String,
    source: String,
    message: String,
}

impl std::fmt::Display for ConsoleEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.level, self.source, self.message)
    }
}

impl ConsoleEntry {
    /// The page's own code (a script or a style sheet) the network failed
    /// to load: Chromium logs `<url> - Failed to load resource: net::ERR_…`.
    /// Such a page stays blank or half-made until it is loaded again. An
    /// answer the server gave (a 404) is not a network failure.
    fn code_the_network_failed(&self) -> Option<&str> {
        if self.source != "network" {
            return None;
        }
        let (url, what) = self.message.split_once(" - ")?;
        if !what.contains("net::ERR_") {
            return None;
        }
        let path = url.split(['?', '#']).next().unwrap_or(url);
        (path.ends_with(".js") || path.ends_with(".css")).then_some(url)
    }
}

/// ChromeDriver's log command: the browser's console entries logged since
/// it was last asked (the session asks for them with `goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "type": "browser" }).to_string()))
    }
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
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
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
            console: RefCell::default(),
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    /// Run `f` with the session (an async block on the browser's runtime).
    pub fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// Open `url`. A load the network failed (Chromium's error page, or the
    /// page's code failing to load, e.g. ERR_NETWORK_CHANGED: Chromium fails
    /// what is in flight whenever an address of the machine changes, as
    /// other tests' namespaces come and go) is loaded again, as a user would
    /// press Reload.
    pub fn goto(&self, url: &str) {
        for attempt in 1.. {
            self.page_loads();
            self.run(self.client().goto(url))
                .unwrap_or_else(|e| panic!("opening {url}: {e}"));
            let Some(failed) = self.network_failure() else { return };
            if attempt == 5 {
                return;
            }
            eprintln!("loading {url} failed ({failed}); loading it again");
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
                let page = self.run(self.client().current_url()).map(|u| u.to_string());
                let page = page.unwrap_or_else(|e| format!("(no address: {e})"));
                panic!(
                    "waited {timeout:?} for {what}; the page {page} shows:\n{body}\n\nthe browser's console:\n{}",
                    self.console_text()
                );
            }
            if polls % 5 == 0 && reloads < 5 {
                if let Some(failed) = self.network_failure() {
                    reloads += 1;
                    eprintln!("the page's load failed ({failed}); reloading it");
                    self.page_loads();
                    self.run(self.client().refresh())
                        .unwrap_or_else(|e| panic!("reloading the page: {e}"));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How the network failed the current page's load, if it did: the page
    /// is Chromium's error page, or its code (a script or a style sheet)
    /// failed to load.
    fn network_failure(&self) -> Option<String> {
        let body = self.text("body").unwrap_or_default();
        let error_page = self
            .run(self.client().current_url())
            .is_ok_and(|u| u.scheme() == "chrome-error")
            || body.contains("ERR_NETWORK_CHANGED");
        if error_page {
            return Some(body.trim().to_string());
        }
        self.read_console();
        let console = self.console.borrow();
        console.entries[console.page_start..]
            .iter()
            .find(|e| e.code_the_network_failed().is_some())
            .map(|e| e.message.clone())
    }

    /// A page starts loading: what the console said before is about earlier pages.
    fn page_loads(&self) {
        self.read_console();
        let mut console = self.console.borrow_mut();
        console.page_start = console.entries.len();
    }

    /// Read the console entries logged since the last read (fantoccini
    /// answers with the reply's `value`: the array of entries).
    fn read_console(&self) {
        let Ok(read) = self.run(self.client().issue_cmd(BrowserLog)) else {
            return;
        };
        let text = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
        let mut console = self.console.borrow_mut();
        for e in read.as_array().into_iter().flatten() {
            console.entries.push(ConsoleEntry {
                level: text(e, "level"),
                source: text(e, "source"),
                message: text(e, "message"),
            });
        }
    }

    /// The console's last entries, one per line.
    fn console_text(&self) -> String {
        const SHOWN: usize = 30;
        self.read_console();
        let console = self.console.borrow();
        let skip = console.entries.len().saturating_sub(SHOWN);
        let lines: Vec<String> = console.entries[skip..].iter().map(|e| format!("  {e}")).collect();
        if lines.is_empty() {
            "  (nothing)".into()
        } else {
            lines.join("\n")
        }
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
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn entry(source: &str, message: &str) -> ConsoleEntry {
        ConsoleEntry {
            level: "SEVERE".into(),
            source: source.into(),
            message: message.into(),
        }
    }

    #[test]
    fn only_code_the_network_failed_to_load_calls_for_a_reload() {
        let failed = entry(
            "network",
            "https://127.0.0.1:6443/dashboard/assets/index-Dp.js - Failed to load resource: net::ERR_NETWORK_CHANGED",
        );
        assert_eq!(
            failed.code_the_network_failed(),
            Some("https://127.0.0.1:6443/dashboard/assets/index-Dp.js")
        );
        let css = entry(
            "network",
            "http://h/a.css?v=1 - Failed to load resource: net::ERR_EMPTY_RESPONSE",
        );
        assert_eq!(css.code_the_network_failed(), Some("http://h/a.css?v=1"));
        // The server's answer, an API call, or the page's own log are not.
        let not_found =
            "http://h/a.js - Failed to load resource: the server responded with a status of 404 (Not Found)";
        assert_eq!(entry("network", not_found).code_the_network_failed(), None);
        let api = "https://h/api/v1/pods - Failed to load resource: net::ERR_NETWORK_CHANGED";
        assert_eq!(entry("network", api).code_the_network_failed(), None);
        let log = "http://h/a.js - Failed to load resource: net::ERR_FAILED";
        assert_eq!(entry("console-api", log).code_the_network_failed(), None);
    }

    /// A page whose script the network fails (the server closes the
    /// connection unanswered, Chromium's ERR_EMPTY_RESPONSE) stays blank;
    /// the browser loads it again and the script runs.
    #[test]
    fn a_page_whose_script_the_network_failed_is_loaded_again() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let (pages, scripts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (p, sc) = (pages.clone(), scripts.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (p, sc) = (p.clone(), sc.clone());
                // A connection of its own each: Chromium opens some it sends nothing on.
                std::thread::spawn(move || answer(stream, &p, &sc));
            }
        });
        let browser = Browser::start();
        browser.goto(&format!("http://{addr}/"));
        let ran = browser.find("#ran", Duration::from_secs(30));
        assert_eq!(browser.run(ran.text()).expect("text"), "ran");
        assert!(pages.load(Ordering::SeqCst) >= 2, "the page was loaded again");
        assert!(scripts.load(Ordering::SeqCst) >= 3, "the script was asked for again");
    }

    /// Answer one request of the page test's server.
    fn answer(mut stream: std::net::TcpStream, pages: &AtomicUsize, scripts: &AtomicUsize) {
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            return;
        }
        let (kind, body) = match line.split(' ').nth(1).unwrap_or("/") {
            "/" => {
                pages.fetch_add(1, Ordering::SeqCst);
                (
                    "text/html",
                    r#"<!doctype html><body><script type="module" src="/app.js"></script></body>"#,
                )
            }
            // Closed unanswered: the first two, and any before the page is
            // loaded again (Chromium retries a request on its own when a
            // connection it opened ahead closes, so the first two alone may
            // be spent before the page sees a failure).
            "/app.js" if scripts.fetch_add(1, Ordering::SeqCst) < 2 || pages.load(Ordering::SeqCst) < 2 => return,
            "/app.js" => (
                "text/javascript",
                r#"document.body.insertAdjacentHTML("beforeend", "<p id=ran>ran</p>");"#,
            ),
            _ => ("text/plain", ""),
        };
        let status = if body.is_empty() { "404 Not Found" } else { "200 OK" };
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

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
