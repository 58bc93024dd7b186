//! A real headless browser for the dashboard tests: Debian's `chromium`
//! driven over WebDriver by its `chromedriver`, through fantoccini.
//!
//! Each [`Browser`] runs its own chromedriver on an ephemeral port (in its own
//! process group, so the Chromium it starts goes away with it) and a fresh
//! profile directory. Missing packages fail the test with the command that
//! installs them; they are never skipped.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a WebDriver wait may take before the test fails. Generous: a
/// loaded two-core CI machine starts Chromium slowly.
pub const WAIT: Duration = Duration::from_secs(30);

/// The command that installs what the browser tests need.
pub const INSTALL_HINT: &str =
    "apt-get update && apt-get install -y chromium chromium-driver (scripts/test does this)";

/// The window the dashboard is tested (and photographed) at.
pub const WINDOW: (u32, u32) = (1280, 800);

fn find_program(env: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found on PATH (or set {env}): the dashboard tests need a real browser; install it with: {INSTALL_HINT}",
        names[0]
    );
}

/// A headless Chromium session and the chromedriver serving it.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// The chromedriver process; dropping it kills its whole process group
/// (chromedriver and every Chromium process it started), also when a test
/// fails half-way through starting the browser.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: killpg(2) on the process group we created for chromedriver
        // (its pid), which we have not reaped yet.
        unsafe {
            libc::killpg(self.0.id() as i32, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at [`WINDOW`] size.
    pub async fn start() -> Browser {
        let chromium = find_program("CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = find_program("CHROMEDRIVER", &["chromedriver"]);
        let profile = tempfile::tempdir().expect("browser profile dir");
        let driver = Command::new(&chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: Drop kills chromedriver and every
            // Chromium process it started in one go.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install with: {INSTALL_HINT}",
                    chromedriver.display()
                )
            });
        let mut driver = Driver(driver);
        let port = read_driver_port(&mut driver.0).await;
        let (w, h) = WINDOW;
        let args = vec![
            "--headless=new".to_owned(),
            // CI runs as root, where Chromium's sandbox cannot start.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-extensions".to_owned(),
            "--no-first-run".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            "--lang=en-US".to_owned(),
            format!("--window-size={w},{h}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": args,
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let url = format!("http://127.0.0.1:{port}");
        let client = tokio::time::timeout(
            Duration::from_secs(90),
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .unwrap_or_else(|_| panic!("chromium did not start within 90 s"))
        .unwrap_or_else(|e| {
            panic!(
                "cannot start a chromium session ({}): {e}",
                chromium.display()
            )
        });
        let browser = Browser {
            client,
            _driver: driver,
            _profile: profile,
        };
        browser.fit_viewport().await;
        browser
    }

    /// Resizes the window so that the page's viewport is exactly [`WINDOW`]
    /// (headless window sizes include browser chrome on some versions).
    async fn fit_viewport(&self) {
        let (w, h) = WINDOW;
        for _ in 0..3 {
            let inner = self
                .eval("return [window.innerWidth, window.innerHeight];")
                .await;
            let iw = inner[0].as_u64().unwrap_or(0) as u32;
            let ih = inner[1].as_u64().unwrap_or(0) as u32;
            if (iw, ih) == (w, h) {
                return;
            }
            let (ow, oh) = self.client.get_window_size().await.expect("window size");
            let ow = (ow as u32 + w).saturating_sub(iw);
            let oh = (oh as u32 + h).saturating_sub(ih);
            self.client
                .set_window_size(ow, oh)
                .await
                .expect("set window size");
        }
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script` with `args` (`arguments[0]`...) in the page.
    pub async fn eval_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until the element `css` exists and is displayed; returns it.
    pub async fn visible(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && e.is_displayed().await.unwrap_or(false)
            {
                return e;
            }
            if Instant::now() >= deadline {
                panic!("{css} was not displayed within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .eval_with(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// Waits until the text of `css` satisfies `ok`; returns the text.
    pub async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(css).await;
            if let Some(t) = &text
                && ok(t.trim())
            {
                return t.trim().to_owned();
            }
            if Instant::now() >= deadline {
                panic!("{css}: expected {what} within {WAIT:?}, last saw {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }

    /// Ends the session and stops chromedriver (Drop does this too, bluntly).
    pub async fn quit(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

/// Reads `... started successfully on port N` from chromedriver's output
/// and waits until the port accepts connections.
async fn read_driver_port(driver: &mut Child) -> u16 {
    let out = driver.stdout.take().expect("chromedriver stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut sent = false;
        let mut line = String::new();
        // Keep draining after the port line so chromedriver never blocks on a
        // full pipe.
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if !sent && let Some(rest) = line.split("successfully on port ").nth(1) {
                let port = rest.trim().trim_end_matches('.').parse::<u16>().ok();
                let _ = tx.send(port);
                sent = true;
            }
            line.clear();
        }
    });
    let port = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(port)) => port,
        Ok(None) => panic!("chromedriver printed an unreadable port"),
        Err(_) => {
            panic!("chromedriver did not report its port within 30 s; install with: {INSTALL_HINT}")
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver reported port {port} but does not accept connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    port
}
