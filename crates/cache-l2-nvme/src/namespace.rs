//! The namespace-clear log: one fixed 40-byte marker appended (and synced) per
//! `clear_namespace`, so clearing is O(1) on disk.
//!
//! A marker says "records of this namespace at log positions below N are absent". Readers
//! compare an entry's position with its namespace's marker; reclaim drops the records for good.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
};

use cache_core::NamespaceId;

use crate::{
    error::{NvmeError, io_err},
    format::{NSLOG_ENTRY_LEN, NSLOG_FILE, NSLOG_HEADER_LEN, NsMarker, decode_nslog, nslog_header},
    io,
};

/// Markers rewritten into a fresh log when the log holds more than this many.
const COMPACT_AT: usize = 1024;

/// The open log.
#[derive(Debug)]
pub(crate) struct NsLog {
    path: PathBuf,
    file: File,
    len: u64,
}

impl NsLog {
    /// Opens (or creates) the log in `dir` and returns the newest marker per namespace.
    /// A torn last marker (a clear that was never acknowledged) is dropped.
    pub(crate) fn open(dir: &Path) -> Result<(NsLog, HashMap<NamespaceId, u64>), NvmeError> {
        let path = dir.join(NSLOG_FILE);
        let mut markers = HashMap::new();
        let existing = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", &path, e)),
        };
        let mut count = 0usize;
        if let Some(b) = &existing {
            let list = decode_nslog(b).map_err(|reason| NvmeError::BadFile {
                path: path.clone(),
                reason: reason.to_owned(),
            })?;
            count = list.len();
            for m in list {
                let e = markers.entry(m.namespace).or_insert(0u64);
                *e = (*e).max(m.lsn);
            }
        }
        let valid_len = (NSLOG_HEADER_LEN + count * NSLOG_ENTRY_LEN) as u64;
        let needs_rewrite =
            existing.as_ref().is_none_or(|b| b.len() as u64 != valid_len) || count > COMPACT_AT;
        if needs_rewrite {
            // Write the surviving markers to a uniquely named temporary file, sync it, then
            // rename it over the log and sync the directory: the log is never half-written.
            let tmp = dir.join(format!("{NSLOG_FILE}.{}.tmp", std::process::id()));
            let mut body = nslog_header().to_vec();
            for (ns, lsn) in &markers {
                body.extend_from_slice(
                    &NsMarker { namespace: *ns, lsn: *lsn, cleared_at_ms: 0 }.encode(),
                );
            }
            let f = io::create_truncate(&tmp).map_err(|e| io_err("create", &tmp, e))?;
            io::write_at(&f, &tmp, &body, 0).map_err(|e| io_err("write", &tmp, e))?;
            io::sync_all(&f, &tmp).map_err(|e| io_err("sync", &tmp, e))?;
            drop(f);
            io::rename(&tmp, &path).map_err(|e| io_err("rename into place", &path, e))?;
            sync_dir(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        let len = file.metadata().map_err(|e| io_err("stat", &path, e))?.len();
        Ok((NsLog { path, file, len }, markers))
    }

    /// Appends a marker and syncs it.
    pub(crate) fn append(&mut self, marker: NsMarker) -> Result<(), NvmeError> {
        io::write_at(&self.file, &self.path, &marker.encode(), self.len)
            .map_err(|e| io_err("append to", &self.path, e))?;
        io::sync_data(&self.file, &self.path).map_err(|e| io_err("sync", &self.path, e))?;
        self.len += NSLOG_ENTRY_LEN as u64;
        Ok(())
    }
}

/// `fsync` on a directory, making created, renamed and unlinked names durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), NvmeError> {
    io::sync_dir(dir).map_err(|e| io_err("sync the directory", dir, e))
}
