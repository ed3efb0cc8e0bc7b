//! Multipart uploads of records at or above the multipart threshold.

use bytes::Bytes;
use cache_core::{RecordParts, Result};
use futures::{StreamExt, stream::FuturesUnordered};
use object_store::{PutMultipartOptions, PutPayload, path::Path};

use super::Inner;
use crate::{error::ObjectError, metrics::Op};

impl Inner {
    /// Uploads one record object in parts of the configured size, at most the configured
    /// number at once; a failed upload is aborted so the store keeps no orphaned parts.
    pub(super) async fn multipart(&self, path: &Path, split: &RecordParts) -> Result<()> {
        let mut upload = self
            .call(
                Op::MultipartStart,
                self.store.put_multipart_opts(path, PutMultipartOptions::default()),
            )
            .await?;
        let parts = parts(split, self.settings.part_size);
        let uploaded = async {
            let mut in_flight = FuturesUnordered::new();
            for part in parts {
                while in_flight.len() >= self.settings.part_concurrency {
                    in_flight.next().await.expect("parts in flight")?;
                }
                let len = part.content_length() as u64;
                let fut = upload.put_part(part);
                in_flight.push(async move {
                    let out = self.call(Op::MultipartPart, fut).await;
                    if out.is_ok() {
                        self.metrics.add_up(len);
                    }
                    out
                });
            }
            while let Some(done) = in_flight.next().await {
                done?;
            }
            Ok::<(), ObjectError>(())
        }
        .await;
        let finished = match uploaded {
            Ok(()) => self.call(Op::MultipartComplete, upload.complete()).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = finished {
            if let Err(abort) = self.call(Op::MultipartComplete, upload.abort()).await {
                tracing::warn!(error = %abort, "aborting a failed multipart upload failed");
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// Cuts a record into multipart parts of `part_size` bytes (the last one shorter), zero-copy.
fn parts(split: &RecordParts, part_size: usize) -> Vec<PutPayload> {
    let mut parts = Vec::new();
    let mut current: Vec<Bytes> = Vec::new();
    let mut current_len = 0usize;
    for mut chunk in split.chunks() {
        while !chunk.is_empty() {
            let take = (part_size - current_len).min(chunk.len());
            current.push(chunk.split_to(take));
            current_len += take;
            if current_len == part_size {
                parts.push(std::mem::take(&mut current).into_iter().collect());
                current_len = 0;
            }
        }
    }
    if !current.is_empty() {
        parts.push(current.into_iter().collect());
    }
    parts
}

#[cfg(test)]
mod tests {
    use cache_core::{Entry, Key, Record};

    use super::*;

    #[test]
    fn parts_cover_the_record_exactly() {
        let key = Key::new("ns", "k").unwrap();
        let value = Bytes::from((0..10_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let split = Record::encode_parts(&key, &Entry::new(value));
        let whole: Vec<u8> = split.chunks().flat_map(|c| c.to_vec()).collect();
        for size in [1, 7, 100, 4096, 10_000, 20_000] {
            let parts = parts(&split, size);
            let joined: Vec<u8> =
                parts.iter().flat_map(|p| p.iter().flat_map(|c| c.to_vec())).collect();
            assert_eq!(joined, whole, "part size {size}");
            assert!(parts.iter().rev().skip(1).all(|p| p.content_length() == size));
        }
    }
}
