//! With direct reads, a range of a large value reads only the record's head, its chunk table
//! and the chunks around the range from the device. Measured with the process's read counter
//! (`rchar` in `/proc/self/io`), so this file holds one test: no other test of its binary reads
//! at the same time.

use bytes::Bytes;
use cache_core::{Entry, Key, Tier, testkit::block_on};
use cache_l2_nvme::NvmeTierBuilder;

const MIB: usize = 1 << 20;

/// Bytes this process has read through `read`-like system calls so far.
fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    let line = io.lines().find(|l| l.starts_with("rchar:")).expect("an rchar line");
    line["rchar:".len()..].trim().parse().expect("a number")
}

#[test]
fn a_direct_range_read_reads_its_chunks_not_the_value() {
    block_on(async {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let tier = NvmeTierBuilder::new(dir.path(), 256 * MIB as u64)
            .direct_reads(true)
            .open()
            .await
            .unwrap();
        let value: Bytes = (0..16 * MIB).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>().into();
        let k = Key::new("direct", "blob").unwrap();
        assert!(tier.put(k.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
        tier.flush().await.unwrap();

        let before = bytes_read();
        let range = 8 * MIB as u64 + 100..8 * MIB as u64 + 4196;
        let got = tier.get_range(&k, range.clone()).await.unwrap().unwrap();
        let ranged = bytes_read() - before;
        assert!(got == value.slice(range.start as usize..range.end as usize));
        // Head (4 KiB block), table (2 KiB in one or two blocks), one 64 KiB chunk in its
        // blocks: under 100 KiB.
        assert!(ranged < 100 * 1024, "a 4 KiB range read {ranged} bytes");

        let before = bytes_read();
        assert_eq!(tier.get(&k).await.unwrap().unwrap().value, value);
        let whole = bytes_read() - before;
        assert!(whole >= 16 * MIB as u64, "the counter sees direct reads: {whole} bytes");
        // Empty ranges, inside a chunk and past the value's end, are hits with no bytes.
        let at = 8 * MIB as u64 + 100;
        assert_eq!(tier.get_range(&k, at..at).await.unwrap().unwrap().len(), 0);
        let end = value.len() as u64;
        assert_eq!(tier.get_range(&k, end + 5..end + 9).await.unwrap().unwrap().len(), 0);
        tier.close().await.unwrap();
    });
}
