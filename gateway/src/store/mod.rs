//! Durable state, behind one trait.
//!
//! The core never touches files. It describes what must survive a restart as
//! [`Op`]s (put or remove keys in one of three [`Space`]s) and hands them to a
//! [`Store`], which returns a ticket ([`Lsn`]). Every acknowledgement that
//! promises durability (an MQTT PUBACK, an AMQP publisher confirm, an SQS
//! response) waits until the store reports its ticket done ([`durable`]); the
//! code that produced the writes never blocks on them.
//!
//! * [`Space::Meta`]: declarations (exchanges, queues, bindings, sessions,
//!   retained messages, SQS and SNS metadata), small and rewritten whole.
//! * [`Space::Index`]: one small record per stored queue entry: what the queue
//!   needs to order, lease, expire and count it without its body.
//! * [`Space::Body`]: the message itself, written once per queue entry.
//!
//! Implementations: [`embedded::EmbeddedStore`] (the default: one data
//! directory, group commit, on [fjall](https://docs.rs/fjall), or on
//! [redb](https://docs.rs/redb) with `storage.engine = "redb"` in a build with
//! the `redb` feature) and [`memory::MemoryStore`] (keeps nothing;
//! `storage.engine = "memory"`). A clustered store implements the same trait.
//!
//! [`codec`] is the binary form of messages and queue entries; [`keys`] lays
//! out the key space; [`recovery`] reads everything back at start-up.

pub mod codec;
pub mod embedded;
pub mod group_commit;
pub mod keys;
pub mod memory;
pub mod records;
pub mod recovery;
#[cfg(feature = "redb")]
pub mod redb_engine;

use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::sync::watch;

use crate::config::{StorageConfig, StorageEngine};

/// A ticket for submitted writes: they are durable once the store reports
/// this number (or a higher one) done. 0 means "nothing to wait for".
pub type Lsn = u64;

/// Which part of the key space an operation touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Declarations and other small records.
    Meta,
    /// Queue entry records.
    Index,
    /// Message bodies.
    Body,
}

impl Space {
    /// Every space, in a fixed order.
    pub const ALL: [Space; 3] = [Space::Meta, Space::Index, Space::Body];

    /// A short name (keyspace and log name).
    pub fn name(self) -> &'static str {
        match self {
            Space::Meta => "meta",
            Space::Index => "index",
            Space::Body => "body",
        }
    }
}

/// A key; most fit inline (queue entries are 16 bytes).
pub type Key = SmallVec<[u8; 24]>;

/// One write.
#[derive(Debug, Clone)]
pub enum Op {
    /// Sets `key` to the value.
    Put(Space, Key, Bytes),
    /// Removes `key`.
    Remove(Space, Key),
    /// Removes every key starting with the prefix.
    RemovePrefix(Space, Key),
}

/// Writes submitted together (and applied atomically together).
pub type Ops = SmallVec<[Op; 3]>;

/// Why the store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another tether process")]
    Locked(String),
    /// The disk refused a read or write.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// A record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// An earlier write failed, so writes are refused until a restart.
    #[error("storage failed earlier and refuses writes until restart: {0}")]
    Failed(String),
    /// The store was closed.
    #[error("storage is closed")]
    Closed,
    /// The configuration asks for what this build or this data directory
    /// cannot do (an engine compiled out, another engine's data).
    #[error("{0}")]
    Unsupported(String),
}

/// Counters for reports (messages per fsync and the like).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Batches written.
    pub batches: u64,
    /// Operations written.
    pub ops: u64,
    /// fsyncs issued.
    pub syncs: u64,
    /// Batches by operation count: index `i` counts batches of at most 2^i
    /// operations (and more than 2^(i-1)); the last counts larger ones.
    pub batch_sizes: [u64; crate::metrics::BATCH_BUCKETS + 1],
}

/// What the core needs from storage; see the module docs.
pub trait Store: Send + Sync + fmt::Debug {
    /// Whether anything is kept; with `false` the core skips encoding entirely.
    fn is_persistent(&self) -> bool;

    /// Queues `ops` to be written, atomically together and after everything
    /// submitted before. Returns their ticket and notes it for [`tracked`].
    fn submit(&self, ops: Ops) -> Lsn;

    /// Watches the highest ticket whose outcome is known.
    fn done(&self) -> watch::Receiver<Lsn>;

    /// The highest ticket handed out so far.
    fn submitted(&self) -> Lsn;

    /// The outcome of a ticket already reported done.
    fn outcome(&self, lsn: Lsn) -> Result<(), StoreError>;

    /// `Err` when writes are failing, so new publishes should be refused.
    fn health(&self) -> Result<(), StoreError>;

    /// Reads one key.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// Visits every key with `prefix`, in key order.
    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], Bytes),
    ) -> Result<(), StoreError>;

    /// Writes and syncs everything submitted so far (shutdown).
    fn flush(&self) -> Result<(), StoreError>;

    /// Bytes the store occupies on disk.
    fn disk_usage(&self) -> u64;

    /// Write counters.
    fn stats(&self) -> StoreStats;
}

/// A shared store.
pub type SharedStore = Arc<dyn Store>;

thread_local! {
    /// The highest ticket submitted by this thread inside the current [`tracked`] call.
    static TOUCHED: Cell<Lsn> = const { Cell::new(0) };
}

/// Records that this thread submitted `lsn` (implementations call it from
/// [`Store::submit`]).
pub fn note(lsn: Lsn) {
    TOUCHED.with(|t| {
        if lsn > t.get() {
            t.set(lsn);
        }
    });
}

/// Runs `f` and returns, with its result, the highest ticket it submitted
/// (0 when it wrote nothing). `f` runs synchronously on this thread, so the
/// writes it causes anywhere in the core (every queue a publish reaches, a
/// retained message, a dead letter) are all counted.
pub fn tracked<R>(f: impl FnOnce() -> R) -> (R, Lsn) {
    let outer = TOUCHED.with(|t| t.replace(0));
    let r = f();
    let mine = TOUCHED.with(|t| t.get());
    TOUCHED.with(|t| t.set(outer.max(mine)));
    (r, mine)
}

/// Waits until `lsn` is durable, or reports why it never will be.
pub async fn durable(store: &dyn Store, lsn: Lsn) -> Result<(), StoreError> {
    if lsn == 0 {
        return Ok(());
    }
    let mut rx = store.done();
    if rx.wait_for(|d| *d >= lsn).await.is_err() {
        return Err(StoreError::Closed);
    }
    store.outcome(lsn)
}

/// Opens the store the configuration asks for.
pub fn open(config: &StorageConfig) -> Result<SharedStore, StoreError> {
    match config.engine {
        StorageEngine::Memory => Ok(Arc::new(memory::MemoryStore::default())),
        StorageEngine::Fjall => {
            let store = embedded::EmbeddedStore::open(Path::new(&config.path), config)?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "redb")]
        StorageEngine::Redb => {
            let cache = config.cache_size.as_u64();
            let store = embedded::EmbeddedStore::open_with(
                Path::new(&config.path),
                config,
                "redb",
                |dir| {
                    std::fs::create_dir_all(dir)?;
                    redb_engine::RedbEngine::open(&dir.join("tether.redb"), cache)
                },
            )?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "redb"))]
        StorageEngine::Redb => Err(StoreError::Unsupported(
            "storage.engine = \"redb\" needs a tether built with the `redb` cargo feature \
             (cargo build --release -p tether-gateway --features redb)"
                .into(),
        )),
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

#[cfg(test)]
mod open_tests {
    use super::*;

    fn config(dir: &Path, engine: StorageEngine) -> StorageConfig {
        StorageConfig {
            path: dir.to_owned(),
            engine,
            ..StorageConfig::default()
        }
    }

    #[cfg(not(feature = "redb"))]
    #[test]
    fn redb_without_the_feature_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(&config(dir.path(), StorageEngine::Redb)).unwrap_err();
        assert!(
            matches!(&e, StoreError::Unsupported(m) if m.contains("`redb` cargo feature")),
            "{e}"
        );
    }

    #[cfg(feature = "redb")]
    #[test]
    fn redb_store_keeps_writes_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut ops = Ops::new();
        ops.push(Op::Put(
            Space::Meta,
            Key::from_slice(b"k"),
            Bytes::from_static(b"v"),
        ));
        {
            let store = open(&config(dir.path(), StorageEngine::Redb)).unwrap();
            store.submit(ops);
            store.flush().unwrap();
            assert_eq!(store.stats().ops, 1);
        }
        let store = open(&config(dir.path(), StorageEngine::Redb)).unwrap();
        assert_eq!(
            store.get(Space::Meta, b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn a_directory_holding_another_engines_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("redb")).unwrap();
        let e = open(&config(dir.path(), StorageEngine::Fjall)).unwrap_err();
        assert!(
            matches!(&e, StoreError::Unsupported(m) if m.contains("holds redb data")),
            "{e}"
        );
    }
}
