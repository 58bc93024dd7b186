//! Both drivers over an in-memory transport whose far end is a tiny MQTT
//! server (CONNACK, SUBACK, PUBACK, PINGRESP), with a simulated clock that
//! the driver's own delays advance: the tests are instant and exact.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use embedded_io::{ErrorKind, ErrorType};
use tether_firmware::client::{Client, Config, ConnectionError, Event, State};
use tether_firmware::driver::{Async, Blocking, Clock, DriverError};
use tether_firmware::protocols::mqtt::{
    self, ConnAck, Packet, ProtocolVersion, PubResponse, QoS, ReasonCode, SubAck,
};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

/// Simulated milliseconds, shared by the clock and the delay.
#[derive(Clone, Default)]
struct SimTime(Rc<Cell<u64>>);

impl Clock for SimTime {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

impl embedded_hal::delay::DelayNs for SimTime {
    fn delay_ns(&mut self, ns: u32) {
        self.0.set(self.0.get() + u64::from(ns.div_ceil(1_000_000)));
    }
}

impl embedded_hal_async::delay::DelayNs for SimTime {
    async fn delay_ns(&mut self, ns: u32) {
        self.0.set(self.0.get() + u64::from(ns.div_ceil(1_000_000)));
    }
}

/// The far end: answers the client's packets like a broker would.
struct Peer {
    inbox: Vec<u8>,
    outbox: VecDeque<u8>,
    answer_pings: bool,
    closed: bool,
    published: Vec<(String, Vec<u8>, bool)>,
    pings: usize,
}

impl Peer {
    fn new() -> Self {
        Self {
            inbox: Vec::new(),
            outbox: VecDeque::new(),
            answer_pings: true,
            closed: false,
            published: Vec::new(),
            pings: 0,
        }
    }

    fn send(&mut self, p: Packet<'_>) {
        let mut buf = vec![0; p.encoded_len(V4).unwrap()];
        p.encode(V4, &mut buf).unwrap();
        self.outbox.extend(buf);
    }

    fn receive(&mut self, bytes: &[u8]) {
        self.inbox.extend_from_slice(bytes);
        loop {
            let Ok((packet, len)) = mqtt::decode(&self.inbox, V4, usize::MAX) else {
                return;
            };
            let reply: Option<Packet<'static>> = match packet {
                Packet::Connect(_) => Some(Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: ReasonCode::SUCCESS,
                    properties: mqtt::Properties::new(),
                })),
                Packet::Subscribe(s) => Some(Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    properties: mqtt::Properties::new(),
                    return_codes: &[1],
                })),
                Packet::Publish(p) => {
                    self.published
                        .push((p.topic.to_owned(), p.payload.to_vec(), p.dup));
                    p.packet_id.map(|id| Packet::PubAck(PubResponse::new(id)))
                }
                Packet::PingReq => {
                    self.pings += 1;
                    self.answer_pings.then_some(Packet::PingResp)
                }
                Packet::Disconnect(_) => {
                    self.closed = true;
                    None
                }
                _ => None,
            };
            if let Some(r) = reply {
                self.send(r);
            }
            self.inbox.drain(..len);
        }
    }
}

/// One end of the in-memory link, as the device sees it.
#[derive(Clone)]
struct Link(Rc<std::cell::RefCell<Peer>>);

impl ErrorType for Link {
    type Error = ErrorKind;
}

impl embedded_io::Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut peer = self.0.borrow_mut();
        let n = buf.len().min(peer.outbox.len());
        for b in buf.iter_mut().take(n) {
            *b = peer.outbox.pop_front().unwrap();
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Link {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        let peer = self.0.borrow();
        Ok(!peer.outbox.is_empty() || peer.closed)
    }
}

impl embedded_io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.0.borrow().closed {
            return Err(ErrorKind::BrokenPipe);
        }
        self.0.borrow_mut().receive(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl embedded_io_async::Read for Link {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        // Pending until the peer has something (or closed), like a socket.
        std::future::poll_fn(|_| {
            let peer = self.0.borrow();
            if peer.outbox.is_empty() && !peer.closed {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        embedded_io::Read::read(self, buf)
    }
}

impl embedded_io_async::Write for Link {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        embedded_io::Write::write(self, buf)
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// Runs a future whose every wait completes without outside wake-ups.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn setup() -> (Client<'static, 8, 96>, Link, SimTime) {
    let rx: &'static mut [u8] = Box::leak(vec![0u8; 256].into_boxed_slice());
    let config = Config::new("drv")
        .with_commands("devices/drv/cmd")
        .with_keep_alive(10);
    (
        Client::new(config, rx),
        Link(Rc::new(std::cell::RefCell::new(Peer::new()))),
        SimTime::default(),
    )
}

fn describe(e: Option<Event<'_>>) -> String {
    match e {
        None => "none".into(),
        Some(Event::Connected { session_present }) => format!("connected {session_present}"),
        Some(Event::Subscribed { granted }) => format!("subscribed {granted:?}"),
        Some(Event::Delivered { packet_id }) => format!("delivered {packet_id}"),
        Some(other) => format!("{other:?}"),
    }
}

#[test]
fn blocking_driver_connects_subscribes_and_delivers() {
    let (mut client, mut link, mut time) = setup();
    let mut tx = [0u8; 256];
    let mut driver = Blocking::new(&mut tx);
    client
        .publish("sensors/drv/telemetry", b"r0", QoS::AtLeastOnce)
        .unwrap();
    client.on_transport_open(time.now_ms());
    let mut events = Vec::new();
    for _ in 0..3 {
        let until = time.now_ms() + 1_000;
        let e = driver
            .poll(&mut client, &mut link, &time.clone(), &mut time, until)
            .unwrap();
        events.push(describe(e));
    }
    assert_eq!(
        events,
        [
            "connected false",
            "subscribed Some(AtLeastOnce)",
            "delivered 2"
        ]
    );
    assert_eq!(
        link.0.borrow().published,
        [("sensors/drv/telemetry".to_owned(), b"r0".to_vec(), false)]
    );
    assert!(client.is_idle());
}

#[test]
fn blocking_driver_returns_at_until_and_keeps_the_connection_alive() {
    let (mut client, mut link, mut time) = setup();
    let mut tx = [0u8; 256];
    let mut driver = Blocking::new(&mut tx).with_poll_interval(5);
    client.on_transport_open(0);
    let clock = time.clone();
    // Connected, subscribed; then 35 s of silence in 1 s polls.
    while time.now_ms() < 35_000 {
        let until = time.now_ms() + 1_000;
        driver
            .poll(&mut client, &mut link, &clock, &mut time, until)
            .unwrap();
    }
    assert_eq!(client.state(), State::Connected);
    assert_eq!(link.0.borrow().pings, 3, "a PINGREQ every 10 s of silence");
}

#[test]
fn blocking_driver_detects_a_peer_that_stopped_answering() {
    let (mut client, mut link, mut time) = setup();
    let mut tx = [0u8; 256];
    let mut driver = Blocking::new(&mut tx);
    client.on_transport_open(0);
    let clock = time.clone();
    link.0.borrow_mut().answer_pings = false;
    let err = loop {
        let until = time.now_ms() + 1_000;
        match driver.poll(&mut client, &mut link, &clock, &mut time, until) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err, DriverError::Connection(ConnectionError::PingTimeout));
    // 10 s keepalive, then 10 s response timeout.
    assert!(
        (20_000..21_000).contains(&time.now_ms()),
        "{}",
        time.now_ms()
    );
    assert_eq!(client.state(), State::Disconnected);
}

#[test]
fn blocking_driver_reports_a_closed_transport() {
    let (mut client, mut link, mut time) = setup();
    let mut tx = [0u8; 256];
    let mut driver = Blocking::new(&mut tx);
    client.on_transport_open(0);
    let clock = time.clone();
    // Connected, then subscribed: nothing left to write.
    for _ in 0..2 {
        driver
            .poll(&mut client, &mut link, &clock, &mut time, 1_000)
            .unwrap()
            .expect("event");
    }
    link.0.borrow_mut().closed = true;
    let err = driver
        .poll(&mut client, &mut link, &clock, &mut time, 2_000)
        .unwrap_err();
    assert_eq!(err, DriverError::Closed);
    assert_eq!(client.state(), State::Disconnected);
    assert!(client.reconnect_at().is_some());
}

#[test]
fn blocking_driver_disconnects_cleanly() {
    let (mut client, mut link, mut time) = setup();
    let mut tx = [0u8; 256];
    let mut driver = Blocking::new(&mut tx);
    client.on_transport_open(0);
    let clock = time.clone();
    driver
        .poll(&mut client, &mut link, &clock, &mut time, 1_000)
        .unwrap();
    driver.disconnect(&mut client, &mut link, &clock).unwrap();
    assert!(link.0.borrow().closed, "the peer saw DISCONNECT");
    assert_eq!(client.state(), State::Stopped);
    assert_eq!(
        describe(
            driver
                .poll(&mut client, &mut link, &clock, &mut time, 5_000)
                .unwrap()
        ),
        "none"
    );
}

#[test]
fn async_driver_connects_subscribes_and_delivers() {
    let (mut client, mut link, mut time) = setup();
    let mut tx = [0u8; 256];
    let mut driver = Async::new(&mut tx);
    client
        .publish("sensors/drv/telemetry", b"r0", QoS::AtLeastOnce)
        .unwrap();
    client.on_transport_open(0);
    let clock = time.clone();
    let events = block_on(async {
        let mut events = Vec::new();
        for _ in 0..3 {
            let until = clock.now_ms() + 1_000;
            let e = driver
                .poll(&mut client, &mut link, &clock, &mut time, until)
                .await
                .unwrap();
            events.push(describe(e));
        }
        events
    });
    assert_eq!(
        events,
        [
            "connected false",
            "subscribed Some(AtLeastOnce)",
            "delivered 2"
        ]
    );
}

#[test]
fn async_driver_waits_until_the_deadline_then_returns() {
    let (mut client, mut link, mut time) = setup();
    let mut tx = [0u8; 256];
    let mut driver = Async::new(&mut tx);
    client.on_transport_open(0);
    let clock = time.clone();
    block_on(async {
        // Connected and subscribed first.
        for _ in 0..2 {
            driver
                .poll(&mut client, &mut link, &clock, &mut time, 1_000)
                .await
                .unwrap()
                .expect("event");
        }
        let start = clock.now_ms();
        let e = driver
            .poll(&mut client, &mut link, &clock, &mut time, start + 3_000)
            .await
            .unwrap();
        assert!(e.is_none());
        assert_eq!(
            clock.now_ms(),
            start + 3_000,
            "slept exactly until the deadline"
        );
    });
}

#[test]
fn async_driver_detects_a_peer_that_stopped_answering() {
    let (mut client, mut link, mut time) = setup();
    let mut tx = [0u8; 256];
    let mut driver = Async::new(&mut tx);
    client.on_transport_open(0);
    let clock = time.clone();
    link.0.borrow_mut().answer_pings = false;
    let err = block_on(async {
        loop {
            let until = clock.now_ms() + 1_000;
            if let Err(e) = driver
                .poll(&mut client, &mut link, &clock, &mut time, until)
                .await
            {
                break e;
            }
        }
    });
    assert_eq!(err, DriverError::Connection(ConnectionError::PingTimeout));
    assert_eq!(
        time.now_ms(),
        20_000,
        "keepalive 10 s + response timeout 10 s"
    );
}
