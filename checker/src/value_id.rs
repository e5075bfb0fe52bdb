//! Value ids: every value loadgen writes carries a unique 64-bit id in its first bytes, so any
//! read names the write it observed (Elle's "recoverability": no read is ambiguous).
//!
//! Layout (all values are at least [`MIN_LEN`] = 16 bytes):
//!
//! | bytes  | content                                   |
//! |--------|-------------------------------------------|
//! | 0..8   | [`MAGIC`], `b"kvVID\x00\x00\x01"`          |
//! | 8..16  | the id, big-endian u64                    |
//! | 16..   | filler: a cheap deterministic function of the id and the offset, so values of the same length still differ and do not compress to nothing |
//!
//! This module does not decide ids (loadgen allocates them, unique per run) and does not check
//! the filler: a read is identified by its id alone.

use crate::CheckerError;

/// The marker in front of every id; a value without it was not written by loadgen.
pub const MAGIC: [u8; 8] = *b"kvVID\x00\x00\x01";

/// The shortest value that can carry an id: magic plus the 8-byte id.
pub const MIN_LEN: usize = 16;

/// Encodes `id` into a value of exactly `len` bytes.
///
/// # Panics
/// When `len < MIN_LEN` (16): such a value cannot carry its id, and a history whose reads
/// cannot be attributed is worthless. Scenario validation rejects smaller value sizes before any
/// value is built; use [`try_encode`] to get an error instead.
pub fn encode(id: u64, len: usize) -> Vec<u8> {
    match try_encode(id, len) {
        Ok(v) => v,
        Err(e) => panic!("value_id::encode: {e}"),
    }
}

/// Like [`encode`], but reports a too-short `len` as [`CheckerError::ValueTooShort`].
pub fn try_encode(id: u64, len: usize) -> Result<Vec<u8>, CheckerError> {
    let mut buf = vec![0u8; len];
    encode_into(id, &mut buf)?;
    Ok(buf)
}

/// Writes `id` into `buf` (its whole length), reusing the caller's buffer: loadgen sends values
/// up to 1 MB and need not allocate one per write.
pub fn encode_into(id: u64, buf: &mut [u8]) -> Result<(), CheckerError> {
    if buf.len() < MIN_LEN {
        return Err(CheckerError::ValueTooShort {
            len: buf.len(),
            min: MIN_LEN,
        });
    }
    buf[..8].copy_from_slice(&MAGIC);
    buf[8..16].copy_from_slice(&id.to_be_bytes());
    // xorshift64 seeded by the id: cheap, deterministic, never all zero.
    let mut state = id ^ 0x9E37_79B9_7F4A_7C15;
    for chunk in buf[16..].chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    Ok(())
}

/// The id carried by `value`, or `None` when it is too short or lacks [`MAGIC`] (a value not
/// written by loadgen: the checker reports a read of it as a phantom).
pub fn decode(value: &[u8]) -> Option<u64> {
    if value.len() < MIN_LEN || value[..8] != MAGIC {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&value[8..16]);
    Some(u64::from_be_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_interesting_length() {
        for (id, len) in [
            (0, 16),
            (1, 17),
            (u64::MAX, 23),
            (42, 24),
            (7, 1024),
            (9, 1 << 20),
        ] {
            let v = encode(id, len);
            assert_eq!(v.len(), len);
            assert_eq!(decode(&v), Some(id), "id {id} len {len}");
        }
    }

    #[test]
    fn rejects_short_or_foreign_values() {
        assert!(matches!(
            try_encode(1, 15),
            Err(CheckerError::ValueTooShort { len: 15, min: 16 })
        ));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&encode(5, 16)[..15]), None);
        let mut foreign = encode(5, 32);
        foreign[0] ^= 1;
        assert_eq!(decode(&foreign), None);
        assert_eq!(decode(&[0u8; 64]), None);
    }

    #[test]
    fn same_length_values_of_different_ids_differ_in_filler() {
        let a = encode(1, 64);
        let b = encode(2, 64);
        assert_ne!(a[16..], b[16..]);
    }

    #[test]
    #[should_panic(expected = "minimum of 16")]
    fn encode_panics_below_minimum() {
        let _ = encode(1, 8);
    }
}
