//! Records sealed at rest, per namespace: the keys, who supplies them, and the cipher.
//!
//! A persistent tier given a [`KeyProvider`] (through its builder's `encryption` option) seals
//! the value of every record of a namespace the provider has a key for: format version 4
//! (`docs/format.md`), XChaCha20-Poly1305 with a random 192-bit nonce per record, the key id
//! and the nonce stored before the ciphertext. The associated data is the record's head
//! (header, metadata, namespace and key), so a sealed value moved to another key, another
//! namespace, another expiry or another length does not authenticate. A shared disk or bucket
//! then holds ciphertext for the values of those namespaces; their namespace names, keys and
//! metadata (creation time, expiry, version) stay readable, because a tier needs them to find,
//! verify and expire records without the key.
//!
//! Reading a record that does not open (no key with its id, a wrong key, a tampered or
//! truncated ciphertext), or a plaintext record in a namespace the provider seals, is a
//! corrupt record: a miss, counted, and the record is dropped. It is never a panic and never
//! the ciphertext or a stray plaintext returned as a value. The record checksum is verified
//! before decryption is attempted.
//!
//! Why XChaCha20-Poly1305: its 192-bit nonces can be drawn at random for every record without
//! a counter to persist and without a practical bound on how many records one key seals (a
//! 96-bit random nonce, as in AES-GCM, is safe for about 2^32 records per key: half a day of a
//! busy cache), and it is fast in software on every CPU.
//!
//! ```
//! use std::sync::Arc;
//! use cache_core::{EncryptionKey, Entry, Key, KeyId, NamespaceKeys, Namespace, RecordFormat};
//!
//! let tenant = Namespace::new("tenant-a")?;
//! let keys = NamespaceKeys::new().with_key(&tenant, KeyId(1), EncryptionKey::from_bytes([7; 32]));
//! let format = RecordFormat::new().with_keys(Arc::new(keys));
//!
//! let key = tenant.key("user-42/profile")?;
//! let record = format.encode(&key, &Entry::new("a secret profile"))?;
//! assert!(!record.windows(6).any(|w| w == b"secret"));
//! assert_eq!(format.decode(record.clone())?.value(), "a secret profile");
//! // A reader without the key sees a corrupt record, not the ciphertext.
//! assert!(RecordFormat::new().decode(record).is_err());
//! # Ok::<(), cache_core::Error>(())
//! ```

use std::{collections::HashMap, fmt, sync::Arc};

use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{AeadInOut, Generate, KeyInit},
};
use zeroize::Zeroize;

use crate::{
    error::{Error, Result},
    key::Namespace,
};

/// Bytes a sealed value takes beyond its (compressed or raw) plaintext: the key id (4), the
/// nonce (24) and the authentication tag (16).
pub const SEAL_OVERHEAD: usize = 4 + NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Names one key of a namespace, stored in each record sealed under it, so keys can rotate:
/// new records use the provider's current key, older ones open with theirs until they leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {}", self.0)
    }
}

/// A 256-bit key. Its bytes are wiped when it is dropped and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
    /// The key with these bytes (from a key-management service, a secret store, a file).
    pub fn from_bytes(bytes: [u8; 32]) -> EncryptionKey {
        EncryptionKey(bytes)
    }

    /// A fresh key from the operating system's random source.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`](crate::ErrorKind::Internal) if the random source fails.
    pub fn generate() -> Result<EncryptionKey> {
        let key = chacha20poly1305::Key::try_generate().map_err(random_failed)?;
        Ok(EncryptionKey(key.into()))
    }

    /// The key's bytes, to store it where keys are kept.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for EncryptionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

/// Supplies the keys records are sealed and opened with, per namespace.
///
/// A tier calls it on every write and every read of a record, so it should answer from memory
/// (fetch keys from a key service ahead of time, not per call). Return `None` from
/// [`sealing_key`](KeyProvider::sealing_key) for a namespace stored in plaintext.
pub trait KeyProvider: Send + Sync + fmt::Debug + 'static {
    /// The key new records of `namespace` are sealed with and its id, or `None` to store the
    /// namespace's records in plaintext.
    fn sealing_key(&self, namespace: &str) -> Option<(KeyId, EncryptionKey)>;

    /// The key `id` of `namespace`, to open a record sealed under it (the current key or an
    /// older one still in use); `None` if there is no such key, and the record is then a miss.
    fn opening_key(&self, namespace: &str, id: KeyId) -> Option<EncryptionKey>;
}

/// A [`KeyProvider`] that seals the namespaces it was given keys for, each with its own keys,
/// and stores the others in plaintext.
///
/// The last key added for a namespace is the one new records use; earlier ones still open the
/// records sealed under them (key rotation).
///
/// ```
/// use cache_core::{EncryptionKey, KeyId, KeyProvider, Namespace, NamespaceKeys};
/// let tenant = Namespace::new("tenant-a")?;
/// let keys = NamespaceKeys::new()
///     .with_key(&tenant, KeyId(1), EncryptionKey::from_bytes([1; 32]))
///     .with_key(&tenant, KeyId(2), EncryptionKey::from_bytes([2; 32]));
/// assert_eq!(keys.sealing_key("tenant-a").map(|(id, _)| id), Some(KeyId(2)));
/// assert!(keys.opening_key("tenant-a", KeyId(1)).is_some());
/// assert!(keys.sealing_key("public").is_none());
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct NamespaceKeys {
    rings: HashMap<Arc<str>, Ring>,
}

#[derive(Debug, Clone)]
struct Ring {
    current: KeyId,
    keys: Vec<(KeyId, EncryptionKey)>,
}

impl NamespaceKeys {
    /// No keys: every namespace in plaintext until keys are added.
    pub fn new() -> NamespaceKeys {
        NamespaceKeys::default()
    }

    /// Adds `key` as key `id` of `namespace` and makes it the key new records use (replacing
    /// a key of the same id).
    pub fn with_key(mut self, namespace: &Namespace, id: KeyId, key: EncryptionKey) -> Self {
        let ring = self
            .rings
            .entry(Arc::from(namespace.as_str()))
            .or_insert_with(|| Ring { current: id, keys: Vec::new() });
        ring.keys.retain(|(k, _)| *k != id);
        ring.keys.push((id, key));
        ring.current = id;
        self
    }
}

impl KeyProvider for NamespaceKeys {
    fn sealing_key(&self, namespace: &str) -> Option<(KeyId, EncryptionKey)> {
        let ring = self.rings.get(namespace)?;
        let id = ring.current;
        self.opening_key(namespace, id).map(|k| (id, k))
    }

    fn opening_key(&self, namespace: &str, id: KeyId) -> Option<EncryptionKey> {
        let ring = self.rings.get(namespace)?;
        ring.keys.iter().find(|(k, _)| *k == id).map(|(_, key)| key.clone())
    }
}

/// A [`KeyProvider`] that seals every namespace, each under its own key derived from one
/// master key (BLAKE3's key derivation over the master key and the namespace name), so one
/// secret gives every tenant a different key and a record cannot be opened under another
/// namespace.
///
/// Rotation: [`DerivedKeys::with_master`] adds a newer master key; records sealed under an
/// older one still open.
///
/// ```
/// use cache_core::{DerivedKeys, EncryptionKey, KeyId, KeyProvider};
/// let keys = DerivedKeys::new(KeyId(1), EncryptionKey::from_bytes([9; 32]));
/// let (_, a) = keys.sealing_key("tenant-a").unwrap();
/// let (_, b) = keys.sealing_key("tenant-b").unwrap();
/// assert_ne!(a, b);
/// ```
#[derive(Debug, Clone)]
pub struct DerivedKeys {
    current: KeyId,
    masters: Vec<(KeyId, EncryptionKey)>,
}

const DERIVE_CONTEXT: &str = "tiered-cache 2026-12 namespace record key";

impl DerivedKeys {
    /// Derives every namespace's key from `master`, known as key `id`.
    pub fn new(id: KeyId, master: EncryptionKey) -> DerivedKeys {
        DerivedKeys { current: id, masters: vec![(id, master)] }
    }

    /// Adds a newer master key `id` that new records use; older ones still open their records.
    pub fn with_master(mut self, id: KeyId, master: EncryptionKey) -> DerivedKeys {
        self.masters.retain(|(k, _)| *k != id);
        self.masters.push((id, master));
        self.current = id;
        self
    }

    fn derive(master: &EncryptionKey, namespace: &str) -> EncryptionKey {
        let mut hasher = blake3::Hasher::new_derive_key(DERIVE_CONTEXT);
        hasher.update(master.as_bytes());
        hasher.update(namespace.as_bytes());
        EncryptionKey(*hasher.finalize().as_bytes())
    }
}

impl KeyProvider for DerivedKeys {
    fn sealing_key(&self, namespace: &str) -> Option<(KeyId, EncryptionKey)> {
        self.opening_key(namespace, self.current).map(|k| (self.current, k))
    }

    fn opening_key(&self, namespace: &str, id: KeyId) -> Option<EncryptionKey> {
        let (_, master) = self.masters.iter().find(|(k, _)| *k == id)?;
        Some(DerivedKeys::derive(master, namespace))
    }
}

/// Appends `id ‖ nonce ‖ ciphertext ‖ tag` of `plaintext` sealed under `key` with `aad` to `out`.
pub(crate) fn seal(
    key: &EncryptionKey,
    id: KeyId,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let nonce = XNonce::try_generate().map_err(random_failed)?;
    out.extend_from_slice(&id.0.to_le_bytes());
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad, (&mut out[start..]).into())
        .map_err(|_| Error::invalid("encryption", "value too long to seal"))?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// The key id a sealed value (`id ‖ nonce ‖ ciphertext ‖ tag`) names; `None` if it is too short.
pub(crate) fn sealed_key_id(sealed: &[u8]) -> Option<KeyId> {
    (sealed.len() >= SEAL_OVERHEAD)
        .then(|| KeyId(u32::from_le_bytes(sealed[..4].try_into().expect("4 bytes"))))
}

/// Opens a sealed value under `key` with `aad`: the plaintext, or `None` if it does not
/// authenticate.
pub(crate) fn open(key: &EncryptionKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let nonce = XNonce::try_from(&sealed[4..4 + NONCE_LEN]).ok()?;
    let (body, tag) = sealed[4 + NONCE_LEN..].split_at(sealed.len() - SEAL_OVERHEAD);
    let tag = tag.try_into().ok()?;
    let mut plain = body.to_vec();
    XChaCha20Poly1305::new(&key.0.into())
        .decrypt_inout_detached(&nonce, aad, plain.as_mut_slice().into(), tag)
        .ok()?;
    Some(plain)
}

fn random_failed(e: impl fmt::Display) -> Error {
    Error::new(crate::ErrorKind::Internal, "encryption", format!("the random source failed: {e}"))
}
