//! The binary: starts on its defaults, refuses bad configuration with one line,
//! exits 0 on SIGTERM.

use std::process::Command;
use std::time::Duration;

use tether_e2e::{Gateway, tether_bin};

#[test]
fn starts_lists_listeners_and_exits_zero_on_sigterm() {
    let mut gw = Gateway::start();
    assert!(gw.mqtt.is_some(), "mqtt listener address logged");
    assert!(gw.http.is_some(), "http listener address logged");
    // Something listens there.
    std::net::TcpStream::connect(gw.mqtt_addr()).expect("mqtt port accepts");
    let status = gw.terminate();
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        gw.log().text()
    );
    assert!(gw.log().text().contains("shutting down"));
}

fn run_with_env(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(tether_bin());
    cmd.env_clear()
        .env("TETHER_STORAGE__PATH", dir.path())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = tether_e2e::wait_with_timeout(&mut child, Duration::from_secs(20));
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (status.code().unwrap_or(-1), text)
}

fn assert_one_clear_line(text: &str, needle: &str) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{text}");
    assert!(
        lines[0].contains(needle),
        "line should name `{needle}`: {}",
        lines[0]
    );
    assert!(
        !text.contains("panicked") && !text.contains("backtrace"),
        "{text}"
    );
}

#[test]
fn unknown_key_is_refused_with_one_line() {
    let (code, text) = run_with_env(&[("TETHER_MQTT__LISTEN_ON", "127.0.0.1:0")], &[]);
    assert_ne!(code, 0);
    assert_one_clear_line(&text, "listen_on");
}

#[test]
fn malformed_address_is_refused_with_one_line() {
    let (code, text) = run_with_env(&[("TETHER_MQTT__LISTEN", "not-an-address")], &[]);
    assert_ne!(code, 0);
    assert_one_clear_line(&text, "mqtt.listen");
}

#[test]
fn unreadable_config_file_is_refused_with_one_line() {
    let (code, text) = run_with_env(&[], &["--config", "/nonexistent/tether.toml"]);
    assert_ne!(code, 0);
    assert_one_clear_line(&text, "/nonexistent/tether.toml");
}

#[test]
fn port_in_use_is_refused_with_one_line() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, text) = run_with_env(
        &[
            ("TETHER_MQTT__LISTEN", &addr),
            ("TETHER_AMQP__LISTEN", "127.0.0.1:0"),
            ("TETHER_HTTP__LISTEN", "127.0.0.1:0"),
            ("RUST_LOG", "off"),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert_one_clear_line(&text, "mqtt.listen");
}

#[test]
fn version_and_help_work() {
    let (code, text) = run_with_env(&[], &["--version"]);
    assert_eq!(code, 0);
    assert!(text.starts_with("tether "), "{text}");
    let (code, text) = run_with_env(&[], &["--help"]);
    assert_eq!(code, 0);
    assert!(text.contains("--config"), "{text}");
}
