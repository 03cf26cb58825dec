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
//! - the layer is unpacked into `<dir>.partial-…` and renamed into place only when complete,
//!   its content matched the diff id and it is on disk (a `syncfs`, so a power cut never
//!   leaves a layer dir with empty files); on any error the partial dir is deleted;
//! - the files of a layer add up to at most its size limit, sparse files at their full size:
//!   a sparse map (GNU's old `S` entries, which the tar crate expands, and the PAX formats
//!   0.0, 0.1 and 1.0, which it does not know, read here) cannot make a small tar write or
//!   allocate without bound. Sparse files are written with their holes.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

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
/// More data segments than this in one sparse file is an attack on memory, not a file: its
/// map is held while the file is written (16 bytes a segment).
const MAX_SPARSE_SEGMENTS: u64 = 65_536;
/// Reads and writes of file content go in pieces of this size.
const CHUNK: usize = 64 * 1024;

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
            if let Err(e) = sync_filesystem(&partial) {
                let _ = fs::remove_dir_all(&partial);
                return Err(ImageError::io(
                    "cannot write the unpacked layer to disk",
                    &partial,
                    e,
                ));
            }
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

/// Writes everything of the filesystem holding `path` to disk: all the files of an unpacked
/// layer, before it is renamed into place, with one `syncfs` rather than an fsync per file.
/// Without it a power cut right after an import left a layer dir whose files were empty or
/// zeros (found in the VM: a card powered off soon after its import ran a busybox that
/// exited 255 at once), and as the dir exists it was never unpacked again.
fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    rustix::fs::syncfs(&dir).map_err(io::Error::from)
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

/// What the tar reader may read between two entries: headers, PAX records, GNU long names
/// and old GNU sparse maps, all of which it keeps in memory, whole, before it yields the entry
/// they describe. 4 MiB holds the longest names and the largest sparse map written here
/// ([`MAX_SPARSE_SEGMENTS`] in PAX records) many times over.
const MAX_HEADER_BYTES: u64 = 4 << 20;

/// Counts the bytes read outside entry content (see [`MAX_HEADER_BYTES`]).
#[derive(Debug, Default)]
struct HeaderBudget {
    in_content: Cell<bool>,
    used: Cell<u64>,
}

/// A reader that fails once more than [`MAX_HEADER_BYTES`] were read outside entry content
/// since the budget was last reset: a small, well-compressed layer cannot make the tar reader
/// allocate without bound.
struct Budgeted<R> {
    inner: R,
    budget: Rc<HeaderBudget>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.budget.in_content.get() {
            let used = self.budget.used.get().saturating_add(n as u64);
            self.budget.used.set(used);
            if used > MAX_HEADER_BYTES {
                return Err(io::Error::other(format!(
                    "more than {MAX_HEADER_BYTES} bytes of headers (PAX records, long names, sparse maps) before one entry"
                )));
            }
        }
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
    let budget = Rc::new(HeaderBudget::default());
    let mut archive = tar::Archive::new(Budgeted {
        inner: hashing,
        budget: Rc::clone(&budget),
    });
    let mut unpacker = Unpacker {
        root,
        layer: &source.name,
        dir_times: Vec::new(),
        made: HashSet::new(),
        content_bytes: 0,
        max_bytes: source.max_bytes,
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
        budget.in_content.set(true);
        unpacker.entry(&mut entry)?;
        budget.in_content.set(false);
        budget.used.set(0);
    }
    // Read what is left (end-of-archive blocks, padding) so the digest covers the whole tar.
    budget.in_content.set(true);
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| bad(format!("corrupt tar end: {e}")))?;
    let actual = ImageDigest::from_hasher(rest.inner.hasher);
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
    /// Bytes of file content so far, sparse files at their full size.
    content_bytes: u64,
    /// The most `content_bytes` may reach: the layer's size limit.
    max_bytes: u64,
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
        let sparse = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => pax_sparse(entry).map_err(|reason| {
                let raw = entry.path_bytes();
                self.refuse(&String::from_utf8_lossy(&raw), reason)
            })?,
            _ => None,
        };
        // A PAX sparse file's header names `…/GNUSparseFile.<pid>/<name>`; its real name is
        // in its records (format 0.0 keeps the real name in the header).
        let raw = match sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(name) => name,
            None => entry.path_bytes().into_owned(),
        };
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
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&target, &shown)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&target)
                    .ctx("cannot create file", &target)?;
                match sparse {
                    Some(sparse) => self.write_pax_sparse(entry, &mut file, sparse, &target, &shown)?,
                    // Old GNU sparse: the tar crate reads the map and yields the holes as
                    // zeros; they become holes again here.
                    None if kind == EntryType::GNUSparse => {
                        self.count(entry.size(), &shown)?;
                        copy_with_holes(entry, &mut file, entry.size())
                            .map_err(|e| self.unreadable(&shown, e))?;
                    }
                    None => {
                        let copied = io::copy(entry, &mut file)
                            .map_err(|e| self.unreadable(&shown, e))?;
                        self.count(copied, &shown)?;
                    }
                }
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

    fn unreadable(&self, shown: &str, e: impl std::fmt::Display) -> ImageError {
        ImageError::BadLayer {
            layer: self.layer.to_string(),
            reason: format!("cannot read the content of `{}`: {e}", truncate(shown)),
        }
    }

    /// Counts `bytes` of file content toward the layer's size limit.
    fn count(&mut self, bytes: u64, shown: &str) -> Result<(), ImageError> {
        self.content_bytes = self.content_bytes.saturating_add(bytes);
        if self.content_bytes > self.max_bytes {
            return Err(ImageError::BadLayer {
                layer: self.layer.to_string(),
                reason: format!(
                    "`{}` takes its files past the layer limit of {} bytes (a sparse file counts at its full size)",
                    truncate(shown),
                    self.max_bytes
                ),
            });
        }
        Ok(())
    }

    /// Writes a PAX sparse file: its data segments at their offsets, holes between them, and
    /// its full size; the map must be in order, inside the file, and account for exactly the
    /// entry's data.
    fn write_pax_sparse<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
        sparse: PaxSparse,
        target: &Path,
        shown: &str,
    ) -> Result<(), ImageError> {
        let size = entry.size();
        let (map, map_bytes) = match sparse.map {
            Some(map) => (map, 0),
            None => read_sparse_map(entry, size).map_err(|reason| self.refuse(shown, reason))?,
        };
        check_sparse_map(&map, sparse.real_size, size - map_bytes)
            .map_err(|reason| self.refuse(shown, reason))?;
        self.count(sparse.real_size, shown)?;
        for segment in &map {
            file.seek(SeekFrom::Start(segment.offset))
                .ctx("cannot write", target)?;
            let copied = io::copy(&mut Read::take(&mut *entry, segment.len), file)
                .map_err(|e| self.unreadable(shown, e))?;
            if copied != segment.len {
                return Err(self.unreadable(shown, "the data ends before its sparse map does"));
            }
        }
        file.set_len(sparse.real_size).ctx("cannot write", target)
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

/// One data segment of a sparse file: `len` bytes at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    offset: u64,
    len: u64,
}

/// A GNU sparse file in PAX records (formats 0.0, 0.1 and 1.0).
#[derive(Debug, PartialEq, Eq)]
struct PaxSparse {
    /// The real name (0.1, 1.0); 0.0 keeps it in the header.
    name: Option<Vec<u8>>,
    real_size: u64,
    /// The map, when the records hold it (0.0, 0.1); 1.0 puts it at the start of the data.
    map: Option<Vec<Segment>>,
}

/// The entry's GNU sparse PAX records, if it has any, checked for shape (the map against the
/// data is checked in [`check_sparse_map`]).
fn pax_sparse<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Option<PaxSparse>, String> {
    let Some(records) = entry
        .pax_extensions()
        .map_err(|e| format!("has unreadable PAX records: {e}"))?
    else {
        return Ok(None);
    };
    let mut seen = false;
    let (mut major, mut minor, mut name, mut size, mut map) = (None, None, None, None, None);
    let mut numblocks = None;
    // Format 0.0 repeats `offset` and `numbytes`, in turn.
    let mut pairs: Vec<u64> = Vec::new();
    for record in records {
        let record = record.map_err(|e| format!("has unreadable PAX records: {e}"))?;
        let Some(key) = record.key_bytes().strip_prefix(b"GNU.sparse.") else {
            continue;
        };
        seen = true;
        let value = record.value_bytes();
        let text = || {
            std::str::from_utf8(value)
                .map_err(|_| "has a GNU sparse record that is not text".to_string())
        };
        match key {
            b"major" => major = Some(text()?.to_string()),
            b"minor" => minor = Some(text()?.to_string()),
            b"name" => name = Some(value.to_vec()),
            b"size" | b"realsize" => size = Some(sparse_number(text()?)?),
            b"numblocks" => numblocks = Some(sparse_number(text()?)?),
            b"map" => map = Some(text()?.to_string()),
            b"offset" | b"numbytes" => {
                if (key == b"offset") != pairs.len().is_multiple_of(2) {
                    return Err(
                        "has a GNU sparse map whose offsets and sizes are out of turn".into(),
                    );
                }
                if pairs.len() as u64 >= 2 * MAX_SPARSE_SEGMENTS {
                    return Err(format!(
                        "is a sparse file of more than {MAX_SPARSE_SEGMENTS} segments"
                    ));
                }
                pairs.push(sparse_number(text()?)?);
            }
            _ => {}
        }
    }
    if !seen {
        return Ok(None);
    }
    let in_records = match (major.as_deref(), minor.as_deref()) {
        (Some("1"), Some("0")) => false,
        (Some("0"), Some("0" | "1")) | (None, None) => true,
        (major, minor) => {
            return Err(format!(
                "uses GNU sparse format {}.{}, which this agent does not know (0.0, 0.1 and 1.0 it does)",
                truncate(major.unwrap_or("?")),
                truncate(minor.unwrap_or("?"))
            ))
        }
    };
    let real_size = size.ok_or("is a GNU sparse file without its real size")?;
    let map = if in_records {
        let numbers = match map {
            Some(map) if pairs.is_empty() => map
                .split(',')
                .take(2 * MAX_SPARSE_SEGMENTS as usize + 1)
                .map(sparse_number)
                .collect::<Result<Vec<u64>, String>>()?,
            None => pairs,
            Some(_) => return Err("has two GNU sparse maps".into()),
        };
        if numbers.len() as u64 > 2 * MAX_SPARSE_SEGMENTS {
            return Err(format!(
                "is a sparse file of more than {MAX_SPARSE_SEGMENTS} segments"
            ));
        }
        if numbers.len() % 2 != 0
            || numblocks.is_some_and(|n| n.saturating_mul(2) != numbers.len() as u64)
        {
            return Err("has a GNU sparse map that does not add up (an offset without a size, or another count than announced)".into());
        }
        Some(
            numbers
                .chunks_exact(2)
                .map(|pair| Segment {
                    offset: pair[0],
                    len: pair[1],
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(Some(PaxSparse {
        name,
        real_size,
        map,
    }))
}

/// A decimal number of a sparse map: at most 20 digits, no sign, no spaces.
fn sparse_number(text: &str) -> Result<u64, String> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "has a GNU sparse map with `{}` for a number",
            truncate(text)
        ));
    }
    text.parse().map_err(|_| {
        format!(
            "has a GNU sparse map with `{}` for a number",
            truncate(text)
        )
    })
}

/// Reads a format 1.0 sparse map from the start of an entry of `size` bytes: the number of
/// segments, then each one's offset and size, one decimal number a line, padded to 512-byte
/// blocks. Returns the map and the bytes it took.
fn read_sparse_map(entry: &mut impl Read, size: u64) -> Result<(Vec<Segment>, u64), String> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut wanted = None;
    let (mut value, mut digits) = (0u64, 0usize);
    let mut block = [0u8; 512];
    let mut read = 0u64;
    loop {
        if read + 512 > size {
            return Err("has a GNU sparse map that runs past its data".into());
        }
        entry
            .read_exact(&mut block)
            .map_err(|e| format!("has a GNU sparse map that cannot be read: {e}"))?;
        read += 512;
        for &byte in &block {
            match byte {
                b'0'..=b'9' if digits < 20 => {
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(byte - b'0')))
                        .ok_or("has a GNU sparse map with a number too large")?;
                    digits += 1;
                }
                b'\n' if digits > 0 => {
                    numbers.push(value);
                    (value, digits) = (0, 0);
                    if numbers.len() == 1 {
                        if numbers[0] > MAX_SPARSE_SEGMENTS {
                            return Err(format!(
                                "is a sparse file of more than {MAX_SPARSE_SEGMENTS} segments"
                            ));
                        }
                        wanted = Some(1 + 2 * numbers[0] as usize);
                    }
                }
                _ => return Err("has a GNU sparse map that is not one number a line".into()),
            }
            if Some(numbers.len()) == wanted {
                let map = numbers[1..]
                    .chunks_exact(2)
                    .map(|pair| Segment {
                        offset: pair[0],
                        len: pair[1],
                    })
                    .collect();
                return Ok((map, read));
            }
        }
    }
}

/// Checks a sparse map: segments in order, not overlapping, inside a file of `real_size`
/// bytes, and holding exactly the `data` bytes the entry has after its map. Pure.
fn check_sparse_map(map: &[Segment], real_size: u64, data: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for segment in map {
        if segment.offset < end {
            return Err("has a GNU sparse map whose segments overlap or are out of order".into());
        }
        end = segment
            .offset
            .checked_add(segment.len)
            .filter(|&e| e <= real_size)
            .ok_or_else(|| {
                format!("has a GNU sparse map that reaches past its size of {real_size} bytes")
            })?;
        total = total.saturating_add(segment.len);
    }
    if total != data {
        return Err(format!(
            "has a GNU sparse map of {total} bytes of data, but {data} bytes follow it"
        ));
    }
    Ok(())
}

/// Copies `size` bytes from `from` to `to`, seeking over runs of zeros (they read back as
/// zeros: holes), then sets the file's length to `size`.
fn copy_with_holes(from: &mut impl Read, to: &mut File, size: u64) -> io::Result<()> {
    let mut chunk = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let n = from.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        if chunk[..n].iter().all(|&b| b == 0) {
            to.seek(SeekFrom::Current(n as i64))?;
        } else {
            io::Write::write_all(to, &chunk[..n])?;
        }
        at += n as u64;
    }
    if at != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the content ends after {at} of its {size} bytes"),
        ));
    }
    to.set_len(size)
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
