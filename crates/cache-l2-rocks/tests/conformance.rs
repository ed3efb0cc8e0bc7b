//! The cache-core conformance suite against a RocksDB tier in a temporary directory.

use cache_core::testkit::{TestTier, TierSpec};
use cache_l2_rocks::RocksTier;

async fn rocks_tier(spec: TierSpec) -> TestTier {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tier = RocksTier::builder(dir.path(), spec.capacity_bytes)
        .clock(spec.dyn_clock())
        .open()
        .await
        .expect("open the tier");
    // The tier is dropped before the directory.
    TestTier::with_guard(tier, dir)
}

cache_core::conformance_suite!(rocks_tier);
cache_core::huge_conformance_suite!(rocks_tier);

/// The same suite with values compressed by LZ4 on write.
mod compressed {
    use super::*;

    async fn rocks_tier(spec: TierSpec) -> TestTier {
        let dir = tempfile::tempdir().expect("temporary directory");
        let tier = RocksTier::builder(dir.path(), spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .compression(cache_l2_rocks::Compression::Lz4)
            .open()
            .await
            .expect("open the tier");
        TestTier::with_guard(tier, dir)
    }

    cache_core::conformance_suite!(rocks_tier);
}

/// The same suite with every namespace but one sealed at rest (and LZ4 before sealing).
mod sealed {
    use super::*;

    async fn rocks_tier(spec: TierSpec) -> TestTier {
        let dir = tempfile::tempdir().expect("temporary directory");
        let tier = RocksTier::builder(dir.path(), spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .compression(cache_l2_rocks::Compression::Lz4)
            .encryption(cache_core::testkit::suite_keys())
            .open()
            .await
            .expect("open the tier");
        TestTier::with_guard(tier, dir)
    }

    cache_core::sealed_conformance_suite!(rocks_tier);
}
