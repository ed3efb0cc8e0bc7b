//! Arbitrary and mutated bytes fed to the on-disk decoders: they accept or reject, never panic.

use bytes::Bytes;
use cache_core::{Entry, Key, Record};
use cache_l2_nvme::fuzzing;
use proptest::prelude::*;

fn valid_image() -> Vec<u8> {
    let records: Vec<Bytes> = (0..8u32)
        .map(|i| {
            let k = Key::new("fuzz", format!("k{i}")).unwrap();
            if i == 5 {
                Record::encode_tombstone(&k, cache_core::Timestamp::from_millis(9))
            } else {
                Record::encode(&k, &Entry::new(vec![i as u8; 10 + i as usize * 30]).with_version(7))
            }
        })
        .collect();
    fuzzing::segment_image(3, 4096, &records)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = fuzzing::decode_segment(&data);
        let _ = fuzzing::decode_segment_header(&data);
        let _ = fuzzing::decode_snapshot(&data);
        let _ = fuzzing::decode_namespace_log(&data);
    }

    #[test]
    fn mutated_segments_never_panic(
        flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..16),
        cut in 0usize..4097,
    ) {
        let mut img = valid_image();
        prop_assert_eq!(fuzzing::decode_segment(&img), Some(8));
        for (at, x) in flips {
            img[at] ^= x;
        }
        img.truncate(cut.max(1));
        if let Some(n) = fuzzing::decode_segment(&img) {
            prop_assert!(n <= 8);
        }
    }
}
