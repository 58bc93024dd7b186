//! Declarations as stored in the Meta space (JSON values).
//!
//! Each record type says what one kind of key holds; the owners (vhosts,
//! the session registry) write them when a declaration changes and read them
//! back in [`crate::core::Core::new`].

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Key, Op, Space, keys};
use crate::core::queue::{LiveSettings, QueueOptions};

/// A durable exchange (`keys::EXCHANGE`, `[vhost, name]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeRecord {
    /// `direct`, `fanout`, `topic` or `headers`.
    pub kind: String,
    /// Deleted with its last binding.
    pub auto_delete: bool,
    /// Not publishable by clients.
    pub internal: bool,
    /// Alternate exchange.
    pub alternate: Option<String>,
    /// Declaration arguments.
    pub args: FieldTable,
}

/// A durable queue (`keys::QUEUE`, `[vhost, name]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueRecord {
    /// Its identity, which keys its entries.
    pub uid: u64,
    /// Its declaration.
    pub options: QueueOptions,
    /// Settings changed since (SQS SetQueueAttributes).
    pub live: LiveSettings,
}

/// A durable binding (`keys::BINDING`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindingRecord {
    /// Source exchange.
    pub source: String,
    /// Destination is an exchange (else a queue).
    pub to_exchange: bool,
    /// Destination name.
    pub destination: String,
    /// Binding key.
    pub key: String,
    /// The key is an MQTT topic filter (else an AMQP binding key).
    pub mqtt_key: bool,
    /// Binding arguments.
    pub args: Option<FieldTable>,
}

/// The key of a binding record: unique per source, destination, key and
/// arguments.
pub fn binding_key(vhost: &str, b: &BindingRecord) -> Key {
    // No arguments and an empty table are the same binding.
    let empty = FieldTable::default();
    let args = serde_json::to_vec(b.args.as_ref().unwrap_or(&empty)).unwrap_or_default();
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(&args)
    };
    keys::meta_key(
        keys::BINDING,
        &[
            vhost.as_bytes(),
            b.source.as_bytes(),
            if b.to_exchange { b"e" } else { b"q" },
            b.destination.as_bytes(),
            b.key.as_bytes(),
            &digest[..8],
        ],
    )
}

/// A put of `value` as JSON under `key`.
pub fn put_json<T: Serialize>(key: Key, value: &T) -> Op {
    let json = serde_json::to_vec(value).unwrap_or_default();
    Op::Put(Space::Meta, key, Bytes::from(json))
}

/// Decodes a JSON record, logging (once per record) when it does not decode.
pub fn from_json<T: for<'de> Deserialize<'de>>(what: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(record = what, error = %e, "skipping a stored record that does not decode");
            None
        }
    }
}
