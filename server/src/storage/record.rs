//! The on-disk record: how one versioned write is framed in a segment, and how a segment's bytes
//! are parsed back (with resynchronisation past corruption).
//!
//! Layout, little-endian, [`HEADER_LEN`] bytes of header then the key then the value:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC32C of every byte after this field (rest of header, key, value) |
//! | 4 | 1 | kind: 1 value, 2 tombstone, 3 removal, 4 version marker |
//! | 5 | 4 | key length |
//! | 9 | 4 | value length |
//! | 13 | 8 | version HLC |
//! | 21 | 4 | version node |
//! | 25 | 8 | expiry, ms since the Unix epoch, 0 = never |
//!
//! Lengths are checked against hard bounds and against the bytes actually present before
//! anything is allocated, so an absurd length field never causes a huge allocation. This module
//! does no I/O; it works on byte slices.

use bytes::Bytes;
use kvstore_proto::Version;

use super::Entry;

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 33;
/// Hard bound on a key's length in a record (far above the configured key limit).
pub const MAX_KEY_LEN: usize = 16 * 1024 * 1024;
/// Hard bound on a value's length in a record (far above the configured value limit).
pub const MAX_VALUE_LEN: usize = 1024 * 1024 * 1024;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value, possibly expiring.
    Value = 1,
    /// A delete, kept with its version.
    Tombstone = 2,
    /// Physical removal of the key if its stored version is at most the record's version
    /// (rebalancing); never stored in the index itself.
    Removal = 3,
    /// Carries only a version: the highest version ever applied, written by compaction so the
    /// HLC floor survives records it dropped. Its key is empty.
    Marker = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Value,
            2 => Self::Tombstone,
            3 => Self::Removal,
            4 => Self::Marker,
            _ => return None,
        })
    }
}

/// A record's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the record says.
    pub kind: Kind,
    /// Key length in bytes.
    pub key_len: usize,
    /// Value length in bytes.
    pub value_len: usize,
    /// The version.
    pub version: Version,
    /// Expiry in ms since the epoch, 0 = never.
    pub expires_at_ms: u64,
}

impl Header {
    /// The whole record's length.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.key_len + self.value_len
    }
}

/// Appends the framed record to `out`.
pub fn encode(
    out: &mut Vec<u8>,
    kind: Kind,
    key: &[u8],
    value: &[u8],
    version: Version,
    expires_at_ms: u64,
) {
    let start = out.len();
    out.reserve(HEADER_LEN + key.len() + value.len());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(&version.hlc.to_le_bytes());
    out.extend_from_slice(&version.node.to_le_bytes());
    out.extend_from_slice(&expires_at_ms.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the record for `entry` under `key`.
pub fn encode_entry(out: &mut Vec<u8>, key: &str, entry: &Entry) {
    let kind = if entry.tombstone {
        Kind::Tombstone
    } else {
        Kind::Value
    };
    let value: &[u8] = if entry.tombstone { &[] } else { &entry.value };
    encode(
        out,
        kind,
        key.as_bytes(),
        value,
        entry.version,
        entry.expires_at_ms,
    );
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses a header, checking only the bounds a header alone can show (not the CRC).
pub fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < HEADER_LEN {
        return None;
    }
    let kind = Kind::from_u8(b[4])?;
    let key_len = u32_at(b, 5) as usize;
    let value_len = u32_at(b, 9) as usize;
    let key_ok = match kind {
        Kind::Marker => key_len == 0,
        _ => (1..=MAX_KEY_LEN).contains(&key_len),
    };
    let value_ok = match kind {
        Kind::Value => value_len <= MAX_VALUE_LEN,
        _ => value_len == 0,
    };
    if !key_ok || !value_ok {
        return None;
    }
    Some(Header {
        kind,
        key_len,
        value_len,
        version: Version::new(u64_at(b, 13), u32_at(b, 21)),
        expires_at_ms: u64_at(b, 25),
    })
}

/// A record parsed and checked from a buffer holding it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The header.
    pub header: Header,
    /// The key bytes (UTF-8 checked).
    pub key: &'a str,
}

/// Parses and verifies the record at the start of `b`: bounds, CRC and a UTF-8 key. `None`
/// when any check fails or `b` is too short to hold the record it announces.
pub fn parse(b: &[u8]) -> Option<Parsed<'_>> {
    let header = parse_header(b)?;
    let len = header.record_len();
    if b.len() < len {
        return None;
    }
    if crc32c::crc32c(&b[4..len]) != u32_at(b, 0) {
        return None;
    }
    let key = std::str::from_utf8(&b[HEADER_LEN..HEADER_LEN + header.key_len]).ok()?;
    Some(Parsed { header, key })
}

/// Turns a whole, verified record of kind value or tombstone into an [`Entry`], sharing the
/// value's bytes with `record`.
pub fn entry_of(record: &Bytes) -> Option<Entry> {
    let p = parse(record)?;
    let h = p.header;
    let start = HEADER_LEN + h.key_len;
    match h.kind {
        Kind::Value => Some(Entry {
            value: record.slice(start..start + h.value_len),
            version: h.version,
            tombstone: false,
            expires_at_ms: h.expires_at_ms,
        }),
        Kind::Tombstone => Some(Entry::tombstone(h.version)),
        Kind::Removal | Kind::Marker => None,
    }
}

/// One step of scanning a segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A good record at the given offset.
    Record(usize, Parsed<'a>),
    /// Bytes `[from, to)` hold no valid record, but a valid one starts at `to`.
    Skipped {
        /// First bad byte.
        from: usize,
        /// Where the next good record starts.
        to: usize,
    },
    /// No valid record from this offset to the end: a torn or garbage tail.
    Tail(usize),
}

/// Walks a segment's bytes record by record, resynchronising past corruption by searching for
/// the next offset where a record with a valid CRC starts.
#[derive(Debug)]
pub struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// Scans `buf` from `start`.
    pub fn new(buf: &'a [u8], start: usize) -> Self {
        Self { buf, pos: start }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Scan<'a>;

    fn next(&mut self) -> Option<Scan<'a>> {
        let buf = self.buf;
        if self.pos >= buf.len() {
            return None;
        }
        let at = self.pos;
        if let Some(p) = parse(&buf[at..]) {
            self.pos = at + p.header.record_len();
            return Some(Scan::Record(at, p));
        }
        for candidate in at + 1..buf.len().saturating_sub(HEADER_LEN - 1) {
            if parse(&buf[candidate..]).is_some() {
                self.pos = candidate;
                return Some(Scan::Skipped {
                    from: at,
                    to: candidate,
                });
            }
        }
        self.pos = buf.len();
        Some(Scan::Tail(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &[u8], hlc: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_entry(
            &mut out,
            key,
            &Entry::value(value.to_vec(), Version::new(hlc, 1)),
        );
        out
    }

    #[test]
    fn round_trips_values_and_tombstones() {
        let mut buf = rec("k", b"hello", 7);
        encode_entry(&mut buf, "gone", &Entry::tombstone(Version::new(9, 2)));
        let first = Bytes::copy_from_slice(&buf[..HEADER_LEN + 1 + 5]);
        let e = entry_of(&first).unwrap();
        assert_eq!(e, Entry::value(&b"hello"[..], Version::new(7, 1)));
        let records: Vec<_> = Scanner::new(&buf, 0).collect();
        assert_eq!(records.len(), 2);
        match &records[1] {
            Scan::Record(at, p) => {
                assert_eq!(*at, HEADER_LEN + 6);
                assert_eq!(p.key, "gone");
                assert_eq!(p.header.kind, Kind::Tombstone);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absurd_lengths_are_refused_before_allocating() {
        let mut buf = rec("k", b"v", 1);
        buf[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_header(&buf).is_none());
        let mut buf = rec("k", b"v", 1);
        buf[5..9].copy_from_slice(&0u32.to_le_bytes());
        assert!(parse_header(&buf).is_none(), "an empty key is not a record");
    }

    #[test]
    fn scanner_skips_a_corrupt_record_and_reports_a_torn_tail() {
        let mut buf = rec("a", b"1111", 1);
        let second = buf.len();
        buf.extend(rec("b", b"2222", 2));
        let third = buf.len();
        buf.extend(rec("c", b"3333", 3));
        buf[second + 2] ^= 0x40;
        buf.extend_from_slice(&rec("d", b"4444", 4)[..20]);
        let steps: Vec<_> = Scanner::new(&buf, 0).collect();
        assert!(matches!(steps[0], Scan::Record(0, _)));
        assert_eq!(
            steps[1],
            Scan::Skipped {
                from: second,
                to: third
            }
        );
        assert!(matches!(steps[2], Scan::Record(at, _) if at == third));
        assert_eq!(steps[3], Scan::Tail(third + HEADER_LEN + 5));
        assert_eq!(steps.len(), 4);
    }
}
