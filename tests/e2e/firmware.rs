//! `tether-firmware` against a running gateway: the client core through its
//! async driver (tokio sockets via `embedded-io-adapters`) and its blocking
//! driver (std sockets), and the emulated MCU (QEMU lm3s6965evb) whose UART0
//! carries the MQTT byte stream.
//!
//! A rumqttc client watches the telemetry topics; readings come from the
//! simulated BME280 through the real driver, so payloads are the JSON a
//! device publishes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use embedded_io_adapters::tokio_1::FromTokio;
use tether_e2e::mqtt::WAIT;
use tether_e2e::mqtt::v4::{self, Client as Watcher};
use tether_e2e::{Gateway, tether_bin, wait_with_timeout};
use tether_firmware::backoff::BackoffConfig;
use tether_firmware::client::{Client, Config, ConnectionError, Event, State, Will};
use tether_firmware::driver::{Async, Blocking, Clock, DriverError};
use tether_firmware::outbox::OverflowPolicy;
use tether_firmware::protocols::mqtt::{self, Packet, ProtocolVersion, QoS};
use tether_firmware::sensor::bme280::{ADDRESS_PRIMARY, Bme280};
use tether_firmware::sensor::sim::SimulatedBme280;
use tether_firmware::sensor::telemetry::Telemetry;

/// Bytes of topic + payload per outbox slot.
const SLOT: usize = 160;
/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(500);

// --- the device's world: clock, delay, transport ---------------------------------------

/// Milliseconds since the device "powered on".
#[derive(Clone, Copy)]
struct Ms(Instant);

impl Clock for Ms {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// The simulated BME280 converts instantly: no need to wait for it.
struct NoDelay;

impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

/// The async delay, on tokio's timer.
struct TokioDelay;

impl embedded_hal_async::delay::DelayNs for TokioDelay {
    async fn delay_ns(&mut self, ns: u32) {
        tokio::time::sleep(Duration::from_nanos(ns.into())).await;
    }
}

type Tcp = FromTokio<tokio::net::TcpStream>;

/// An async transport that keeps a copy of every byte the device writes.
struct Recorder {
    inner: Tcp,
    written: Arc<Mutex<Vec<u8>>>,
}

impl embedded_io_async::ErrorType for Recorder {
    type Error = std::io::Error;
}

impl embedded_io_async::Read for Recorder {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        self.inner.read(buf).await
    }
}

impl embedded_io_async::Write for Recorder {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        let n = self.inner.write(buf).await?;
        self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    async fn flush(&mut self) -> Result<(), std::io::Error> {
        self.inner.flush().await
    }
}

/// What a device saw, owned (driver events borrow the client).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Connected(bool),
    Subscribed(Option<QoS>),
    Delivered(u16),
    Rejected(u16, u8),
    Command {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
    },
}

fn own(e: Event<'_>) -> Seen {
    match e {
        Event::Connected { session_present } => Seen::Connected(session_present),
        Event::Subscribed { granted } => Seen::Subscribed(granted),
        Event::Delivered { packet_id } => Seen::Delivered(packet_id),
        Event::Rejected { packet_id, reason } => Seen::Rejected(packet_id, reason),
        Event::Command(c) => Seen::Command {
            topic: c.topic.to_owned(),
            payload: c.payload.to_vec(),
            qos: c.qos,
        },
    }
}

/// A device: the client core with an `N`-reading outbox, its async driver,
/// a simulated BME280 and the telemetry topic.
struct Device<const N: usize> {
    id: &'static str,
    client: Client<'static, N, SLOT>,
    driver: Async<'static>,
    clock: Ms,
    sensor: Bme280<SimulatedBme280>,
    seq: u32,
}

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn topic(id: &str) -> String {
    format!("sensors/{id}/telemetry")
}

/// Config for `id` with a fast backoff, so reconnect tests take milliseconds.
fn config(id: &'static str) -> Config<'static> {
    Config::new(id).with_backoff(BackoffConfig {
        initial_ms: 100,
        max_ms: 1_000,
    })
}

impl<const N: usize> Device<N> {
    fn new(id: &'static str, config: Config<'static>) -> Self {
        let sensor = Bme280::new(
            SimulatedBme280::new(ADDRESS_PRIMARY),
            ADDRESS_PRIMARY,
            &mut NoDelay,
        )
        .expect("simulated BME280");
        Self {
            id,
            client: Client::new(config, leak(256)),
            driver: Async::new(leak(512)),
            clock: Ms(Instant::now()),
            sensor,
            seq: 0,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Measures, formats and queues the next reading; returns its sequence number.
    fn queue_reading(&mut self, qos: QoS) -> u32 {
        let reading = self.sensor.measure(&mut NoDelay).expect("reading");
        let mut payload = [0u8; 128];
        let seq = self.seq;
        let n = Telemetry {
            device: self.id,
            reading,
            seq,
        }
        .write_json(&mut payload)
        .expect("json");
        self.client
            .publish(&topic(self.id), &payload[..n], qos)
            .expect("queued");
        self.seq += 1;
        seq
    }

    /// Opens TCP to `addr` when the backoff allows, retrying refused
    /// connections (the gateway may be down) for up to `within`.
    async fn open(&mut self, addr: SocketAddr, within: Duration) -> Tcp {
        let give_up = Instant::now() + within;
        loop {
            if let Some(at) = self.client.reconnect_at() {
                let wait = at.saturating_sub(self.now());
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    s.set_nodelay(true).unwrap();
                    self.client.on_transport_open(self.now());
                    return FromTokio::new(s);
                }
                Err(e) => {
                    assert!(Instant::now() < give_up, "cannot reach {addr}: {e}");
                    self.client.on_transport_closed(self.now());
                }
            }
        }
    }

    /// The next event within `wait` (`None` if nothing happened).
    async fn next<T>(
        &mut self,
        io: &mut T,
        wait: Duration,
    ) -> Result<Option<Seen>, DriverError<T::Error>>
    where
        T: embedded_io_async::Read + embedded_io_async::Write,
    {
        let until = self.now() + wait.as_millis() as u64;
        let e = self
            .driver
            .poll(&mut self.client, io, &self.clock, &mut TokioDelay, until)
            .await?;
        Ok(e.map(own))
    }

    /// Runs the connection until `done` holds (checked after each event and
    /// each quiet `step`), returning the events; panics after [`WAIT`].
    async fn run_until<T>(
        &mut self,
        io: &mut T,
        mut done: impl FnMut(&Self, &[Seen]) -> bool,
    ) -> Vec<Seen>
    where
        T: embedded_io_async::Read + embedded_io_async::Write,
        T::Error: std::fmt::Debug,
    {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while !done(self, &seen) {
            assert!(
                Instant::now() < deadline,
                "device {} stuck; saw {seen:?}",
                self.id
            );
            match self.next(io, Duration::from_millis(50)).await {
                Ok(Some(e)) => seen.push(e),
                Ok(None) => {}
                Err(e) => panic!(
                    "device {} lost its connection: {e:?}; saw {seen:?}",
                    self.id
                ),
            }
        }
        seen
    }

    /// Opens TCP and runs until CONNACK; returns the transport and session-present.
    async fn connect(&mut self, addr: SocketAddr) -> (Tcp, bool) {
        let mut io = self.open(addr, WAIT).await;
        let seen = self
            .run_until(&mut io, |_, s| {
                s.iter().any(|e| matches!(e, Seen::Connected(_)))
            })
            .await;
        let present = seen.iter().find_map(|e| match e {
            Seen::Connected(p) => Some(*p),
            _ => None,
        });
        (io, present.expect("connected"))
    }

    /// Runs until everything queued is delivered (and subscriptions answered).
    async fn settle<T>(&mut self, io: &mut T) -> Vec<Seen>
    where
        T: embedded_io_async::Read + embedded_io_async::Write,
        T::Error: std::fmt::Debug,
    {
        self.run_until(io, |d, _| d.client.is_idle()).await
    }
}

/// A rumqttc client subscribed at QoS 1 to `filter`.
async fn watch(gw: &Gateway, id: &str, filter: &str) -> Watcher {
    let mut w = Watcher::connect(v4::options(gw.mqtt_addr(), id)).await;
    w.subscribe(filter, v4::QoS::AtLeastOnce).await;
    w
}

/// The `seq` of a telemetry payload, checking the rest of its shape.
fn seq_of(device: &str, payload: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(payload)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(payload)));
    assert_eq!(v["device"], device, "{v}");
    let t = v["temperature"].as_f64().expect("temperature");
    let h = v["humidity"].as_f64().expect("humidity");
    let p = v["pressure"].as_f64().expect("pressure");
    assert!((20.0..30.0).contains(&t), "temperature {t}");
    assert!((0.0..=100.0).contains(&h), "humidity {h}");
    assert!((900.0..1100.0).contains(&p), "pressure {p}");
    v["seq"].as_u64().expect("seq")
}

/// The sequence numbers of the next `n` readings the watcher receives.
async fn receive_seqs(w: &mut Watcher, device: &str, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let p = w
            .recv(WAIT)
            .await
            .unwrap_or_else(|| panic!("only {} of {n} readings arrived: {seqs:?}", seqs.len()));
        assert_eq!(p.topic, topic(device));
        seqs.push(seq_of(device, &p.payload));
    }
    seqs
}

/// Password hash for `[[auth.users]]`, made by the binary under test.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(tether_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tether hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password.as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "hash-password failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// --- publishing ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_publishes_qos0_and_qos1_readings() {
    let gw = Gateway::start();
    let mut watcher = watch(&gw, "watcher", &topic("fw-basic")).await;
    let mut dev: Device<8> = Device::new("fw-basic", config("fw-basic"));
    let (mut io, present) = dev.connect(gw.mqtt_addr()).await;
    assert!(!present, "a new device has no session");

    dev.queue_reading(QoS::AtMostOnce);
    dev.queue_reading(QoS::AtLeastOnce);
    let seen = dev.settle(&mut io).await;
    assert_eq!(
        seen,
        [Seen::Delivered(1)],
        "the QoS 1 reading is acknowledged"
    );

    let first = watcher.expect().await;
    let second = watcher.expect().await;
    assert_eq!(seq_of("fw-basic", &first.payload), 0);
    assert_eq!(seq_of("fw-basic", &second.payload), 1);
    assert_eq!(first.qos, v4::QoS::AtMostOnce);
    assert_eq!(second.qos, v4::QoS::AtLeastOnce);
    assert!(dev.client.outbox().is_empty());
    assert_eq!(dev.client.outbox().stats().sent, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_buffers_readings_across_a_gateway_restart() {
    let mut gw = Gateway::start();
    let addr = gw.mqtt_addr();
    let device = "fw-restart";
    let mut watcher = watch(&gw, "watcher", &topic(device)).await;
    let mut dev: Device<32> = Device::new(device, config(device));
    let (mut io, _) = dev.connect(addr).await;
    for _ in 0..3 {
        dev.queue_reading(QoS::AtLeastOnce);
    }
    dev.settle(&mut io).await;
    assert_eq!(receive_seqs(&mut watcher, device, 3).await, [0, 1, 2]);

    // The gateway goes away; the device notices and keeps measuring.
    assert!(gw.terminate().success());
    let err = loop {
        match dev.next(&mut io, Duration::from_millis(100)).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, DriverError::Closed | DriverError::Io(_)),
        "{err:?}"
    );
    drop(io);
    assert_eq!(dev.client.state(), State::Disconnected);
    for _ in 3..10 {
        dev.queue_reading(QoS::AtLeastOnce);
    }
    // A reconnect attempt while the gateway is down is refused and backs off.
    let before = dev.client.backoff().failures();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    dev.client
        .on_transport_closed(dev.now().max(dev.client.reconnect_at().unwrap()));
    assert!(dev.client.backoff().failures() > before);
    assert_eq!(dev.client.outbox().len(), 7, "readings wait in the outbox");

    // A new gateway on the same port; the watcher comes back first.
    let gw2 = Gateway::builder().env("TETHER_MQTT__LISTEN", addr).start();
    assert_eq!(gw2.mqtt_addr(), addr);
    let mut watcher = watch(&gw2, "watcher", &topic(device)).await;
    let (mut io, present) = dev.connect(addr).await;
    assert!(!present, "the new gateway has no session for the device");
    dev.settle(&mut io).await;
    assert_eq!(
        receive_seqs(&mut watcher, device, 7).await,
        (3..10).collect::<Vec<_>>(),
        "every buffered reading, in order"
    );
    watcher.expect_none(QUIET).await;
    let stats = dev.client.outbox().stats();
    assert_eq!((stats.queued, stats.acked), (10, 10));
    assert_eq!((stats.dropped_oldest, stats.dropped_newest), (0, 0));
}

async fn overflow_delivers(policy: OverflowPolicy, device: &'static str) -> (Vec<u64>, u32, u32) {
    let gw = Gateway::start();
    let mut watcher = watch(&gw, "watcher", &topic(device)).await;
    let mut dev: Device<8> = Device::new(device, config(device).with_overflow(policy));
    // Twelve readings while offline into eight slots.
    for _ in 0..12 {
        dev.queue_reading(QoS::AtLeastOnce);
    }
    let (mut io, _) = dev.connect(gw.mqtt_addr()).await;
    dev.settle(&mut io).await;
    let seqs = receive_seqs(&mut watcher, device, 8).await;
    watcher.expect_none(QUIET).await;
    let s = *dev.client.outbox().stats();
    (seqs, s.dropped_oldest, s.dropped_newest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_drop_oldest_overflow_delivers_the_newest_readings() {
    let (seqs, oldest, newest) = overflow_delivers(OverflowPolicy::DropOldest, "fw-oldest").await;
    assert_eq!(seqs, (4..12).collect::<Vec<_>>());
    assert_eq!((oldest, newest), (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_drop_newest_overflow_delivers_the_first_readings() {
    let (seqs, oldest, newest) = overflow_delivers(OverflowPolicy::DropNewest, "fw-newest").await;
    assert_eq!(seqs, (0..8).collect::<Vec<_>>());
    assert_eq!((oldest, newest), (0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_resends_unacknowledged_qos1_with_dup_to_the_resumed_session() {
    let gw = Gateway::start();
    let device = "fw-dup";
    let mut watcher = watch(&gw, "watcher", &topic(device)).await;
    let mut dev: Device<8> = Device::new(device, config(device));
    let (mut io, _) = dev.connect(gw.mqtt_addr()).await;
    dev.queue_reading(QoS::AtLeastOnce);

    // The PUBLISH leaves, then the link dies before the PUBACK is read.
    let mut buf = [0u8; 512];
    let n = dev.client.poll_transmit(dev.now(), &mut buf).unwrap();
    let (first, _) = mqtt::decode(&buf[..n], ProtocolVersion::V3_1_1, n).unwrap();
    let Packet::Publish(first) = first else {
        panic!("expected PUBLISH, got {first:?}")
    };
    assert!(!first.dup);
    let packet_id = first.packet_id.expect("QoS 1");
    embedded_io_async::Write::write_all(&mut io, &buf[..n])
        .await
        .unwrap();
    // The gateway has it once the watcher does; then the device loses power.
    assert_eq!(seq_of(device, &watcher.expect().await.payload), 0);
    drop(io);
    dev.client.on_transport_closed(dev.now());
    assert_eq!(dev.client.outbox().in_flight(), 1, "still unacknowledged");

    // Reconnect to the persistent session, recording what the device sends.
    let written = Arc::new(Mutex::new(Vec::new()));
    let tcp = dev.open(gw.mqtt_addr(), WAIT).await;
    let mut io = Recorder {
        inner: tcp,
        written: written.clone(),
    };
    let seen = dev.settle(&mut io).await;
    assert_eq!(seen, [Seen::Connected(true), Seen::Delivered(packet_id)]);

    let bytes = written.lock().unwrap().clone();
    let mut rest = &bytes[..];
    let mut resent = Vec::new();
    while !rest.is_empty() {
        let (p, len) = mqtt::decode(rest, ProtocolVersion::V3_1_1, usize::MAX).unwrap();
        if let Packet::Publish(p) = p {
            resent.push((p.dup, p.packet_id, p.payload.to_vec()));
        }
        rest = &rest[len..];
    }
    assert_eq!(
        resent,
        [(true, Some(packet_id), first.payload.to_vec())],
        "the same message, same identifier, DUP set"
    );
    assert_eq!(dev.client.outbox().stats().resent, 1);
    // At least once: the watcher may see the resend as a second copy.
    if let Some(again) = watcher.recv(QUIET).await {
        assert_eq!(seq_of(device, &again.payload), 0);
    }
}

// --- commands, login, will --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_receives_commands_including_those_sent_while_it_was_offline() {
    let gw = Gateway::start();
    let device = "fw-cmd";
    let cmd_topic = "devices/fw-cmd/cmd";
    let operator = Watcher::connect(v4::options(gw.mqtt_addr(), "operator")).await;
    let mut dev: Device<8> = Device::new(device, config(device).with_commands(cmd_topic));
    let (mut io, _) = dev.connect(gw.mqtt_addr()).await;
    let seen = dev
        .run_until(&mut io, |_, s| {
            s.contains(&Seen::Subscribed(Some(QoS::AtLeastOnce)))
        })
        .await;
    assert_eq!(seen, [Seen::Subscribed(Some(QoS::AtLeastOnce))]);

    operator
        .publish(cmd_topic, v4::QoS::AtLeastOnce, false, r#"{"led":"on"}"#)
        .await;
    let seen = dev.run_until(&mut io, |_, s| !s.is_empty()).await;
    assert_eq!(
        seen,
        [Seen::Command {
            topic: cmd_topic.into(),
            payload: br#"{"led":"on"}"#.to_vec(),
            qos: QoS::AtLeastOnce,
        }]
    );
    // Acknowledge it, then leave cleanly.
    dev.settle(&mut io).await;
    dev.driver
        .disconnect(&mut dev.client, &mut io, &dev.clock)
        .await
        .unwrap();
    assert_eq!(dev.client.state(), State::Stopped);
    drop(io);

    // A command while the device is away waits in its session.
    operator
        .publish(cmd_topic, v4::QoS::AtLeastOnce, false, r#"{"led":"off"}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut io, present) = dev.connect(gw.mqtt_addr()).await;
    assert!(present, "the persistent session was resumed");
    let seen = dev.run_until(&mut io, |_, s| !s.is_empty()).await;
    assert_eq!(
        seen,
        [Seen::Command {
            topic: cmd_topic.into(),
            payload: br#"{"led":"off"}"#.to_vec(),
            qos: QoS::AtLeastOnce,
        }],
        "only the new command: the first one was acknowledged"
    );
    dev.settle(&mut io).await;
    assert_eq!(dev.next(&mut io, QUIET).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_logs_in_with_credentials_and_is_refused_with_wrong_ones() {
    let hash = hash_password("s3cret");
    let gw = Gateway::builder()
        .config(&format!(
            "[auth]\nallow_anonymous = false\n\n[[auth.users]]\nname = \"device\"\npassword_hash = \"{hash}\"\n"
        ))
        .start();
    let mut good: Device<4> = Device::new(
        "fw-login",
        config("fw-login").with_credentials("device", b"s3cret"),
    );
    let (_io, _) = good.connect(gw.mqtt_addr()).await;
    assert_eq!(good.client.state(), State::Connected);

    let mut bad: Device<4> = Device::new(
        "fw-intruder",
        config("fw-intruder").with_credentials("device", b"guess"),
    );
    let mut io = bad.open(gw.mqtt_addr(), WAIT).await;
    let err = loop {
        match bad.next(&mut io, Duration::from_millis(200)).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, DriverError::Connection(ConnectionError::Refused(4))),
        "expected return code 4 (bad user name or password), got {err:?}"
    );
    assert_eq!(bad.client.state(), State::Disconnected);
    assert!(
        bad.client.reconnect_at().is_some(),
        "it will retry, backing off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_will_is_published_when_the_device_vanishes() {
    let gw = Gateway::start();
    let status = "devices/fw-will/status";
    let mut watcher = watch(&gw, "watcher", status).await;
    let will = Will {
        topic: status,
        payload: b"offline",
        qos: QoS::AtLeastOnce,
        retain: false,
    };
    let mut dev: Device<4> = Device::new("fw-will", config("fw-will").with_will(will));
    let (io, _) = dev.connect(gw.mqtt_addr()).await;
    watcher.expect_none(QUIET).await;
    drop(io); // power lost: no DISCONNECT
    let p = watcher.expect().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        (status, &b"offline"[..])
    );
}

// --- the other driver and the other protocol version ----------------------------------------

/// A std socket for the blocking driver: Read/Write from `embedded-io-adapters`,
/// plus `ReadReady` (a non-blocking peek), which the adapter does not provide.
struct StdTcp(embedded_io_adapters::std::FromStd<std::net::TcpStream>);

impl embedded_io::ErrorType for StdTcp {
    type Error = std::io::Error;
}

impl embedded_io::Read for StdTcp {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        self.0.read(buf)
    }
}

impl embedded_io::Write for StdTcp {
    fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> Result<(), std::io::Error> {
        embedded_io::Write::flush(&mut self.0)
    }
}

impl embedded_io::ReadReady for StdTcp {
    fn read_ready(&mut self) -> Result<bool, std::io::Error> {
        let s = self.0.inner();
        s.set_nonblocking(true)?;
        let peeked = s.peek(&mut [0u8; 1]);
        s.set_nonblocking(false)?;
        match peeked {
            // Data, or end of stream (which `read` then reports).
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

struct StdDelay;

impl embedded_hal::delay::DelayNs for StdDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(ns.into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_blocking_driver_publishes_over_a_std_socket() {
    let gw = Gateway::start();
    let addr = gw.mqtt_addr();
    let device = "fw-blocking";
    let mut watcher = watch(&gw, "watcher", &topic(device)).await;
    let seen = tokio::task::spawn_blocking(move || {
        let clock = Ms(Instant::now());
        let mut rx = [0u8; 256];
        let mut tx = [0u8; 512];
        let mut client: Client<'_, 4, SLOT> = Client::new(config(device), &mut rx);
        let mut driver = Blocking::new(&mut tx);
        let mut io = StdTcp(embedded_io_adapters::std::FromStd::new(
            std::net::TcpStream::connect(addr).expect("connect"),
        ));
        client
            .publish(&topic(device), br#"{"device":"fw-blocking","temperature":21.53,"humidity":40.1,"pressure":1013.2,"seq":0}"#, QoS::AtLeastOnce)
            .unwrap();
        client.on_transport_open(clock.now_ms());
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while !client.is_idle() || seen.is_empty() {
            assert!(Instant::now() < deadline, "stuck; saw {seen:?}");
            let until = clock.now_ms() + 100;
            if let Some(e) = driver
                .poll(&mut client, &mut io, &clock, &mut StdDelay, until)
                .expect("connection")
            {
                seen.push(own(e));
            }
        }
        driver.disconnect(&mut client, &mut io, &clock).unwrap();
        assert_eq!(client.state(), State::Stopped);
        seen
    })
    .await
    .unwrap();
    assert_eq!(seen, [Seen::Connected(false), Seen::Delivered(1)]);
    assert_eq!(seq_of(device, &watcher.expect().await.payload), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_speaks_mqtt5_publishing_and_receiving_commands() {
    let gw = Gateway::start();
    let device = "fw-v5";
    let cmd_topic = "devices/fw-v5/cmd";
    let mut watcher = watch(&gw, "watcher", &topic(device)).await;
    let operator = Watcher::connect(v4::options(gw.mqtt_addr(), "operator")).await;
    let mut dev: Device<4> = Device::new(
        device,
        config(device)
            .with_protocol(ProtocolVersion::V5)
            .with_commands(cmd_topic),
    );
    let (mut io, _) = dev.connect(gw.mqtt_addr()).await;
    dev.queue_reading(QoS::AtLeastOnce);
    let seen = dev.settle(&mut io).await;
    assert!(
        seen.contains(&Seen::Subscribed(Some(QoS::AtLeastOnce))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, Seen::Delivered(_))),
        "{seen:?}"
    );
    assert_eq!(seq_of(device, &watcher.expect().await.payload), 0);

    operator
        .publish(cmd_topic, v4::QoS::AtLeastOnce, false, "reboot")
        .await;
    let seen = dev.run_until(&mut io, |_, s| !s.is_empty()).await;
    assert_eq!(
        seen,
        [Seen::Command {
            topic: cmd_topic.into(),
            payload: b"reboot".to_vec(),
            qos: QoS::AtLeastOnce
        }]
    );
}

// --- the emulated MCU -----------------------------------------------------------------------

/// Builds the QEMU firmware (a no-op when up to date) and returns its ELF.
///
/// `TETHER_QEMU_ELF` overrides the path. Otherwise cargo builds
/// `firmware/qemu` (its own workspace) for thumbv7m-none-eabi, honouring
/// `CARGO_TARGET_DIR`, and the ELF's path is taken from cargo's own report,
/// so it is found wherever the target directory is.
fn qemu_firmware() -> PathBuf {
    if let Some(p) = std::env::var_os("TETHER_QEMU_ELF") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/qemu");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&dir)
        .args([
            "build",
            "--release",
            "--target",
            "thumbv7m-none-eabi",
            "--message-format=json-render-diagnostics",
        ])
        // This test's own build settings must not leak into a foreign target.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo to build the QEMU firmware");
    assert!(
        out.status.success(),
        "building {} failed (is the thumbv7m-none-eabi target installed? `rustup target add thumbv7m-none-eabi`)",
        dir.display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let elf = stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no executable for the QEMU firmware");
    assert!(elf.exists(), "{} is missing", elf.display());
    elf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_device_publishes_its_readings_through_uart0() {
    let elf = tokio::task::spawn_blocking(qemu_firmware).await.unwrap();
    let gw = Gateway::start();
    let device = "qemu-1";
    let mut watcher = watch(&gw, "watcher", &topic(device)).await;
    let port = gw.mqtt_addr().port();
    let mut qemu = Command::new("qemu-system-arm")
        .args(["-machine", "lm3s6965evb", "-cpu", "cortex-m3", "-nographic"])
        .args([
            "-monitor",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
        ])
        .arg("-serial")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .arg("-kernel")
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-arm not found: install it (Debian: apt-get install qemu-system-arm)");

    // The firmware publishes five readings, waits for their PUBACKs, sends
    // DISCONNECT and exits QEMU through semihosting.
    let seqs = receive_seqs(&mut watcher, device, 5).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_with_timeout(&mut qemu, Duration::from_secs(30));
        let mut out = String::new();
        for stream in [
            qemu.stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            qemu.stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let mut s = stream;
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
        }
        (status, out)
    })
    .await
    .unwrap();
    let (status, output) = status;
    assert!(status.success(), "QEMU exited with {status}:\n{output}");
    assert!(
        output.contains("qemu-device: published 5 readings"),
        "firmware output:\n{output}"
    );
    assert_eq!(seqs, [0, 1, 2, 3, 4], "every reading, in order");
    watcher.expect_none(QUIET).await;
    let log = gw.log().text();
    assert!(
        log.contains("client_id=qemu-1"),
        "the gateway saw the emulated device:\n{log}"
    );
}
