//! The redb engine (`storage.engine = "redb"`, cargo feature `redb`).
//!
//! [redb](https://docs.rs/redb) keeps everything in one copy-on-write B-tree
//! file, `redb/tether.redb` under `storage.path`, with one table per
//! [`Space`]. Each group-commit batch is one write transaction, so a batch is
//! applied whole or not at all. A crash leaves the last durable commit intact
//! (redb keeps two checksummed commit slots and falls back to the older one);
//! on the next open redb repairs its allocator state by walking the file, which
//! takes longer the larger the file is.
//!
//! This module owns the file format only: the directory lock, the start-up
//! probe and group commit are [`EmbeddedStore`](super::embedded::EmbeddedStore)'s.
//! See `docs/storage.md` for how it compares with fjall.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, Table, TableDefinition};

use super::group_commit::Engine;
use super::{Op, Space, StoreError};

/// Keys and values are raw bytes; [`super::keys`] and [`super::codec`] give
/// them their meaning.
type Bin = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// One table per [`Space`], in [`Space::ALL`] order.
const TABLES: [Bin; 3] = [
    TableDefinition::new("meta"),
    TableDefinition::new("index"),
    TableDefinition::new("body"),
];

fn table(space: Space) -> Bin {
    TABLES[slot(space)]
}

fn slot(space: Space) -> usize {
    match space {
        Space::Meta => 0,
        Space::Index => 1,
        Space::Body => 2,
    }
}

/// The redb engine: one database file with a table per [`Space`].
pub struct RedbEngine {
    db: Database,
    file: PathBuf,
}

impl RedbEngine {
    /// Opens (or creates) the database file `file` (its directory must exist),
    /// with a page cache of `cache_bytes`.
    pub fn open(file: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
            .create(file)
            .map_err(|e| redb_error(file, e))?;
        let engine = RedbEngine {
            db,
            file: file.to_owned(),
        };
        // Create the tables now, so readers never meet a missing one.
        let txn = engine.db.begin_write().map_err(|e| engine.error(e))?;
        for def in TABLES {
            txn.open_table(def).map_err(|e| engine.error(e))?;
        }
        txn.commit().map_err(|e| engine.error(e))?;
        Ok(engine)
    }

    fn error(&self, e: impl Into<redb::Error>) -> StoreError {
        redb_error(&self.file, e)
    }
}

fn redb_error(file: &Path, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) => StoreError::Io(io.to_string()),
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked(file.display().to_string()),
        redb::Error::PreviousIo => {
            StoreError::Failed("an earlier write to the database failed".into())
        }
        redb::Error::Corrupted(m) => StoreError::Corrupt(m),
        e @ redb::Error::UpgradeRequired(_) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Failed(format!("redb: {other}")),
    }
}

/// The key range holding every key that starts with `prefix`.
fn prefix_range(prefix: &[u8]) -> (Bound<&[u8]>, Bound<Vec<u8>>) {
    // The first key after the range: the prefix with its last byte below 0xff
    // incremented and what follows it dropped. A prefix of only 0xff bytes
    // (or an empty one) runs to the end of the table.
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (Bound::Included(prefix), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix), Bound::Unbounded)
}

fn as_slices<'a>(
    (lo, hi): &'a (Bound<&'a [u8]>, Bound<Vec<u8>>),
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (*lo, hi.as_ref().map(Vec::as_slice))
}

impl Engine for RedbEngine {
    fn apply(&self, ops: &[Op], sync: bool) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        // A non-durable commit is visible to readers at once and is made
        // durable by the next durable commit (see `sync`).
        let durability = if sync {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).map_err(|e| self.error(e))?;
        {
            let mut open: [Option<Table<&[u8], &[u8]>>; 3] = [None, None, None];
            for op in ops {
                let (Op::Put(space, ..) | Op::Remove(space, _) | Op::RemovePrefix(space, _)) = op;
                let t = match &mut open[slot(*space)] {
                    Some(t) => t,
                    empty => {
                        empty.insert(txn.open_table(table(*space)).map_err(|e| self.error(e))?)
                    }
                };
                match op {
                    Op::Put(_, k, v) => {
                        t.insert(k.as_slice(), v.as_ref())
                            .map_err(|e| self.error(e))?;
                    }
                    Op::Remove(_, k) => {
                        t.remove(k.as_slice()).map_err(|e| self.error(e))?;
                    }
                    Op::RemovePrefix(_, p) => {
                        let range = prefix_range(p);
                        t.retain_in::<&[u8], _>(as_slices(&range), |_, _| false)
                            .map_err(|e| self.error(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    fn sync(&self) -> Result<(), StoreError> {
        // An empty durable commit persists every non-durable one before it.
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let t = txn.open_table(table(space)).map_err(|e| self.error(e))?;
        let v = t.get(key).map_err(|e| self.error(e))?;
        Ok(v.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], Bytes),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let t = txn.open_table(table(space)).map_err(|e| self.error(e))?;
        let range = prefix_range(prefix);
        for kv in t
            .range::<&[u8]>(as_slices(&range))
            .map_err(|e| self.error(e))?
        {
            let (k, v) = kv.map_err(|e| self.error(e))?;
            visit(k.value(), Bytes::copy_from_slice(v.value()));
        }
        Ok(())
    }

    fn disk_usage(&self) -> u64 {
        std::fs::metadata(&self.file).map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Key, Ops};

    fn engine() -> (tempfile::TempDir, RedbEngine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = RedbEngine::open(&dir.path().join("t.redb"), 1 << 20).unwrap();
        (dir, engine)
    }

    fn put(space: Space, k: &[u8], v: &'static [u8]) -> Op {
        Op::Put(space, Key::from_slice(k), Bytes::from_static(v))
    }

    fn keys(e: &RedbEngine, space: Space, prefix: &[u8]) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        e.scan(space, prefix, &mut |k, _| seen.push(k.to_vec()))
            .unwrap();
        seen
    }

    #[test]
    fn applied_puts_and_removes_are_read_back() {
        let (_dir, e) = engine();
        let ops: Ops = [
            put(Space::Meta, b"a", b"1"),
            put(Space::Body, b"a", b"body"),
            put(Space::Meta, b"b", b"2"),
        ]
        .into_iter()
        .collect();
        e.apply(&ops, true).unwrap();
        e.apply(&[Op::Remove(Space::Meta, Key::from_slice(b"b"))], false)
            .unwrap();
        assert_eq!(
            e.get(Space::Meta, b"a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            e.get(Space::Body, b"a").unwrap().as_deref(),
            Some(&b"body"[..])
        );
        assert_eq!(e.get(Space::Meta, b"b").unwrap(), None);
        assert_eq!(e.get(Space::Index, b"a").unwrap(), None);
    }

    #[test]
    fn scan_visits_only_the_prefix_in_key_order() {
        let (_dir, e) = engine();
        let ops: Vec<Op> = [&b"q2/b"[..], b"q1/x", b"q2/a", b"q3", b"q2"]
            .iter()
            .map(|k| put(Space::Index, k, b""))
            .collect();
        e.apply(&ops, true).unwrap();
        assert_eq!(
            keys(&e, Space::Index, b"q2/"),
            vec![b"q2/a".to_vec(), b"q2/b".to_vec()]
        );
        assert_eq!(keys(&e, Space::Index, b"").len(), 5);
        assert!(keys(&e, Space::Meta, b"").is_empty());
    }

    #[test]
    fn remove_prefix_removes_every_key_with_the_prefix_and_nothing_else() {
        let (_dir, e) = engine();
        let ops: Vec<Op> = [
            &b"q\x01\xff"[..],
            b"q\x01\xff\x00",
            b"q\x01\xff\xff\xff",
            b"q\x02",
            b"q\x01\xfe",
        ]
        .iter()
        .map(|k| put(Space::Body, k, b"v"))
        .chain([put(Space::Meta, b"q\x01\xff", b"other space")])
        .collect();
        e.apply(&ops, true).unwrap();
        e.apply(
            &[Op::RemovePrefix(Space::Body, Key::from_slice(b"q\x01\xff"))],
            true,
        )
        .unwrap();
        assert_eq!(
            keys(&e, Space::Body, b""),
            vec![b"q\x01\xfe".to_vec(), b"q\x02".to_vec()]
        );
        assert_eq!(keys(&e, Space::Meta, b"").len(), 1);
        // A prefix of only 0xff bytes runs to the end of the key space.
        e.apply(&[put(Space::Index, b"\xff\xff\x01", b"")], true)
            .unwrap();
        e.apply(
            &[Op::RemovePrefix(Space::Index, Key::from_slice(b"\xff"))],
            true,
        )
        .unwrap();
        assert!(keys(&e, Space::Index, b"").is_empty());
    }

    #[test]
    fn a_batch_with_a_put_and_a_prefix_removal_applies_in_order() {
        let (_dir, e) = engine();
        e.apply(&[put(Space::Meta, b"x/1", b"")], true).unwrap();
        e.apply(
            &[
                Op::RemovePrefix(Space::Meta, Key::from_slice(b"x/")),
                put(Space::Meta, b"x/2", b""),
            ],
            false,
        )
        .unwrap();
        assert_eq!(keys(&e, Space::Meta, b"x/"), vec![b"x/2".to_vec()]);
    }

    #[test]
    fn synced_non_durable_batches_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.redb");
        {
            let e = RedbEngine::open(&file, 1 << 20).unwrap();
            e.apply(&[put(Space::Meta, b"k", b"v")], false).unwrap();
            e.sync().unwrap();
            assert!(e.disk_usage() > 0);
        }
        let e = RedbEngine::open(&file, 1 << 20).unwrap();
        assert_eq!(
            e.get(Space::Meta, b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
}
