//! lapin helpers for tests: connect to a gateway's AMQP listener, open channels.

use std::net::SocketAddr;
use std::time::Duration;

pub use lapin::options::*;
pub use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
pub use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind,
};

/// Default wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// The `amqp://` URI of a listener, default vhost.
pub fn uri(addr: SocketAddr) -> String {
    format!("amqp://{}:{}/%2f", addr.ip(), addr.port())
}

/// Connects with guest credentials (anonymous unless a `guest` user exists).
pub async fn connect(addr: SocketAddr) -> Connection {
    tokio::time::timeout(
        WAIT,
        Connection::connect(&uri(addr), ConnectionProperties::default()),
    )
    .await
    .expect("connect timed out")
    .expect("connect")
}

/// Connects and opens one channel.
pub async fn channel(addr: SocketAddr) -> (Connection, Channel) {
    let conn = connect(addr).await;
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

/// The next delivery of `consumer`, within `wait`.
pub async fn next(consumer: &mut Consumer, wait: Duration) -> Option<lapin::message::Delivery> {
    use futures_lite::StreamExt;
    match tokio::time::timeout(wait, consumer.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        _ => None,
    }
}
