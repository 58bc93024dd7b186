//! Test harness: starts the real `tether` binary on ephemeral ports with its
//! own data directory, learns the bound addresses from its startup log, and
//! stops it with SIGTERM (or SIGKILL for crash tests).
//!
//! Tests in `e2e/` drive it with real clients (rumqttc, mosquitto_pub/sub,
//! raw TCP). Nothing here mocks the gateway.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod admin;
pub mod amqp;
pub mod aws;
pub mod browser;
pub mod examples;
pub mod mqtt;
pub mod prom;
pub mod raw;
pub mod raw_amqp;
pub mod tls;

/// How long to wait for the gateway to start or stop.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of the `tether` binary built next to the test executable.
pub fn tether_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TETHER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/tether
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("tether");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p tether-gateway` (scripts/test does)",
        bin.display()
    );
    bin
}

#[derive(Default)]
struct LogState {
    text: String,
    closed: bool,
}

/// Captured log output of a gateway process.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<LogState>, Condvar)>);

impl Log {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().text.clone()
    }

    /// Waits until a line matching `re` is logged; returns the captures of the first match.
    pub fn wait_for(&self, re: &regex::Regex, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.0;
        let mut st = lock.lock().unwrap();
        loop {
            if let Some(c) = re.captures(&st.text) {
                return Some(
                    c.iter()
                        .map(|m| m.map_or(String::new(), |m| m.as_str().to_owned()))
                        .collect(),
                );
            }
            let now = Instant::now();
            if now >= deadline || st.closed {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    fn push(&self, line: &str) {
        let (lock, cv) = &*self.0;
        let mut st = lock.lock().unwrap();
        st.text.push_str(line);
        st.text.push('\n');
        cv.notify_all();
    }

    fn close(&self) {
        let (lock, cv) = &*self.0;
        lock.lock().unwrap().closed = true;
        cv.notify_all();
    }
}

/// Builds a gateway process with extra configuration.
#[derive(Default)]
pub struct GatewayBuilder {
    env: Vec<(String, String)>,
    config: Option<String>,
    data_dir: Option<PathBuf>,
}

impl GatewayBuilder {
    /// Sets a `TETHER_*` environment variable (or any other).
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// Uses this TOML text as the `--config` file.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Uses an existing data directory (for restart tests).
    pub fn data_dir(mut self, dir: PathBuf) -> Self {
        self.data_dir = Some(dir);
        self
    }

    /// Starts the gateway and waits until its listeners are up.
    pub fn start(self) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = self
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let mut cmd = Command::new(tether_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,tether_gateway=debug")
            .env("TETHER_MQTT__LISTEN", "127.0.0.1:0")
            .env("TETHER_AMQP__LISTEN", "127.0.0.1:0")
            .env("TETHER_HTTP__LISTEN", "127.0.0.1:0")
            // TLS listeners are on only when a test configures a certificate.
            .env("TETHER_MQTT__TLS_LISTEN", "127.0.0.1:0")
            .env("TETHER_AMQP__TLS_LISTEN", "127.0.0.1:0")
            .env("TETHER_HTTP__TLS_LISTEN", "127.0.0.1:0")
            .env("TETHER_STORAGE__PATH", &data);
        if let Some(text) = &self.config {
            let path = tmp.path().join("tether.toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tether");
        let log = Log::default();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    match line {
                        Ok(l) => log.push(&l),
                        Err(_) => break,
                    }
                }
                log.close();
            });
        }
        let started = regex::Regex::new(r"tether started").unwrap();
        if log.wait_for(&started, STARTUP_TIMEOUT).is_none() {
            let _ = child.kill();
            panic!("tether did not start:\n{}", log.text());
        }
        let addr = |proto: &str| {
            let re =
                regex::Regex::new(&format!(r"listening protocol={proto} address=(\S+)")).unwrap();
            // With `log.format = "json"` the addresses are read from the
            // start-up line's message instead.
            let summary =
                regex::Regex::new(&format!(r#"tether started: [^"\n]*\b{proto}=([^\s"]+)"#))
                    .unwrap();
            log.wait_for(&re, Duration::from_millis(10))
                .or_else(|| log.wait_for(&summary, Duration::from_millis(10)))
                .and_then(|c| c[1].parse::<SocketAddr>().ok())
        };
        Gateway {
            mqtt: addr("mqtt"),
            amqp: addr("amqp"),
            http: addr("http"),
            child: Some(child),
            log,
            data,
            _tmp: tmp,
        }
    }
}

/// A running `tether` process.
pub struct Gateway {
    /// MQTT listener address.
    pub mqtt: Option<SocketAddr>,
    /// AMQP listener address.
    pub amqp: Option<SocketAddr>,
    /// HTTP listener address.
    pub http: Option<SocketAddr>,
    /// The data directory.
    pub data: PathBuf,
    child: Option<Child>,
    log: Log,
    _tmp: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway with default test settings.
    pub fn start() -> Gateway {
        Gateway::builder().start()
    }

    /// A builder for custom settings.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The MQTT address (panics if the listener is disabled).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt.expect("mqtt listener")
    }

    /// The address of the listener logged for `protocol` (`mqtt`, `mqtts`,
    /// `amqps`, `https`, `ws`, `wss`, ...), if it is on.
    pub fn addr(&self, protocol: &str) -> Option<SocketAddr> {
        let re = regex::Regex::new(&format!(r"listening protocol={protocol} address=(\S+)"))
            .expect("protocol name");
        self.log
            .wait_for(&re, Duration::from_millis(10))
            .and_then(|c| c[1].parse().ok())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The process log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        wait_with_timeout(&mut child, STARTUP_TIMEOUT)
    }

    /// Kills the process with SIGKILL (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits for `child` to exit, killing it after `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
