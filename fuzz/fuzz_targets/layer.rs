//! The agent's image layer unpacker, `shoal_agent::unpack_layer`, on arbitrary layer blobs.
//!
//! Input: one mode byte, then the blob. Mode bit 0 set: the blob is gzip'd before it is
//! unpacked (else it goes as it is: a plain tar, or whatever compression its first bytes
//! claim). Mode bit 1 set: the checksum of every tar header is recomputed first, so that
//! mutations inside headers reach the unpacker instead of stopping at the tar reader.
//!
//! The layer is unpacked into `<tmp>/layers/dest`, `<tmp>` a fresh dir in `/dev/shm` where
//! there is one (about six times the executions of a disk). Never panics, and whether the
//! layer is unpacked or refused:
//! - nothing exists beside `dest`: `<tmp>` holds only `layers`, and `layers` only `dest`
//!   (unpacked) or nothing at all (refused: the half-unpacked dir is removed);
//! - in an unpacked layer, every relative symlink, resolved lexically from where it is, stays
//!   inside the layer (absolute targets are fine: they resolve inside the container), and the
//!   only device nodes are overlay whiteouts (character devices 0:0).
//!
//! Whiteouts, opaque dirs and ownership need root; without it those layers are refused with
//! an IO error, which is still an outcome the properties above must hold for.
#![no_main]

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;

/// Most uncompressed bytes per layer: enough for any input libFuzzer makes, small enough that
/// a gzip bomb stops quickly.
const MAX_BYTES: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, blob)) = data.split_first() else {
        return;
    };
    let mut blob = blob.to_vec();
    if mode & 0b10 != 0 {
        fix_checksums(&mut blob);
    }
    if mode & 0b01 != 0 {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
        gzip.write_all(&blob).expect("gzip into memory");
        blob = gzip.finish().expect("gzip into memory");
    }

    let tmp = tempfile::Builder::new()
        .prefix("shoal-fuzz-layer-")
        .tempdir_in(scratch())
        .expect("temp dir");
    let layers = tmp.path().join("layers");
    fs::create_dir(&layers).expect("layers dir");
    let dest = layers.join("dest");
    let outcome = shoal_agent::unpack_layer(&blob, &dest, MAX_BYTES);

    assert_eq!(
        names(tmp.path()),
        ["layers"],
        "written beside the layers dir"
    );
    match &outcome {
        Ok(_) => {
            assert_eq!(names(&layers), ["dest"], "written beside the layer");
            check_tree(&dest, &dest, 0);
        }
        Err(err) => {
            assert!(
                names(&layers).is_empty(),
                "a refused layer left files: {err}"
            );
            assert!(!err.to_string().is_empty());
        }
    }
});

/// Where temp dirs go: tmpfs if there is one, else the system's temp dir.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Walks the unpacked layer without following symlinks; `depth` is that of `dir` below `root`.
fn check_tree(root: &Path, dir: &Path, depth: usize) {
    for entry in fs::read_dir(dir).expect("list layer dir") {
        let path = entry.expect("layer dir entry").path();
        let meta = fs::symlink_metadata(&path).expect("stat layer entry");
        let kind = meta.file_type();
        let shown = path.strip_prefix(root).unwrap_or(&path).display();
        if kind.is_dir() {
            check_tree(root, &path, depth + 1);
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).expect("read symlink");
            let target = target.as_os_str().as_bytes();
            assert!(
                target.starts_with(b"/") || !climbs_out(depth, target),
                "symlink {shown} -> {} points outside the layer",
                OsStr::from_bytes(target).to_string_lossy()
            );
        } else if kind.is_char_device() || kind.is_block_device() {
            assert!(
                kind.is_char_device() && meta.rdev() == 0,
                "device node {shown} ({:#x}) is not a whiteout",
                meta.rdev()
            );
        }
    }
}

/// Whether `target`, resolved lexically from a directory `depth` levels below the layer root,
/// goes above the root at any point.
fn climbs_out(depth: usize, target: &[u8]) -> bool {
    let mut level = depth as i64;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                level -= 1;
                if level < 0 {
                    return true;
                }
            }
            _ => level += 1,
        }
    }
    false
}

/// Recomputes the checksum of each header block of a tar, walking from header to header by
/// the size each one announces (a size that cannot be read counts as zero).
fn fix_checksums(tar: &mut [u8]) {
    let mut at = 0usize;
    while let Some(header) = at.checked_add(512).and_then(|end| tar.get_mut(at..end)) {
        if header.iter().all(|&b| b == 0) {
            // The end of the archive, as the tar reader sees it.
            return;
        }
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let next = entry_size(&header[124..136])
            .checked_next_multiple_of(512)
            .and_then(|padded| usize::try_from(padded).ok())
            .and_then(|padded| at.checked_add(512)?.checked_add(padded));
        let Some(next) = next else {
            return;
        };
        at = next;
    }
}

/// A tar size field: octal text, or base-256 when the high bit of its first byte is set.
fn entry_size(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x7f), |n, &b| {
                n.checked_mul(256).map(|n| n | u64::from(b))
            })
            .unwrap_or(0);
    }
    field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .try_fold(0u64, |n, &b| {
            n.checked_mul(8)?.checked_add(u64::from(b - b'0'))
        })
        .unwrap_or(0)
}
