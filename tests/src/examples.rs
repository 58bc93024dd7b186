//! Runs the programs in `examples/` as child processes, the way a user would,
//! and captures what they print so a test can wait for a line or check the
//! outcome they report.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{Gateway, Log, wait_with_timeout};

/// Path of a built example, e.g. `sensor-fleet`.
///
/// `TETHER_EXAMPLES_DIR` overrides the directory; otherwise the examples are
/// found next to the test executable, in `target/<profile>/examples/`, where
/// `cargo build -p tether-examples --examples` (run by `scripts/test`) puts them.
pub fn example_bin(name: &str) -> PathBuf {
    let dir = match std::env::var("TETHER_EXAMPLES_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/e2e-<hash> -> target/<profile>/examples
            exe.parent()
                .and_then(|d| d.parent())
                .expect("target dir")
                .join("examples")
        }
    };
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the examples first with \
         `cargo build -p tether-examples --examples` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Address flags pointing at `gw`, for the listeners named in `which`
/// (`"mqtt"`, `"amqp"`, `"http"`): each example takes only the flags of the
/// protocols it speaks.
pub fn address_flags(gw: &Gateway, which: &[&str]) -> Vec<String> {
    let mut flags = Vec::new();
    for listener in which {
        match *listener {
            "mqtt" => flags.extend(["--mqtt".to_owned(), gw.mqtt_addr().to_string()]),
            "amqp" => {
                let a = gw.amqp.expect("amqp listener");
                flags.extend(["--amqp".to_owned(), format!("amqp://guest:guest@{a}/%2f")]);
            }
            "http" => {
                let a = gw.http.expect("http listener");
                flags.extend(["--endpoint".to_owned(), format!("http://{a}")]);
            }
            other => panic!("unknown listener {other}"),
        }
    }
    flags
}

/// A running example. Its stdout and stderr are captured line by line.
pub struct ExampleRun {
    name: String,
    child: Option<Child>,
    output: Log,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl ExampleRun {
    /// Starts example `name` with `args` (only the flags it understands).
    pub fn start(name: &str, args: &[String]) -> ExampleRun {
        let mut child = Command::new(example_bin(name))
            .args(args)
            .env_remove("MQTT_ADDR")
            .env_remove("AMQP_URL")
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn example {name}: {e}"));
        let output = Log::default();
        let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        let mut readers = Vec::new();
        for stream in streams.into_iter().flatten() {
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    match line {
                        Ok(l) => output.push(&l),
                        Err(_) => break,
                    }
                }
                output.close();
            }));
        }
        ExampleRun {
            name: name.to_owned(),
            child: Some(child),
            output,
            readers,
        }
    }

    /// Everything printed so far (stdout and stderr, interleaved by line).
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Waits until a printed line matches `re`; panics with the output otherwise.
    pub fn wait_for_line(&self, re: &str, timeout: Duration) -> Vec<String> {
        let re = regex::Regex::new(re).expect("regex");
        self.output.wait_for(&re, timeout).unwrap_or_else(|| {
            panic!(
                "{} did not print /{re}/ within {timeout:?}:\n{}",
                self.name,
                self.output()
            )
        })
    }

    /// Waits for the example to exit (killing it after `timeout`) and returns
    /// its status and everything it printed.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let status = wait_with_timeout(&mut child, timeout);
        // The reader threads end at EOF, right after the exit.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        (status, self.output())
    }

    /// Waits for a successful exit; panics with the output otherwise.
    pub fn succeeds(self, timeout: Duration) -> String {
        let name = self.name.clone();
        let (status, output) = self.finish(timeout);
        assert!(status.success(), "{name} failed ({status}):\n{output}");
        output
    }

    /// Kills the example with SIGKILL, as a crash or `kill -9` would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ExampleRun {
    fn drop(&mut self) {
        self.kill9();
    }
}
