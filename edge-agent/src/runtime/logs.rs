//! Container output on disk: the shim appends stdout and stderr, as they arrive, to
//! `container.log`; when it would grow past the cap it becomes `container.log.1` (replacing the
//! previous one) and a new file starts. A container therefore never uses more than twice the
//! cap, and flash sees no more than the container writes.
//!
//! Readers ([`tail`], and following with [`LogFollower`]) read the same two files.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The rotated-away older half of a log.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// An append-only log file with one generation of rotation.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
}

impl RotatingLog {
    /// Opens (appending to) `path`; `max_bytes` of at least 1.
    pub fn open(path: PathBuf, max_bytes: u64) -> io::Result<RotatingLog> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(RotatingLog {
            path,
            file,
            written,
            max_bytes: max_bytes.max(1),
        })
    }

    /// Appends `data`, rotating first when it would not fit. A single chunk larger than the cap
    /// keeps only its last `max_bytes`.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        let cap = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        if data.len() > cap {
            data = &data[data.len() - cap..];
        }
        if self.written + data.len() as u64 > self.max_bytes && self.written > 0 {
            self.rotate()?;
        }
        self.file.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, rotated(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

/// The last `lines` lines of a log (both generations), as bytes.
pub fn tail(path: &Path, lines: usize) -> io::Result<Vec<u8>> {
    let mut all = read_if_exists(&rotated(path))?;
    all.extend(read_if_exists(path)?);
    Ok(last_lines(&all, lines).to_vec())
}

fn read_if_exists(path: &Path) -> io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

/// The suffix of `data` holding its last `lines` lines (a final line without newline counts).
pub fn last_lines(data: &[u8], lines: usize) -> &[u8] {
    if lines == 0 {
        return &data[data.len()..];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return &data[i + 1..];
            }
        }
    }
    data
}

/// Follows a log as it grows, across rotations: call [`LogFollower::read_new`] whenever
/// convenient (the caller picks the cadence, e.g. every 250 ms, or on inotify).
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
}

impl LogFollower {
    /// Starts at the current end of the log.
    pub fn from_end(path: PathBuf) -> io::Result<LogFollower> {
        let mut follower = LogFollower {
            path,
            file: None,
            inode: 0,
            offset: 0,
        };
        follower.reopen()?;
        if let Some(file) = &follower.file {
            follower.offset = file.metadata()?.len();
        }
        Ok(follower)
    }

    fn reopen(&mut self) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        match File::open(&self.path) {
            Ok(file) => {
                self.inode = file.metadata()?.ino();
                self.file = Some(file);
                self.offset = 0;
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.file = None;
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Bytes appended since the last call. After a rotation it finishes the old file (now
    /// `.1`) and continues with the new one.
    pub fn read_new(&mut self) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        if let Some(file) = &mut self.file {
            file.seek(SeekFrom::Start(self.offset))?;
            let n = file.read_to_end(&mut out)?;
            self.offset += n as u64;
        }
        let rotated_away = match std::fs::metadata(&self.path) {
            Ok(meta) => self.file.is_none() || meta.ino() != self.inode,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => return Err(err),
        };
        if rotated_away {
            self.reopen()?;
            if let Some(file) = &mut self.file {
                let n = file.read_to_end(&mut out)?;
                self.offset = n as u64;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_counts_a_final_line_without_newline() {
        // (log, lines, expected)
        let cases: [(&[u8], usize, &[u8]); 7] = [
            (b"a\nb\nc\n", 2, b"b\nc\n"),
            (b"a\nb\nc", 2, b"b\nc"),
            (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
            (b"a\nb\nc\n", 0, b""),
            (b"", 3, b""),
            (b"only\n", 1, b"only\n"),
            (b"\n\n", 1, b"\n"),
        ];
        for (log, lines, expected) in cases {
            assert_eq!(
                last_lines(log, lines),
                expected,
                "{:?} {lines}",
                String::from_utf8_lossy(log)
            );
        }
    }

    #[test]
    fn a_log_never_grows_past_twice_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CONTAINER_LOG_NAME);
        let mut log = RotatingLog::open(path.clone(), 100).expect("open");
        for i in 0..1000 {
            log.write(format!("line {i}\n").as_bytes()).expect("write");
        }
        let current = std::fs::metadata(&path).expect("log").len();
        let old = std::fs::metadata(rotated(&path)).expect("rotated").len();
        assert!(current <= 100 && old <= 100, "{current} {old}");
        let tail = tail(&path, 2).expect("tail");
        assert_eq!(tail, b"line 998\nline 999\n");
    }

    #[test]
    fn a_chunk_larger_than_the_cap_keeps_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CONTAINER_LOG_NAME);
        let mut log = RotatingLog::open(path.clone(), 4).expect("open");
        log.write(b"abcdefgh").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"efgh");
    }

    #[test]
    fn a_follower_sees_appends_across_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CONTAINER_LOG_NAME);
        let mut log = RotatingLog::open(path.clone(), 10).expect("open");
        log.write(b"old\n").expect("write");
        let mut follower = LogFollower::from_end(path.clone()).expect("follow");
        log.write(b"one\n").expect("write");
        assert_eq!(follower.read_new().expect("read"), b"one\n");
        log.write(b"two\n").expect("write"); // rotates: 12 > 10
        log.write(b"three\n").expect("write");
        assert_eq!(follower.read_new().expect("read"), b"two\nthree\n");
        assert!(follower.read_new().expect("read").is_empty());
    }

    const CONTAINER_LOG_NAME: &str = super::super::state::CONTAINER_LOG;
}
