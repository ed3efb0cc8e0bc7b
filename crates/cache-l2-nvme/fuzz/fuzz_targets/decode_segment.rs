//! Feeds arbitrary bytes to every on-disk decoder of the NVMe tier: segment images (header and
//! records), index snapshots and namespace-clear logs. Run with
//! `cargo +nightly fuzz run decode_segment` from `crates/cache-l2-nvme`.
#![no_main]

use cache_l2_nvme::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::decode_segment(data);
    let _ = fuzzing::decode_segment_header(data);
    let _ = fuzzing::decode_snapshot(data);
    let _ = fuzzing::decode_namespace_log(data);
});
