//! The history format: one CSV row per operation, written by loadgen while it runs and read by
//! the checker. This module is the single definition of that format (documented with an example
//! in `checker/README.md`); it parses and validates rows but judges nothing.
//!
//! Columns, in this order (the header row is mandatory and checked):
//!
//! | column          | type             | meaning |
//! |-----------------|------------------|---------|
//! | `op_id`         | u64              | unique per history |
//! | `client`        | u32              | loadgen client (worker) that issued it |
//! | `node`          | string           | coordinator address the request was sent to (may be empty) |
//! | `kind`          | `put` `delete` `get` `final_read` | |
//! | `key`           | non-empty string | |
//! | `value_id`      | u64 or empty     | put: id of the value written (required); get/final_read: id of the value read; empty when nothing or a tombstone was read |
//! | `tombstone`     | `true`/`false`/empty | get/final_read only: the read saw a tombstone (or an absent value with a version) |
//! | `outcome`       | `ok` `fail` `unknown` | fail = definitely not applied; unknown = may have been applied (timeout, lost connection) |
//! | `invoke_ns`     | u64              | ns since run start when the request was sent |
//! | `complete_ns`   | u64 >= invoke    | ns since run start when the answer (or the error) came |
//! | `version_hlc`   | u64 or empty     | version returned (write ack, or the version read); required for ok puts and deletes |
//! | `version_node`  | u32 or empty     | the version's node id; set exactly when `version_hlc` is |
//! | `ttl_ms`        | u64 > 0 or empty | puts only |
//! | `expires_at_ms` | u64 or empty     | reads only: the expiry the store reported (0 or empty = none) |
//! | `replica`       | string or empty  | final_read only: the replica read directly (LocalRead); empty = the final read through the cluster |
//!
//! A read of a live value whose bytes carry no value id is recorded with an empty `value_id`,
//! `tombstone=false` and the value's version (the checker reports it as a phantom).
//!
//! Final reads of a replica record the entry exactly as stored: a value (`value_id` + version,
//! even when expired), a tombstone (`tombstone=true`, the tombstone's version, no `value_id`),
//! or nothing stored (all three empty).

use std::io::{Read, Write};

use kvstore_proto::Version;

use crate::CheckerError;

/// The header row, in column order.
pub const COLUMNS: [&str; 15] = [
    "op_id",
    "client",
    "node",
    "kind",
    "key",
    "value_id",
    "tombstone",
    "outcome",
    "invoke_ns",
    "complete_ns",
    "version_hlc",
    "version_node",
    "ttl_ms",
    "expires_at_ms",
    "replica",
];

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// A write of a value (carrying a value id).
    Put,
    /// A write of a tombstone.
    Delete,
    /// A read through the cluster during the run.
    Get,
    /// A read after quiescence: from one replica directly (`replica` set) or through the
    /// cluster (`replica` empty).
    FinalRead,
}

impl OpKind {
    /// The CSV spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Get => "get",
            Self::FinalRead => "final_read",
        }
    }

    /// True for puts and deletes.
    pub const fn is_write(self) -> bool {
        matches!(self, Self::Put | Self::Delete)
    }
}

/// What the client learned about an operation's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: the write is durable on W replicas / the read's result is valid.
    Ok,
    /// Definitely not applied (the request was refused before any replica could write it).
    Fail,
    /// May or may not have been applied (timeout, connection lost after sending).
    Unknown,
}

impl Outcome {
    /// The CSV spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Unknown => "unknown",
        }
    }
}

/// One operation of a history. See the module docs for each field's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Unique per history.
    pub op_id: u64,
    /// Issuing client (worker) number.
    pub client: u32,
    /// Coordinator address the request went to; may be empty.
    pub node: String,
    /// What the operation did.
    pub kind: OpKind,
    /// The key (non-empty).
    pub key: String,
    /// Put: the id written (required). Reads: the id read, `None` when nothing or a tombstone
    /// was read.
    pub value_id: Option<u64>,
    /// Reads only: a tombstone was read.
    pub tombstone: bool,
    /// What the client learned.
    pub outcome: Outcome,
    /// ns since run start when the request was sent.
    pub invoke_ns: u64,
    /// ns since run start when the answer or error arrived; `>= invoke_ns`.
    pub complete_ns: u64,
    /// Version acknowledged (writes) or read (reads); required for ok writes.
    pub version: Option<Version>,
    /// Puts only: time to live in ms (> 0).
    pub ttl_ms: Option<u64>,
    /// Reads only: expiry reported by the store, ms since the Unix epoch (`None` = none).
    pub expires_at_ms: Option<u64>,
    /// Final reads only: the replica read directly; `None` = the final read through the cluster.
    pub replica: Option<String>,
}

impl Record {
    /// Checks the per-row rules (which fields each kind may carry). `line` only labels errors.
    pub fn validate(&self, line: u64) -> Result<(), CheckerError> {
        let err = |col: &str, msg: &str| Err(CheckerError::field(line, col, msg));
        if self.key.is_empty() {
            return err("key", "must not be empty");
        }
        if self.complete_ns < self.invoke_ns {
            return err(
                "complete_ns",
                &format!(
                    "{} is before invoke_ns {}",
                    self.complete_ns, self.invoke_ns
                ),
            );
        }
        match self.kind {
            OpKind::Put if self.value_id.is_none() => {
                return err(
                    "value_id",
                    "required for a put (every written value carries one)",
                );
            }
            OpKind::Delete if self.value_id.is_some() => {
                return err("value_id", "must be empty for a delete");
            }
            _ => {}
        }
        if self.kind.is_write() {
            if self.outcome == Outcome::Ok && self.version.is_none() {
                return err(
                    "version_hlc",
                    &format!("required for an acknowledged {}", self.kind.as_str()),
                );
            }
            if self.tombstone {
                return err("tombstone", "only reads may set it");
            }
            if self.expires_at_ms.is_some() {
                return err("expires_at_ms", "only reads carry it; writes give ttl_ms");
            }
        } else {
            if self.ttl_ms.is_some() {
                return err("ttl_ms", "only puts carry it");
            }
            if self.tombstone && self.value_id.is_some() {
                return err("tombstone", "a tombstone read cannot also name a value_id");
            }
            if self.tombstone && self.version.is_none() {
                return err(
                    "version_hlc",
                    "a tombstone read must give the tombstone's version",
                );
            }
            if self.value_id.is_some() && self.version.is_none() && self.outcome == Outcome::Ok {
                return err(
                    "version_hlc",
                    "a read of a value must give the value's version",
                );
            }
        }
        if self.ttl_ms == Some(0) {
            return err("ttl_ms", "must be > 0 (leave empty for no TTL)");
        }
        if self.ttl_ms.is_some() && self.kind != OpKind::Put {
            return err("ttl_ms", "only puts carry it");
        }
        if self.replica.is_some() && self.kind != OpKind::FinalRead {
            return err("replica", "only final_read rows name a replica");
        }
        Ok(())
    }
}

/// Streams records to CSV. Rows go out as they are written (through the csv crate's buffer):
/// a 1,000,000-operation history never sits in memory.
pub struct HistoryWriter<W: Write> {
    inner: csv::Writer<W>,
    buf: String,
    /// The CSV line the next row will occupy (the header is line 1): names a refused record.
    next_line: u64,
}

impl<W: Write> HistoryWriter<W> {
    /// Starts a history on `out`, writing the header row.
    pub fn new(out: W) -> Result<Self, CheckerError> {
        let mut inner = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(out);
        inner
            .write_record(COLUMNS)
            .map_err(|source| CheckerError::Csv { line: 1, source })?;
        Ok(Self {
            inner,
            buf: String::with_capacity(32),
            next_line: 2,
        })
    }

    /// Appends one row. The record is validated first, so loadgen cannot write a history the
    /// checker would refuse; an error names the line the row would have taken.
    pub fn write(&mut self, r: &Record) -> Result<(), CheckerError> {
        r.validate(self.next_line)?;
        self.next_line += 1;
        self.field(|b| num(b, r.op_id))?;
        self.field(|b| num(b, r.client))?;
        self.field(|b| b.push_str(&r.node))?;
        self.field(|b| b.push_str(r.kind.as_str()))?;
        self.field(|b| b.push_str(&r.key))?;
        self.field(|b| opt(b, r.value_id))?;
        self.field(|b| {
            if !r.kind.is_write() {
                b.push_str(if r.tombstone { "true" } else { "false" });
            }
        })?;
        self.field(|b| b.push_str(r.outcome.as_str()))?;
        self.field(|b| num(b, r.invoke_ns))?;
        self.field(|b| num(b, r.complete_ns))?;
        self.field(|b| opt(b, r.version.map(|v| v.hlc)))?;
        self.field(|b| opt(b, r.version.map(|v| v.node)))?;
        self.field(|b| opt(b, r.ttl_ms))?;
        self.field(|b| opt(b, r.expires_at_ms))?;
        self.field(|b| b.push_str(r.replica.as_deref().unwrap_or_default()))?;
        self.inner
            .write_record(None::<&[u8]>)
            .map_err(|source| CheckerError::Csv { line: 0, source })
    }

    fn field(&mut self, fill: impl FnOnce(&mut String)) -> Result<(), CheckerError> {
        self.buf.clear();
        fill(&mut self.buf);
        self.inner
            .write_field(self.buf.as_bytes())
            .map_err(|source| CheckerError::Csv { line: 0, source })
    }

    /// Pushes buffered rows to the underlying writer.
    pub fn flush(&mut self) -> Result<(), CheckerError> {
        self.inner.flush().map_err(|source| CheckerError::Io {
            what: "writing history",
            source,
        })
    }

    /// Flushes and returns the underlying writer (e.g. to fsync the file).
    pub fn into_inner(self) -> Result<W, CheckerError> {
        self.inner.into_inner().map_err(|e| CheckerError::Io {
            what: "writing history",
            source: std::io::Error::other(e.to_string()),
        })
    }
}

fn num<T: std::fmt::Display>(b: &mut String, v: T) {
    use std::fmt::Write as _;
    let _ = write!(b, "{v}");
}

fn opt<T: std::fmt::Display>(b: &mut String, v: Option<T>) {
    if let Some(v) = v {
        num(b, v);
    }
}

/// Reads a history row by row, yielding `(line, record)` where `line` is the 1-based CSV line
/// (the header is line 1). Every error names the line and the column.
pub struct HistoryReader<R: Read> {
    inner: csv::Reader<R>,
    row: csv::ByteRecord,
    done: bool,
}

impl<R: Read> HistoryReader<R> {
    /// Opens a history and checks its header against [`COLUMNS`].
    pub fn new(input: R) -> Result<Self, CheckerError> {
        let mut inner = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(input);
        let header = inner
            .byte_headers()
            .map_err(|source| CheckerError::Csv { line: 1, source })?
            .clone();
        let got: Vec<&[u8]> = header.iter().collect();
        let want: Vec<&[u8]> = COLUMNS.iter().map(|c| c.as_bytes()).collect();
        if got != want {
            let first_bad = got
                .iter()
                .zip(&want)
                .position(|(g, w)| g != w)
                .unwrap_or(got.len().min(want.len()));
            return Err(CheckerError::field(
                1,
                "header",
                format!(
                    "expected the {} columns `{}`; column {} differs (found `{}`)",
                    COLUMNS.len(),
                    COLUMNS.join(","),
                    first_bad + 1,
                    got.get(first_bad)
                        .map(|g| String::from_utf8_lossy(g).into_owned())
                        .unwrap_or_else(|| "nothing".into())
                ),
            ));
        }
        Ok(Self {
            inner,
            row: csv::ByteRecord::new(),
            done: false,
        })
    }

    /// Reads the next row; `Ok(None)` at the end.
    pub fn next_record(&mut self) -> Result<Option<(u64, Record)>, CheckerError> {
        if self.done {
            return Ok(None);
        }
        let more = self
            .inner
            .read_byte_record(&mut self.row)
            .map_err(|source| {
                let line = source.position().map(|p| p.line()).unwrap_or(0);
                CheckerError::Csv { line, source }
            })?;
        if !more {
            self.done = true;
            return Ok(None);
        }
        let line = self.row.position().map(|p| p.line()).unwrap_or(0);
        let rec = parse_row(line, &self.row)?;
        rec.validate(line)?;
        Ok(Some((line, rec)))
    }
}

impl<R: Read> Iterator for HistoryReader<R> {
    type Item = Result<(u64, Record), CheckerError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_row(line: u64, row: &csv::ByteRecord) -> Result<Record, CheckerError> {
    if row.len() != COLUMNS.len() {
        return Err(CheckerError::field(
            line,
            "row",
            format!("has {} fields, expected {}", row.len(), COLUMNS.len()),
        ));
    }
    let f = |i: usize| row.get(i).unwrap_or_default();
    let text = |i: usize| -> Result<&str, CheckerError> {
        std::str::from_utf8(f(i)).map_err(|_| CheckerError::field(line, COLUMNS[i], "not UTF-8"))
    };
    let num = |i: usize| -> Result<Option<u64>, CheckerError> {
        let b = f(i);
        if b.is_empty() {
            return Ok(None);
        }
        parse_u64(b).map(Some).ok_or_else(|| {
            CheckerError::field(
                line,
                COLUMNS[i],
                format!(
                    "`{}` is not an unsigned 64-bit integer",
                    String::from_utf8_lossy(b)
                ),
            )
        })
    };
    let req = |i: usize| -> Result<u64, CheckerError> {
        num(i)?.ok_or_else(|| CheckerError::field(line, COLUMNS[i], "required, found empty"))
    };
    let u32_of = |i: usize, v: u64| -> Result<u32, CheckerError> {
        u32::try_from(v).map_err(|_| {
            CheckerError::field(line, COLUMNS[i], format!("{v} exceeds the u32 maximum"))
        })
    };
    let kind = match f(3) {
        b"put" => OpKind::Put,
        b"delete" => OpKind::Delete,
        b"get" => OpKind::Get,
        b"final_read" => OpKind::FinalRead,
        other => {
            return Err(CheckerError::field(
                line,
                "kind",
                format!(
                    "`{}` is not one of put, delete, get, final_read",
                    String::from_utf8_lossy(other)
                ),
            ));
        }
    };
    let tombstone = match f(6) {
        b"" | b"false" => false,
        b"true" => true,
        other => {
            return Err(CheckerError::field(
                line,
                "tombstone",
                format!(
                    "`{}` is not true, false or empty",
                    String::from_utf8_lossy(other)
                ),
            ));
        }
    };
    let outcome = match f(7) {
        b"ok" => Outcome::Ok,
        b"fail" => Outcome::Fail,
        b"unknown" => Outcome::Unknown,
        other => {
            return Err(CheckerError::field(
                line,
                "outcome",
                format!(
                    "`{}` is not one of ok, fail, unknown",
                    String::from_utf8_lossy(other)
                ),
            ));
        }
    };
    let version = match (num(10)?, num(11)?) {
        (Some(hlc), Some(node)) => Some(Version::new(hlc, u32_of(11, node)?)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(CheckerError::field(
                line,
                "version_node",
                "required when version_hlc is set",
            ));
        }
        (None, Some(_)) => {
            return Err(CheckerError::field(
                line,
                "version_hlc",
                "required when version_node is set",
            ));
        }
    };
    let replica = text(14)?;
    Ok(Record {
        op_id: req(0)?,
        client: u32_of(1, req(1)?)?,
        node: text(2)?.to_string(),
        kind,
        key: text(4)?.to_string(),
        value_id: num(5)?,
        tombstone,
        outcome,
        invoke_ns: req(8)?,
        complete_ns: req(9)?,
        version,
        ttl_ms: num(12)?,
        expires_at_ms: num(13)?.filter(|&e| e != 0),
        replica: (!replica.is_empty()).then(|| replica.to_string()),
    })
}

/// Parses a decimal u64 without going through `str` (the hot path of a 1M-row history).
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record {
                op_id: 1,
                client: 0,
                node: "127.0.0.1:7001".into(),
                kind: OpKind::Put,
                key: "k,with \"quotes\"".into(),
                value_id: Some(10),
                tombstone: false,
                outcome: Outcome::Ok,
                invoke_ns: 5,
                complete_ns: 9,
                version: Some(Version::new(1 << 20, 2)),
                ttl_ms: Some(1000),
                expires_at_ms: None,
                replica: None,
            },
            Record {
                op_id: 2,
                client: 1,
                node: String::new(),
                kind: OpKind::FinalRead,
                key: "k".into(),
                value_id: None,
                tombstone: true,
                outcome: Outcome::Ok,
                invoke_ns: 10,
                complete_ns: 12,
                version: Some(Version::new(7, 1)),
                ttl_ms: None,
                expires_at_ms: None,
                replica: Some("127.0.0.1:7002".into()),
            },
            Record {
                op_id: 3,
                client: 1,
                node: "n".into(),
                kind: OpKind::Delete,
                key: "k".into(),
                value_id: None,
                tombstone: false,
                outcome: Outcome::Unknown,
                invoke_ns: 10,
                complete_ns: 10,
                version: None,
                ttl_ms: None,
                expires_at_ms: None,
                replica: None,
            },
        ]
    }

    #[test]
    fn writes_then_reads_back_identical_records_with_line_numbers() {
        let mut w = HistoryWriter::new(Vec::new()).unwrap();
        for r in sample() {
            w.write(&r).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let back: Vec<(u64, Record)> = HistoryReader::new(&bytes[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let lines: Vec<u64> = back.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        let recs: Vec<Record> = back.into_iter().map(|(_, r)| r).collect();
        assert_eq!(recs, sample());
    }

    fn read_err(csv: &str) -> String {
        let mut r = match HistoryReader::new(csv.as_bytes()) {
            Ok(r) => r,
            Err(e) => return e.to_string(),
        };
        loop {
            match r.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => return "no error".into(),
                Err(e) => return e.to_string(),
            }
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        let h = COLUMNS.join(",");
        let cases = [
            (
                "op_id,client\n".to_string(),
                "history line 1, column header: expected the 15 columns",
            ),
            (
                format!("{h}\n1,0,n,put,k,1,,ok,0,1,5,1,,,\n2,0,n,pot,k,2,,ok,0,1,6,1,,,\n"),
                "history line 3, column kind: `pot` is not one of",
            ),
            (
                format!("{h}\n1,0,n,put,k,x1,,ok,0,1,5,1,,,\n"),
                "history line 2, column value_id: `x1` is not an unsigned",
            ),
            (
                format!("{h}\n1,0,n,put,k,1,,ok,0,1,,,,,\n"),
                "history line 2, column version_hlc: required for an acknowledged put",
            ),
            (
                format!("{h}\n1,0,n,put,k,,,unknown,0,1,,,,,\n"),
                "history line 2, column value_id: required for a put",
            ),
            (
                format!("{h}\n1,0,n,get,k,,,ok,5,4,,,,,\n"),
                "history line 2, column complete_ns: 4 is before invoke_ns 5",
            ),
            (
                format!("{h}\n1,0,n,get,k,,,ok,1,4,,,\n"),
                "history line 2, column row: has 13 fields, expected 15",
            ),
            (
                format!("{h}\n1,0,n,put,k,1,,ok,0,1,5,1,0,,\n"),
                "history line 2, column ttl_ms: must be > 0",
            ),
            (
                format!("{h}\n1,0,n,get,k,3,,ok,0,1,5,,,,\n"),
                "history line 2, column version_node: required when version_hlc",
            ),
            (
                format!("{h}\n1,99999999999,n,get,k,,,ok,0,1,,,,,\n"),
                "history line 2, column client: 99999999999 exceeds the u32 maximum",
            ),
            (
                format!("{h}\n1,0,n,get,k,,maybe,ok,0,1,,,,,\n"),
                "history line 2, column tombstone: `maybe` is not true",
            ),
            (
                format!("{h}\n1,0,n,get,k,,,ok,0,1,,,,,r1\n"),
                "history line 2, column replica: only final_read rows",
            ),
        ];
        for (csv, want) in cases {
            let got = read_err(&csv);
            assert!(
                got.starts_with(want),
                "for {csv:?}\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn parse_u64_rejects_overflow_and_signs() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"+1"), None);
        assert_eq!(parse_u64(b""), None);
    }
}
