//! Streamed puts: a large value is written while it arrives, so memory stays bounded whatever
//! the value's length.
//!
//! Over a local directory, the record is written to a staging file beside the object (a name
//! ending in `#` and digits, which the local store never lists), its head patched at the end,
//! then renamed into place: a reader sees the old object or the whole new one.
//!
//! Over a store with indexed multipart uploads, the record's bytes are cut into parts of
//! `part_size` (the last one shorter), in order. Part 0 starts with the record's head, whose
//! checksum covers the chunk table at the record's end (`docs/format.md`); it is held until the
//! value has passed through [`RecordWriter`], then patched and uploaded last. Parts 1.. are uploaded as they fill, at most `part_concurrency`
//! at once. So the memory held is at most part 0, the part being filled and the parts in
//! flight.

use std::{
    io::SeekFrom,
    path::{Path as FsPath, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use cache_core::{
    CHUNKED_MIN_VALUE, Entry, EntryMeta, Error, ErrorKind, Key, Record, RecordWriter, Result,
    ValueStream, collect_value, reject_expired,
};
use futures::{StreamExt, stream::FuturesUnordered};
use object_store::{
    PutPayload,
    multipart::{MultipartStore, PartId},
    path::Path,
};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{Inner, TIER, Written};
use crate::{error::ObjectError, metrics::Op};

/// How a tier writes a streamed value as it arrives.
pub(crate) enum Streaming {
    /// It cannot: the value is gathered, then put.
    Gather,
    /// Indexed multipart uploads of the same store.
    Parts(Arc<dyn MultipartStore>),
    /// A local directory (the root the local store was opened on), fsynced or not.
    Local { root: PathBuf, fsync: bool },
}

/// The longest value a streamed put accepts (S3 objects stop at 5 TiB).
const MAX_STREAMED: u64 = 1 << 50;

/// Distinct staging names for the local files streamed puts of this process write.
static STAGING: AtomicU64 = AtomicU64::new(0);

/// What streamed puts hold in memory: the bytes now, and the most at any time.
#[derive(Debug, Default)]
pub(crate) struct Held {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Held {
    fn add(&self, n: u64) {
        let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, n: u64) {
        self.now.fetch_sub(n, Ordering::Relaxed);
    }

    /// The most bytes streamed puts have held at once.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Bytes counted in [`Held`] while this lives.
struct Holding<'a> {
    held: &'a Held,
    bytes: u64,
}

impl<'a> Holding<'a> {
    fn new(held: &'a Held) -> Holding<'a> {
        Holding { held, bytes: 0 }
    }

    fn add(&mut self, n: u64) {
        self.bytes += n;
        self.held.add(n);
    }

    fn sub(&mut self, n: u64) {
        self.bytes -= n;
        self.held.sub(n);
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.held.sub(self.bytes);
    }
}

/// Cuts the record's bytes into parts of `size` as they come: part 0 is kept, the others are
/// handed out full.
struct Cutter {
    size: usize,
    first: Vec<Bytes>,
    first_len: usize,
    current: Vec<Bytes>,
    current_len: usize,
}

impl Cutter {
    fn new(size: usize, head_len: usize) -> Cutter {
        // Part 0 starts with the head, added at the end once its checksum is known.
        Cutter { size, first: Vec::new(), first_len: head_len, current: Vec::new(), current_len: 0 }
    }

    /// Places `bytes`; returns each part it completed (never part 0).
    fn place(&mut self, mut bytes: Bytes, done: &mut Vec<PutPayload>) {
        while !bytes.is_empty() {
            if self.first_len < self.size {
                let take = (self.size - self.first_len).min(bytes.len());
                self.first.push(bytes.split_to(take));
                self.first_len += take;
                continue;
            }
            let take = (self.size - self.current_len).min(bytes.len());
            self.current.push(bytes.split_to(take));
            self.current_len += take;
            if self.current_len == self.size {
                done.push(std::mem::take(&mut self.current).into_iter().collect());
                self.current_len = 0;
            }
        }
    }
}

/// Records one finished part upload: its id, or its error.
fn finish(
    (idx, len, out): (usize, u64, std::result::Result<PartId, ObjectError>),
    ids: &mut [Option<PartId>],
    holding: &mut Holding<'_>,
) -> Result<()> {
    holding.sub(len);
    ids[idx] = Some(out?);
    Ok(())
}

impl Inner {
    /// `Tier::put_stream`: see `ObjectTier`'s docs of it.
    pub(super) async fn put_stream(
        self: &Arc<Self>,
        key: Key,
        mut meta: EntryMeta,
        len: u64,
        body: ValueStream,
    ) -> Result<Option<Written>> {
        self.check_open()?;
        let mode = self.put_mode();
        let now = self.clock.now();
        if reject_expired(&meta, now, &self.stats).is_some() {
            self.drop_stale(&key, mode).await?;
            return Ok(None);
        }
        meta.stamp(now);
        if len > MAX_STREAMED {
            // Far beyond any store's object size, and the record's length must not overflow.
            return Err(Error::invalid(
                TIER,
                format!("a value of {len} bytes is longer than any object store holds"),
            ));
        }
        let size = Record::encoded_len(&key, len as usize) as u64;
        let large = !self.settings.conditional_create
            && !self.settings.format.seals(&key)
            // Never compressed (`Compression` stops below this), so stored raw.
            && len >= CHUNKED_MIN_VALUE as u64
            && size >= self.settings.multipart_threshold
            && Record::encoded_len(&key, 0) < self.settings.part_size;
        if !large || matches!(self.streaming, Streaming::Gather) {
            let value = collect_value(TIER, len, body).await?;
            return self.put_entry(key, Entry { value, meta }, mode).await;
        }
        self.check_size(size)?;
        let writer = RecordWriter::new(&key, &meta, len);
        let path = self.layout.object(&key);
        match &self.streaming {
            Streaming::Parts(parts) => self.stream_upload(&**parts, &path, writer, body).await?,
            Streaming::Local { root, fsync } => {
                self.stream_file(root, *fsync, &path, writer, body).await?;
                self.metrics.add_up(size);
            }
            Streaming::Gather => unreachable!("gathered above"),
        }
        self.account(&key, size).await;
        Ok(Some(Written::Stored))
    }

    /// Uploads the record `writer` encodes, its value from `body`, as one multipart upload;
    /// aborted on any failure, so the store keeps neither parts nor a partial object.
    async fn stream_upload(
        &self,
        parts: &dyn MultipartStore,
        path: &Path,
        writer: RecordWriter,
        body: ValueStream,
    ) -> Result<()> {
        let id = self.call(Op::MultipartStart, parts.create_multipart(path)).await?;
        let uploaded = self.stream_parts(parts, path, &id, writer, body).await;
        let finished = match uploaded {
            Ok(ids) => self
                .call(Op::MultipartComplete, parts.complete_multipart(path, &id, ids))
                .await
                .map(|_| ())
                .map_err(Error::from),
            Err(e) => Err(e),
        };
        if finished.is_err() {
            let abort = self.call(Op::MultipartComplete, parts.abort_multipart(path, &id)).await;
            if let Err(abort) = abort {
                tracing::warn!(error = %abort, "aborting a failed streamed upload failed");
            }
        }
        finished
    }

    /// Writes the record `writer` encodes, its value from `body`, to a staging file beside the
    /// object at `path` under `root`, then renames it into place; the staging file is removed
    /// on any failure.
    async fn stream_file(
        &self,
        root: &FsPath,
        fsync: bool,
        path: &Path,
        writer: RecordWriter,
        body: ValueStream,
    ) -> Result<()> {
        let dest = root.join(path.as_ref());
        let n = STAGING.fetch_add(1, Ordering::Relaxed);
        let mut staging = dest.clone().into_os_string();
        staging.push(format!("#{}{n:08}", std::process::id()));
        let staging = PathBuf::from(staging);
        let written = self.write_staged(&dest, &staging, fsync, writer, body).await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&staging).await;
        }
        written
    }

    async fn write_staged(
        &self,
        dest: &FsPath,
        staging: &FsPath,
        fsync: bool,
        mut writer: RecordWriter,
        mut body: ValueStream,
    ) -> Result<()> {
        let io = |what: &'static str| {
            move |e: std::io::Error| Error::new(ErrorKind::Io, TIER, what).with_source(e)
        };
        let dir = dest.parent().expect("an object's file is in a directory");
        tokio::fs::create_dir_all(dir).await.map_err(io("cannot create the object's directory"))?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(staging)
            .await
            .map_err(io("cannot create a staging file for a streamed put"))?;
        let write = io("cannot write a streamed put's staging file");
        file.write_all(writer.head()).await.map_err(write)?;
        let mut holding = Holding::new(&self.held);
        while let Some(piece) = body.next().await.transpose()? {
            writer.push(&piece).map_err(|e| e.with_tier(TIER))?;
            holding.add(piece.len() as u64);
            file.write_all(&piece).await.map_err(write)?;
            holding.sub(piece.len() as u64);
        }
        let (head, tail) = writer.finish().map_err(|e| e.with_tier(TIER))?;
        file.write_all(&tail).await.map_err(write)?;
        file.flush().await.map_err(write)?;
        file.seek(SeekFrom::Start(0)).await.map_err(write)?;
        file.write_all(&head).await.map_err(write)?;
        file.flush().await.map_err(write)?;
        if fsync {
            file.sync_all().await.map_err(io("cannot sync a streamed put's staging file"))?;
        }
        drop(file);
        tokio::fs::rename(staging, dest)
            .await
            .map_err(io("cannot move a streamed put's file into place"))?;
        if fsync {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
                .await
                .map_err(|e| Error::new(ErrorKind::Io, TIER, "syncing a directory").with_source(e))?
                .map_err(io("cannot sync the object's directory"))?;
        }
        Ok(())
    }

    async fn stream_parts(
        &self,
        parts: &dyn MultipartStore,
        path: &Path,
        id: &String,
        writer: RecordWriter,
        mut body: ValueStream,
    ) -> Result<Vec<PartId>> {
        let concurrency = self.settings.part_concurrency;
        let mut cutter = Cutter::new(self.settings.part_size, writer.head().len());
        let mut holding = Holding::new(&self.held);
        let parts_len = writer.encoded_len().div_ceil(self.settings.part_size as u64) as usize;
        let mut ids: Vec<Option<PartId>> =
            std::iter::repeat_with(|| None).take(parts_len).collect();
        let mut in_flight = FuturesUnordered::new();
        let mut full = Vec::new();
        let upload = |idx: usize, payload: PutPayload| {
            let len = payload.content_length() as u64;
            async move {
                let out =
                    self.call(Op::MultipartPart, parts.put_part(path, id, idx, payload)).await;
                if out.is_ok() {
                    self.metrics.add_up(len);
                }
                (idx, len, out)
            }
        };
        let mut next = 1usize;
        let mut writer = Some(writer);
        let mut first = None;
        while first.is_none() {
            match body.next().await.transpose()? {
                Some(piece) => {
                    let w = writer.as_mut().expect("the writer lives until the body ends");
                    w.push(&piece).map_err(|e| e.with_tier(TIER))?;
                    holding.add(piece.len() as u64);
                    cutter.place(piece, &mut full);
                }
                None => {
                    let w = writer.take().expect("the body ends once");
                    let (head, tail) = w.finish().map_err(|e| e.with_tier(TIER))?;
                    holding.add((head.len() + tail.len()) as u64);
                    cutter.place(tail, &mut full);
                    if !cutter.current.is_empty() {
                        full.push(std::mem::take(&mut cutter.current).into_iter().collect());
                    }
                    let part: PutPayload =
                        std::iter::once(head).chain(cutter.first.drain(..)).collect();
                    first = Some(part);
                }
            }
            for payload in full.drain(..) {
                while in_flight.len() >= concurrency {
                    let done = in_flight.next().await.expect("parts in flight");
                    finish(done, &mut ids, &mut holding)?;
                }
                in_flight.push(upload(next, payload));
                next += 1;
            }
        }
        let first = first.expect("the loop ends with part 0");
        in_flight.push(upload(0, first));
        while let Some(done) = in_flight.next().await {
            finish(done, &mut ids, &mut holding)?;
        }
        ids.into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::invalid(TIER, "a streamed upload lost a part"))
    }
}
