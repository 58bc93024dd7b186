//! Reading everything back at start-up.
//!
//! Queue entries (the Index space; bodies are read on demand) are grouped
//! into one [`RecoveredQueue`] per queue id; the queue rebuilt under that id takes them
//! ([`crate::core::queue::Queue::restored`]). Meta records are handed out by
//! kind to whoever owns them (the vhosts, the session registry, SQS, SNS).
//! A record that does not decode is skipped and removed with one warning line
//! naming it; nothing here panics on bad data.

use std::collections::HashMap;

use bytes::Bytes;

use super::codec::EntryRecord;
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
    // Only the index is read: bodies stay on disk until a consumer needs them
    // (FIFO queues read theirs when they are rebuilt). An entry and its body
    // are always written and removed in one atomic batch, so neither outlives
    // the other.
    store.scan(Space::Index, &[], &mut |k, v| {
        match (keys::parse_entry_key(k), EntryRecord::decode(&v)) {
            (Some((q, seq)), Ok(record)) => {
                out.max_message_id = out.max_message_id.max(record.msg_id);
                out.queues.entry(q).or_default().entries.push(RecoveredEntry {
                    seq,
                    record,
                    msg: None,
                });
            }
            (parsed, Err(e)) => {
                tracing::warn!(key = ?k, error = %e, "skipping a queue entry record that does not decode");
                bad.push((Space::Index, Key::from_slice(k)));
                if let Some((q, seq)) = parsed {
                    bad.push((Space::Body, keys::entry_key(q, seq)));
                }
            }
            (None, Ok(_)) => bad.push((Space::Index, Key::from_slice(k))),
        }
    })?;
    store.scan(Space::Meta, &[], &mut |k, v| {
        let Some((kind, parts)) = keys::meta_parts(k) else {
            tracing::warn!(key = ?k, "skipping a malformed metadata key");
            bad.push((Space::Meta, Key::from_slice(k)));
            return;
        };
        if kind == keys::COUNTERS {
            let q = parts
                .first()
                .and_then(|p| <[u8; 8]>::try_from(*p).ok())
                .map(u64::from_be_bytes);
            match (q, <[u8; 16]>::try_from(&v[..])) {
                (Some(q), Ok(c)) => {
                    let seq = u64::from_be_bytes(c[..8].try_into().unwrap_or_default());
                    let tag = u64::from_be_bytes(c[8..].try_into().unwrap_or_default());
                    out.queues.entry(q).or_default().counters = Some((seq, tag));
                }
                _ => bad.push((Space::Meta, Key::from_slice(k))),
            }
            return;
        }
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
            "removed stored records that did not decode"
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
        ops.push(Op::Remove(
            Space::Meta,
            keys::meta_key(keys::COUNTERS, &[&q.to_be_bytes()]),
        ));
    }
    store.submit(ops);
}
