//! Streaming block data through the page cache without filling it: what is written goes to disk
//! right behind the writer and its pages are given back, and a large block read from start to
//! end lets go of each part once it has been read.
//!
//! Why: a block is written once and then read as a stream, so caching it buys little, while
//! filling the cache with it costs every other service on the host its cached pages, and on
//! virtual machines whose balloon hands freed guest pages back to the host (this project's CI and
//! lab kind), every fresh page costs a fault on the host. Measured on that kind, 256 MiB: written
//! plainly 0.6-0.9 CPU-s and 1.2-2.4 s; written with write-behind 0.1-0.2 CPU-s and 0.3-0.6 s,
//! the final fsync then finding nothing left to do; read back with drop-behind 0.1-0.3 s against
//! 1.5-1.7 s without.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Writeback is started for every this many bytes written.
const STEP: u64 = 1 << 20;
/// Written data this far behind the writer is waited for and dropped from the cache: the
/// writeback of what lies between overlaps the writing.
const LAG: u64 = 8 << 20;
/// Blocks at least this large are read with drop-behind; smaller ones stay cached (a small block
/// served to many peers is worth keeping).
pub const DROP_BEHIND_MIN: u64 = 16 << 20;

/// `sync_file_range(2)` over `[offset, offset + len)`.
#[allow(unsafe_code)] // a plain system call on a descriptor the `File` keeps open
fn sync_file_range(f: &File, offset: u64, len: u64, flags: libc::c_uint) -> std::io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: no memory is passed; the descriptor is valid for as long as `f` is borrowed.
    let r = unsafe { libc::sync_file_range(f.as_raw_fd(), offset, len, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Asks the kernel to drop the clean cached pages of `[offset, offset + len)`. A hint: a
/// failure changes nothing but the cache.
pub fn drop_cached(f: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(
        f,
        offset,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// Alignment of a direct read's buffer, offset and length: the largest logical block size of
/// common disks (512 or 4096 bytes).
const DIRECT_ALIGN: usize = 4096;

/// Reads up to `len` bytes at `offset` (a multiple of [`DIRECT_ALIGN`]) of `path` past the page
/// cache (`O_DIRECT`): the disk hands them straight to this buffer, with no copy out of the
/// cache and no cache pages to fill and drop. Fewer bytes only at the end of the file. `None`
/// when the file system takes no direct reads (tmpfs before Linux 6.6, some overlay and
/// network file systems): read through the cache instead.
///
/// For chunks served to peers, several read at once on the blocking pool: the provider's CPU
/// for a 256 MiB block went 0.26 -> 0.24 s here. A reader going through a file one chunk
/// after another does better with the cache's read-ahead (a 256 MiB `block get` whose read-out
/// read direct: 422 against 479 MiB/s, medians of five interleaved pairs).
pub fn read_direct(
    path: &std::path::Path,
    offset: u64,
    len: usize,
) -> std::io::Result<Option<bytes::Bytes>> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let unsupported = |e: &std::io::Error| e.raw_os_error() == Some(libc::EINVAL);
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if unsupported(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let want = len.next_multiple_of(DIRECT_ALIGN);
    let mut buf = vec![0u8; want + DIRECT_ALIGN];
    let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
    let mut got = 0;
    // A direct read returns less only at the end of the file (or, rarely, a whole number of
    // blocks): carry on from where it stopped while that stays aligned.
    while got < len && got % DIRECT_ALIGN == 0 {
        match f.read_at(&mut buf[start + got..start + want], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if got == 0 && unsupported(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(
        bytes::Bytes::from(buf).slice(start..start + got.min(len)),
    ))
}

/// Write-behind for one file written from start to end: call [`WriteBehind::wrote`] after each
/// write with the file's new length.
#[derive(Debug, Default)]
pub struct WriteBehind {
    /// Writeback has been started for everything before this offset.
    started: u64,
    /// Everything before this offset is on disk and out of the cache.
    dropped: u64,
}

impl WriteBehind {
    /// Starts writeback for what was written since the last call, then waits for the data more
    /// than [`LAG`] behind `end` to reach the disk and drops it from the cache. An error here is
    /// a write error (the final fsync would no longer report it).
    pub fn wrote(&mut self, f: &File, end: u64) -> std::io::Result<()> {
        if end >= self.started + STEP {
            sync_file_range(
                f,
                self.started,
                end - self.started,
                libc::SYNC_FILE_RANGE_WRITE,
            )?;
            self.started = end;
        }
        let settled = self.started.saturating_sub(LAG);
        if settled > self.dropped {
            sync_file_range(
                f,
                self.dropped,
                settled - self.dropped,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )?;
            drop_cached(f, self.dropped, settled - self.dropped);
            self.dropped = settled;
        }
        Ok(())
    }

    /// After the file's fsync: the rest of it leaves the cache too.
    pub fn synced(&mut self, f: &File) {
        drop_cached(f, self.dropped, 0);
        self.dropped = u64::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_direct_read_gives_the_bytes_at_its_offset_and_stops_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(3 * STEP as usize + 123))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let step = STEP as usize;
        for (offset, len, want) in [
            (0, step, &data[..step]),
            (step, step, &data[step..2 * step]),
            (3 * step, step, &data[3 * step..]),
            (4 * step, step, &data[..0]),
        ] {
            match read_direct(&path, offset as u64, len).unwrap() {
                Some(got) => assert!(got == want, "at {offset}"),
                // This file system takes no direct reads: the store reads through the cache.
                None => return,
            }
        }
    }

    #[test]
    fn write_behind_keeps_every_byte_and_moves_its_marks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        let mut wb = WriteBehind::default();
        let chunk: Vec<u8> = (0..=255u8).cycle().take(STEP as usize).collect();
        let mut len = 0u64;
        for _ in 0..12 {
            f.write_all(&chunk).unwrap();
            len += chunk.len() as u64;
            wb.wrote(&f, len).unwrap();
            assert_eq!(wb.started, len);
            assert_eq!(wb.dropped, len.saturating_sub(LAG));
        }
        // A short write starts nothing new until a STEP has gathered.
        f.write_all(&chunk[..10]).unwrap();
        wb.wrote(&f, len + 10).unwrap();
        assert_eq!(wb.started, len);
        f.sync_all().unwrap();
        wb.synced(&f);
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len() as u64, len + 10);
        assert!(back.chunks(STEP as usize).take(12).all(|c| c == chunk));
    }
}
