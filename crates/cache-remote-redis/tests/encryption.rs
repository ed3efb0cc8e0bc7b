//! Encryption at rest in the Redis tier against a real `redis-server`: the sealed conformance
//! suite of cache-core, and hostile rows written straight into Redis under the key the tier
//! reads (a sealed record moved to another key, sealed under another key, truncated or altered,
//! a plaintext record in a sealed namespace), each a counted miss; and what the server holds
//! is ciphertext.
//!
//! The server is named by `TIERED_CACHE_REDIS_URL`, as for `tests/server.rs`: without it a test
//! prints why and passes, with `CI` set it fails.

use std::{collections::HashSet, sync::Arc};

use bytes::Bytes;
use cache_core::{
    Compression, DerivedKeys, EncryptionKey, Entry, Key, KeyId, KeyProvider, Record, RecordFormat,
    RecordHeader, Tier,
    testkit::{self, START, TestTier, TierSpec},
};
use cache_remote_redis::{RedisTier, redis};

mod common;

use crate::common::{epoch_of, raw, redis_url, unique_prefix};

type Conn = redis::aio::MultiplexedConnection;

/// The tier a sealed conformance check asks for: its budget and clock, a fresh prefix, LZ4 (so
/// values are compressed, then sealed) and the suite's key provider.
async fn sealed_tier(url: String, spec: TierSpec) -> TestTier {
    let tier = RedisTier::builder(url)
        .prefix(unique_prefix("sealed-conformance"))
        .budget(spec.capacity_bytes)
        .clock(spec.dyn_clock())
        .compression(Compression::Lz4)
        .encryption(testkit::suite_keys())
        .build()
        .await
        .expect("building the redis tier");
    TestTier::new(tier)
}

// The macro evaluates the factory expression inside each test function, so the `return` of
// this block ends the test when no server is configured, as `redis_url` says (with `CI` set it
// fails instead).
cache_core::sealed_conformance_suite!({
    let thread = std::thread::current();
    let Some(url) = redis_url(thread.name().unwrap_or("a sealed conformance check")) else {
        return;
    };
    move |spec: TierSpec| sealed_tier(url.clone(), spec)
});

/// A tier sealing every namespace but `"plain"` with the suite's keys, compressing with
/// `compression`.
async fn tier(url: &str, test: &str, compression: Compression) -> RedisTier {
    keyed_tier(url, &unique_prefix(test), compression, testkit::suite_keys()).await
}

async fn keyed_tier(
    url: &str,
    prefix: &str,
    compression: Compression,
    keys: Arc<dyn KeyProvider>,
) -> RedisTier {
    RedisTier::builder(url)
        .prefix(prefix)
        .compression(compression)
        .encryption(keys)
        .build()
        .await
        .expect("building the tier")
}

fn key(ns: &str, k: &str) -> Key {
    Key::new(ns, k.as_bytes().to_vec()).expect("key")
}

/// A value worth hiding: JSON text, compressible, with no repeat shorter than its length.
fn secret(i: u32) -> Bytes {
    let text: String = (0..80)
        .map(|n| {
            format!(r#"{{"turn":{n},"user":"{i}","content":"the patient's diagnosis is {n}"}},"#)
        })
        .collect();
    text.into()
}

/// The Redis key that holds `key` now (its namespace's current epoch).
async fn name_of(conn: &mut Conn, tier: &RedisTier, key: &Key) -> String {
    tier.redis_key(key, epoch_of(conn, tier, key.namespace()).await)
}

/// The bytes stored for `key`.
async fn stored(conn: &mut Conn, tier: &RedisTier, key: &Key) -> Vec<u8> {
    let name = name_of(conn, tier, key).await;
    let bytes: Option<Vec<u8>> =
        redis::cmd("GET").arg(&name).query_async(conn).await.expect("GET entry");
    bytes.unwrap_or_else(|| panic!("nothing stored for {key:?}"))
}

/// Writes `bytes` where the tier keeps `key`, as a hostile or broken writer would.
async fn plant(conn: &mut Conn, tier: &RedisTier, key: &Key, bytes: &[u8]) {
    let name = name_of(conn, tier, key).await;
    let () = redis::cmd("SET").arg(&name).arg(bytes).query_async(conn).await.expect("SET");
}

/// A get of `key` is a miss, counted as corrupt, and the entry is deleted.
async fn assert_corrupt_miss(conn: &mut Conn, tier: &RedisTier, key: &Key, case: &str) {
    let name = name_of(conn, tier, key).await;
    let before = tier.stats();
    assert_eq!(tier.get(key).await.expect("get"), None, "{case}: a miss");
    let after = tier.stats();
    assert_eq!(after.corrupted - before.corrupted, 1, "{case}: counted as corrupt");
    assert_eq!(after.misses - before.misses, 1, "{case}: counted as a miss");
    let exists: u64 = redis::cmd("EXISTS").arg(&name).query_async(conn).await.expect("EXISTS");
    assert_eq!(exists, 0, "{case}: the corrupt entry is deleted");
}

/// Whether any 16-byte window of `value` appears in `stored`.
fn shares_a_window(stored: &[u8], value: &[u8]) -> bool {
    let windows: HashSet<&[u8]> = stored.windows(16).collect();
    value.windows(16).any(|w| windows.contains(w))
}

/// (a) A sealed record copied to the key of another namespace (same key bytes), or of another
/// key of its own namespace, does not read there.
#[tokio::test]
async fn a_sealed_record_moved_to_another_key_is_a_miss() {
    let Some(url) = redis_url("a_sealed_record_moved_to_another_key_is_a_miss") else { return };
    let tier = tier(&url, "sealed-moved", Compression::Lz4).await;
    let mut conn = raw(&url).await;
    let a = key("tenant-a", "profile");
    let b = key("tenant-b", "profile");
    let a2 = key("tenant-a", "profile-2");
    for (i, k) in [&a, &b, &a2].into_iter().enumerate() {
        let i = u32::try_from(i).expect("small");
        assert!(tier.put(k.clone(), Entry::new(secret(i))).await.expect("put").is_stored());
    }
    let sealed = stored(&mut conn, &tier, &a).await;
    for (target, case) in [(&b, "namespace a's record at namespace b's key"), (&a2, "another key")]
    {
        plant(&mut conn, &tier, target, &sealed).await;
        assert_corrupt_miss(&mut conn, &tier, target, case).await;
    }
    assert_eq!(tier.get(&a).await.expect("get").expect("hit").value, secret(0), "a is intact");
}

/// (b) A record sealed for the same key under a key this tier does not have (an unknown key id,
/// or its own key id with other key bytes) does not open: a counted miss.
#[tokio::test]
async fn a_record_sealed_under_another_key_is_a_corrupt_miss() {
    let Some(url) = redis_url("a_record_sealed_under_another_key_is_a_corrupt_miss") else {
        return;
    };
    let tier = tier(&url, "sealed-foreign", Compression::Lz4).await;
    let mut conn = raw(&url).await;
    let k = key("tenant-a", "answer");
    let entry = Entry::new(secret(1)).with_created_at(START);
    assert!(tier.put(k.clone(), entry.clone()).await.expect("put").is_stored());
    let other_id = DerivedKeys::new(KeyId(99), EncryptionKey::from_bytes([1; 32]));
    // The suite's provider seals under key id 7: the same id with other bytes.
    let same_id = DerivedKeys::new(KeyId(7), EncryptionKey::from_bytes([1; 32]));
    for (keys, case) in [(other_id, "an unknown key id"), (same_id, "a wrong key of a known id")] {
        let format = RecordFormat::new().with_keys(Arc::new(keys));
        let foreign = format.encode(&k, &entry).expect("seal");
        assert!(format.decode(foreign.clone()).is_ok(), "{case}: a valid record for its keys");
        plant(&mut conn, &tier, &k, &foreign).await;
        assert_corrupt_miss(&mut conn, &tier, &k, case).await;
    }
}

/// (c) A stored sealed record cut short by a byte, or with a byte of its ciphertext changed, is
/// a counted miss, never a panic or a partial value.
#[tokio::test]
async fn a_truncated_or_altered_sealed_record_is_a_corrupt_miss() {
    let Some(url) = redis_url("a_truncated_or_altered_sealed_record_is_a_corrupt_miss") else {
        return;
    };
    let tier = tier(&url, "sealed-truncated", Compression::None).await;
    let mut conn = raw(&url).await;
    let k = key("tenant-a", "notes");
    assert!(tier.put(k.clone(), Entry::new(secret(2))).await.expect("put").is_stored());
    let sealed = stored(&mut conn, &tier, &k).await;
    let truncated = sealed[..sealed.len() - 1].to_vec();
    let mut flipped_tag = sealed.clone();
    let last = flipped_tag.len() - 1;
    flipped_tag[last] ^= 0x01;
    let mut flipped_body = sealed.clone();
    let middle = flipped_body.len() - 200;
    flipped_body[middle] ^= 0x80;
    for (bad, case) in [
        (truncated, "truncated by a byte"),
        (flipped_tag, "a changed tag byte"),
        (flipped_body, "a changed ciphertext byte"),
    ] {
        plant(&mut conn, &tier, &k, &bad).await;
        assert_corrupt_miss(&mut conn, &tier, &k, case).await;
    }
    // Put back untouched, it reads again.
    plant(&mut conn, &tier, &k, &sealed).await;
    assert_eq!(tier.get(&k).await.expect("get").expect("hit").value, secret(2));
}

/// (d) A valid plaintext record planted at the key of a sealed namespace is refused (a counted
/// miss); the same in a namespace the provider leaves in plaintext is a hit.
#[tokio::test]
async fn a_plaintext_record_in_a_sealed_namespace_is_a_corrupt_miss() {
    let Some(url) = redis_url("a_plaintext_record_in_a_sealed_namespace_is_a_corrupt_miss") else {
        return;
    };
    let tier = tier(&url, "sealed-plaintext", Compression::Lz4).await;
    let mut conn = raw(&url).await;
    let k = key("tenant-a", "planted");
    let entry = Entry::new(secret(3)).with_created_at(START);
    assert!(tier.put(k.clone(), entry.clone()).await.expect("put").is_stored());
    for (bytes, case) in [
        (Record::encode(&k, &entry), "a raw plaintext record"),
        (Record::encode_with(&k, &entry, Compression::Lz4), "an LZ4 plaintext record"),
    ] {
        plant(&mut conn, &tier, &k, &bytes).await;
        assert_corrupt_miss(&mut conn, &tier, &k, case).await;
    }
    let public = key("plain", "planted");
    assert!(tier.put(public.clone(), entry.clone()).await.expect("put").is_stored());
    plant(&mut conn, &tier, &public, &Record::encode(&public, &entry)).await;
    assert_eq!(tier.get(&public).await.expect("get"), Some(entry), "plaintext where allowed");
}

/// (e) What the server holds for a sealed namespace, written by `put` or moved in as a
/// plaintext record, is a version-4 record with no 16 bytes of the value in it, compressed or
/// not; its namespace stays readable. A namespace left in plaintext is stored readable (which
/// shows the check would see a leak).
#[tokio::test]
async fn the_server_holds_no_plaintext_of_a_sealed_value() {
    let Some(url) = redis_url("the_server_holds_no_plaintext_of_a_sealed_value") else { return };
    let mut conn = raw(&url).await;
    for compression in [Compression::None, Compression::Lz4, Compression::zstd()] {
        let tier = tier(&url, "sealed-ciphertext", compression).await;
        let value = secret(4);
        let entry = Entry::new(value.clone()).with_created_at(START);
        let (put, moved) = (key("tenant-a", "put"), key("tenant-a", "moved-in"));
        assert!(tier.put(put.clone(), entry.clone()).await.expect("put").is_stored());
        let plain = Record::decode(Record::encode(&moved, &entry)).expect("valid");
        assert!(tier.put_record(moved.clone(), plain).await.expect("put_record").is_stored());
        for k in [&put, &moved] {
            let bytes = stored(&mut conn, &tier, k).await;
            let header = RecordHeader::parse(&bytes).expect("a record header");
            assert!(header.is_sealed(), "{compression} {k:?}: stored sealed");
            assert!(!shares_a_window(&bytes, &value), "{compression} {k:?}: plaintext leaked");
            assert!(bytes.windows(8).any(|w| w == b"tenant-a"), "{compression}: the head is plain");
            assert_eq!(tier.get(k).await.expect("get"), Some(entry.clone()), "{compression}");
        }
        let public = key("plain", "public");
        assert!(tier.put(public.clone(), entry.clone()).await.expect("put").is_stored());
        let bytes = stored(&mut conn, &tier, &public).await;
        assert!(!RecordHeader::parse(&bytes).expect("a record header").is_sealed());
        if compression == Compression::None {
            assert!(shares_a_window(&bytes, &value), "a plaintext namespace is stored readable");
        }
    }
}

/// Nodes on one prefix share sealed entries when they share the keys; a node without them, or
/// with only an older master key, misses (counted) on what it cannot open; a node with a newer
/// master key still reads records sealed under the older one.
#[tokio::test]
async fn nodes_share_sealed_entries_only_with_the_keys() {
    let Some(url) = redis_url("nodes_share_sealed_entries_only_with_the_keys") else { return };
    let prefix = unique_prefix("sealed-nodes");
    let old = DerivedKeys::new(KeyId(1), EncryptionKey::from_bytes([0x11; 32]));
    let rotated = old.clone().with_master(KeyId(2), EncryptionKey::from_bytes([0x22; 32]));
    let a = keyed_tier(&url, &prefix, Compression::Lz4, Arc::new(old.clone())).await;
    let same = keyed_tier(&url, &prefix, Compression::None, Arc::new(old)).await;
    let newer = keyed_tier(&url, &prefix, Compression::None, Arc::new(rotated)).await;
    let keyless = RedisTier::builder(&url).prefix(&prefix).build().await.expect("building");
    let (from_a, from_newer) = (key("tenant-a", "from-a"), key("tenant-a", "from-newer"));
    assert!(a.put(from_a.clone(), Entry::new(secret(5))).await.expect("put").is_stored());
    assert!(newer.put(from_newer.clone(), Entry::new(secret(6))).await.expect("put").is_stored());
    for (reader, what) in [(&same, "the same keys"), (&newer, "a newer master key")] {
        let got = reader.get(&from_a).await.expect("get").map(|e| e.value);
        assert_eq!(got, Some(secret(5)), "a node with {what} reads a's entry");
    }
    let before = a.stats().corrupted;
    assert_eq!(a.get(&from_newer).await.expect("get"), None, "sealed under a key a lacks");
    assert_eq!(a.stats().corrupted - before, 1);
    assert_eq!(keyless.get(&from_a).await.expect("get"), None, "a node without keys");
    assert_eq!(keyless.stats().corrupted, 1);
}
