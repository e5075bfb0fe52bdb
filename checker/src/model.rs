//! The compact in-memory form of a history the rules run over: keys and replica addresses
//! interned, one small [`Op`] per row grouped by key, the value id -> put index every rule
//! needs, and (op id, line) pairs sorted once at the end to refuse reused op ids.
//!
//! Building it streams the rows once; it keeps no strings per row (a 1,000,000-row history
//! peaks at about 250 MB, all indexes included). It validates cross-row consistency (reused op
//! ids or value ids) but judges nothing about the store.

use crate::fasthash::FastMap as HashMap;

use kvstore_proto::Version;

use crate::{CheckerError, OpKind, Outcome, Record};

/// One operation, as the rules need it.
#[derive(Clone, Debug)]
pub(crate) struct Op {
    /// 1-based CSV line (header = line 1).
    pub line: u64,
    pub op_id: u64,
    pub invoke: u64,
    pub complete: u64,
    pub version: Option<Version>,
    pub value_id: Option<u64>,
    pub ttl_ms: Option<u64>,
    pub expires_at_ms: Option<u64>,
    pub kind: OpKind,
    pub outcome: Outcome,
    pub tombstone: bool,
    /// Interned replica address for final reads of one replica; `None` through the cluster.
    pub replica: Option<u32>,
}

impl Op {
    /// True for an acknowledged put or delete (which always carries a version).
    pub fn is_acked_write(&self) -> bool {
        self.kind.is_write() && self.outcome == Outcome::Ok
    }

    /// True for a read whose result is known (ok get or final read).
    pub fn is_ok_read(&self) -> bool {
        !self.kind.is_write() && self.outcome == Outcome::Ok
    }
}

/// Everything recorded for one key, in file order.
#[derive(Debug, Default)]
pub(crate) struct KeyOps {
    pub name: String,
    pub ops: Vec<Op>,
}

/// Where a put lives: key index and position in that key's `ops`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PutRef {
    pub key: u32,
    pub idx: u32,
}

/// Counts of each kind by outcome, for the summary.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct OutcomeCounts {
    /// Acknowledged / answered.
    pub ok: u64,
    /// Definitely not applied.
    pub fail: u64,
    /// May have been applied.
    pub unknown: u64,
}

impl OutcomeCounts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }

    /// All three together.
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.unknown
    }
}

/// The parsed history.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub keys: Vec<KeyOps>,
    key_index: HashMap<String, u32>,
    pub replicas: Vec<String>,
    replica_index: HashMap<String, u32>,
    pub puts: HashMap<u64, PutRef>,
    /// (op_id, line) of every row, in file order.
    op_lines: Vec<(u64, u64)>,
    pub puts_count: OutcomeCounts,
    pub deletes_count: OutcomeCounts,
    pub gets_count: OutcomeCounts,
    pub final_reads_count: OutcomeCounts,
    /// Rows counted by `seal`.
    rows: u64,
}

impl Model {
    /// Adds one validated row.
    pub fn add(&mut self, line: u64, r: Record) -> Result<(), CheckerError> {
        // Checked for reuse in `seal`: a sort there is far cheaper than a 1M-entry hash set.
        self.op_lines.push((r.op_id, line));
        let key = match self.key_index.get(&r.key) {
            Some(&k) => k,
            None => {
                let k = u32::try_from(self.keys.len()).map_err(|_| {
                    CheckerError::field(line, "key", "more than 2^32 distinct keys")
                })?;
                self.key_index.insert(r.key.clone(), k);
                self.keys.push(KeyOps {
                    name: r.key,
                    ops: Vec::new(),
                });
                k
            }
        };
        let replica = match r.replica {
            None => None,
            Some(addr) => Some(match self.replica_index.get(&addr) {
                Some(&i) => i,
                None => {
                    let i = self.replicas.len() as u32;
                    self.replica_index.insert(addr.clone(), i);
                    self.replicas.push(addr);
                    i
                }
            }),
        };
        if r.kind == OpKind::Put {
            let id = r.value_id.unwrap_or_default();
            if let Some(prev) = self.puts.get(&id) {
                let first_line = self.keys[prev.key as usize].ops[prev.idx as usize].line;
                return Err(CheckerError::Inconsistent {
                    line,
                    first_line,
                    message: format!("value_id {id} is written by two puts"),
                });
            }
            let idx = u32::try_from(self.keys[key as usize].ops.len())
                .map_err(|_| CheckerError::field(line, "key", "more than 2^32 rows for one key"))?;
            self.puts.insert(id, PutRef { key, idx });
        }
        match r.kind {
            OpKind::Put => self.puts_count.add(r.outcome),
            OpKind::Delete => self.deletes_count.add(r.outcome),
            OpKind::Get => self.gets_count.add(r.outcome),
            OpKind::FinalRead => self.final_reads_count.add(r.outcome),
        }
        let ops = &mut self.keys[key as usize].ops;
        ops.push(Op {
            line,
            op_id: r.op_id,
            invoke: r.invoke_ns,
            complete: r.complete_ns,
            version: r.version,
            value_id: r.value_id,
            ttl_ms: r.ttl_ms,
            expires_at_ms: r.expires_at_ms,
            kind: r.kind,
            outcome: r.outcome,
            tombstone: r.tombstone,
            replica,
        });
        Ok(())
    }

    /// The put that wrote `value_id`, with its key index.
    pub fn put(&self, value_id: u64) -> Option<(u32, &Op)> {
        self.puts
            .get(&value_id)
            .map(|p| (p.key, &self.keys[p.key as usize].ops[p.idx as usize]))
    }

    /// Finishes cross-row validation once every row is in: no op_id may be used twice (the
    /// later row is named).
    pub fn seal(&mut self) -> Result<(), CheckerError> {
        let mut ids = std::mem::take(&mut self.op_lines);
        ids.sort_unstable();
        let dup = ids
            .windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .map(|w| (w[1].1, w[0].1, w[0].0))
            .min();
        let n = ids.len();
        ids.clear();
        ids.shrink_to_fit();
        self.rows = n as u64;
        match dup {
            Some((line, first_line, id)) => Err(CheckerError::Inconsistent {
                line,
                first_line,
                message: format!("op_id {id} is used twice"),
            }),
            None => Ok(()),
        }
    }

    /// Number of rows.
    pub fn operations(&self) -> u64 {
        self.rows.max(self.op_lines.len() as u64)
    }
}
