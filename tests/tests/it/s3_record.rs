//! Records survive a trip through S3 byte for byte: what `cache_core::Record::encode` writes,
//! an S3 GET returns unchanged, and it decodes to the same entry.

use bytes::Bytes;
use cache_core::{Entry, Key, Record, Timestamp};
use object_store::{ObjectStoreExt, PutPayload};

use crate::harness::{S3Test, s3_test};

/// PUTs the record for `entry` under `key`, GETs it back and checks bytes, key and entry.
async fn round_trip(t: &S3Test, name: &str, key: &Key, entry: &Entry) {
    let encoded = Record::encode(key, entry);
    assert_eq!(encoded.len(), Record::encoded_len(key, entry.value.len()));
    let location = t.path(name);

    let put = t.store.put(&location, PutPayload::from(encoded.clone())).await;
    put.unwrap_or_else(|e| panic!("PUT {location}: {e}"));
    let got = t.store.get(&location).await.unwrap_or_else(|e| panic!("GET {location}: {e}"));
    assert_eq!(got.meta.size, encoded.len() as u64, "object size of {location}");
    let body: Bytes = got.bytes().await.unwrap_or_else(|e| panic!("GET body of {location}: {e}"));
    assert!(body == encoded, "{location}: the body differs from the bytes written");

    let record = Record::decode(body).unwrap_or_else(|e| panic!("decoding {location}: {e}"));
    assert!(record.matches(key), "{location}: the record holds another key");
    assert_eq!(record.key().expect("stored key is valid"), *key);
    assert_eq!(record.to_entry(), *entry);
    assert!(!record.is_tombstone());
}

#[tokio::test]
async fn small_record_round_trips() {
    let t = s3_test!("small_record_round_trips");
    let key = Key::new("s3-it", "small/κλειδί").expect("valid key");
    let entry = Entry::new(Bytes::from_static(b"hello, tiered world"))
        .with_created_at(Timestamp::from_millis(1_700_000_000_000))
        .with_expiry(Timestamp::from_millis(1_900_000_000_000))
        .with_version(7);
    round_trip(&t, "small", &key, &entry).await;
    t.cleanup().await;
}

#[tokio::test]
async fn empty_value_round_trips() {
    let t = s3_test!("empty_value_round_trips");
    let key = Key::new("s3-it", "empty").expect("valid key");
    round_trip(&t, "empty", &key, &Entry::new(Bytes::new())).await;
    t.cleanup().await;
}

#[tokio::test]
async fn five_mib_record_round_trips() {
    let t = s3_test!("five_mib_record_round_trips");
    let key = Key::new("s3-it", "large").expect("valid key");
    // A pattern with no short period, so a misplaced chunk cannot go unnoticed.
    let value: Vec<u8> =
        (0..5u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let entry = Entry::new(value).with_created_at(Timestamp::from_millis(1_234));
    round_trip(&t, "large", &key, &entry).await;
    t.cleanup().await;
}

#[tokio::test]
async fn tombstone_round_trips() {
    let t = s3_test!("tombstone_round_trips");
    let key = Key::new("s3-it", "gone").expect("valid key");
    let encoded = Record::encode_tombstone(&key, Timestamp::from_millis(42));
    let location = t.path("tombstone");
    t.store.put(&location, PutPayload::from(encoded.clone())).await.expect("PUT tombstone");
    let body = t.store.get(&location).await.expect("GET tombstone").bytes().await.expect("body");
    assert!(body == encoded, "the tombstone's bytes changed in S3");
    let record = Record::decode(body).expect("tombstone decodes");
    assert!(record.is_tombstone());
    assert!(record.matches(&key));
    assert!(record.value().is_empty());
    t.cleanup().await;
}
