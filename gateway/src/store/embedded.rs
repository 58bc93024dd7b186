//! The embedded store: one data directory, one process, nothing to install.
//!
//! Layout of `storage.path`:
//!
//! * `tether.lock`: held (advisory `flock`) for as long as the process runs,
//!   so a second `tether` on the same directory is refused with a clear error.
//! * `fjall/`: the [fjall](https://docs.rs/fjall) database, one keyspace per
//!   [`Space`]. Fjall journals every batch and recovers up to the last whole
//!   one after a crash (a half-written tail is dropped, which is safe: nothing
//!   in it was acknowledged).
//! * or `redb/`: the [redb](https://docs.rs/redb) database
//!   ([`RedbEngine`](super::redb_engine::RedbEngine), cargo feature `redb`).
//!   A directory holds one engine's data; opening it with the other engine is
//!   refused rather than starting empty.
//!
//! Writes go through [`GroupCommit`] over either [`Engine`]; see
//! `docs/storage.md` for why fjall is the default and the measurements behind
//! the choice.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::group_commit::{Engine, GroupCommit, SyncPolicy};
use super::{Lsn, Op, Ops, Space, Store, StoreError, StoreStats};
use crate::config::{StorageConfig, SyncMode};

/// The fjall engine: a database with one keyspace per [`Space`].
pub struct FjallEngine {
    db: Database,
    spaces: [Keyspace; 3],
    dir: PathBuf,
}

impl FjallEngine {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = Database::builder(dir)
            .cache_size(cache_bytes)
            // Bounds the journals kept besides the active one (the minimum).
            .max_journaling_size(64 * 1024 * 1024)
            // Batches reach the OS as they are written; we decide when to fsync.
            .manual_journal_persist(false)
            .open()
            .map_err(|e| fjall_error(dir, e))?;
        let open = |s: Space| {
            db.keyspace(s.name(), KeyspaceCreateOptions::default)
                .map_err(|e| fjall_error(dir, e))
        };
        let spaces = [open(Space::Meta)?, open(Space::Index)?, open(Space::Body)?];
        Ok(FjallEngine {
            db,
            spaces,
            dir: dir.to_owned(),
        })
    }

    fn space(&self, s: Space) -> &Keyspace {
        match s {
            Space::Meta => &self.spaces[0],
            Space::Index => &self.spaces[1],
            Space::Body => &self.spaces[2],
        }
    }
}

fn fjall_error(dir: &Path, e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Locked => StoreError::Locked(dir.display().to_string()),
        fjall::Error::Io(io) => StoreError::Io(io.to_string()),
        fjall::Error::Poisoned => {
            StoreError::Failed("an earlier write to the journal failed".into())
        }
        other => StoreError::Corrupt(format!("{other:?}")),
    }
}

impl Engine for FjallEngine {
    fn apply(&self, ops: &[Op], sync: bool) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Put(s, k, v) => batch.insert(self.space(*s), k.as_slice(), v.as_ref()),
                Op::Remove(s, k) => batch.remove(self.space(*s), k.as_slice()),
                Op::RemovePrefix(s, p) => {
                    let ks = self.space(*s);
                    // Keys put earlier in this batch are not in the keyspace
                    // yet; the prefix covers them too (later puts win).
                    for earlier in &ops[..i] {
                        if let Op::Put(es, k, _) = earlier
                            && es == s
                            && k.starts_with(p)
                        {
                            batch.remove(ks, k.as_slice());
                        }
                    }
                    for kv in ks.prefix(p.as_slice()) {
                        let key = kv.key().map_err(|e| fjall_error(&self.dir, e))?;
                        batch.remove(ks, key);
                    }
                }
            }
        }
        batch.commit().map_err(|e| fjall_error(&self.dir, e))?;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(|e| fjall_error(&self.dir, e))
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.space(space)
            .get(key)
            .map(|v| v.map(|v| Bytes::copy_from_slice(&v)))
            .map_err(|e| fjall_error(&self.dir, e))
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], Bytes),
    ) -> Result<(), StoreError> {
        for kv in self.space(space).prefix(prefix) {
            let (k, v) = kv.into_inner().map_err(|e| fjall_error(&self.dir, e))?;
            visit(&k, Bytes::copy_from_slice(&v));
        }
        Ok(())
    }

    fn disk_usage(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// Gives space back once writes are quiet. Queue data is written and
    /// removed again soon after, and an LSM tree reclaims removed data only
    /// when later writes drive compaction, so a queue that drained and went
    /// quiet would keep its old tables. Here, on the writer thread (so no
    /// write can slip in between the check and the clear): an index or body
    /// keyspace with no live data left is cleared outright, which drops its
    /// tables; and once the journal has grown, memtables are flushed so old
    /// journals can be deleted when the active one rotates (fjall rotates it
    /// at 64 MiB; at most 64 MiB more of sealed journals is kept).
    fn maintain(&self) {
        const COMPACT_AT: u64 = 1024 * 1024;
        const JOURNAL_FLUSH_AT: u64 = 4 * 1024 * 1024;
        let mut compacted = false;
        for space in [Space::Index, Space::Body] {
            let ks = self.space(space);
            if ks.disk_space() > COMPACT_AT && ks.is_empty().unwrap_or(false) {
                compacted = true;
                let before = ks.disk_space();
                // Flush the memtable holding the removals, then compact
                // everything into the last level, where a removal and what
                // it removed both disappear.
                let r = ks
                    .rotate_memtable_and_wait()
                    .and_then(|()| ks.major_compact());
                match r {
                    Ok(()) => tracing::debug!(
                        keyspace = space.name(),
                        before,
                        after = ks.disk_space(),
                        "compacted a drained keyspace"
                    ),
                    Err(e) => {
                        tracing::warn!(keyspace = space.name(), error = ?e, "cannot compact a drained keyspace");
                    }
                }
            }
        }
        if compacted {
            // The replaced tables' files are deleted when fjall collects old
            // versions, which it does on a memtable flush: flush the (tiny)
            // meta keyspace after touching it.
            let meta = self.space(Space::Meta);
            let probe = super::keys::meta_key(super::keys::PROBE, &[]);
            let stamp = super::codec::now_ms_bytes();
            if meta.insert(probe.as_slice(), stamp.as_slice()).is_ok() {
                let _ = meta.rotate_memtable_and_wait();
            }
        }
        if self.db.journal_disk_space().unwrap_or(0) > JOURNAL_FLUSH_AT {
            for ks in &self.spaces {
                if let Err(e) = ks.rotate_memtable() {
                    tracing::warn!(keyspace = %ks.name(), error = ?e, "cannot flush a memtable");
                }
            }
        }
    }
}

/// Engine directories under `storage.path`; a data directory holds one.
const ENGINE_DIRS: [&str; 2] = ["fjall", "redb"];

/// The default [`Store`]: an [`Engine`] (fjall unless asked otherwise) behind
/// group commit, in a locked directory.
pub struct EmbeddedStore<E: Engine = FjallEngine> {
    commit: GroupCommit<E>,
    _lock: File,
    path: PathBuf,
}

impl<E: Engine> std::fmt::Debug for EmbeddedStore<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("commit", &self.commit)
            .finish()
    }
}

impl EmbeddedStore<FjallEngine> {
    /// Opens the fjall store in `path` (see [`EmbeddedStore::open_with`]).
    pub fn open(path: &Path, config: &StorageConfig) -> Result<Self, StoreError> {
        let cache = config.cache_size.as_u64();
        Self::open_with(path, config, "fjall", |dir| FjallEngine::open(dir, cache))
    }
}

impl<E: Engine> EmbeddedStore<E> {
    /// Opens the store in `path`: takes the directory lock, opens the engine
    /// with `open_engine(path/engine_dir)`, and proves it can write (a
    /// read-only or full disk fails here, at start-up, rather than on the
    /// first publish). `engine_dir` is one of `fjall`, `redb`; a directory
    /// already holding the other engine's data is refused.
    pub fn open_with(
        path: &Path,
        config: &StorageConfig,
        engine_dir: &str,
        open_engine: impl FnOnce(&Path) -> Result<E, StoreError>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", path.display())))?;
        let lock_path = path.join("tether.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(path.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io(format!(
                    "cannot lock {}: {e}",
                    lock_path.display()
                )));
            }
        }
        // Switching engines does not convert data: starting empty on top of
        // the other engine's messages would look like data loss.
        if let Some(other) = ENGINE_DIRS
            .into_iter()
            .find(|d| *d != engine_dir && path.join(d).exists())
        {
            return Err(StoreError::Unsupported(format!(
                "{} holds {other} data ({}); storage.engine = \"{engine_dir}\" cannot read it \
                 (use storage.engine = \"{other}\" or another storage.path)",
                path.display(),
                path.join(other).display()
            )));
        }
        let engine = open_engine(&path.join(engine_dir))?;
        // Prove the disk takes writes and syncs now, not at the first publish.
        let mut probe = Ops::new();
        probe.push(Op::Put(
            Space::Meta,
            super::keys::meta_key(super::keys::PROBE, &[]),
            Bytes::copy_from_slice(&super::codec::now_ms_bytes()),
        ));
        engine.apply(&probe, true).map_err(|e| match e {
            StoreError::Io(m) => StoreError::Io(format!("cannot write to {}: {m}", path.display())),
            other => other,
        })?;
        let policy = match config.sync {
            SyncMode::Always => SyncPolicy::Always,
            SyncMode::Interval => SyncPolicy::Interval(config.sync_interval),
        };
        Ok(EmbeddedStore {
            commit: GroupCommit::start(engine, policy),
            _lock: lock,
            path: path.to_owned(),
        })
    }
}

impl<E: Engine> Store for EmbeddedStore<E> {
    fn is_persistent(&self) -> bool {
        true
    }

    fn submit(&self, ops: Ops) -> Lsn {
        self.commit.submit(ops)
    }

    fn submitted(&self) -> Lsn {
        self.commit.submitted()
    }

    fn done(&self) -> tokio::sync::watch::Receiver<Lsn> {
        self.commit.done()
    }

    fn outcome(&self, lsn: Lsn) -> Result<(), StoreError> {
        self.commit.outcome(lsn)
    }

    fn health(&self) -> Result<(), StoreError> {
        self.commit.health()
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.commit.engine().get(space, key)
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], Bytes),
    ) -> Result<(), StoreError> {
        self.commit.engine().scan(space, prefix, visit)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.commit.flush()
    }

    fn disk_usage(&self) -> u64 {
        self.commit.engine().disk_usage()
    }

    fn stats(&self) -> StoreStats {
        self.commit.stats()
    }
}

impl<E: Engine> Drop for EmbeddedStore<E> {
    fn drop(&mut self) {
        self.commit.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Key;

    fn key(k: &[u8]) -> Key {
        Key::from_slice(k)
    }

    #[test]
    fn the_last_write_of_a_key_in_a_batch_wins() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(dir.path(), 1 << 20).unwrap();
        let v = |s: &'static [u8]| Bytes::from_static(s);
        e.apply(
            &[
                Op::Put(Space::Index, key(b"a"), v(b"1")),
                Op::Remove(Space::Index, key(b"a")),
                Op::Remove(Space::Index, key(b"b")),
                Op::Put(Space::Index, key(b"b"), v(b"2")),
                Op::Put(Space::Index, key(b"c"), v(b"3")),
                Op::Put(Space::Index, key(b"c"), v(b"4")),
            ],
            true,
        )
        .unwrap();
        assert_eq!(e.get(Space::Index, b"a").unwrap(), None);
        assert_eq!(e.get(Space::Index, b"b").unwrap(), Some(v(b"2")));
        assert_eq!(e.get(Space::Index, b"c").unwrap(), Some(v(b"4")));
        drop(e);
        // And the same after recovery from the journal.
        let e = FjallEngine::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(e.get(Space::Index, b"a").unwrap(), None);
        assert_eq!(e.get(Space::Index, b"b").unwrap(), Some(v(b"2")));
        assert_eq!(e.get(Space::Index, b"c").unwrap(), Some(v(b"4")));
    }

    #[test]
    fn remove_prefix_covers_earlier_writes_of_the_same_batch_only() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(dir.path(), 1 << 20).unwrap();
        let v = |s: &'static [u8]| Bytes::from_static(s);
        e.apply(&[Op::Put(Space::Body, key(b"q1-old"), v(b"o"))], true)
            .unwrap();
        e.apply(
            &[
                Op::Put(Space::Body, key(b"q1-new"), v(b"n")),
                Op::Put(Space::Body, key(b"q2-x"), v(b"x")),
                Op::RemovePrefix(Space::Body, key(b"q1")),
                Op::Put(Space::Body, key(b"q1-after"), v(b"a")),
            ],
            true,
        )
        .unwrap();
        let mut left = Vec::new();
        e.scan(Space::Body, b"", &mut |k, _| left.push(k.to_vec()))
            .unwrap();
        assert_eq!(left, vec![b"q1-after".to_vec(), b"q2-x".to_vec()]);
    }
}
