//! Live client connections, for the admin API: who is connected, and a way to
//! ask one connection to close.
//!
//! AMQP connections register here once their handshake is done and leave
//! when their task ends (a drop guard, so a task that dies still leaves).
//! MQTT connections are *not* entered here: a connected MQTT session already
//! is one record per connection (the session's owner slot keeps the
//! [`ClientInfo`] and the kick that ends the connection, see
//! [`crate::core::session`]), so an idle MQTT connection pays for no second
//! record. [`Connections::list`] and [`Connections::close`] look in both.
//!
//! Nothing here is on a message path: registering and leaving happen once
//! per connection, listing and closing once per admin request.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::core::message::now_ms;
use crate::core::session::SessionRegistry;
use crate::core::vhost::VHost;

/// Who is on the other end of a connection; kept while it lives (in every
/// connected MQTT session, so it is kept small: 40 bytes, where a
/// `SocketAddr` alone takes 32).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer's address as IPv6 (IPv4 addresses mapped).
    ip: [u8; 16],
    port: u16,
    /// When the connection was accepted (seconds since the Unix epoch).
    connected_at: u32,
    /// The user it logged in as, if any.
    user: Option<Box<str>>,
}

impl ClientInfo {
    /// A connection from `peer` logged in as `user`, starting now.
    pub fn new(peer: SocketAddr, user: Option<&str>) -> Self {
        let ip = match peer.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        ClientInfo {
            ip: ip.octets(),
            port: peer.port(),
            connected_at: u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX),
            user: user.filter(|u| !u.is_empty()).map(Box::from),
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::new(Ipv6Addr::from(self.ip).to_canonical(), self.port)
    }

    /// The user it logged in as, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// When the connection was accepted (seconds since the Unix epoch).
    pub fn connected_at(&self) -> u64 {
        u64::from(self.connected_at)
    }
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1, 3.1.1 or 5.0.
    Mqtt,
    /// AMQP 0-9-1.
    Amqp,
}

impl Protocol {
    /// The name the admin API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Amqp => "amqp",
        }
    }
}

/// One live connection as the admin API lists it.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    /// Stable while the connection lives: `mqtt-<session>-<generation>` or
    /// `amqp-<connection>`.
    pub id: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// Address, user and start time.
    pub client: ClientInfo,
    /// MQTT client identifier, or the AMQP client's `connection_name`.
    pub client_id: Option<String>,
    /// The virtual host it works in.
    pub vhost: String,
}

#[derive(Debug)]
struct AmqpEntry {
    client: ClientInfo,
    connection_name: Option<Box<str>>,
    vhost: Arc<VHost>,
    /// Taken when a close is asked for.
    close: Option<oneshot::Sender<()>>,
}

/// The registry of live connections (see the module docs).
#[derive(Debug, Default)]
pub struct Connections {
    amqp: Mutex<HashMap<u64, AmqpEntry, ahash::RandomState>>,
}

/// An AMQP connection's place in the registry; dropping it removes the entry.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Connections>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.amqp.lock().remove(&self.id);
    }
}

impl Connections {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Connections::default())
    }

    /// Enters AMQP connection `id` (its owner id). The receiver resolves
    /// when an administrator asks for the connection to be closed.
    pub fn register_amqp(
        self: &Arc<Self>,
        id: u64,
        client: ClientInfo,
        connection_name: Option<&str>,
        vhost: Arc<VHost>,
    ) -> (Registration, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let entry = AmqpEntry {
            client,
            connection_name: connection_name.map(Box::from),
            vhost,
            close: Some(tx),
        };
        self.amqp.lock().insert(id, entry);
        let registration = Registration {
            registry: self.clone(),
            id,
        };
        (registration, rx)
    }

    /// Live AMQP connections.
    pub fn amqp_count(&self) -> usize {
        self.amqp.lock().len()
    }

    /// Every live connection: the connected MQTT sessions of `sessions` and
    /// the registered AMQP connections, oldest first.
    pub fn list(&self, sessions: &SessionRegistry) -> Vec<ConnectionView> {
        let mut out: Vec<ConnectionView> = sessions
            .connected()
            .into_iter()
            .map(|c| ConnectionView {
                id: format!("mqtt-{}-{}", c.session_id, c.generation),
                protocol: Protocol::Mqtt,
                client: c.client,
                client_id: Some(c.client_id.to_string()),
                vhost: sessions.vhost().name().to_string(),
            })
            .collect();
        out.extend(self.amqp.lock().iter().map(|(id, e)| ConnectionView {
            id: format!("amqp-{id}"),
            protocol: Protocol::Amqp,
            client: e.client.clone(),
            client_id: e.connection_name.as_deref().map(str::to_owned),
            vhost: e.vhost.name().to_string(),
        }));
        out.sort_by(|a, b| (a.client.connected_at(), &a.id).cmp(&(b.client.connected_at(), &b.id)));
        out
    }

    /// Asks connection `id` (as [`Connections::list`] names it) to close:
    /// MQTT 5 clients get DISCONNECT 0x98 (administrative action), AMQP
    /// clients connection.close 320 (CONNECTION_FORCED). False when no such
    /// connection is live.
    pub fn close(&self, sessions: &SessionRegistry, id: &str) -> bool {
        match parse_id(id) {
            Some(ParsedId::Mqtt {
                session,
                generation,
            }) => sessions.close_connection(session, generation),
            Some(ParsedId::Amqp(n)) => {
                let close = self.amqp.lock().get_mut(&n).map(|e| e.close.take());
                match close {
                    // Asked before: it is on its way out.
                    Some(None) => true,
                    Some(Some(tx)) => {
                        let _ = tx.send(());
                        true
                    }
                    None => false,
                }
            }
            None => false,
        }
    }
}

/// A connection id taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParsedId {
    Mqtt { session: u64, generation: u64 },
    Amqp(u64),
}

fn parse_id(id: &str) -> Option<ParsedId> {
    if let Some(rest) = id.strip_prefix("mqtt-") {
        let (s, g) = rest.split_once('-')?;
        return Some(ParsedId::Mqtt {
            session: s.parse().ok()?,
            generation: g.parse().ok()?,
        });
    }
    id.strip_prefix("amqp-")?.parse().ok().map(ParsedId::Amqp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::queue::QueueEnv;

    #[test]
    fn ids_parse_back_and_garbage_does_not() {
        assert_eq!(
            parse_id("mqtt-4294967297-3"),
            Some(ParsedId::Mqtt {
                session: 4_294_967_297,
                generation: 3
            })
        );
        assert_eq!(parse_id("amqp-12"), Some(ParsedId::Amqp(12)));
        for bad in [
            "", "mqtt-1", "mqtt-a-1", "amqp-", "amqp--1", "tcp-1", "amqp-1x",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn client_info_keeps_the_peer_address_of_either_family() {
        for text in ["192.0.2.7:1883", "[2001:db8::1]:5672", "[::1]:9"] {
            let peer: SocketAddr = text.parse().unwrap();
            let info = ClientInfo::new(peer, None);
            assert_eq!(info.peer(), peer);
            assert_eq!(info.peer().to_string(), text);
        }
        assert_eq!(
            ClientInfo::new("127.0.0.1:1".parse().unwrap(), Some("")).user(),
            None
        );
        assert_eq!(std::mem::size_of::<ClientInfo>(), 40);
    }

    #[test]
    fn an_amqp_registration_is_listed_closed_once_and_leaves_when_dropped() {
        let vhost = VHost::new("/", QueueEnv::new(usize::MAX));
        let sessions = SessionRegistry::new(vhost.clone(), Default::default());
        let registry = Connections::new();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let (registration, mut closed) =
            registry.register_amqp(7, ClientInfo::new(peer, Some("app")), Some("worker"), vhost);
        let list = registry.list(&sessions);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, "amqp-7");
        assert_eq!(list[0].client.user(), Some("app"));
        assert_eq!(list[0].client.peer(), peer);
        assert_eq!(list[0].client_id.as_deref(), Some("worker"));
        assert!(closed.try_recv().is_err(), "not asked to close yet");
        assert!(registry.close(&sessions, "amqp-7"));
        assert!(closed.try_recv().is_ok(), "asked to close");
        assert!(registry.close(&sessions, "amqp-7"), "still closing");
        drop(registration);
        assert_eq!(registry.amqp_count(), 0);
        assert!(!registry.close(&sessions, "amqp-7"));
    }
}
