//! A full disk: the next flush fails with `Io` saying the disk is full, nothing a flush
//! acknowledged is lost, and the tier keeps serving what it has.
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
        // `put` returns before the write; a failed write is reported by the next flush. What a
        // successful flush acknowledged must survive.
        let (mut stored, mut unflushed) = (Vec::new(), Vec::new());
        let mut failure = None;
        for i in 0..200u32 {
            let k = Key::new("full", i.to_le_bytes().to_vec()).unwrap();
            let result = match tier.put(k.clone(), Entry::new(value.clone())).await {
                Ok(o) => {
                    assert!(o.is_stored());
                    unflushed.push(k);
                    if i % 4 == 3 { tier.flush().await } else { Ok(()) }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) if i % 4 == 3 => stored.append(&mut unflushed),
                Ok(()) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let err = failure.expect("a 3 MiB filesystem fills up");
        assert!(tier.write_errors() >= 1, "the failed write is counted");
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
