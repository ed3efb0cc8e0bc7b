//! The narrow IO layer: every write, sync, creation, rename and unlink of a persistent file of
//! this tier goes through a function here, so a test build can record them.
//!
//! In a normal build each function is the direct system call (inlined; no lock, no dispatch).
//! With the `io-trace` feature, and when [`trace::ENV`] names a directory, each operation is
//! first appended to a journal in that directory (one `write(2)` per event, so the page cache
//! keeps it through a SIGKILL), and a write's bytes go into the journal too: a power-loss test
//! rebuilds from the journal the state a power cut would have left (see [`trace`]). Writes and
//! the journal record of a sync's start are serialised under the journal's lock, so a sync
//! recorded after a write started after that write completed.
//!
//! Not routed here: reads, the mappings (read-only: nothing is written through them), the
//! `LOCK` file (it holds no data) and the creation of the cache directory itself.

use std::{
    fs::{File, OpenOptions},
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
    path::Path,
};

use fs4::fs_std::FileExt as _;

#[cfg(feature = "io-trace")]
pub mod trace;

#[cfg(not(feature = "io-trace"))]
mod trace {
    //! Recording is compiled out: every hook is empty.
    use std::path::Path;

    #[derive(Clone, Copy)]
    pub(crate) enum Kind {
        Create,
        Alloc,
        Write,
        SyncBegin,
        SyncEnd,
        Rename,
        Unlink,
        DirSyncBegin,
        DirSyncEnd,
        PassBegin,
        PassEnd,
    }

    #[inline(always)]
    pub(crate) fn with<T>(
        _kind: Kind,
        _path: &Path,
        _a: u64,
        _data: &[&[u8]],
        op: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        op()
    }

    #[inline(always)]
    pub(crate) fn event(_kind: Kind, _path: &Path) {}
}

use trace::Kind;

/// Creates `path`, which must not exist, for reading and writing.
#[inline]
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    trace::with(Kind::Create, path, 0, &[], || {
        OpenOptions::new().read(true).write(true).create_new(true).open(path)
    })
}

/// Creates `path` (truncated if it exists) for writing: the temporary files renamed into place.
#[inline]
pub(crate) fn create_truncate(path: &Path) -> io::Result<File> {
    trace::with(Kind::Create, path, 1, &[], || File::create(path))
}

/// Gives `file` its full `size` (`fallocate`, or `set_len` where that is unsupported).
#[inline]
pub(crate) fn allocate(file: &File, path: &Path, size: u64) -> io::Result<()> {
    trace::with(Kind::Alloc, path, size, &[], || match file.allocate(size) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => file.set_len(size),
        other => other,
    })
}

/// Writes all of `bytes` at `offset` (`pwrite`).
#[inline]
pub(crate) fn write_at(file: &File, path: &Path, bytes: &[u8], offset: u64) -> io::Result<()> {
    trace::with(Kind::Write, path, offset, &[bytes], || file.write_all_at(bytes, offset))
}

/// Writes `parts` (at most three: a record's head, value and chunk table) one after the
/// other at `offset` with `pwritev`, so the value is copied once.
#[inline]
pub(crate) fn write_parts_at(
    file: &File,
    path: &Path,
    parts: &[&[u8]],
    offset: u64,
) -> io::Result<()> {
    trace::with(Kind::Write, path, offset, parts, || pwritev_all(file, parts, offset))
}

fn pwritev_all(file: &File, parts: &[&[u8]], offset: u64) -> io::Result<()> {
    // On the stack: this runs for every large write.
    let mut left: [&[u8]; 3] = [&[], &[], &[]];
    let mut count = 0;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        assert!(count < left.len(), "at most three parts");
        left[count] = part;
        count += 1;
    }
    let (mut first, mut offset) = (0, offset);
    while first < count {
        let iov = left
            .map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() });
        let at =
            libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: every iovec describes a live, initialised slice borrowed for the call, and
        // `pwritev` only reads from them; the descriptor is owned by `file`.
        let n = unsafe {
            libc::pwritev(file.as_raw_fd(), iov[first..].as_ptr(), (count - first) as i32, at)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        let mut n = n as usize;
        offset += n as u64;
        while first < count {
            if n < left[first].len() {
                left[first] = &left[first][n..];
                break;
            }
            n -= left[first].len();
            first += 1;
        }
    }
    Ok(())
}

/// `fdatasync`.
#[inline]
pub(crate) fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    trace::event(Kind::SyncBegin, path);
    file.sync_data()?;
    trace::event(Kind::SyncEnd, path);
    Ok(())
}

/// `fsync` (data and metadata).
#[inline]
pub(crate) fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    trace::event(Kind::SyncBegin, path);
    file.sync_all()?;
    trace::event(Kind::SyncEnd, path);
    Ok(())
}

/// Renames `from` to `to` (replacing it).
#[inline]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    trace::with(Kind::Rename, from, 0, &[to.as_os_str().as_encoded_bytes()], || {
        std::fs::rename(from, to)
    })
}

/// Unlinks `path`.
#[inline]
pub(crate) fn unlink(path: &Path) -> io::Result<()> {
    trace::with(Kind::Unlink, path, 0, &[], || std::fs::remove_file(path))
}

/// `fsync` on the directory `dir`, making created, renamed and unlinked names in it durable.
#[inline]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    trace::event(Kind::DirSyncBegin, dir);
    File::open(dir).and_then(|d| d.sync_all())?;
    trace::event(Kind::DirSyncEnd, dir);
    Ok(())
}

/// Marks the start of a sync pass over every dirty segment (and the directory).
#[inline]
pub(crate) fn pass_begin(dir: &Path) {
    trace::event(Kind::PassBegin, dir);
}

/// Marks a sync pass that completed without error.
#[inline]
pub(crate) fn pass_end(dir: &Path) {
    trace::event(Kind::PassEnd, dir);
}
