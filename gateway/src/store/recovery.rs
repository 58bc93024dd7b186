//! Reading everything back at start-up.
//!
//! Queue entries (Index and Body) are joined by key into one
//! [`RecoveredQueue`] per queue id; the queue rebuilt under that id takes them
//! ([`crate::core::queue::Queue::restored`]). Meta records are handed out by
//! kind to whoever owns them (the vhosts, the session registry, SQS, SNS).
//! A record that does not decode is skipped and removed with one warning line
//! naming it; nothing here panics on bad data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::codec::{EntryRecord, decode_message};
use super::{Key, Op, Ops, Space, Store, StoreError, keys};
use crate::core::bytestr::ByteStr;
use crate::core::queue::{RecoveredDedup, RecoveredEntry, RecoveredQueue, decode_dedup};

/// One meta record: its key parts and value.
#[derive(Debug, Clone)]
pub struct MetaRecord {
    /// The key's parts after the kind byte.
    pub parts: Vec<Vec<u8>>,
    /// The value.
    pub value: Bytes,
}

impl MetaRecord {
    /// Part `i` as text (lossy).
    pub fn part(&self, i: usize) -> String {
        self.parts
            .get(i)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default()
    }
}

/// Everything the store held at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Queue entries and deduplication records by queue id.
    pub queues: HashMap<u64, RecoveredQueue>,
    /// Meta records by kind byte.
    pub meta: HashMap<u8, Vec<MetaRecord>>,
    /// Highest message id seen.
    pub max_message_id: u64,
    /// Records skipped because they did not decode.
    pub corrupt: usize,
}

impl Recovered {
    /// The meta records of `kind` (taken; a second call returns none).
    pub fn take(&mut self, kind: u8) -> Vec<MetaRecord> {
        self.meta.remove(&kind).unwrap_or_default()
    }

    /// Messages and queues recovered.
    pub fn entry_count(&self) -> usize {
        self.queues.values().map(|q| q.entries.len()).sum()
    }
}

/// Reads the whole store.
pub fn load(store: &dyn Store) -> Result<Recovered, StoreError> {
    let mut out = Recovered::default();
    if !store.is_persistent() {
        return Ok(out);
    }
    let mut bad: Vec<(Space, Key)> = Vec::new();
    let mut index: BTreeMap<(u64, u64), EntryRecord> = BTreeMap::new();
    store.scan(Space::Index, &[], &mut |k, v| {
        match (keys::parse_entry_key(k), EntryRecord::decode(&v)) {
            (Some(qs), Ok(rec)) => {
                index.insert(qs, rec);
            }
            (_, Err(e)) => {
                tracing::warn!(key = ?k, error = %e, "skipping a queue entry record that does not decode");
                bad.push((Space::Index, Key::from_slice(k)));
            }
            (None, _) => bad.push((Space::Index, Key::from_slice(k))),
        }
    })?;
    store.scan(Space::Body, &[], &mut |k, v| {
        let Some(qs) = keys::parse_entry_key(k) else {
            bad.push((Space::Body, Key::from_slice(k)));
            return;
        };
        let Some(record) = index.remove(&qs) else {
            // A body whose entry is gone: the removal of the pair was cut in
            // half by a crash. Finish it.
            bad.push((Space::Body, Key::from_slice(k)));
            return;
        };
        match decode_message(&v) {
            Ok(msg) => {
                out.max_message_id = out.max_message_id.max(msg.id);
                out.queues
                    .entry(qs.0)
                    .or_default()
                    .entries
                    .push(RecoveredEntry {
                        seq: qs.1,
                        record,
                        msg: Arc::new(msg),
                    });
            }
            Err(e) => {
                tracing::warn!(queue = qs.0, seq = qs.1, error = %e, "skipping a stored message that does not decode");
                bad.push((Space::Body, Key::from_slice(k)));
                bad.push((Space::Index, keys::entry_key(qs.0, qs.1)));
            }
        }
    })?;
    // Entries without a body.
    for (q, s) in index.keys() {
        bad.push((Space::Index, keys::entry_key(*q, *s)));
    }
    store.scan(Space::Meta, &[], &mut |k, v| {
        let Some((kind, parts)) = keys::meta_parts(k) else {
            tracing::warn!(key = ?k, "skipping a malformed metadata key");
            bad.push((Space::Meta, Key::from_slice(k)));
            return;
        };
        if kind == keys::DEDUP {
            let decoded = match (parts.as_slice(), decode_dedup(&v)) {
                (&[q, scope, id], Some((message_id, seq, until_ms))) => {
                    let q = q.try_into().ok().map(u64::from_be_bytes);
                    let id = ByteStr::try_from(Bytes::copy_from_slice(id)).ok();
                    let scope = ByteStr::try_from(Bytes::copy_from_slice(scope)).ok();
                    q.zip(id).zip(scope).map(|((q, id), scope)| {
                        (
                            q,
                            RecoveredDedup {
                                scope: (!scope.is_empty()).then_some(scope),
                                id,
                                message_id,
                                seq,
                                until_ms,
                            },
                        )
                    })
                }
                _ => None,
            };
            match decoded {
                Some((q, d)) => out.queues.entry(q).or_default().dedup.push(d),
                None => bad.push((Space::Meta, Key::from_slice(k))),
            }
            return;
        }
        out.meta.entry(kind).or_default().push(MetaRecord {
            parts: parts.iter().map(|p| p.to_vec()).collect(),
            value: v,
        });
    })?;
    if !bad.is_empty() {
        out.corrupt = bad.len();
        tracing::warn!(
            records = bad.len(),
            "removed stored records that were incomplete or did not decode"
        );
        let mut ops = Ops::new();
        for (space, key) in bad {
            ops.push(Op::Remove(space, key));
        }
        store.submit(ops);
    }
    for q in out.queues.values_mut() {
        q.entries.sort_by_key(|e| e.seq);
    }
    Ok(out)
}

/// Removes the stored entries of queues nobody claimed (their declaration is
/// gone: a deletion was cut short by a crash).
pub fn drop_orphans(store: &dyn Store, orphans: &[u64]) {
    if orphans.is_empty() {
        return;
    }
    tracing::info!(
        queues = orphans.len(),
        "removing stored messages of queues that no longer exist"
    );
    let mut ops = Ops::new();
    for q in orphans {
        let prefix = keys::queue_prefix(*q);
        ops.push(Op::RemovePrefix(Space::Index, prefix.clone()));
        ops.push(Op::RemovePrefix(Space::Body, prefix));
        ops.push(Op::RemovePrefix(
            Space::Meta,
            keys::meta_key(keys::DEDUP, &[&q.to_be_bytes()]),
        ));
    }
    store.submit(ops);
}
