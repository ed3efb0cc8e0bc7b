//! Encryption at rest against hostile objects: bytes written to the store under the path the
//! tier reads for a key, which must never be served as a value (a moved, foreign, truncated or
//! plaintext record is a counted miss and is deleted), and what a sealed object holds.

use std::{collections::HashSet, sync::Arc};

use bytes::Bytes;
use cache_core::{
    Compression, DerivedKeys, EncryptionKey, Entry, KeyId, KeyProvider, Record, RecordFormat,
    Verify, testkit::suite_keys,
};

use super::*;

/// A tier in memory sealing every namespace but `"plain"` with the suite's keys, after LZ4.
async fn sealing(store: &Arc<dyn ObjectStore>) -> ObjectTier {
    ObjectTier::builder(store.clone())
        .compression(Compression::Lz4)
        .encryption(suite_keys())
        .budget(64 * MIB as u64)
        .build()
        .await
        .unwrap()
}

fn store() -> Arc<dyn ObjectStore> {
    Arc::new(InMemory::new())
}

async fn object(tier: &ObjectTier, k: &Key) -> Bytes {
    tier.store().get(&tier.object_path(k)).await.unwrap().bytes().await.unwrap()
}

async fn plant(tier: &ObjectTier, k: &Key, bytes: impl Into<Bytes>) {
    tier.store().put(&tier.object_path(k), PutPayload::from_bytes(bytes.into())).await.unwrap();
}

async fn is_gone(tier: &ObjectTier, k: &Key) -> bool {
    matches!(
        tier.store().head(&tier.object_path(k)).await,
        Err(object_store::Error::NotFound { .. })
    )
}

/// Asserts that a `get` of `k` misses, counts one corrupt object and deletes it.
async fn corrupt_miss(tier: &ObjectTier, k: &Key, what: &str) {
    let before = tier.stats().corrupted;
    assert_eq!(tier.get(k).await.unwrap(), None, "{what}");
    assert_eq!(tier.stats().corrupted, before + 1, "{what}: counted as corrupt");
    assert!(is_gone(tier, k).await, "{what}: the object is deleted");
}

/// Asserts that `bytes` is a structurally valid sealed record whose checksum matches, so that
/// what refuses it is the cipher.
fn passes_the_checksum(bytes: &[u8]) {
    let record = Record::decode_unopened(Bytes::copy_from_slice(bytes), Verify::Checksum);
    assert!(record.expect("the checksum matches").is_sealed());
}

/// Whether `haystack` holds any 16-byte window of `needle`.
fn shares_a_window(haystack: &[u8], needle: &[u8]) -> bool {
    let windows: HashSet<&[u8]> = haystack.windows(16).collect();
    needle.windows(16).any(|w| windows.contains(w))
}

fn secret(len: usize) -> Bytes {
    r#"{"role":"assistant","content":"the tenant's secret answer"} "#
        .bytes()
        .cycle()
        .take(len)
        .collect::<Vec<u8>>()
        .into()
}

/// (a) A sealed object of one namespace copied to the path of the same key in another.
#[tokio::test]
async fn a_sealed_object_moved_to_another_namespace_is_a_corrupt_miss() {
    let tier = sealing(&store()).await;
    let (a, b) = (Key::new("tenant-a", "k").unwrap(), Key::new("tenant-b", "k").unwrap());
    assert!(tier.put(a.clone(), Entry::new(secret(500))).await.unwrap().is_stored());
    assert!(tier.put(b.clone(), Entry::new("b's own")).await.unwrap().is_stored());
    tier.store().copy(&tier.object_path(&a), &tier.object_path(&b)).await.unwrap();
    corrupt_miss(&tier, &b, "moved across namespaces").await;
    tier.store().copy(&tier.object_path(&a), &tier.object_path(&b)).await.unwrap();
    assert_eq!(tier.get_range(&b, 0..10).await.unwrap(), None, "nor in a range");
    tier.store().copy(&tier.object_path(&a), &tier.object_path(&b)).await.unwrap();
    assert!(!tier.contains(&b).await.unwrap(), "nor for contains");
    assert_eq!(tier.stats().corrupted, 3);
    assert_eq!(tier.get(&a).await.unwrap().unwrap().value, secret(500), "the original reads");
}

/// (a, with a valid checksum) The sealed value of one namespace's key spliced under the head
/// of the same key in another namespace, the checksum made to match: only the cipher, whose
/// associated data is the head, can tell, and it does.
#[tokio::test]
async fn a_sealed_value_spliced_under_another_head_does_not_open() {
    let tier = sealing(&store()).await;
    let (a, b) = (Key::new("tenant-a", "k").unwrap(), Key::new("tenant-b", "k").unwrap());
    for k in [&a, &b] {
        let entry = Entry::new(secret(3_000)).with_created_at(START);
        assert!(tier.put(k.clone(), entry).await.unwrap().is_stored());
    }
    let (of_a, of_b) = (object(&tier, &a).await, object(&tier, &b).await);
    assert_eq!(of_a.len(), of_b.len());
    let head = Record::encoded_len(&b, 0);
    let mut spliced = [&of_b[..head], &of_a[head..]].concat();
    cache_core::testkit::rechecksum(&mut spliced);
    passes_the_checksum(&spliced);
    plant(&tier, &b, spliced).await;
    corrupt_miss(&tier, &b, "spliced").await;
    assert_eq!(tier.get(&a).await.unwrap().unwrap().value, secret(3_000));
}

/// A byte of the ciphertext (or of the tag, or of the nonce) changed and the checksum made to
/// match again: the cipher refuses it.
#[tokio::test]
async fn a_tampered_ciphertext_with_a_valid_checksum_is_a_corrupt_miss() {
    let tier = sealing(&store()).await;
    for len in [40, 300_000] {
        let k = key(&format!("tampered-{len}"));
        let head = Record::encoded_len(&k, 0);
        // Past the key id: in the nonce, in the ciphertext and in the tag.
        for (what, at) in [("nonce", head + 4), ("ciphertext", head + 30), ("tag", usize::MAX)] {
            assert!(tier.put(k.clone(), Entry::new(secret(len))).await.unwrap().is_stored());
            let mut bytes = object(&tier, &k).await.to_vec();
            let at = at.min(bytes.len() - 1);
            bytes[at] ^= 0x01;
            cache_core::testkit::rechecksum(&mut bytes);
            passes_the_checksum(&bytes);
            plant(&tier, &k, bytes.clone()).await;
            corrupt_miss(&tier, &k, &format!("{what} of {len}")).await;
            plant(&tier, &k, bytes).await;
            let before = tier.stats().corrupted;
            assert_eq!(tier.get_range(&k, 0..8).await.unwrap(), None, "{what} of {len}: range");
            assert_eq!(tier.stats().corrupted, before + 1, "{what} of {len}: range");
        }
    }
}

/// (b) A record of the same key sealed under a key the tier does not have (an unknown key id),
/// or under a wrong key with the id the tier's key has, written raw over the object.
#[tokio::test]
async fn a_record_sealed_under_another_key_is_a_corrupt_miss() {
    let tier = sealing(&store()).await;
    let k = key("foreign");
    let entry = Entry::new(secret(2_000)).with_created_at(START);
    let unknown_id = DerivedKeys::new(KeyId(99), EncryptionKey::from_bytes([1; 32]));
    // The suite's keys are id 7: the same id with other bytes.
    let wrong_key = DerivedKeys::new(KeyId(7), EncryptionKey::from_bytes([1; 32]));
    for (what, keys) in [("unknown key id", unknown_id), ("wrong key", wrong_key)] {
        let format = RecordFormat::new().with_keys(Arc::new(keys));
        let foreign = format.encode(&k, &entry).unwrap();
        assert!(format.decode(foreign.clone()).unwrap().is_sealed(), "{what}: a valid record");
        assert!(tier.put(k.clone(), entry.clone()).await.unwrap().is_stored());
        plant(&tier, &k, foreign.clone()).await;
        corrupt_miss(&tier, &k, what).await;
        plant(&tier, &k, foreign.clone()).await;
        let before = tier.stats().corrupted;
        assert_eq!(tier.get_range(&k, 5..50).await.unwrap(), None, "{what}: range");
        assert_eq!(tier.get_record(&k).await.unwrap(), None, "{what}: record");
        assert_eq!(tier.stats().corrupted, before + 1, "{what}: range");
        assert!(is_gone(&tier, &k).await, "{what}");
    }
    assert_eq!(tier.usage().entries, Some(0), "forgotten by the budget account");
}

/// (c) The object cut short by one byte, or by the authentication tag.
#[tokio::test]
async fn a_truncated_sealed_object_is_a_corrupt_miss() {
    let tier = sealing(&store()).await;
    for (len, cut) in [(10, 1), (10, 16), (300_000, 1), (300_000, 16)] {
        let k = key(&format!("cut-{len}-{cut}"));
        assert!(tier.put(k.clone(), Entry::new(secret(len))).await.unwrap().is_stored());
        let whole = object(&tier, &k).await;
        plant(&tier, &k, whole.slice(..whole.len() - cut)).await;
        corrupt_miss(&tier, &k, &format!("{len} bytes less {cut}")).await;
        plant(&tier, &k, whole.slice(..whole.len() - cut)).await;
        assert_eq!(tier.get_range(&k, 0..4).await.unwrap(), None, "{len} less {cut}: range");
        plant(&tier, &k, whole.slice(..whole.len() - cut)).await;
        assert!(!tier.contains(&k).await.unwrap(), "{len} less {cut}: contains");
    }
    assert_eq!(tier.stats().corrupted, 12);
}

/// (d) A plaintext record (valid, of the right key) planted where the tier seals: refused by a
/// get, a ranged read (small and chunked records) and `contains`.
#[tokio::test]
async fn a_plaintext_record_in_a_sealed_namespace_is_a_corrupt_miss() {
    let tier = sealing(&store()).await;
    for len in [100, 3 * MIB] {
        let k = key(&format!("planted-{len}"));
        let value = pattern(len);
        let plain = Record::encode(&k, &Entry::new(value.clone()));
        assert!(Record::decode(plain.clone()).is_ok(), "a valid plaintext record");
        plant(&tier, &k, plain.clone()).await;
        corrupt_miss(&tier, &k, &format!("plaintext of {len} bytes")).await;
        for range in [0..10, 2 * MIB as u64..2 * MIB as u64 + 10] {
            plant(&tier, &k, plain.clone()).await;
            let before = tier.stats().corrupted;
            assert_eq!(tier.get_range(&k, range.clone()).await.unwrap(), None, "{len} {range:?}");
            assert_eq!(tier.stats().corrupted, before + 1, "{len} {range:?}");
            assert!(is_gone(&tier, &k).await);
        }
        plant(&tier, &k, plain).await;
        assert!(!tier.contains(&k).await.unwrap(), "{len}: contains");
        assert!(is_gone(&tier, &k).await);
    }
    assert_eq!(tier.stats().corrupted, 8);
    // A namespace the provider leaves alone reads plaintext records as always.
    let public = Key::new("plain", "public").unwrap();
    plant(&tier, &public, Record::encode(&public, &Entry::new("open"))).await;
    assert_eq!(tier.get(&public).await.unwrap().unwrap().value, "open");
    assert_eq!(tier.get_range(&public, 1..3).await.unwrap().unwrap(), "pe");
    assert!(tier.contains(&public).await.unwrap());
}

/// (e) A sealed object holds no 16-byte window of its value, small (compressed, then sealed)
/// or large (sealed raw), while its head (namespace and key) stays readable; a namespace the
/// provider leaves alone is stored in plaintext.
#[tokio::test]
async fn a_sealed_object_holds_no_plaintext_of_its_value() {
    let tier = sealing(&store()).await;
    for len in [64, 5_000, 300_000] {
        let k = Key::new("tenant-a", format!("user-42/profile-{len}")).unwrap();
        let value = secret(len);
        assert!(tier.put(k.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
        let bytes = object(&tier, &k).await;
        assert!(!shares_a_window(&bytes, &value), "{len}: plaintext in the object");
        assert!(shares_a_window(&bytes, k.key_bytes()), "{len}: the key stays readable");
        assert!(bytes.windows(8).any(|w| w == b"tenant-a"), "{len}: so does the namespace");
        let record = tier.get_record(&k).await.unwrap().unwrap();
        assert!(record.is_sealed() && record.key_id() == Some(KeyId(7)), "{len}");
        assert_eq!(record.value(), value, "{len}");
    }
    let public = Key::new("plain", "public").unwrap();
    assert!(tier.put(public.clone(), Entry::new(secret(5_000))).await.unwrap().is_stored());
    assert!(shares_a_window(&object(&tier, &public).await, &secret(5_000)), "not sealed");
    assert!(!tier.get_record(&public).await.unwrap().unwrap().is_sealed());
}

/// Opens records with the suite's keys but seals nothing: a tier that reads sealed objects in
/// namespaces it writes in plaintext, so its ranged reads see sealed heads.
#[derive(Debug)]
struct OpenOnly(Arc<dyn KeyProvider>);

impl KeyProvider for OpenOnly {
    fn sealing_key(&self, _: &str) -> Option<(KeyId, EncryptionKey)> {
        None
    }
    fn opening_key(&self, namespace: &str, id: KeyId) -> Option<EncryptionKey> {
        self.0.opening_key(namespace, id)
    }
}

/// A sealed value of 1 MiB (raw: past the chunked threshold, yet with no chunk table) reads in
/// ranges: from the sealing tier, from a tier that only opens (whose ranged read decides on the
/// record's version), and not at all from a tier without the keys.
#[tokio::test]
async fn ranges_of_a_large_sealed_value() {
    let store = store();
    let tier = sealing(&store).await;
    let k = key("large");
    let value = pattern(MIB);
    assert!(tier.put(k.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    let stored = object(&tier, &k).await;
    assert!(!shares_a_window(&stored, &value));
    let head = cache_core::RecordHeader::parse(&stored).unwrap();
    assert!(head.is_sealed() && head.chunks() == 0, "{head:?}");
    let opener = ObjectTier::builder(store.clone())
        .encryption(Arc::new(OpenOnly(suite_keys())))
        .build()
        .await
        .unwrap();
    let len = value.len() as u64;
    let chunk = 1u64 << cache_core::CHUNK_SHIFT;
    let ranges = [0..10, chunk - 3..chunk + 3, 700_000..800_000, len - 5..len + 10, 0..len, 3..3];
    for reader in [&tier, &opener] {
        for r in ranges.clone() {
            let got = reader.get_range(&k, r.clone()).await.unwrap().unwrap();
            let want = value.slice(r.start as usize..(r.end.min(len)) as usize);
            assert!(got == want, "{r:?}: {} bytes, not the {} expected", got.len(), want.len());
        }
        assert!(reader.get_range(&k, len + 1..len + 9).await.unwrap().unwrap().is_empty());
    }
    assert_eq!(opener.stats().corrupted + tier.stats().corrupted, 0);
    let keyless = ObjectTier::builder(store.clone()).build().await.unwrap();
    assert_eq!(keyless.get_range(&k, 700_000..700_010).await.unwrap(), None);
    assert_eq!(keyless.stats().corrupted, 1, "a record it cannot open is corrupt to it");
    assert!(is_gone(&tier, &k).await);
}

/// A sealed value at the multipart threshold goes up in parts and reads back.
#[tokio::test]
async fn a_sealed_value_goes_up_by_multipart() {
    let tier = ObjectTier::builder(store())
        .encryption(suite_keys())
        .multipart_threshold(MIB as u64)
        .part_size(256 * 1024)
        .build()
        .await
        .unwrap();
    let k = key("multipart");
    let value = pattern(2 * MIB + 3);
    assert!(tier.put(k.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    assert_eq!(tier.metrics().op(Op::MultipartStart).requests, 1);
    assert!(tier.get(&k).await.unwrap().unwrap().value == value);
    assert!(!shares_a_window(&object(&tier, &k).await, &value));
    let got = tier.get_range(&k, MIB as u64..MIB as u64 + 100).await.unwrap().unwrap();
    assert_eq!(got, value.slice(MIB..MIB + 100));
}

/// A sealed record decoded without opening (its value is not there) moved to a tier that
/// cannot store it as it is: refused, never stored with an empty value. Stored as it is by a
/// tier with the keys, it reads back whole.
#[tokio::test]
async fn an_unopened_sealed_record_is_never_re_encoded() {
    let k = key("unopened");
    let entry = Entry::new(secret(1_000)).with_created_at(START);
    let bytes = RecordFormat::new().with_keys(suite_keys()).encode(&k, &entry).unwrap();
    let unopened = Record::decode_unopened(bytes, Verify::Checksum).unwrap();
    assert!(unopened.value().is_empty());
    let keyless = ObjectTierBuilder::in_memory().build().await.unwrap();
    let err = keyless.put_record(k.clone(), unopened.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(keyless.get(&k).await.unwrap(), None, "nothing stored");
    let tier = sealing(&store()).await;
    assert!(tier.put_record(k.clone(), unopened).await.unwrap().is_stored());
    assert_eq!(tier.get(&k).await.unwrap(), Some(entry));
}
