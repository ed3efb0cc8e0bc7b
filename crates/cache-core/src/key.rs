//! Keys: a namespace plus key bytes, identified by a BLAKE3 hash of an unambiguous encoding.
//!
//! The hash input is `b"K" ‖ u32_le(namespace length) ‖ namespace ‖ key`, so the split between
//! namespace and key is part of what is hashed: `("a:b", "c")` and `("a", "b:c")` never collide.
//! A namespace's own identifier is `BLAKE3(b"N" ‖ u32_le(length) ‖ namespace)`, truncated to 16
//! bytes. User strings never become file or object names: tiers use these hashes instead.

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
};

use bytes::Bytes;

use crate::error::{Error, Result};

/// Longest namespace, in bytes of UTF-8.
pub const MAX_NAMESPACE_LEN: usize = 255;
/// Longest key, in bytes. Hash longer identifiers (prompts, documents) before using them as keys.
pub const MAX_KEY_LEN: usize = 16 * 1024;

const TIER: &str = "core";

/// A validated namespace. Cheap to clone.
///
/// Any UTF-8 string of 1 to [`MAX_NAMESPACE_LEN`] bytes without control characters: `/`, `..`
/// and `:` are fine because namespaces are only ever hashed, never used as paths or separators.
#[derive(Clone)]
pub struct Namespace {
    name: Arc<str>,
    id: NamespaceId,
}

/// The 16-byte identifier of a namespace, used by tiers for prefixes and paths.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceId(pub [u8; 16]);

/// The 32-byte BLAKE3 hash identifying a key within the whole cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

/// A namespace plus key bytes, with its hash computed once at construction.
#[derive(Clone)]
pub struct Key {
    namespace: Namespace,
    key: Bytes,
    hash: KeyHash,
}

impl Namespace {
    /// Validates `name` and computes its identifier.
    ///
    /// ```
    /// use cache_core::{ErrorKind, Namespace};
    ///
    /// let ns = Namespace::new("llm/answers:v2")?; // `/`, `:` and `..` are fine
    /// assert_eq!(ns.as_str(), "llm/answers:v2");
    /// for bad in ["", "tab\there", "nul\0"] {
    ///     assert_eq!(Namespace::new(bad).unwrap_err().kind(), ErrorKind::Invalid);
    /// }
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) if `name` is empty, longer than
    /// [`MAX_NAMESPACE_LEN`] bytes or contains a control character (NUL included).
    pub fn new(name: &str) -> Result<Namespace> {
        if name.is_empty() {
            return Err(Error::invalid(TIER, "namespace is empty"));
        }
        if name.len() > MAX_NAMESPACE_LEN {
            return Err(Error::invalid(
                TIER,
                format!("namespace is {} bytes long; the limit is {MAX_NAMESPACE_LEN}", name.len()),
            ));
        }
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(Error::invalid(
                TIER,
                format!("namespace contains the control character {c:?}"),
            ));
        }
        let mut h = blake3::Hasher::new();
        h.update(b"N");
        h.update(&(name.len() as u32).to_le_bytes());
        h.update(name.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Ok(Namespace { name: name.into(), id: NamespaceId(id) })
    }

    /// Like [`Namespace::new`] for raw bytes, which must be UTF-8.
    ///
    /// ```
    /// use cache_core::{ErrorKind, Namespace};
    ///
    /// assert_eq!(Namespace::from_bytes(b"sessions")?, Namespace::new("sessions")?);
    /// let err = Namespace::from_bytes(&[0xff, 0xfe]).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) for non-UTF-8 bytes or as in [`Namespace::new`].
    pub fn from_bytes(name: &[u8]) -> Result<Namespace> {
        let name = std::str::from_utf8(name)
            .map_err(|e| Error::invalid(TIER, format!("namespace is not UTF-8: {e}")))?;
        Namespace::new(name)
    }

    /// The namespace as given.
    ///
    /// ```
    /// use cache_core::Namespace;
    ///
    /// let ns = Namespace::new("tenant-7/embeddings")?;
    /// assert_eq!(ns.as_str(), "tenant-7/embeddings");
    /// assert_eq!(ns.to_string(), ns.as_str());
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Its 16-byte identifier.
    ///
    /// ```
    /// use cache_core::Namespace;
    ///
    /// let id = Namespace::new("sessions")?.id();
    /// assert_eq!(id, Namespace::new("sessions")?.id(), "a function of the name only");
    /// assert_ne!(id, Namespace::new("Sessions")?.id());
    /// assert_eq!(id.0.len(), 16);
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn id(&self) -> NamespaceId {
        self.id
    }

    /// A key in this namespace.
    ///
    /// ```
    /// use cache_core::{ErrorKind, Key, MAX_KEY_LEN, Namespace};
    ///
    /// let ns = Namespace::new("images")?;
    /// let key = ns.key("cat.png")?;
    /// assert_eq!(key, Key::new("images", "cat.png")?);
    /// assert_eq!(key.namespace(), &ns);
    /// let err = ns.key(vec![0u8; MAX_KEY_LEN + 1]).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) if `key` is longer than [`MAX_KEY_LEN`].
    pub fn key(&self, key: impl Into<Bytes>) -> Result<Key> {
        let key = key.into();
        if key.len() > MAX_KEY_LEN {
            return Err(Error::invalid(
                TIER,
                format!("key is {} bytes long; the limit is {MAX_KEY_LEN}", key.len()),
            ));
        }
        let mut h = blake3::Hasher::new();
        h.update(b"K");
        h.update(&(self.name.len() as u32).to_le_bytes());
        h.update(self.name.as_bytes());
        h.update(&key);
        Ok(Key { namespace: self.clone(), key, hash: KeyHash(*h.finalize().as_bytes()) })
    }
}

impl PartialEq for Namespace {
    fn eq(&self, other: &Namespace) -> bool {
        self.id == other.id && self.name == other.name
    }
}
impl Eq for Namespace {}

impl Hash for Namespace {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Key {
    /// Validates `namespace` and `key` and hashes them.
    ///
    /// ```
    /// use cache_core::{ErrorKind, Key};
    /// let a = Key::new("a:b", "c")?;
    /// let b = Key::new("a", "b:c")?;
    /// assert_ne!(a.hash(), b.hash());
    /// assert_eq!(Key::new("", "c").unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) as in [`Namespace::new`] and [`Namespace::key`].
    pub fn new(namespace: &str, key: impl Into<Bytes>) -> Result<Key> {
        Namespace::new(namespace)?.key(key)
    }

    /// The namespace.
    ///
    /// ```
    /// use cache_core::{Key, Namespace};
    ///
    /// let key = Key::new("images", "cat.png")?;
    /// assert_eq!(key.namespace().as_str(), "images");
    /// assert_eq!(key.namespace().id(), Namespace::new("images")?.id());
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The key bytes, without the namespace.
    ///
    /// ```
    /// use cache_core::Key;
    ///
    /// let key = Key::new("images", "cat.png")?;
    /// assert_eq!(key.key_bytes(), "cat.png");
    /// assert_eq!(&Key::new("ns", vec![0u8, 255])?.key_bytes()[..], [0, 255]);
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn key_bytes(&self) -> &Bytes {
        &self.key
    }

    /// The BLAKE3 hash identifying this key.
    ///
    /// ```
    /// use cache_core::Key;
    ///
    /// let key = Key::new("ns", "k")?;
    /// assert_eq!(key.hash(), Key::new("ns", "k")?.hash());
    /// // BLAKE3(b"K" ‖ u32_le(namespace length) ‖ namespace ‖ key), as the module docs say.
    /// let mut h = blake3::Hasher::new();
    /// h.update(b"K").update(&2u32.to_le_bytes()).update(b"ns").update(b"k");
    /// assert_eq!(key.hash().0, *h.finalize().as_bytes());
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn hash(&self) -> &KeyHash {
        &self.hash
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.key == other.key && self.namespace == other.namespace
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The key hash is already uniform: 8 bytes of it are enough for hash tables.
        state.write_u64(self.hash.prefix_u64());
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("hash", &self.hash)
            .finish()
    }
}

impl KeyHash {
    /// The first 8 bytes, little-endian: a well-mixed `u64` for hash tables and index prefixes.
    ///
    /// ```
    /// use cache_core::Key;
    ///
    /// let hash = *Key::new("ns", "k")?.hash();
    /// let first8: [u8; 8] = hash.0[..8].try_into().unwrap();
    /// assert_eq!(hash.prefix_u64(), u64::from_le_bytes(first8));
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn prefix_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }

    /// Lowercase hex of all 32 bytes.
    ///
    /// ```
    /// use cache_core::KeyHash;
    ///
    /// let mut bytes = [0u8; 32];
    /// bytes[0] = 0xab;
    /// bytes[31] = 0x01;
    /// let hex = KeyHash(bytes).to_hex();
    /// assert_eq!(hex.len(), 64);
    /// assert!(hex.starts_with("ab00") && hex.ends_with("0001"));
    /// ```
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl NamespaceId {
    /// Lowercase hex of all 16 bytes.
    ///
    /// ```
    /// use cache_core::{Namespace, NamespaceId};
    ///
    /// assert_eq!(NamespaceId([0xfe; 16]).to_hex(), "fe".repeat(16));
    /// let hex = Namespace::new("sessions")?.id().to_hex();
    /// assert_eq!(hex.len(), 32);
    /// assert!(hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Debug for NamespaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamespaceId({})", self.to_hex())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn separator_in_namespace_does_not_collide() {
        let a = Key::new("a:b", "c").unwrap();
        let b = Key::new("a", "b:c").unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a, b);
        let c = Key::new("a/b", "c").unwrap();
        let d = Key::new("a", "/b/c").unwrap();
        assert_ne!(c.hash(), d.hash());
    }

    #[test]
    fn same_parts_same_hash() {
        assert_eq!(Key::new("ns", "k").unwrap(), Key::new("ns", "k").unwrap());
        assert_eq!(
            Namespace::new("ns").unwrap().id(),
            Key::new("ns", "x").unwrap().namespace().id()
        );
    }

    #[test]
    fn limits_give_invalid() {
        for bad in ["", "a\0b", "tab\there"] {
            assert_eq!(Namespace::new(bad).unwrap_err().kind(), ErrorKind::Invalid, "{bad:?}");
        }
        let long = "n".repeat(MAX_NAMESPACE_LEN + 1);
        let err = Namespace::new(&long).unwrap_err();
        assert!(err.to_string().contains("limit is 255"), "{err}");
        assert!(Namespace::new(&long[..MAX_NAMESPACE_LEN]).is_ok());
        let err = Key::new("ns", vec![0u8; MAX_KEY_LEN + 1]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(Key::new("ns", vec![0u8; MAX_KEY_LEN]).is_ok());
        assert_eq!(Namespace::from_bytes(&[0xff, 0xfe]).unwrap_err().kind(), ErrorKind::Invalid);
    }

    #[test]
    fn path_like_namespaces_are_just_names() {
        let a = Key::new("..", "k").unwrap();
        let b = Key::new("../other", "k").unwrap();
        assert_ne!(a.namespace().id(), b.namespace().id());
        assert_eq!(a.namespace().id().to_hex().len(), 32);
        assert_eq!(a.hash().to_hex().len(), 64);
    }
}
