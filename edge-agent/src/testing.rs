//! Helpers for the crate's component tests.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tmpfs mounted on a temporary dir (the tests run as root, as the agent does), to
/// fill up; unmounted when dropped, also when the test panics.
#[derive(Debug)]
pub struct SmallDisk {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl SmallDisk {
    pub fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        let filler = dir.path().join("filler");
        SmallDisk { dir, filler }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full, to the last byte.
    pub fn fill(&self) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("filler");
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0x5a_u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        assert_eq!(
            crate::state::disk::free_bytes(self.path()).expect("statvfs"),
            0
        );
    }

    /// Removes what [`SmallDisk::fill`] wrote.
    pub fn unfill(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
