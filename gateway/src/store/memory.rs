//! A store that keeps nothing: every queue lives in memory only and every
//! ticket is done at once. `storage.engine = "memory"`, and unit tests.

use bytes::Bytes;
use tokio::sync::watch;

use super::{Lsn, Ops, Space, Store, StoreError, StoreStats};

/// Keeps nothing; see the module docs.
#[derive(Debug)]
pub struct MemoryStore {
    done: watch::Sender<Lsn>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            done: watch::Sender::new(Lsn::MAX),
        }
    }
}

impl Store for MemoryStore {
    fn is_persistent(&self) -> bool {
        false
    }

    fn submit(&self, _ops: Ops) -> Lsn {
        0
    }

    fn submitted(&self) -> Lsn {
        0
    }

    fn done(&self) -> watch::Receiver<Lsn> {
        self.done.subscribe()
    }

    fn outcome(&self, _lsn: Lsn) -> Result<(), StoreError> {
        Ok(())
    }

    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn get(&self, _space: Space, _key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(None)
    }

    fn scan(
        &self,
        _space: Space,
        _prefix: &[u8],
        _visit: &mut dyn FnMut(&[u8], Bytes),
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn disk_usage(&self) -> u64 {
        0
    }

    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}
