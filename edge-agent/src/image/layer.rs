//! Unpacks one layer tar (plain or gzip) into a directory that overlayfs can use as a lower dir.
//!
//! The tar is hostile until proven otherwise. Invariants:
//! - every entry lands inside the layer dir: absolute paths and `..` are refused, and no parent
//!   component is ever a symlink (each is checked with `symlink_metadata`, the final component
//!   is created with `O_NOFOLLOW`/`O_EXCL` or an `*at` call that does not follow);
//! - hardlinks point at entries of this same layer; relative symlinks do not climb above the
//!   layer root (absolute targets are fine: they resolve inside the container), also where a
//!   hardlink to a symlink puts the same target at another depth;
//! - device nodes are refused; the only ones in a layer dir are the 0:0 whiteouts made here;
//! - the layer is unpacked into `<dir>.partial-…` and renamed into place only when complete and
//!   its content matched the diff id; on any error the partial dir is deleted.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use super::document::{truncate, ImageDigest};
use super::error::{ImageError, IoContext};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// More entries than this in one layer is an inode-exhaustion attack, not an image.
const MAX_ENTRIES: u64 = 1_000_000;

/// Limits and identity of one layer to unpack.
#[derive(Debug)]
pub struct LayerSource<'a> {
    /// For messages: the layer's blob digest and where it came from.
    pub name: String,
    pub blob: Blob<'a>,
    pub diff_id: &'a ImageDigest,
    /// Most uncompressed bytes accepted (a gzip bomb stops here).
    pub max_bytes: u64,
}

/// Where the bytes of a layer blob (a tar, plain or compressed) are.
#[derive(Clone, Copy, Debug)]
pub enum Blob<'a> {
    /// A verified blob in the store.
    File(&'a Path),
    /// A blob in memory ([`unpack_layer`]).
    Bytes(&'a [u8]),
}

impl<'a> Blob<'a> {
    /// The uncompressed tar stream of the blob, refusing compressions we cannot read.
    fn tar_stream(self, layer: &str) -> Result<Box<dyn Read + 'a>, ImageError> {
        match self {
            Blob::File(path) => {
                let file = File::open(path).ctx("cannot open layer blob", path)?;
                let mut buffered = BufReader::new(file);
                let head = buffered.fill_buf().ctx("cannot read layer blob", path)?;
                let compression = Compression::of(head);
                compression.reader(buffered, layer)
            }
            Blob::Bytes(bytes) => Compression::of(bytes).reader(bytes, layer),
        }
    }
}

/// A blob's compression, told by its first bytes.
#[derive(Clone, Copy)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn of(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    fn reader<'r>(
        self,
        blob: impl Read + 'r,
        layer: &str,
    ) -> Result<Box<dyn Read + 'r>, ImageError> {
        match self {
            Compression::None => Ok(Box::new(blob)),
            Compression::Gzip => Ok(Box::new(MultiGzDecoder::new(blob))),
            Compression::Zstd => Err(ImageError::BadLayer {
                layer: layer.to_string(),
                reason: "the layer is zstd-compressed, which this agent does not support: push the image with gzip layers"
                    .into(),
            }),
        }
    }
}

/// Unpacks one layer tar, plain or gzip'd, held in `bytes`, into the directory `dest`, exactly
/// as the image store unpacks every layer it pulls or imports, with the same errors: entries
/// that would escape `dest` (absolute paths, `..`, writing through symlinks, hardlinks to
/// anything but earlier entries, relative symlinks that climb above `dest`) and device nodes
/// are refused with [`ImageError::UnsafeEntry`], a corrupt or over-large stream is
/// [`ImageError::BadLayer`], whiteouts become overlayfs whiteouts.
///
/// The layer is unpacked beside `dest`, into `<dest>.partial-<pid>`, and renamed to `dest` only
/// when complete; on any error that partial dir is removed, so nothing is left. When `dest`
/// already is a directory it is taken as unpacked, and only its size is returned. `max_bytes`
/// bounds the uncompressed tar (a gzip bomb stops there).
///
/// The store also checks a layer against the diff id its image config names; here the diff id
/// is whatever the uncompressed bytes hash to, so only the tar itself can be refused.
///
/// Ownership, whiteouts (character devices 0:0) and opaque dirs (`trusted.` xattrs) need root:
/// without it, layers that carry them fail with [`ImageError::Io`].
///
/// Returns the bytes of file content in the layer.
pub fn unpack_layer(bytes: &[u8], dest: &Path, max_bytes: u64) -> Result<u64, ImageError> {
    let blob = Blob::Bytes(bytes);
    let name = "in memory";
    // Hash the uncompressed tar the way `unpack_into` will read it. A stream that cannot be
    // read to its end fails the same way there, before any digest is compared.
    let diff_id = {
        let mut hashing = HashingReader {
            inner: blob.tar_stream(name)?,
            hasher: Sha256::new(),
            read: 0,
            limit: max_bytes,
        };
        match io::copy(&mut hashing, &mut io::sink()) {
            Ok(_) => ImageDigest::from_hasher(hashing.hasher),
            Err(_) => ImageDigest::of(bytes),
        }
    };
    let source = LayerSource {
        name: name.into(),
        blob,
        diff_id: &diff_id,
        max_bytes,
    };
    unpack(&source, dest, &std::process::id().to_string())
}

/// Unpacks `source` into `dest` unless `dest` already exists (layers are unpacked once).
/// Returns the bytes of file content in the layer.
pub fn unpack(source: &LayerSource<'_>, dest: &Path, unique: &str) -> Result<u64, ImageError> {
    if dest.is_dir() {
        return dir_size(dest);
    }
    let partial = PathBuf::from(format!("{}.partial-{unique}", dest.display()));
    let result = unpack_into(source, &partial);
    match result {
        Ok(size) => {
            sync_dir(&partial);
            match fs::rename(&partial, dest) {
                Ok(()) => {
                    if let Some(parent) = dest.parent() {
                        sync_dir(parent);
                    }
                    Ok(size)
                }
                // Someone else finished the same layer first: theirs is as good as ours.
                Err(_) if dest.is_dir() => {
                    let _ = fs::remove_dir_all(&partial);
                    Ok(size)
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&partial);
                    Err(ImageError::io("cannot move the unpacked layer to", dest, e))
                }
            }
        }
        Err(err) => {
            if let Err(e) = fs::remove_dir_all(&partial) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %partial.display(), error = %e, "cannot remove a half-unpacked layer");
                }
            }
            Err(err)
        }
    }
}

fn sync_dir(path: &Path) {
    if let Ok(dir) = File::open(path) {
        let _ = dir.sync_all();
    }
}

/// Counts content bytes and hashes everything read, so the diff id can be checked.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "the uncompressed layer is larger than the limit of {} bytes",
                self.limit
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn unpack_into(source: &LayerSource<'_>, root: &Path) -> Result<u64, ImageError> {
    let bad = |reason: String| ImageError::BadLayer {
        layer: source.name.clone(),
        reason,
    };
    let hashing = HashingReader {
        inner: source.blob.tar_stream(&source.name)?,
        hasher: Sha256::new(),
        read: 0,
        limit: source.max_bytes,
    };
    fs::create_dir(root).ctx("cannot create layer dir", root)?;
    let mut archive = tar::Archive::new(hashing);
    let mut unpacker = Unpacker {
        root,
        layer: &source.name,
        dir_times: Vec::new(),
        made: HashSet::new(),
        content_bytes: 0,
    };
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar stream: {e}")))?;
    let mut count = 0u64;
    for entry in entries {
        count += 1;
        if count > MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let mut entry =
            entry.map_err(|e| bad(format!("corrupt tar after {count} entries: {e}")))?;
        unpacker.entry(&mut entry)?;
    }
    // Read what is left (end-of-archive blocks, padding) so the digest covers the whole tar.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| bad(format!("corrupt tar end: {e}")))?;
    let actual = ImageDigest::from_hasher(rest.hasher);
    if &actual != source.diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!(
                "uncompressed layer {} (its diff id in the image config)",
                source.name
            ),
            expected: source.diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    unpacker.finish()?;
    Ok(unpacker.content_bytes)
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    /// Directory mtimes, applied at the end (creating entries inside changes them).
    dir_times: Vec<(PathBuf, i64)>,
    /// Parent dirs known to be real directories inside the layer.
    made: HashSet<PathBuf>,
    content_bytes: u64,
}

impl Unpacker<'_> {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.layer.to_string(),
            entry: truncate(entry),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let components = self.components(&raw, &shown)?;
        let header = entry.header();
        let kind = header.entry_type();
        let Some((name, parents)) = components.split_last() else {
            // The layer root itself (`./`): nothing to create.
            return Ok(());
        };
        let parent = self.parent_dir(parents, &shown)?;
        let name_str = name.to_string_lossy().into_owned();
        let target = parent.join(name);

        // Whiteouts, translated to overlayfs' own format.
        if name_str == OPAQUE_MARKER {
            rustix::fs::lsetxattr(&parent, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .ctx(
                    "cannot mark opaque dir (overlay whiteouts need root)",
                    &parent,
                )?;
            return Ok(());
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other AUFS metadata (`.wh..wh.plnk`, …): meaningless for overlayfs.
                return Ok(());
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.refuse(&shown, "is a whiteout without a valid name"));
            }
            let hidden_path = parent.join(hidden);
            self.clear(&hidden_path, &shown)?;
            rustix::fs::mknodat(
                CWD,
                &hidden_path,
                FileType::CharacterDevice,
                Mode::empty(),
                0,
            )
            .ctx(
                "cannot create overlay whiteout (it needs root)",
                &hidden_path,
            )?;
            return Ok(());
        }

        let mode = header
            .mode()
            .map_err(|e| self.refuse(&shown, format!("has a bad mode: {e}")))?
            & 0o7777;
        let uid = header
            .uid()
            .map_err(|e| self.refuse(&shown, format!("has a bad uid: {e}")))?;
        let gid = header
            .gid()
            .map_err(|e| self.refuse(&shown, format!("has a bad gid: {e}")))?;
        let mtime = header.mtime().unwrap_or(0);
        let uid = u32::try_from(uid).map_err(|_| self.refuse(&shown, "has a uid above 2^32"))?;
        let gid = u32::try_from(gid).map_err(|_| self.refuse(&shown, "has a gid above 2^32"))?;
        let mtime = i64::try_from(mtime).unwrap_or(0);

        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        self.clear(&target, &shown)?;
                        fs::create_dir(&target).ctx("cannot create dir", &target)?;
                    }
                    Err(_) => fs::create_dir(&target).ctx("cannot create dir", &target)?,
                }
                self.made.insert(target.clone());
                self.own(&target, uid, gid, Some(mode))?;
                self.dir_times.push((target, mtime));
                Ok(())
            }
            EntryType::Regular | EntryType::Continuous => {
                self.clear(&target, &shown)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&target)
                    .ctx("cannot create file", &target)?;
                let copied = io::copy(entry, &mut file).map_err(|e| ImageError::BadLayer {
                    layer: self.layer.to_string(),
                    reason: format!("cannot read the content of `{}`: {e}", truncate(&shown)),
                })?;
                self.content_bytes += copied;
                drop(file);
                self.own(&target, uid, gid, Some(mode))?;
                self.set_mtime(&target, mtime)
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "is a symlink without a target"))?
                    .into_owned();
                let link_shown = String::from_utf8_lossy(&link).into_owned();
                if link.is_empty() {
                    return Err(self.refuse(&shown, "is a symlink with an empty target"));
                }
                if !link.starts_with(b"/") && climbs_out(parents.len(), &link) {
                    return Err(self.refuse(
                        &shown,
                        format!("is a symlink to `{}`, which points outside the layer", truncate(&link_shown)),
                    ));
                }
                self.clear(&target, &shown)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                    .ctx("cannot create symlink", &target)?;
                self.own(&target, uid, gid, None)?;
                self.set_mtime(&target, mtime)
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "is a hardlink without a target"))?
                    .into_owned();
                let link_shown = String::from_utf8_lossy(&link).into_owned();
                let link_components = self.components(&link, &link_shown).map_err(|_| {
                    self.refuse(
                        &shown,
                        format!("is a hardlink to `{}`, which is outside the layer", truncate(&link_shown)),
                    )
                })?;
                let Some((link_name, link_parents)) = link_components.split_last() else {
                    return Err(self.refuse(&shown, "is a hardlink to the layer root"));
                };
                let mut source = self.root.to_path_buf();
                for component in link_parents {
                    source.push(component);
                    match fs::symlink_metadata(&source) {
                        Ok(meta) if meta.is_dir() => {}
                        _ => {
                            return Err(self.refuse(
                                &shown,
                                format!(
                                    "is a hardlink to `{}`, which is not an earlier file of this layer",
                                    truncate(&link_shown)
                                ),
                            ))
                        }
                    }
                }
                source.push(link_name);
                match fs::symlink_metadata(&source) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        // The link is to the symlink itself, so its target would be resolved
                        // from here: check it again from this entry's depth.
                        let link_target =
                            fs::read_link(&source).ctx("cannot read symlink", &source)?;
                        let link_target = link_target.as_os_str().as_bytes();
                        if !link_target.starts_with(b"/") && climbs_out(parents.len(), link_target)
                        {
                            return Err(self.refuse(
                                &shown,
                                format!(
                                    "is a hardlink to the symlink `{}`, whose target `{}` points outside the layer from here",
                                    truncate(&link_shown),
                                    truncate(&String::from_utf8_lossy(link_target))
                                ),
                            ));
                        }
                    }
                    Ok(meta) if !meta.is_dir() => {}
                    _ => {
                        return Err(self.refuse(
                            &shown,
                            format!(
                                "is a hardlink to `{}`, which is not an earlier file of this layer",
                                truncate(&link_shown)
                            ),
                        ))
                    }
                }
                if source == target {
                    return Ok(());
                }
                self.clear(&target, &shown)?;
                // `link(2)` does not follow a symlink source: the link is to the symlink itself.
                fs::hard_link(&source, &target).ctx("cannot create hardlink", &target)
            }
            EntryType::Fifo => {
                self.clear(&target, &shown)?;
                rustix::fs::mknodat(CWD, &target, FileType::Fifo, Mode::from_bits_truncate(mode), 0)
                    .ctx("cannot create fifo", &target)?;
                self.own(&target, uid, gid, Some(mode))?;
                self.set_mtime(&target, mtime)
            }
            EntryType::Char | EntryType::Block => Err(self.refuse(
                &shown,
                "is a device node; images may not carry devices (give them to the container with `devices:` instead)",
            )),
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => {
                Ok(())
            }
            other => Err(self.refuse(&shown, format!("has an unsupported tar entry type {:?}", other))),
        }
    }

    /// Splits an entry path into normal components, refusing absolute paths and `..`.
    fn components(&self, raw: &[u8], shown: &str) -> Result<Vec<PathBuf>, ImageError> {
        if raw.starts_with(b"/") {
            return Err(self.refuse(shown, "has an absolute path"));
        }
        if raw.contains(&0) {
            return Err(self.refuse(shown, "has a NUL byte in its path"));
        }
        let mut out = Vec::new();
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    return Err(
                        self.refuse(shown, "has a `..` component, which would escape the layer")
                    )
                }
                part => out.push(PathBuf::from(OsStr::from_bytes(part))),
            }
        }
        Ok(out)
    }

    /// Returns the parent directory of an entry, creating missing parents as plain directories
    /// and refusing any parent that is a symlink (writing through it could escape the layer).
    fn parent_dir(&mut self, parents: &[PathBuf], shown: &str) -> Result<PathBuf, ImageError> {
        let mut dir = self.root.to_path_buf();
        for component in parents {
            dir.push(component);
            if self.made.contains(&dir) {
                continue;
            }
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(self.refuse(
                        shown,
                        format!(
                            "would be written through the symlink `{}`",
                            dir.strip_prefix(self.root).unwrap_or(&dir).display()
                        ),
                    ))
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(self.refuse(
                        shown,
                        format!(
                            "is inside `{}`, which is not a directory",
                            dir.strip_prefix(self.root).unwrap_or(&dir).display()
                        ),
                    ))
                }
                Err(_) => {
                    fs::create_dir(&dir).ctx("cannot create dir", &dir)?;
                    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
                }
            }
            self.made.insert(dir.clone());
        }
        Ok(dir)
    }

    /// Removes whatever an entry replaces (a later entry with the same name wins).
    fn clear(&mut self, path: &Path, shown: &str) -> Result<(), ImageError> {
        match fs::symlink_metadata(path) {
            Err(_) => Ok(()),
            Ok(meta) if meta.is_dir() => {
                // `remove_dir_all` does not follow symlinks inside the tree.
                self.made.retain(|p| !p.starts_with(path));
                fs::remove_dir_all(path).map_err(|e| {
                    self.refuse(
                        shown,
                        format!("replaces a directory that cannot be removed: {e}"),
                    )
                })
            }
            Ok(_) => fs::remove_file(path).ctx("cannot replace", path),
        }
    }

    /// Sets owner and (for non-symlinks) mode; chown first, since it clears set-id bits.
    fn own(&self, path: &Path, uid: u32, gid: u32, mode: Option<u32>) -> Result<(), ImageError> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).ctx("cannot set owner of", path)?;
        if let Some(mode) = mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .ctx("cannot set mode of", path)?;
        }
        Ok(())
    }

    fn set_mtime(&self, path: &Path, mtime: i64) -> Result<(), ImageError> {
        let time = Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
            .ctx("cannot set mtime of", path)
    }

    fn finish(&mut self) -> Result<(), ImageError> {
        for (dir, mtime) in self.dir_times.iter().rev() {
            self.set_mtime(dir, *mtime)?;
        }
        Ok(())
    }
}

/// Whether a relative symlink target, resolved from an entry `depth` directories below the
/// layer root, climbs above the root at any point.
fn climbs_out(depth: usize, target: &[u8]) -> bool {
    let mut level = depth as i64;
    for part in target.split(|b| *b == b'/') {
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

/// Bytes of file content below `dir` (for layers unpacked earlier).
pub fn dir_size(dir: &Path) -> Result<u64, ImageError> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).ctx("cannot list", &dir)? {
            let entry = entry.ctx("cannot list", &dir)?;
            let meta = entry.metadata().ctx("cannot stat", entry.path())?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::climbs_out;

    #[test]
    fn relative_symlinks_that_stay_inside_the_layer_are_allowed() {
        assert!(!climbs_out(1, b"busybox"));
        assert!(!climbs_out(1, b"../usr/bin/x"));
        assert!(!climbs_out(2, b"../../etc"));
        assert!(!climbs_out(0, b"a/../b"));
    }

    #[test]
    fn relative_symlinks_that_climb_above_the_layer_root_are_caught() {
        assert!(climbs_out(0, b".."));
        assert!(climbs_out(1, b"../../etc/passwd"));
        assert!(climbs_out(2, b"a/../../../../x"));
        assert!(climbs_out(0, b"a/../../x"));
    }
}
