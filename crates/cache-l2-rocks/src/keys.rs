//! RocksDB keys: the 16-byte namespace identifier followed by the 32-byte key hash.
//!
//! User strings never reach RocksDB keys, so a namespace containing `:` or `/` cannot collide
//! with another one, and every key of a namespace shares one 16-byte prefix: clearing a namespace
//! is a single `delete_range` over [`namespace_bounds`].
//! The record stored under the key holds the namespace and key bytes, and a read checks them, so
//! even a hash collision would be a miss, never a foreign value.

use std::hash::{Hash, Hasher};

use cache_core::{Key, NamespaceId};

/// Length of a RocksDB key written by this tier.
pub const STORAGE_KEY_LEN: usize = 48;

/// The RocksDB key of a cache key: `NamespaceId (16 bytes) ‖ KeyHash (32 bytes)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StorageKey(pub [u8; STORAGE_KEY_LEN]);

impl StorageKey {
    /// The RocksDB key for `key`.
    pub fn new(key: &Key) -> StorageKey {
        let mut k = [0u8; STORAGE_KEY_LEN];
        k[..16].copy_from_slice(&key.namespace().id().0);
        k[16..].copy_from_slice(&key.hash().0);
        StorageKey(k)
    }

    /// Parses a key read back from RocksDB; `None` if it has the wrong length.
    pub fn from_slice(raw: &[u8]) -> Option<StorageKey> {
        raw.try_into().ok().map(StorageKey)
    }

    /// The namespace prefix.
    pub(crate) fn namespace_prefix(&self) -> &[u8] {
        &self.0[..16]
    }
}

impl AsRef<[u8]> for StorageKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Hash for StorageKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Bytes 16..24 start the BLAKE3 key hash: already uniform.
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[16..24]);
        state.write_u64(u64::from_le_bytes(b));
    }
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StorageKey(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…")?;
        for b in &self.0[16..20] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The half-open key range `[start, end)` holding every key of the namespace `ns`.
///
/// `start` is the 16-byte prefix itself; `end` is the prefix followed by 33 bytes of `0xff`,
/// which sorts after every 48-byte key with that prefix and before every key with a larger one.
pub fn namespace_bounds(ns: &NamespaceId) -> ([u8; 16], [u8; 49]) {
    let mut end = [0xffu8; 49];
    end[..16].copy_from_slice(&ns.0);
    (ns.0, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_do_not_collide_and_prefix_is_the_namespace() {
        let a = StorageKey::new(&Key::new("a:b", "c").unwrap());
        let b = StorageKey::new(&Key::new("a", "b:c").unwrap());
        assert_ne!(a, b);
        let k = Key::new("ns", "k").unwrap();
        assert_eq!(StorageKey::new(&k).namespace_prefix(), &k.namespace().id().0);
    }

    #[test]
    fn bounds_cover_exactly_the_namespace() {
        for prefix in [[0u8; 16], [0xff; 16], [0x7f; 16]] {
            let ns = NamespaceId(prefix);
            let (start, end) = namespace_bounds(&ns);
            let mut lowest = [0u8; 48];
            lowest[..16].copy_from_slice(&prefix);
            let mut highest = [0xffu8; 48];
            highest[..16].copy_from_slice(&prefix);
            assert!(start.as_slice() <= lowest.as_slice());
            assert!(highest.as_slice() < end.as_slice());
            if prefix != [0xff; 16] {
                let mut next = [0u8; 48];
                next[..16].copy_from_slice(&prefix);
                next[15] += 1;
                assert!(next.as_slice() > end.as_slice());
            }
            if prefix != [0; 16] {
                let mut prev = [0xffu8; 48];
                prev[..16].copy_from_slice(&prefix);
                prev[15] -= 1;
                assert!(prev.as_slice() < start.as_slice());
            }
        }
    }
}
