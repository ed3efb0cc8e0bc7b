//! The cache-core conformance suite against the NVMe tier in a temporary directory.

use cache_core::testkit::{TestTier, TierSpec};
use cache_l2_nvme::NvmeTierBuilder;

async fn factory(spec: TierSpec) -> TestTier {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut builder = NvmeTierBuilder::new(dir.path(), spec.capacity_bytes).clock(spec.dyn_clock());
    if let Some(idle) = spec.time_to_idle {
        builder = builder.time_to_idle(idle);
    }
    let tier = builder.open().await.expect("open the tier");
    TestTier::with_guard(tier, dir)
}

cache_core::conformance_suite!(factory);
cache_core::idle_conformance_suite!(factory);
cache_core::huge_conformance_suite!(factory);

/// The same suite with hits read by `O_DIRECT` (in the target directory: `/tmp` may be a tmpfs,
/// which has `O_DIRECT` only from Linux 6.6).
mod direct_reads {
    use super::*;

    async fn factory(spec: TierSpec) -> TestTier {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let mut builder = NvmeTierBuilder::new(dir.path(), spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .direct_reads(true);
        if let Some(idle) = spec.time_to_idle {
            builder = builder.time_to_idle(idle);
        }
        let tier = builder.open().await.expect("open the tier");
        TestTier::with_guard(tier, dir)
    }

    cache_core::conformance_suite!(factory);
    cache_core::idle_conformance_suite!(factory);
}

/// The same suite with values compressed by zstd on write.
mod compressed {
    use cache_core::Compression;

    use super::*;

    async fn factory(spec: TierSpec) -> TestTier {
        let dir = tempfile::tempdir().expect("temp dir");
        let tier = NvmeTierBuilder::new(dir.path(), spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .compression(Compression::zstd())
            .open()
            .await
            .expect("open the tier");
        TestTier::with_guard(tier, dir)
    }

    cache_core::conformance_suite!(factory);
}

/// The same suite with every namespace but one sealed at rest (and LZ4 before sealing).
mod sealed {
    use cache_core::{Compression, testkit::suite_keys};

    use super::*;

    async fn factory(spec: TierSpec) -> TestTier {
        let dir = tempfile::tempdir().expect("temp dir");
        let tier = NvmeTierBuilder::new(dir.path(), spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .compression(Compression::Lz4)
            .encryption(suite_keys())
            .open()
            .await
            .expect("open the tier");
        TestTier::with_guard(tier, dir)
    }

    cache_core::sealed_conformance_suite!(factory);
}
