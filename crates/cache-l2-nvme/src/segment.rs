//! Segment files: fixed-size, preallocated, append-only files read through one shared mapping.
//!
//! A segment is created at its full size (`fallocate`, or `set_len` where that is unsupported),
//! its header is written, and the whole file is mapped once. Records are appended with `pwrite`
//! at increasing offsets; because the mapping is `MAP_SHARED` over the page cache, bytes are
//! readable through it as soon as `pwrite` returns. A segment file is never truncated,
//! rewritten or extended after creation: reclaim unlinks it, so a `Bytes` still pointing into
//! the mapping stays valid.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

use crate::{
    error::{NvmeError, io_err},
    format::{SEGMENT_HEADER_LEN, SEGMENT_VERSION, SegmentHeader, segment_file_name},
    io,
};

/// One live segment.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Its id.
    pub(crate) id: u32,
    /// Bytes accounted against the budget (the file size).
    pub(crate) size: u64,
    /// Its path.
    pub(crate) path: PathBuf,
    /// The file, for `pwrite` and `fdatasync`.
    pub(crate) file: File,
    /// The whole mapping as `Bytes`; a hit is a slice of it.
    pub(crate) data: Bytes,
    /// Written since the last sync.
    pub(crate) dirty: AtomicBool,
    /// Its format version (sync points from version 2 on).
    pub(crate) version: u16,
    /// The end of the bytes written so far (writes are appends at increasing offsets).
    pub(crate) written: AtomicU64,
    /// The end of the prefix a completed `fdatasync` made durable (in this run).
    pub(crate) synced: AtomicU64,
}

/// Maps `len` bytes of `file`.
fn map(file: &File, len: u64, path: &Path) -> Result<Bytes, NvmeError> {
    let len = usize::try_from(len).map_err(|_| NvmeError::BadFile {
        path: path.to_owned(),
        reason: "segment larger than the address space".into(),
    })?;
    // SAFETY: the mapping is read-only and covers only bytes inside the file as it is now. This
    // tier never truncates, shrinks or rewrites a segment file (the only writes are appends into
    // the preallocated, never-before-written region after the published offsets, which readers
    // do not look at until the index points there), and reclaim unlinks the file instead of
    // reusing it, so the mapped pages stay valid for as long as any `Bytes` holds the mapping.
    // One process owns the directory (exclusive lock); a person truncating the file by hand
    // while it is mapped is outside what any mmap user can defend against.
    let mmap: Mmap =
        unsafe { MmapOptions::new().len(len).map(file) }.map_err(|e| io_err("map", path, e))?;
    Ok(Bytes::from_owner(mmap))
}

impl Segment {
    /// Creates segment `id` of `size` bytes in `dir` and writes its header.
    pub(crate) fn create(
        dir: &Path,
        id: u32,
        size: u64,
        created_at_ms: u64,
    ) -> Result<Segment, NvmeError> {
        let path = dir.join(segment_file_name(id));
        let file = io::create_new(&path).map_err(|e| io_err("create segment", &path, e))?;
        let result = (|| {
            io::allocate(&file, &path, size)
                .map_err(|e| io_err("preallocate segment", &path, e))?;
            let header = SegmentHeader { version: SEGMENT_VERSION, id, size, created_at_ms };
            io::write_at(&file, &path, &header.encode(), 0)
                .map_err(|e| io_err("write segment header", &path, e))?;
            map(&file, size, &path)
        })();
        match result {
            Ok(data) => Ok(Segment {
                id,
                size,
                path,
                file,
                data,
                dirty: AtomicBool::new(true),
                version: SEGMENT_VERSION,
                written: AtomicU64::new(SEGMENT_HEADER_LEN as u64),
                synced: AtomicU64::new(0),
            }),
            Err(e) => {
                // Nothing was published from it: remove the half-made file.
                drop(file);
                let _ = io::unlink(&path);
                Err(e)
            }
        }
    }

    /// Opens an existing segment read-only for recovery. Its mapped length is the smaller of
    /// the header's size and the file's actual length (a file truncated by hand is read as far
    /// as it goes, never past its end).
    pub(crate) fn open_existing(path: &Path, expected_id: u32) -> Result<Segment, NvmeError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_err("open segment", path, e))?;
        let file_len = file.metadata().map_err(|e| io_err("stat segment", path, e))?.len();
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        let bad =
            |reason: &str| NvmeError::BadFile { path: path.to_owned(), reason: reason.into() };
        if file_len < SEGMENT_HEADER_LEN as u64 {
            return Err(bad("file is shorter than a segment header"));
        }
        file.read_exact_at(&mut head, 0).map_err(|e| io_err("read segment header", path, e))?;
        let header = SegmentHeader::decode(&head).map_err(bad)?;
        if header.id != expected_id {
            return Err(bad("segment id does not match the file name"));
        }
        let size = header.size.min(file_len);
        let data = map(&file, size, path)?;
        Ok(Segment {
            id: header.id,
            size: header.size.max(file_len),
            path: path.to_owned(),
            file,
            data,
            dirty: AtomicBool::new(false),
            version: header.version,
            // Never written in this run: the writer does not append to a recovered segment.
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        })
    }

    /// Appends `bytes` at `offset` (a region never written before).
    pub(crate) fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), NvmeError> {
        io::write_at(&self.file, &self.path, bytes, offset)
            .map_err(|e| io_err("append to segment", &self.path, e))?;
        self.wrote(offset + bytes.len() as u64);
        Ok(())
    }

    /// Appends `head` then `value` at `offset` (a region never written before) with `pwritev`,
    /// so a value is copied once, from the caller's buffer into the page cache.
    pub(crate) fn write_parts_at(
        &self,
        head: &[u8],
        value: &[u8],
        offset: u64,
    ) -> Result<(), NvmeError> {
        io::write_parts_at(&self.file, &self.path, head, value, offset)
            .map_err(|e| io_err("append to segment", &self.path, e))?;
        self.wrote(offset + (head.len() + value.len()) as u64);
        Ok(())
    }

    /// Notes a completed write ending at `end`: first the end, then the dirty flag, so a sync
    /// that sees the flag also sees the end (and covers it: the write returned before).
    fn wrote(&self, end: u64) {
        self.written.fetch_max(end, Ordering::Release);
        self.dirty.store(true, Ordering::Release);
    }

    /// `fdatasync` if anything was written since the last sync; on success, every write that
    /// had returned when the sync started is durable, which [`Segment::synced`] records.
    pub(crate) fn sync_if_dirty(&self) -> Result<(), NvmeError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let end = self.written.load(Ordering::Acquire);
            if let Err(e) = io::sync_data(&self.file, &self.path) {
                self.dirty.store(true, Ordering::Release);
                return Err(io_err("sync segment", &self.path, e));
            }
            self.synced.fetch_max(end, Ordering::Release);
        }
        Ok(())
    }

    /// The readable length (the mapping).
    pub(crate) fn mapped_len(&self) -> usize {
        self.data.len()
    }
}
