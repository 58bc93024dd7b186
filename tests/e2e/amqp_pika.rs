//! The six RabbitMQ tutorials, as their Python programs (pika 1.x) have them,
//! run against the gateway with nothing changed but the port and a way to end
//! (`tests/pika/*.py`; each file marks its changes).
//!
//! Every test starts a gateway, runs the programs with `python3` and asserts on
//! what they print. pika must be installed (`python3 -m pip install pika`); a
//! machine without it fails these tests rather than skipping them.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_e2e::Gateway;
use tether_e2e::amqp::*;

/// How long a tutorial program may take before the test gives up on it.
const PROGRAM_WAIT: Duration = Duration::from_secs(15);
/// Receivers give up on their own after this many seconds (`$TIMEOUT`).
const RECEIVER_TIMEOUT: &str = "12";

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pika")
        .join(name)
}

/// Fails the test, with the command that fixes it, when pika is missing.
fn require_pika() {
    let out = Command::new("python3")
        .args(["-c", "import pika; print(pika.__version__)"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "pika is not installed for python3 (run `python3 -m pip install pika`):\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 is needed for the pika tutorial tests: {e}"),
    }
}

/// A running tutorial program and everything it has printed.
struct Program {
    name: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut t = sink.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
    });
    text
}

/// Starts `python3 tests/pika/<name> args…` against `gw`'s AMQP port.
fn run(gw: &Gateway, name: &str, args: &[&str], env: &[(&str, &str)]) -> Program {
    let mut cmd = Command::new("python3");
    cmd.arg(script(name))
        .args(args)
        .env(
            "AMQP_PORT",
            gw.amqp.expect("amqp listener").port().to_string(),
        )
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TIMEOUT", RECEIVER_TIMEOUT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn python3");
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    Program {
        name: format!("{name} {}", args.join(" ")),
        child,
        stdout,
        stderr,
    }
}

impl Program {
    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn report(&self) -> String {
        format!(
            "{}\n--- stdout\n{}--- stderr\n{}",
            self.name,
            self.stdout(),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits until the program has printed `needle`.
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + PROGRAM_WAIT;
        while !self.stdout().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} from {}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the program to exit successfully; returns its stdout.
    fn finish(mut self) -> String {
        let deadline = Instant::now() + PROGRAM_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                assert!(status.success(), "{status}: {}", self.report());
                return self.stdout();
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within {PROGRAM_WAIT:?}: {}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines a program printed that report a message (` [x] …`), in order.
fn received(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with(" [x] ") && !l.starts_with(" [x] Sent"))
        .collect()
}

/// Waits until `queue` has `n` consumers (passive declares on fresh channels:
/// a 404 closes the channel it was asked on).
fn wait_consumers(gw: &Gateway, queue: &str, n: u32) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let conn = connect(gw.amqp.unwrap()).await;
        let deadline = Instant::now() + PROGRAM_WAIT;
        loop {
            let ch = conn.create_channel().await.expect("channel");
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            if let Ok(q) = ch
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await
                && q.consumer_count() >= n
            {
                return;
            }
            assert!(Instant::now() < deadline, "{queue} never had {n} consumers");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn hello_world_receiver_gets_the_message() {
    require_pika();
    let gw = Gateway::start();
    let receiver = run(&gw, "receive.py", &[], &[("MESSAGES", "1")]);
    let sent = run(&gw, "send.py", &[], &[]).finish();
    assert!(sent.contains(" [x] Sent 'Hello World!'"), "{sent}");
    let got = receiver.finish();
    assert!(got.contains(" [*] Waiting for messages."), "{got}");
    assert_eq!(received(&got), [" [x] Received b'Hello World!'"]);
}

#[test]
fn work_queue_dispatches_fairly_with_prefetch_one() {
    require_pika();
    let gw = Gateway::start();
    let w1 = run(&gw, "worker.py", &[], &[]);
    let w2 = run(&gw, "worker.py", &[], &[]);
    wait_consumers(&gw, "task_queue", 2);

    // Whichever worker gets "Slow.." sleeps two seconds (one per dot). With
    // prefetch_count=1 it gets nothing more until it acks, so the tasks sent
    // meanwhile all go to the other worker.
    let out = run(&gw, "new_task.py", &["Slow.."], &[]).finish();
    assert!(out.contains(" [x] Sent Slow.."), "{out}");
    let deadline = Instant::now() + PROGRAM_WAIT;
    while !(w1.stdout() + &w2.stdout()).contains(" [x] Received Slow..") {
        assert!(Instant::now() < deadline, "nobody took the slow task");
        std::thread::sleep(Duration::from_millis(10));
    }
    let quick: Vec<Program> = ["1", "2", "3"]
        .into_iter()
        .map(|n| run(&gw, "new_task.py", &["Quick", n], &[]))
        .collect();
    for p in quick {
        p.finish();
    }
    let deadline = Instant::now() + PROGRAM_WAIT;
    while (w1.stdout() + &w2.stdout()).matches(" [x] Done").count() < 4 {
        assert!(
            Instant::now() < deadline,
            "the tasks were not all done:\n{}\n{}",
            w1.report(),
            w2.report()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut a, mut b) = (w1.stdout(), w2.stdout());
    if !a.contains("Slow..") {
        std::mem::swap(&mut a, &mut b);
    }
    let tasks = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.strip_prefix(" [x] Received "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(tasks(&a), ["Slow.."], "the busy worker:\n{a}");
    let mut quick = tasks(&b);
    quick.sort();
    assert_eq!(
        quick,
        ["Quick 1", "Quick 2", "Quick 3"],
        "the idle worker:\n{b}"
    );

    // The tutorial's queue is durable and its messages persistent: both hold.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (_c, ch) = channel(gw.amqp.unwrap()).await;
        let redeclare = QueueDeclareOptions {
            durable: false,
            ..Default::default()
        };
        let e = ch
            .queue_declare("task_queue".into(), redeclare, FieldTable::default())
            .await
            .expect_err("task_queue must be durable: a non-durable redeclare is refused");
        assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");
    });
}

#[test]
fn publish_subscribe_every_receiver_gets_every_log() {
    require_pika();
    let gw = Gateway::start();
    let env = [("MESSAGES", "3")];
    let r1 = run(&gw, "receive_logs.py", &[], &env);
    let r2 = run(&gw, "receive_logs.py", &[], &env);
    // They print this once their server-named queue is bound.
    r1.wait_for(" [*] Waiting for logs.");
    r2.wait_for(" [*] Waiting for logs.");
    for msg in ["info: one", "warning: two", "error: three"] {
        run(&gw, "emit_log.py", &msg.split(' ').collect::<Vec<_>>(), &[]).finish();
    }
    let want = [
        " [x] b'info: one'",
        " [x] b'warning: two'",
        " [x] b'error: three'",
    ];
    assert_eq!(received(&r1.finish()), want);
    assert_eq!(received(&r2.finish()), want);
}

#[test]
fn routing_delivers_only_the_chosen_severities() {
    require_pika();
    let gw = Gateway::start();
    let errors = run(
        &gw,
        "receive_logs_direct.py",
        &["error"],
        &[("MESSAGES", "1")],
    );
    let all = run(
        &gw,
        "receive_logs_direct.py",
        &["info", "warning", "error"],
        &[("MESSAGES", "3")],
    );
    errors.wait_for(" [*] Waiting for logs.");
    all.wait_for(" [*] Waiting for logs.");
    // Severities nobody (or not everybody) asked for go first: a receiver that
    // wrongly got one would count it and miss the last message it expects.
    for (severity, msg) in [
        ("info", "all is well"),
        ("warning", "disk 80%"),
        ("debug", "noise"),
        ("error", "Run. Run. Or it will explode."),
    ] {
        let out = run(&gw, "emit_log_direct.py", &[severity, msg], &[]).finish();
        assert!(
            out.contains(&format!(" [x] Sent {severity}:{msg}")),
            "{out}"
        );
    }
    assert_eq!(
        received(&errors.finish()),
        [" [x] error:b'Run. Run. Or it will explode.'"]
    );
    assert_eq!(
        received(&all.finish()),
        [
            " [x] info:b'all is well'",
            " [x] warning:b'disk 80%'",
            " [x] error:b'Run. Run. Or it will explode.'",
        ]
    );
}

#[test]
fn topics_match_star_and_hash_patterns() {
    require_pika();
    let gw = Gateway::start();
    let kern = run(
        &gw,
        "receive_logs_topic.py",
        &["kern.*"],
        &[("MESSAGES", "2")],
    );
    let critical = run(
        &gw,
        "receive_logs_topic.py",
        &["*.critical"],
        &[("MESSAGES", "2")],
    );
    let both = run(
        &gw,
        "receive_logs_topic.py",
        &["kern.*", "*.critical"],
        &[("MESSAGES", "3")],
    );
    let everything = run(&gw, "receive_logs_topic.py", &["#"], &[("MESSAGES", "4")]);
    for r in [&kern, &critical, &both, &everything] {
        r.wait_for(" [*] Waiting for logs.");
    }
    // Ordered so that each receiver's last expected message comes after every
    // message it must not get.
    for key in [
        "cron.warning",
        "kern.info",
        "auth.critical",
        "kern.critical",
    ] {
        run(&gw, "emit_log_topic.py", &[key, "msg"], &[]).finish();
    }
    assert_eq!(
        received(&kern.finish()),
        [" [x] kern.info:b'msg'", " [x] kern.critical:b'msg'"]
    );
    assert_eq!(
        received(&critical.finish()),
        [" [x] auth.critical:b'msg'", " [x] kern.critical:b'msg'"]
    );
    assert_eq!(
        received(&both.finish()),
        [
            " [x] kern.info:b'msg'",
            " [x] auth.critical:b'msg'",
            " [x] kern.critical:b'msg'",
        ]
    );
    assert_eq!(
        received(&everything.finish()),
        [
            " [x] cron.warning:b'msg'",
            " [x] kern.info:b'msg'",
            " [x] auth.critical:b'msg'",
            " [x] kern.critical:b'msg'",
        ]
    );
}

#[test]
fn rpc_client_gets_fibonacci_from_server() {
    require_pika();
    let gw = Gateway::start();
    let server = run(&gw, "rpc_server.py", &[], &[("MESSAGES", "1")]);
    server.wait_for(" [x] Awaiting RPC requests");
    let out = run(&gw, "rpc_client.py", &["10"], &[]).finish();
    assert!(out.contains(" [x] Requesting fib(10)"), "{out}");
    assert!(out.contains(" [.] Got 55"), "{out}");
    assert!(server.finish().contains(" [.] fib(10)"));
}
