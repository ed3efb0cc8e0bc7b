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
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

use cache_core::HEADER_LEN;

use crate::{
    error::{NvmeError, io_err},
    format::{SEGMENT_HEADER_LEN, SEGMENT_VERSION, SegmentHeader, segment_file_name},
    index::{LEN_IN_HEADER, Slot, len_in_header},
    io,
    parts::Parts,
};

/// What [`Segment::read_piece_direct`] found.
pub(crate) enum DirectPiece {
    /// The record does not lie inside the segment.
    NotInSegment,
    /// Not a version-2 record of the key's head length: read it whole.
    Whole,
    /// The head, the table or a chunk failed its checksum.
    Corrupt,
    /// A verified piece: whether the record is the key's own and not a tombstone, its metadata
    /// (expiry is for the caller to judge), and the value bytes of the range (clamped).
    Piece {
        /// Not a tombstone, and the record of the key looked up.
        live: bool,
        /// The record's metadata.
        meta: cache_core::EntryMeta,
        /// The range's bytes.
        value: Bytes,
    },
}

/// The alignment of a direct read's offset, length and buffer: the largest logical block size
/// of the devices in use (512-byte devices accept it too).
pub(crate) const DIRECT_BLOCK: usize = 4096;

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
    /// With direct reads, the file opened again with `O_DIRECT`: hits read through it.
    pub(crate) direct: Option<File>,
    /// Written since the last sync.
    pub(crate) dirty: AtomicBool,
    /// Its format version (sync points from version 2 on).
    pub(crate) version: u16,
    /// The end of the bytes written so far (writes are appends at increasing offsets).
    pub(crate) written: AtomicU64,
    /// The end of the prefix a completed `fdatasync` made durable (in this run).
    pub(crate) synced: AtomicU64,
}

/// Opens `path` read-only with `O_DIRECT`. A filesystem without it (`EINVAL`: tmpfs before
/// Linux 6.6, some FUSE and network filesystems) is a configuration error, not an IO failure.
pub(crate) fn open_direct(path: &Path) -> Result<File, NvmeError> {
    OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            NvmeError::Config(format!(
                "direct reads need O_DIRECT, which the filesystem of {} does not support",
                path.display()
            ))
        } else {
            io_err("open for direct reads", path, e)
        }
    })
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
                direct: None,
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
            direct: None,
            dirty: AtomicBool::new(false),
            version: header.version,
            // Never written in this run: the writer does not append to a recovered segment.
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        })
    }

    /// Opens the file again with `O_DIRECT`, so that hits read the device rather than the page
    /// cache ([`NvmeTierBuilder::direct_reads`](crate::NvmeTierBuilder::direct_reads)).
    pub(crate) fn with_direct_reads(mut self) -> Result<Segment, NvmeError> {
        self.direct = Some(open_direct(&self.path)?);
        Ok(self)
    }

    /// The bytes of `slot`'s record read with `O_DIRECT` (`None` if it does not lie inside the
    /// segment). Only for a segment opened [`Segment::with_direct_reads`].
    pub(crate) fn read_record_direct(&self, slot: Slot) -> Result<Option<Bytes>, NvmeError> {
        let Some(file) = self.direct.as_ref() else {
            return Err(NvmeError::Config("a direct read of a segment without O_DIRECT".into()));
        };
        let start = slot.offset as usize;
        let len = if slot.len == LEN_IN_HEADER {
            let Some(head) = self.read_direct(file, start, HEADER_LEN)? else {
                return Ok(None);
            };
            let Some(len) = len_in_header(&head) else { return Ok(None) };
            len
        } else {
            slot.len as usize
        };
        self.read_direct(file, start, len)
    }

    /// Part of `slot`'s record read with `O_DIRECT` for a read of value bytes `range` of `key`:
    /// its head, its chunk table and the whole chunks around `range`, verified against each
    /// other ([`RecordHead::verify_piece`](cache_core::RecordHead::verify_piece)). A record that
    /// is not version 2, or whose head does not parse at the length of `key`'s head (another
    /// key's record), is [`DirectPiece::Whole`]: the caller reads and checks it whole.
    pub(crate) fn read_piece_direct(
        &self,
        slot: Slot,
        key: &cache_core::Key,
        range: &std::ops::Range<u64>,
    ) -> Result<DirectPiece, NvmeError> {
        let head_len = cache_core::Record::encoded_len(key, 0);
        let Some(file) = self.direct.as_ref() else {
            return Err(NvmeError::Config("a direct read of a segment without O_DIRECT".into()));
        };
        let start = slot.offset as usize;
        // A head that does not fit (another key's shorter record at the segment's end) or
        // does not parse at this length: the whole read decides.
        let Some(head) = self.read_direct(file, start, head_len)? else {
            return Ok(DirectPiece::Whole);
        };
        let Ok(parsed) = cache_core::RecordHead::parse(&head) else {
            return Ok(DirectPiece::Whole);
        };
        let h = *parsed.header();
        let total = h.total_len().unwrap_or(u64::MAX);
        if h.version != cache_core::RECORD_VERSION_CHUNKED
            || (slot.len != LEN_IN_HEADER && u64::from(slot.len) != total)
        {
            return Ok(DirectPiece::Whole);
        }
        let (first, span) = h.chunks_around(range);
        let value_at = start as u64 + h.value_offset();
        let table_at = value_at + h.value_len;
        let (Some(piece), Some(table)) = (
            self.read_direct(
                file,
                (value_at + span.start) as usize,
                (span.end - span.start) as usize,
            )?,
            self.read_direct(file, table_at as usize, (h.chunks() * 8) as usize)?,
        ) else {
            return Ok(DirectPiece::NotInSegment);
        };
        if parsed.verify_piece(&table, first, &piece).is_err() {
            return Ok(DirectPiece::Corrupt);
        }
        let from = range.start.min(h.value_len);
        let to = range.end.min(h.value_len).max(from);
        // An empty range spans no chunk (and `from` may lie past the empty span's start).
        let value = if from == to {
            Bytes::new()
        } else {
            piece.slice((from - span.start) as usize..(to - span.start) as usize)
        };
        let live = !h.is_tombstone() && parsed.matches(key);
        Ok(DirectPiece::Piece { live, meta: *parsed.meta(), value })
    }

    /// Reads `len` bytes at `offset` through `file` (opened with `O_DIRECT`): the aligned
    /// blocks that hold them go into an aligned buffer, and the result is a slice of it. `None`
    /// if the range is not inside the segment.
    fn read_direct(
        &self,
        file: &File,
        offset: usize,
        len: usize,
    ) -> Result<Option<Bytes>, NvmeError> {
        let Some(end) = offset.checked_add(len).filter(|&end| end <= self.data.len()) else {
            return Ok(None);
        };
        let first = offset / DIRECT_BLOCK * DIRECT_BLOCK;
        let span = end.div_ceil(DIRECT_BLOCK) * DIRECT_BLOCK - first;
        let mut buf = vec![0u8; span + DIRECT_BLOCK];
        let pad = buf.as_ptr().align_offset(DIRECT_BLOCK);
        let window = &mut buf[pad..pad + span];
        let mut done = 0;
        while done < end - first {
            match file.read_at(&mut window[done..], (first + done) as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("read segment (direct)", &self.path, e)),
            }
        }
        if done < end - first {
            // The mapping covers the range, so the file does: only a file truncated by hand
            // ends early, and its record reads as a miss.
            return Ok(None);
        }
        let at = pad + offset - first;
        Ok(Some(Bytes::from(buf).slice(at..at + len)))
    }

    /// Appends `bytes` at `offset` (a region never written before).
    pub(crate) fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), NvmeError> {
        io::write_at(&self.file, &self.path, bytes, offset)
            .map_err(|e| io_err("append to segment", &self.path, e))?;
        self.wrote(offset + bytes.len() as u64);
        self.start_writeback(offset, bytes.len());
        Ok(())
    }

    /// Appends `record` (its head, the caller's value buffer and any chunk table) at `offset`
    /// (a region never written before) with `pwritev`, so a value is copied once, from the
    /// caller's buffer into the page cache.
    pub(crate) fn write_parts_at(&self, record: &Parts, offset: u64) -> Result<(), NvmeError> {
        io::write_parts_at(&self.file, &self.path, &record.slices(), offset)
            .map_err(|e| io_err("append to segment", &self.path, e))?;
        self.wrote(offset + record.len() as u64);
        self.start_writeback(offset, record.len());
        Ok(())
    }

    /// With direct reads, starts the writeback of a write that just returned
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`: it does not wait and promises no durability).
    /// A direct read of a range whose pages are still dirty has the kernel write them back
    /// first, on the reader's time; started here, that is done by the time most reads come.
    fn start_writeback(&self, offset: u64, len: usize) {
        if self.direct.is_none() {
            return;
        }
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
        // SAFETY: a plain system call on a descriptor `self.file` owns; it reads no memory.
        // Advisory: a failure changes nothing a later read or sync relies on.
        let _ = unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }

    /// With direct reads, asks the kernel to drop the segment's cached pages once it is full
    /// (`posix_fadvise(POSIX_FADV_DONTNEED)`, which also starts writing back the dirty ones):
    /// hits read the device, so those pages would only take RAM from the tiers above.
    pub(crate) fn drop_cached_pages(&self) {
        if self.direct.is_none() {
            return;
        }
        // SAFETY: as in `start_writeback`; advisory, and it never changes the file's bytes.
        let _ =
            unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
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
