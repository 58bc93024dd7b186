//! rumqttc clients (MQTT 3.1.1 and 5.0) wrapped for tests: the event loop runs
//! in a task and forwards every event to a channel the test reads with timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

/// Default wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// MQTT 3.1.1 client.
pub mod v4 {
    use super::*;
    pub use rumqttc::{
        AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, LastWill, MqttOptions,
        Outgoing, Packet, Publish, QoS,
    };

    /// What the event-loop task reports.
    #[derive(Debug)]
    pub enum Report {
        /// An event.
        Event(Event),
        /// The connection failed or ended (the task stops).
        Error(String),
    }

    /// A connected client and the stream of its events.
    pub struct Client {
        /// The rumqttc handle.
        pub client: AsyncClient,
        /// Events from the gateway.
        pub events: mpsc::UnboundedReceiver<Report>,
        task: tokio::task::JoinHandle<()>,
    }

    /// Options for `id` at `addr`, keepalive 30 s, clean session.
    pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    impl Client {
        /// Connects with `opts` and waits for CONNACK; panics on refusal.
        pub async fn connect(opts: MqttOptions) -> Client {
            let mut c = Client::start(opts);
            let ack = c.connack().await;
            assert_eq!(
                ack.code,
                ConnectReturnCode::Success,
                "connection refused: {ack:?}"
            );
            c
        }

        /// Starts the event loop without waiting for anything.
        pub fn start(opts: MqttOptions) -> Client {
            let (client, mut eventloop) = AsyncClient::new(opts, 1000);
            let (tx, events) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(e) => {
                            if tx.send(Report::Event(e)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Report::Error(e.to_string()));
                            return;
                        }
                    }
                }
            });
            Client {
                client,
                events,
                task,
            }
        }

        /// The next incoming packet, skipping outgoing events.
        pub async fn next_incoming(&mut self, wait: Duration) -> Option<Result<Packet, String>> {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let r = tokio::time::timeout_at(deadline, self.events.recv())
                    .await
                    .ok()??;
                match r {
                    Report::Event(Event::Incoming(p)) => return Some(Ok(p)),
                    Report::Event(Event::Outgoing(_)) => continue,
                    Report::Error(e) => return Some(Err(e)),
                }
            }
        }

        /// Waits for CONNACK.
        pub async fn connack(&mut self) -> rumqttc::ConnAck {
            loop {
                match self.next_incoming(WAIT).await {
                    Some(Ok(Packet::ConnAck(a))) => return a,
                    Some(Ok(_)) => continue,
                    other => panic!("no CONNACK: {other:?}"),
                }
            }
        }

        /// Waits for the connection to fail; returns the error text.
        pub async fn connection_error(&mut self, wait: Duration) -> Option<String> {
            loop {
                match self.next_incoming(wait).await? {
                    Err(e) => return Some(e),
                    Ok(_) => continue,
                }
            }
        }

        /// Subscribes and waits for the SUBACK; returns its return codes.
        pub async fn subscribe(
            &mut self,
            filter: &str,
            qos: QoS,
        ) -> Vec<rumqttc::SubscribeReasonCode> {
            self.client
                .subscribe(filter, qos)
                .await
                .expect("subscribe request");
            loop {
                match self.next_incoming(WAIT).await {
                    Some(Ok(Packet::SubAck(s))) => return s.return_codes,
                    Some(Ok(_)) => continue,
                    other => panic!("no SUBACK: {other:?}"),
                }
            }
        }

        /// Publishes (does not wait for acknowledgement).
        pub async fn publish(
            &self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: impl Into<Vec<u8>>,
        ) {
            self.client
                .publish(topic, qos, retain, payload.into())
                .await
                .expect("publish request");
        }

        /// Publishes at QoS 1 and waits for its PUBACK.
        pub async fn publish_acked(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
            self.publish(topic, QoS::AtLeastOnce, false, payload).await;
            loop {
                match self.next_incoming(WAIT).await {
                    Some(Ok(Packet::PubAck(_))) => return,
                    Some(Ok(_)) => continue,
                    other => panic!("no PUBACK: {other:?}"),
                }
            }
        }

        /// The next PUBLISH received within `wait`.
        pub async fn recv(&mut self, wait: Duration) -> Option<Publish> {
            loop {
                match self.next_incoming(wait).await? {
                    Ok(Packet::Publish(p)) => return Some(p),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        }

        /// The next PUBLISH; panics if none arrives within [`WAIT`].
        pub async fn expect(&mut self) -> Publish {
            self.recv(WAIT).await.expect("expected a PUBLISH")
        }

        /// Asserts no PUBLISH arrives within `wait`.
        pub async fn expect_none(&mut self, wait: Duration) {
            if let Some(p) = self.recv(wait).await {
                panic!("unexpected PUBLISH: {p:?}");
            }
        }

        /// Sends DISCONNECT and stops the event loop.
        pub async fn disconnect(mut self) {
            let _ = self.client.disconnect().await;
            // Let the event loop send it.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(r) = self.events.recv().await {
                    if matches!(
                        r,
                        Report::Event(Event::Outgoing(Outgoing::Disconnect)) | Report::Error(_)
                    ) {
                        break;
                    }
                }
            })
            .await;
            self.task.abort();
        }

        /// Drops the connection without DISCONNECT (like a device losing power).
        pub fn drop_connection(self) {
            self.task.abort();
        }
    }
}

/// MQTT 5.0 client.
pub mod v5 {
    use super::*;
    pub use rumqttc::Outgoing;
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::mqttbytes::v5::{
        ConnAck, ConnectReturnCode, Disconnect, DisconnectProperties, DisconnectReasonCode, Filter,
        LastWill, LastWillProperties, Packet, PubAckReason, Publish, PublishProperties,
        RetainForwardRule, SubscribeProperties, SubscribeReasonCode,
    };
    pub use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    /// What the event-loop task reports.
    // v5 events are large (~400 bytes) but short-lived; boxing them would only
    // make every test unwrap a box.
    #[allow(clippy::large_enum_variant)]
    #[derive(Debug)]
    pub enum Report {
        /// An event.
        Event(Event),
        /// The connection failed or ended (the task stops).
        Error(String),
    }

    /// A connected client and the stream of its events.
    pub struct Client {
        /// The rumqttc handle.
        pub client: AsyncClient,
        /// Events from the gateway.
        pub events: mpsc::UnboundedReceiver<Report>,
        task: tokio::task::JoinHandle<()>,
    }

    /// Options for `id` at `addr`, keepalive 30 s, clean start.
    pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    impl Client {
        /// Connects and waits for a successful CONNACK, which it returns.
        pub async fn connect(opts: MqttOptions) -> (Client, ConnAck) {
            let mut c = Client::start(opts);
            let ack = c.connack().await;
            assert_eq!(
                ack.code,
                ConnectReturnCode::Success,
                "connection refused: {ack:?}"
            );
            (c, ack)
        }

        /// Starts the event loop without waiting.
        pub fn start(opts: MqttOptions) -> Client {
            let (client, mut eventloop) = AsyncClient::new(opts, 1000);
            let (tx, events) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(e) => {
                            if tx.send(Report::Event(e)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            // rumqttc reports a server DISCONNECT only as this error
                            // (the Incoming event it queued is never returned):
                            // pass the packet on so `server_disconnect` sees it.
                            if let rumqttc::v5::ConnectionError::MqttState(
                                rumqttc::v5::StateError::ServerDisconnect {
                                    reason_code,
                                    reason_string,
                                },
                            ) = &e
                            {
                                let d = Disconnect {
                                    reason_code: *reason_code,
                                    properties: reason_string.clone().map(|r| {
                                        DisconnectProperties {
                                            session_expiry_interval: None,
                                            reason_string: Some(r),
                                            user_properties: Vec::new(),
                                            server_reference: None,
                                        }
                                    }),
                                };
                                let _ =
                                    tx.send(Report::Event(Event::Incoming(Packet::Disconnect(d))));
                            }
                            let _ = tx.send(Report::Error(format!("{e:?}")));
                            return;
                        }
                    }
                }
            });
            Client {
                client,
                events,
                task,
            }
        }

        /// The next incoming packet, skipping outgoing events.
        pub async fn next_incoming(&mut self, wait: Duration) -> Option<Result<Packet, String>> {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let r = tokio::time::timeout_at(deadline, self.events.recv())
                    .await
                    .ok()??;
                match r {
                    Report::Event(Event::Incoming(p)) => return Some(Ok(p)),
                    Report::Event(Event::Outgoing(_)) => continue,
                    Report::Error(e) => return Some(Err(e)),
                }
            }
        }

        /// Waits for CONNACK (or reports the error that replaced it).
        pub async fn connack(&mut self) -> ConnAck {
            loop {
                match self.next_incoming(WAIT).await {
                    Some(Ok(Packet::ConnAck(a))) => return a,
                    Some(Ok(_)) => continue,
                    other => panic!("no CONNACK: {other:?}"),
                }
            }
        }

        /// The next packet matching `pick`, within `wait`.
        pub async fn wait_for<T>(
            &mut self,
            wait: Duration,
            mut pick: impl FnMut(Packet) -> Option<T>,
        ) -> Option<T> {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self.next_incoming(left).await? {
                    Ok(p) => {
                        if let Some(t) = pick(p) {
                            return Some(t);
                        }
                    }
                    Err(_) => return None,
                }
            }
        }

        /// Subscribes and returns the SUBACK reason codes.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
            self.client
                .subscribe(filter, qos)
                .await
                .expect("subscribe request");
            self.suback().await
        }

        /// Waits for a SUBACK.
        pub async fn suback(&mut self) -> Vec<SubscribeReasonCode> {
            self.wait_for(WAIT, |p| match p {
                Packet::SubAck(s) => Some(s.return_codes),
                _ => None,
            })
            .await
            .expect("no SUBACK")
        }

        /// The next PUBLISH within `wait`.
        pub async fn recv(&mut self, wait: Duration) -> Option<Publish> {
            self.wait_for(wait, |p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .await
        }

        /// The next PUBLISH; panics if none arrives within [`WAIT`].
        pub async fn expect(&mut self) -> Publish {
            self.recv(WAIT).await.expect("expected a PUBLISH")
        }

        /// Asserts no PUBLISH arrives within `wait`.
        pub async fn expect_none(&mut self, wait: Duration) {
            if let Some(p) = self.recv(wait).await {
                panic!("unexpected PUBLISH: {p:?}");
            }
        }

        /// The DISCONNECT the server sends, if any, within `wait`.
        pub async fn server_disconnect(&mut self, wait: Duration) -> Option<Disconnect> {
            self.wait_for(wait, |p| match p {
                Packet::Disconnect(d) => Some(d),
                _ => None,
            })
            .await
        }

        /// Sends DISCONNECT and stops the event loop.
        pub async fn disconnect(mut self) {
            let _ = self.client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(r) = self.events.recv().await {
                    if matches!(
                        r,
                        Report::Event(Event::Outgoing(Outgoing::Disconnect)) | Report::Error(_)
                    ) {
                        break;
                    }
                }
            })
            .await;
            self.task.abort();
        }

        /// Drops the connection without DISCONNECT.
        pub fn drop_connection(self) {
            self.task.abort();
        }
    }
}
