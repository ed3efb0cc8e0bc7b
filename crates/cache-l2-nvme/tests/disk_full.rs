//! A full disk: puts fail with `Io` saying the disk is full, nothing acknowledged is lost, and
//! the tier keeps serving what it has.
//!
//! Needs a small filesystem, so it runs only when `NVME_ENOSPC_DIR` names a directory on one,
//! e.g. `mount -t tmpfs -o size=3m tmpfs /mnt/small` then
//! `NVME_ENOSPC_DIR=/mnt/small cargo nextest run -p cache-l2-nvme --test disk_full`.

use bytes::Bytes;
use cache_core::{Entry, ErrorKind, Key, Tier, testkit::block_on};
use cache_l2_nvme::NvmeTierBuilder;

#[test]
fn enospc_is_a_clear_io_error_and_loses_nothing() {
    let Some(base) = std::env::var_os("NVME_ENOSPC_DIR") else { return };
    let dir = tempfile::tempdir_in(base).unwrap();
    block_on(async {
        let tier =
            NvmeTierBuilder::new(dir.path(), 64 << 20).segment_size(1 << 20).open().await.unwrap();
        let value = Bytes::from(vec![9u8; 64 << 10]);
        let mut stored = Vec::new();
        let mut failure = None;
        for i in 0..200u32 {
            let k = Key::new("full", i.to_le_bytes().to_vec()).unwrap();
            match tier.put(k.clone(), Entry::new(value.clone())).await {
                Ok(o) => {
                    assert!(o.is_stored());
                    stored.push(k);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let err = failure.expect("a 3 MiB filesystem fills up");
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.to_string().contains("disk is full"), "{err}");
        assert!(!stored.is_empty());
        for k in &stored {
            assert_eq!(tier.get(k).await.unwrap().expect("acknowledged").value, value);
        }
        assert!(tier.stats().errors_of(ErrorKind::Io) >= 1);
        drop(tier);
        let tier =
            NvmeTierBuilder::new(dir.path(), 64 << 20).segment_size(1 << 20).open().await.unwrap();
        for k in &stored {
            assert_eq!(tier.get(k).await.unwrap().expect("after reopen").value, value);
        }
    });
}
