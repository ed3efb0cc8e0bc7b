//! Self-checking values: each value names its key and version and carries a checksum, so a
//! reader can tell from the bytes alone whether it got exactly a value that was written for that
//! key, and which one.
//!
//! Layout (little-endian): `"TRV1"`, key id (u32), version (u64), expiry in ms (u64, 0 = none),
//! total length (u32), filler derived from key and version, FNV-1a 64 of everything before it.

use bytes::Bytes;

const MAGIC: &[u8; 4] = b"TRV1";
/// The shortest value: the fixed fields and the checksum.
pub(crate) const MIN_LEN: usize = 36;

/// What a value says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// The key id it was written for.
    pub(crate) key: u32,
    /// Its version.
    pub(crate) version: u64,
    /// Its expiry in ms since the epoch, 0 for none.
    pub(crate) expires_ms: u64,
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The value for `key` at `version`, `len` bytes long (at least [`MIN_LEN`]).
pub(crate) fn encode(key: u32, version: u64, expires_ms: u64, len: usize) -> Bytes {
    let len = len.max(MIN_LEN);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&expires_ms.to_le_bytes());
    v.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    let mut x = version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(key);
    while v.len() < len - 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    let sum = fnv64(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    Bytes::from(v)
}

/// Decodes a value; `None` if it is not exactly a value [`encode`] produced.
pub(crate) fn decode(v: &[u8]) -> Option<Decoded> {
    if v.len() < MIN_LEN || &v[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().expect("8 bytes"));
    if u32_at(24) as usize != v.len() || u64_at(v.len() - 8) != fnv64(&v[..v.len() - 8]) {
        return None;
    }
    let d = Decoded { key: u32_at(4), version: u64_at(8), expires_ms: u64_at(16) };
    // The filler must be the one `encode` derives, too.
    (encode(d.key, d.version, d.expires_ms, v.len()) == v).then_some(d)
}

/// Where values start inside `haystack` (their magic), for attributing damaged bytes.
pub(crate) fn find_all(haystack: &[u8]) -> Vec<(usize, Decoded)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + MIN_LEN <= haystack.len() {
        if &haystack[i..i + 4] == MAGIC {
            let len = u32::from_le_bytes(haystack[i + 24..i + 28].try_into().expect("4")) as usize;
            if len >= MIN_LEN
                && i + len <= haystack.len()
                && let Some(d) = decode(&haystack[i..i + len])
            {
                out.push((i, d));
                i += len;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_any_flip() {
        let v = encode(7, 42, 1234, 100);
        assert_eq!(decode(&v), Some(Decoded { key: 7, version: 42, expires_ms: 1234 }));
        for bit in 0..v.len() * 8 {
            let mut w = v.to_vec();
            w[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&w), None, "bit {bit}");
        }
        assert_eq!(decode(&v[..99]), None);
        let mut longer = v.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        let mut hay = vec![0u8; 10];
        hay.extend_from_slice(&v);
        hay.extend_from_slice(&encode(8, 1, 0, 40));
        let found: Vec<usize> = find_all(&hay).into_iter().map(|(i, _)| i).collect();
        assert_eq!(found, vec![10, 110]);
    }
}
