//! The IO journal of the `io-trace` feature (power-loss tests only): what every persistent
//! write, sync and directory operation of the tier did, in order, with the bytes written.
//!
//! Recording is on in a process whose environment names a directory in [`ENV`]: the journal is
//! `io-journal.<pid>` in it, opened once (`O_APPEND`) at the first event. Each event is one
//! `write(2)` of `u32 length ‖ u8 kind ‖ u64 a ‖ u16 path length ‖ path ‖ data` (little-endian),
//! appended before the operation runs (a sync's end after it returned), so after a SIGKILL the
//! journal holds every operation that may have reached the page cache, and the last event may be
//! one that did not run. A failed operation is followed by a [`Event::Failed`] event.
//! [`read`] parses a journal, ignoring a cut-off last event.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::LazyLock,
};

use parking_lot::Mutex;

/// The environment variable naming the journal's directory.
pub const ENV: &str = "CACHE_NVME_IO_TRACE";

/// The journal of the process with id `pid` in `dir`.
pub fn journal_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("io-journal.{pid}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Create = 1,
    Alloc = 2,
    Write = 3,
    SyncBegin = 4,
    SyncEnd = 5,
    Rename = 6,
    Unlink = 7,
    DirSyncBegin = 8,
    DirSyncEnd = 9,
    PassBegin = 10,
    PassEnd = 11,
    Mark = 12,
    Failed = 13,
}

static JOURNAL: LazyLock<Option<Mutex<File>>> = LazyLock::new(|| {
    let dir = std::env::var_os(ENV)?;
    let path = journal_path(Path::new(&dir), std::process::id());
    match OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => Some(Mutex::new(f)),
        Err(e) => panic!("cannot open the IO journal {}: {e}", path.display()),
    }
});

fn encode(kind: Kind, path: &Path, a: u64, data: &[&[u8]]) -> Vec<u8> {
    let path = path.as_os_str().as_encoded_bytes();
    let data_len: usize = data.iter().map(|d| d.len()).sum();
    let len = 1 + 8 + 2 + path.len() + data_len;
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(&a.to_le_bytes());
    buf.extend_from_slice(&(path.len() as u16).to_le_bytes());
    buf.extend_from_slice(path);
    for d in data {
        buf.extend_from_slice(d);
    }
    buf
}

fn append(journal: &mut File, buf: &[u8]) {
    if let Err(e) = journal.write_all(buf) {
        panic!("cannot append to the IO journal: {e}");
    }
}

/// Records the event, runs `op` while holding the journal, and records its failure.
pub(crate) fn with<T>(
    kind: Kind,
    path: &Path,
    a: u64,
    data: &[&[u8]],
    op: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let Some(journal) = &*JOURNAL else { return op() };
    let mut j = journal.lock();
    append(&mut j, &encode(kind, path, a, data));
    let result = op();
    if result.is_err() {
        append(&mut j, &encode(Kind::Failed, path, 0, &[]));
    }
    result
}

/// Records an event that changes no file (a sync's start or end, a pass, a mark).
pub(crate) fn event(kind: Kind, path: &Path) {
    if let Some(journal) = &*JOURNAL {
        append(&mut journal.lock(), &encode(kind, path, 0, &[]));
    }
}

/// Writes a label into the journal (a test's own marker, e.g. "round 7 written"); nothing
/// happens unless recording is on.
pub fn mark(label: &str) {
    if let Some(journal) = &*JOURNAL {
        append(&mut journal.lock(), &encode(Kind::Mark, Path::new(""), 0, &[label.as_bytes()]));
    }
}

/// Whether this process records.
pub fn enabled() -> bool {
    JOURNAL.is_some()
}

/// One journal event. Paths are as the tier used them (the tier directory joined with a file
/// name).
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(missing_docs, reason = "each variant's doc names its fields")]
pub enum Event {
    /// A file was created (`truncate`: an existing one would have been emptied).
    Create { path: PathBuf, truncate: bool },
    /// A file was given `len` bytes (`fallocate`; reads as zeros).
    Alloc { path: PathBuf, len: u64 },
    /// `data` was written at `offset`.
    Write { path: PathBuf, offset: u64, data: Vec<u8> },
    /// `fdatasync` or `fsync` of the file started.
    SyncBegin { path: PathBuf },
    /// ... and returned successfully.
    SyncEnd { path: PathBuf },
    /// `from` was renamed to `to`.
    Rename { from: PathBuf, to: PathBuf },
    /// The file was unlinked.
    Unlink { path: PathBuf },
    /// `fsync` of the directory started.
    DirSyncBegin { dir: PathBuf },
    /// ... and returned successfully.
    DirSyncEnd { dir: PathBuf },
    /// A sync pass over every dirty segment and the directory started (periodic or barrier).
    PassBegin,
    /// ... and completed without error.
    PassEnd,
    /// A label from [`mark`].
    Mark(String),
    /// The previous operation failed (it may have changed nothing, or part of what it names).
    Failed,
}

fn path_of(b: &[u8]) -> PathBuf {
    // SAFETY-free: the bytes came from `as_encoded_bytes` of a path on this platform (Unix),
    // where any byte string is a valid `OsStr`.
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

/// Parses a journal; a cut-off last event is ignored. `Err` names malformed content.
pub fn read(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 4 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(at + 4..at + 4 + len) else { break };
        at += 4 + len;
        if body.len() < 11 {
            return Err(format!("event at {at} is too short"));
        }
        let kind = body[0];
        let a = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
        let plen = usize::from(u16::from_le_bytes([body[9], body[10]]));
        let Some(path) = body.get(11..11 + plen) else {
            return Err(format!("event at {at}: path longer than the event"));
        };
        let data = &body[11 + plen..];
        let path = path_of(path);
        out.push(match kind {
            1 => Event::Create { path, truncate: a == 1 },
            2 => Event::Alloc { path, len: a },
            3 => Event::Write { path, offset: a, data: data.to_vec() },
            4 => Event::SyncBegin { path },
            5 => Event::SyncEnd { path },
            6 => Event::Rename { from: path, to: path_of(data) },
            7 => Event::Unlink { path },
            8 => Event::DirSyncBegin { dir: path },
            9 => Event::DirSyncEnd { dir: path },
            10 => Event::PassBegin,
            11 => Event::PassEnd,
            12 => Event::Mark(String::from_utf8_lossy(data).into_owned()),
            13 => Event::Failed,
            k => return Err(format!("unknown event kind {k}")),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_a_cut_off_tail_is_ignored() {
        let mut bytes = encode(Kind::Write, Path::new("d/1.seg"), 64, &[b"ab", b"cd"]);
        bytes.extend(encode(Kind::Rename, Path::new("d/x.tmp"), 0, &[b"d/x"]));
        bytes.extend(encode(Kind::PassEnd, Path::new("d"), 0, &[]));
        let full = read(&bytes).unwrap();
        assert_eq!(
            full,
            vec![
                Event::Write { path: "d/1.seg".into(), offset: 64, data: b"abcd".to_vec() },
                Event::Rename { from: "d/x.tmp".into(), to: "d/x".into() },
                Event::PassEnd,
            ]
        );
        assert_eq!(read(&bytes[..bytes.len() - 1]).unwrap(), full[..2]);
    }
}
