//! Encryption at rest: segment files hold ciphertext for sealed namespaces, records read back
//! after a clean close and after a crash scan, and hostile rows written into the files by hand
//! (a record moved to another key, re-sealed under another key, truncated, or planted in
//! plaintext) are counted misses, never a wrong value, a ciphertext or a panic.

use std::{
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use cache_core::{
    DerivedKeys, EncryptionKey, Entry, HEADER_LEN, Key, KeyId, KeyProvider, Namespace,
    NamespaceKeys, Record, RecordFormat, RecordHead, Tier,
    testkit::{block_on, rechecksum},
};
use cache_l2_nvme::{NvmeTier, NvmeTierBuilder};

const MIB: u64 = 1 << 20;

fn keys() -> Arc<dyn KeyProvider> {
    let ns = |n: &str| Namespace::new(n).unwrap();
    Arc::new(
        NamespaceKeys::new()
            .with_key(&ns("tenant-a"), KeyId(1), EncryptionKey::from_bytes([0xa1; 32]))
            .with_key(&ns("tenant-b"), KeyId(1), EncryptionKey::from_bytes([0xb2; 32])),
    )
}

async fn open(dir: &Path, keys: Option<Arc<dyn KeyProvider>>) -> NvmeTier {
    let builder = NvmeTierBuilder::new(dir, 64 * MIB).segment_size(MIB);
    let builder = match keys {
        Some(k) => builder.encryption(k),
        None => builder,
    };
    builder.open().await.expect("open")
}

/// A value of `len` bytes that is recognisable in a file and does not compress.
fn secret(tag: u8, len: usize) -> Bytes {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(tag));
    (0..len).map(|_| rng.random::<u8>()).collect::<Vec<_>>().into()
}

fn key(ns: &str, k: &str) -> Key {
    Key::new(ns, k.to_owned()).unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// The file and offset of the live record of `key` (the last one written), and its bytes.
fn find(dir: &Path, key: &Key) -> (PathBuf, u64, Vec<u8>) {
    let mut found = None;
    for path in segments(dir) {
        let data = std::fs::read(&path).unwrap();
        let mut at = 0;
        while let Some(pos) = data[at..].windows(4).position(|w| w == b"TCRD") {
            let start = at + pos;
            if let Ok(head) = RecordHead::parse(&data[start..]) {
                let len = head.header().total_len().unwrap() as usize;
                if head.matches(key) && start + len <= data.len() {
                    found = Some((path.clone(), start as u64, data[start..start + len].to_vec()));
                }
            }
            at = start + 1;
        }
    }
    found.expect("the key's record is in a segment")
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn segment_files_hold_ciphertext_and_read_back_after_close_and_after_a_crash() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sealed = key("tenant-a", "profile");
        let public = key("public", "page");
        let big = key("tenant-b", "kv-chunk");
        let (v1, v2, v3) = (secret(1, 3000), secret(2, 3000), secret(3, 700_000));
        let tier = open(dir.path(), Some(keys())).await;
        assert!(tier.put(sealed.clone(), Entry::new(v1.clone())).await.unwrap().is_stored());
        assert!(tier.put(public.clone(), Entry::new(v2.clone())).await.unwrap().is_stored());
        assert!(tier.put(big.clone(), Entry::new(v3.clone())).await.unwrap().is_stored());
        tier.close().await.unwrap();

        let files: Vec<u8> =
            segments(dir.path()).iter().flat_map(|p| std::fs::read(p).unwrap()).collect();
        let holds = |v: &Bytes| files.windows(16).any(|w| w == &v[100..116]);
        assert!(!holds(&v1) && !holds(&v3), "a sealed value is in the segment files in plaintext");
        assert!(holds(&v2), "the namespace without a key is stored as it was");

        // A clean reopen (index snapshot), then a crash (no snapshot: the segments are scanned
        // without the keys, which must not lose the sealed records).
        for after_crash in [false, true] {
            let tier = open(dir.path(), Some(keys())).await;
            assert_eq!(tier.get(&sealed).await.unwrap().unwrap().value, v1, "{after_crash}");
            assert_eq!(tier.get(&public).await.unwrap().unwrap().value, v2);
            assert_eq!(tier.get(&big).await.unwrap().unwrap().value, v3);
            let range = tier.get_range(&big, 500_000..500_100).await.unwrap().unwrap();
            assert_eq!(range, v3.slice(500_000..500_100));
            assert_eq!(tier.stats().corrupted, 0);
            if after_crash {
                tier.close().await.unwrap();
            } else {
                drop(tier); // no index snapshot: the next open scans the segments
            }
        }
    });
}

#[test]
fn without_the_key_or_with_a_wrong_one_a_sealed_record_is_a_counted_miss() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let k = key("tenant-a", "profile");
        let tier = open(dir.path(), Some(keys())).await;
        assert!(tier.put(k.clone(), Entry::new(secret(1, 3000))).await.unwrap().is_stored());
        tier.close().await.unwrap();

        let wrong: Arc<dyn KeyProvider> =
            Arc::new(DerivedKeys::new(KeyId(1), EncryptionKey::from_bytes([9; 32])));
        for reader in [None, Some(wrong)] {
            // Each reader drops the record it cannot open, so write it again for the next.
            let tier = open(dir.path(), reader).await;
            assert_eq!(tier.get(&k).await.unwrap(), None);
            assert_eq!(tier.stats().corrupted, 1);
            tier.close().await.unwrap();
            let tier = open(dir.path(), Some(keys())).await;
            assert!(tier.put(k.clone(), Entry::new(secret(1, 3000))).await.unwrap().is_stored());
            tier.close().await.unwrap();
        }
    });
}

#[test]
fn hostile_rows_written_into_a_segment_are_counted_misses() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // Keys of one length, values of one length: each forged record fits the slot exactly.
        let (a, b) = (key("tenant-a", "victim"), key("tenant-b", "victim"));
        let (c, d, e) =
            (key("tenant-a", "forged"), key("tenant-a", "shortr"), key("tenant-a", "plants"));
        let value = secret(5, 2000);
        let tier = open(dir.path(), Some(keys())).await;
        for k in [&a, &b, &c, &d, &e] {
            assert!(tier.put(k.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
        }
        tier.close().await.unwrap();

        // 1. Tenant B's record copied over tenant A's, with its namespace rewritten to A's
        //    (and the checksum made valid again): the cipher binds the namespace.
        let (path, at, _) = find(dir.path(), &a);
        let (_, _, b_bytes) = find(dir.path(), &b);
        let mut moved = b_bytes.clone();
        let ns_at = HEADER_LEN + 25;
        moved[ns_at..ns_at + 8].copy_from_slice(b"tenant-a");
        rechecksum(&mut moved);
        overwrite(&path, at, &moved);

        // 2. Tenant A's record re-sealed under another key.
        let (path, at, c_bytes) = find(dir.path(), &c);
        let other = RecordFormat::new()
            .with_keys(Arc::new(DerivedKeys::new(KeyId(1), EncryptionKey::from_bytes([7; 32]))));
        let resealed = other.encode(&c, &Entry::new(value.clone())).unwrap();
        assert_eq!(resealed.len(), c_bytes.len());
        overwrite(&path, at, &resealed);

        // 3. A ciphertext truncated by a byte, its lengths and checksum made consistent again.
        let (path, at, d_bytes) = find(dir.path(), &d);
        let mut short = d_bytes[..d_bytes.len() - 1].to_vec();
        let decoded = u32::from_le_bytes(short[20..24].try_into().unwrap()) - 1;
        short[20..24].copy_from_slice(&decoded.to_le_bytes());
        let stored = u64::from_le_bytes(short[24..32].try_into().unwrap()) - 1;
        short[24..32].copy_from_slice(&stored.to_le_bytes());
        rechecksum(&mut short);
        short.push(0);
        overwrite(&path, at, &short);

        // 4. A plaintext record planted in the sealed namespace (44 bytes more value, so it
        //    fills the sealed record's place).
        let (path, at, e_bytes) = find(dir.path(), &e);
        let planted = Record::encode(&e, &Entry::new(secret(6, 2000 + cache_core::SEAL_OVERHEAD)));
        assert_eq!(planted.len(), e_bytes.len());
        overwrite(&path, at, &planted);

        let tier = open(dir.path(), Some(keys())).await;
        for k in [&a, &c, &d, &e] {
            assert_eq!(tier.get(k).await.unwrap(), None, "{k:?}");
        }
        assert_eq!(tier.get(&b).await.unwrap().unwrap().value, value);
        assert_eq!(tier.stats().corrupted, 4);
        tier.close().await.unwrap();
    });
}
