//! Headless Chromium driven through chromedriver (WebDriver) with fantoccini: the driver is
//! a child process in its own process group, so dropping it ends the driver and every
//! browser process it started, even when a test panics halfway.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver on a loopback port it chose itself.
pub struct Driver {
    child: Child,
    pub url: String,
    // Chromium's profile; removed after the processes are gone.
    profile: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver, or fails naming `.ci/setup` when the browser is not installed:
    /// a missing browser must never turn into a skipped test.
    pub fn start() -> Driver {
        for (path, what) in [(CHROMIUM, "Chromium"), (CHROMEDRIVER, "chromedriver")] {
            assert!(
                Path::new(path).exists(),
                "{what} is not installed at {path}: run `bash .ci/setup` (installs chromium, \
                 chromium-driver and fonts-noto-cjk) before the board's browser tests"
            );
        }
        // Without a CJK font the zh-CN screens (and their screenshots) are empty boxes.
        let fonts = Command::new("fc-list")
            .args([":lang=zh", "family"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        assert!(
            fonts.contains("Noto Sans CJK"),
            "the Noto Sans CJK font is not installed: run `bash .ci/setup` (installs fonts-noto-cjk)"
        );
        let profile = tempfile::tempdir().expect("tempdir for the browser profile");
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        // Its own process group: Drop kills chromedriver and the browsers it started at once.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("start chromedriver");
        let stdout = child.stdout.take().expect("chromedriver stdout");
        let mut lines = BufReader::new(stdout).lines();
        // "ChromeDriver was started successfully on port 44511."
        let port = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("chromedriver exited before saying its port");
            };
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest
                    .trim_end_matches('.')
                    .trim()
                    .parse::<u16>()
                    .expect("chromedriver port");
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        }
    }

    /// A new browser session (one Chromium) with the board's window size.
    pub async fn session(&self) -> Client {
        let caps = json!({
            // The page's console, read back by `Page::console_errors`.
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run",
                    "--autoplay-policy=no-user-gesture-required", "--window-size=1600,1000",
                    // performance.memory to the byte, not in coarse buckets (the figures).
                    "--enable-precise-memory-info",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        builder
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("a Chromium session through chromedriver at {}: {e}", self.url))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `$GATEHOUSE_ARTIFACTS`, else `<workspace>/target/board-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let dir = match std::env::var_os("GATEHOUSE_ARTIFACTS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/board-artifacts"),
    };
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// A page of the board in one browser session, with the waits the tests need. Every wait
/// polls a condition until a deadline; none sleeps for a fixed time in place of a check.
pub struct Page {
    pub client: Client,
    pub base: String,
    pub test: &'static str,
}

/// `[data-testid="id"]`, with extra attribute conditions appended by the caller.
pub fn tid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

impl Page {
    pub async fn goto(&self, hash: &str) {
        let url = format!("{}/{hash}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than `null`/`false`/`undefined`.
    pub async fn wait_js(&self, what: &str, within: Duration, script: &str, args: Vec<Value>) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = self.js(script, args.clone()).await;
            if !matches!(v, Value::Null | Value::Bool(false)) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                self.shot(&format!("timeout-{}", slug(what)), "").await;
                panic!("timed out after {within:?} waiting for {what} in the page");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css`, once there is one.
    pub async fn wait_css(&self, what: &str, within: Duration, css: &str) -> Element {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if tokio::time::Instant::now() > deadline {
                self.shot(&format!("timeout-{}", slug(what)), "").await;
                panic!("timed out after {within:?} waiting for {what} ({css})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first match of `css` once there is one (a real WebDriver click: the
    /// element must be visible and not covered).
    /// A live view may rebuild the element between finding and clicking it; then it is
    /// found again.
    pub async fn click(&self, what: &str, css: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let e = self.wait_css(what, Duration::from_secs(15), css).await;
            // Into the middle of the viewport: chromedriver only scrolls an element whose
            // centre is outside it, so one half under the sticky header would stay there.
            if let Ok(arg) = serde_json::to_value(&e) {
                let _ = self
                    .client
                    .execute(
                        "arguments[0].scrollIntoView({block: 'center'}); return true;",
                        vec![arg],
                    )
                    .await;
            }
            match e.click().await {
                Ok(()) => return,
                Err(err) if err.to_string().contains("stale element") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("clicking {what} ({css}): {err}"),
            }
        }
    }

    /// Changes the hash route in place (no reload).
    pub async fn route(&self, hash: &str) {
        self.js("location.hash = arguments[0]; return true;", vec![Value::from(hash)])
            .await;
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// The value of `attr` on the first match of `css`, if any.
    pub async fn attr(&self, css: &str, attr: &str) -> Option<String> {
        let e = self.client.find(Locator::Css(css)).await.ok()?;
        e.attr(attr).await.ok().flatten()
    }

    pub async fn text(&self, css: &str) -> Option<String> {
        let e = self.client.find(Locator::Css(css)).await.ok()?;
        e.text().await.ok()
    }

    /// Writes a PNG of the window to the artifacts folder as `<test>-<view>-<lang>.png`.
    pub async fn shot(&self, view: &str, lang: &str) -> PathBuf {
        let name = if lang.is_empty() {
            format!("{}-{view}.png", self.test)
        } else {
            format!("{}-{view}-{lang}.png", self.test)
        };
        let path = artifacts_dir().join(name);
        match self.client.screenshot().await {
            Ok(png) => {
                std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            }
            Err(e) => eprintln!("screenshot {}: {e}", path.display()),
        }
        path
    }

    /// Answers the board's modal dialog (`ctx.form` / `ctx.confirm`) once it is open: sets
    /// the named fields (typing into inputs, choosing select options by value), types
    /// `filler` into any other empty required text field, and presses `dialog-ok`.
    pub async fn answer_dialog(&self, within: Duration, fields: &[(&str, &str)], filler: &str) {
        let dialog = self.wait_css("the dialog", within, &tid("dialog")).await;
        for (name, value) in fields {
            let css = format!("[name=\"{name}\"]");
            let input = dialog
                .find(Locator::Css(&css))
                .await
                .unwrap_or_else(|e| panic!("dialog field {name}: {e}"));
            let tag = input.tag_name().await.unwrap_or_default().to_lowercase();
            if let (true, Some(label)) = (tag == "select", value.strip_prefix('~')) {
                // `~text`: the option whose label contains `text`, in any case.
                let label = label.to_lowercase();
                let options = input.find_all(Locator::Css("option")).await.unwrap_or_default();
                let mut chosen = false;
                for o in options {
                    if o.text().await.unwrap_or_default().to_lowercase().contains(&label) {
                        o.click()
                            .await
                            .unwrap_or_else(|e| panic!("choosing {label} in {name}: {e}"));
                        chosen = true;
                        break;
                    }
                }
                assert!(chosen, "no option of {name} mentions {label:?}");
            } else if tag == "select" {
                input
                    .select_by_value(value)
                    .await
                    .unwrap_or_else(|e| panic!("choosing {value} in {name}: {e}"));
            } else {
                input.clear().await.ok();
                input
                    .send_keys(value)
                    .await
                    .unwrap_or_else(|e| panic!("typing into {name}: {e}"));
            }
        }
        let others = dialog
            .find_all(Locator::Css("input[required], textarea[required]"))
            .await
            .unwrap_or_default();
        for input in others {
            let empty = input.prop("value").await.ok().flatten().unwrap_or_default().is_empty();
            if empty {
                input.send_keys(filler).await.ok();
            }
        }
        let ok = dialog
            .find(Locator::Css(&tid("dialog-ok")))
            .await
            .unwrap_or_else(|e| panic!("dialog-ok: {e}"));
        ok.click().await.unwrap_or_else(|e| panic!("clicking dialog-ok: {e}"));
    }

    /// The page's console errors and uncaught exceptions since the last call (chromedriver
    /// hands each entry out once).
    pub async fn console_errors(&self) -> Vec<String> {
        let v = match self.client.issue_cmd(BrowserLog).await {
            Ok(v) => v,
            Err(e) => panic!("reading the browser's console log: {e}"),
        };
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| {
                format!(
                    "{} {}",
                    e["source"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    /// Fails the test if the page logged an error or threw since the last look.
    pub async fn assert_console_clean(&self, when: &str) {
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "console errors {when}:\n{}", errors.join("\n"));
    }

    /// Whether the modal dialog is open now.
    pub async fn dialog_open(&self) -> bool {
        match self.client.find(Locator::Css(&tid("dialog"))).await {
            Ok(d) => d.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .chars()
        .take(48)
        .collect()
}
