//! The store on disk: blobs, unpacked layers, image records and references.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shoal_model::clock::wall_ms;
use shoal_model::manifest::image::ImageRef;

use super::document::{
    check_config_media_type, check_layer_media_type, parse_config, ImageDigest, Manifest,
    MAX_DOCUMENT_BYTES,
};
use super::error::{ImageError, IoContext};
use super::layer::{self, Blob, LayerSource};
use super::{Image, ImageConfig, Platform, PruneReport, StoreConfig};

const TMP_PREFIX: &str = ".tmp-";
const PARTIAL_MARK: &str = ".partial-";

/// The content-addressed image store under `<data-dir>/images`. Safe to share between threads:
/// pulls and imports run concurrently; `prune` waits for them and they wait for it.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    pub(super) config: StoreConfig,
    /// Held shared by pull and import (which write blobs and layers before their record
    /// exists) and exclusively by prune (which deletes what no record names).
    gc: RwLock<()>,
    /// Serialises read-modify-write of refs and records.
    meta: Mutex<()>,
    counter: AtomicU64,
}

/// One image as stored in `images/<hex>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Record {
    pub digest: ImageDigest,
    /// The index the manifest was chosen from, when it came from a multi-arch index.
    #[serde(default)]
    pub index_digest: Option<ImageDigest>,
    pub manifest_size: u64,
    pub config_digest: ImageDigest,
    pub config_size: u64,
    pub config: ImageConfig,
    pub layers: Vec<LayerRecord>,
    /// Milliseconds since the epoch of the last pull or import, or of a start (to within
    /// [`USE_MARK_INTERVAL_MS`]: see `mark_used`).
    pub last_used: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct LayerRecord {
    pub blob: ImageDigest,
    pub diff_id: ImageDigest,
    /// Compressed size (the blob).
    pub size: u64,
    /// Bytes of file content once unpacked.
    pub unpacked: u64,
}

/// What an image to install is, wherever it came from (registry or archive).
#[derive(Debug)]
pub(super) struct NewImage<'a> {
    pub manifest_digest: ImageDigest,
    pub manifest_size: u64,
    pub index_digest: Option<ImageDigest>,
    pub manifest: &'a Manifest,
    /// For messages: `127.0.0.1:5099/busybox:test` or `archive.tar`.
    pub source: String,
    /// Canonical references to point at the image.
    pub refs: Vec<String>,
    /// Refuse an image whose config names another platform (not needed when an index entry
    /// for the platform was chosen).
    pub platform: Option<&'a Platform>,
}

/// The registry and repository a reference means, Docker Hub's defaults applied.
pub(super) fn canonical_name(reference: &ImageRef) -> (String, String) {
    match &reference.registry {
        Some(registry) => (registry.clone(), reference.repository.clone()),
        None if !reference.repository.contains('/') => (
            "docker.io".into(),
            format!("library/{}", reference.repository),
        ),
        None => ("docker.io".into(), reference.repository.clone()),
    }
}

/// The key a reference is stored under: `registry/repository@digest` when it pins a digest,
/// `registry/repository:tag` otherwise (`latest` when it names neither).
pub(super) fn canonical_key(reference: &ImageRef) -> String {
    let (registry, repository) = canonical_name(reference);
    match &reference.digest {
        Some(digest) => format!("{registry}/{repository}@{digest}"),
        None => format!("{registry}/{repository}:{}", reference.tag_or_latest()),
    }
}

/// How old a stored last use may get before a start writes it again. Pruning orders images
/// that no desired workload uses, by when they were last used: an hour is fine grain for that.
pub(super) const USE_MARK_INTERVAL_MS: u64 = 3_600_000;

/// Whether a start at `now_ms` rewrites a record whose last use is `stored_ms`: when that is
/// at least [`USE_MARK_INTERVAL_MS`] old. Not when the clock went back: an older time would
/// make the image look less recently used than it is. Pure.
pub(super) fn use_mark_due(stored_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(stored_ms) >= USE_MARK_INTERVAL_MS
}

impl ImageStore {
    /// Opens (creating when needed) the store at `root` with the default settings.
    #[cfg(test)]
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        Self::open_with(root, StoreConfig::default())
    }

    /// Opens the store at `root`, removing what a crash may have left half-written: temp
    /// files and partially unpacked layers.
    pub fn open_with(root: &Path, config: StoreConfig) -> Result<ImageStore, ImageError> {
        let store = ImageStore {
            root: root.to_path_buf(),
            config,
            gc: RwLock::new(()),
            meta: Mutex::new(()),
            counter: AtomicU64::new(0),
        };
        for dir in [
            store.blob_dir(),
            store.root.join("l"),
            store.root.join("images"),
        ] {
            fs::create_dir_all(&dir).ctx("cannot create image store dir", &dir)?;
        }
        for dir in [
            store.root.clone(),
            store.blob_dir(),
            store.root.join("l"),
            store.root.join("images"),
        ] {
            for entry in fs::read_dir(&dir).ctx("cannot list", &dir)? {
                let entry = entry.ctx("cannot list", &dir)?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(TMP_PREFIX) || name.contains(PARTIAL_MARK) {
                    let path = entry.path();
                    tracing::info!(path = %path.display(), "removing what an interrupted pull or import left");
                    let removed = if path.is_dir() && !path.is_symlink() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    removed.ctx("cannot remove leftover", &path)?;
                }
            }
        }
        Ok(store)
    }

    /// Refuses a manifest whose layers add up to more than the configured image size limit,
    /// before anything is downloaded or unpacked.
    pub(crate) fn check_layers_size(
        &self,
        manifest: &Manifest,
        source: &str,
    ) -> Result<(), ImageError> {
        let total: u64 = manifest
            .layers
            .iter()
            .map(|l| l.size)
            .fold(0, u64::saturating_add);
        if total > self.config.max_image_bytes {
            return Err(ImageError::TooLarge {
                what: "image layers".into(),
                source_name: source.to_string(),
                limit: self.config.max_image_bytes,
                hint: "raise the image size limit if the image is genuine",
            });
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds an image by tag or digest without any network access.
    pub fn resolve(&self, reference: &ImageRef) -> Option<Image> {
        let key = canonical_key(reference);
        let refs = self.load_refs().ok()?;
        if let Some(digest) = refs.get(&key) {
            if let Ok(record) = self.load_record(digest) {
                return Some(self.image(key, &record));
            }
        }
        // A digest is the image's identity: accept it from any repository it was stored under.
        let digest = reference.digest.as_deref()?;
        self.records()
            .ok()?
            .into_iter()
            .find(|r| {
                r.digest.as_str() == digest
                    || r.index_digest
                        .as_ref()
                        .is_some_and(|d| d.as_str() == digest)
            })
            .map(|record| self.image(key, &record))
    }

    /// Every stored image: one entry per reference, plus one per image no reference names.
    pub fn list(&self) -> Vec<Image> {
        let refs = self.load_refs().unwrap_or_default();
        let records = self.records().unwrap_or_default();
        let mut images = Vec::new();
        for (key, digest) in &refs {
            if let Some(record) = records.iter().find(|r| &r.digest == digest) {
                images.push(self.image(key.clone(), record));
            }
        }
        let named: HashSet<&ImageDigest> = refs.values().collect();
        for record in &records {
            if !named.contains(&record.digest) {
                images.push(self.image(record.digest.to_string(), record));
            }
        }
        images
    }

    /// Removes a reference (tag or digest) and, when no other reference names the image and
    /// no container in `in_use` uses it, the image with its blobs and layers no other image
    /// needs. Otherwise the image's data stays (a later `prune` removes it once unused).
    ///
    /// Works on a full disk: the data goes first (only deletions), then the reference list is
    /// rewritten in the space just freed. A crash in between leaves a reference to an image
    /// that is gone, which every reader takes for no reference (and `prune` drops).
    pub fn remove(
        &self,
        reference: &ImageRef,
        in_use: &[ImageDigest],
    ) -> Result<Removed, ImageError> {
        let key = canonical_key(reference);
        let _gc = self.gc_exclusive();
        let _meta = self.meta();
        let mut refs = self.load_refs()?;
        let digest = refs.remove(&key).ok_or_else(|| ImageError::NotFound {
            reference: key.clone(),
        })?;
        let named_by: Vec<String> = refs
            .iter()
            .filter(|(_, d)| **d == digest)
            .map(|(k, _)| k.clone())
            .collect();
        let used = self
            .load_record(&digest)
            .is_ok_and(|record| in_use.iter().any(|d| record_is(&record, d)));
        let mut removed = Removed {
            digest: digest.clone(),
            data_kept: None,
            freed_bytes: 0,
        };
        if let Some(name) = named_by.first() {
            removed.data_kept = Some(DataKept::NamedBy(name.clone()));
        } else if used {
            removed.data_kept = Some(DataKept::InUse);
        } else {
            let before = self.usage()?.0;
            self.delete_record(&digest)?;
            let mut report = PruneReport::default();
            self.collect(&self.records()?, &mut report)?;
            removed.freed_bytes = before.saturating_sub(self.usage()?.0);
        }
        match self.save_refs(&refs) {
            Ok(()) => {}
            // The image is gone, so the reference already reads as removed.
            Err(e) if removed.data_kept.is_none() => {
                tracing::warn!(error = %e, reference = %key, "the image is removed but its name stays in the reference list until the next prune")
            }
            Err(e) if e.is_disk_full() => {
                return Err(ImageError::NoSpace {
                    action: format!("remove {key}"),
                    hint: match &removed.data_kept {
                        Some(DataKept::NamedBy(other)) => format!(
                            "removing it would free nothing, as {other} names the same image: \
                             remove every name of the image, or prune unused images \
                             (`shoal-agent images prune`)"
                        ),
                        _ => "removing it would free nothing, as a workload uses the image: \
                              prune unused images (`shoal-agent images prune`) or delete \
                              workloads"
                            .into(),
                    },
                })
            }
            Err(e) => return Err(e),
        }
        tracing::info!(reference = %key, digest = %digest, freed = removed.freed_bytes, "image reference removed");
        Ok(removed)
    }

    /// Records that a container started from the image, for least-recently-used pruning:
    /// only when the stored time is [`USE_MARK_INTERVAL_MS`] old or more, so a crash-looping
    /// container does not rewrite the record on every restart (flash wear).
    pub fn mark_used(&self, digest: &ImageDigest) -> Result<(), ImageError> {
        let _meta = self.meta();
        let mut record = self.load_record(digest)?;
        let now = wall_ms();
        if !use_mark_due(record.last_used, now) {
            return Ok(());
        }
        record.last_used = now;
        self.save_record(&record)
    }

    /// Removes images no reference names and no container uses, then blobs and layers no image
    /// needs, then, while the store uses more than `budget_bytes`, the least recently used
    /// images not in `in_use`. Images in use are never removed.
    pub fn prune(
        &self,
        in_use: &[ImageDigest],
        budget_bytes: u64,
    ) -> Result<PruneReport, ImageError> {
        self.prune_to(in_use, Some(budget_bytes))
    }

    /// Removes every image not in `in_use`, named or not, with the blobs and layers no
    /// remaining image needs (`shoal-agent images prune`).
    pub fn prune_unused(&self, in_use: &[ImageDigest]) -> Result<PruneReport, ImageError> {
        self.prune_to(in_use, None)
    }

    /// [`ImageStore::prune`] with a budget, [`ImageStore::prune_unused`] without.
    fn prune_to(
        &self,
        in_use: &[ImageDigest],
        budget_bytes: Option<u64>,
    ) -> Result<PruneReport, ImageError> {
        let _gc = self.gc_exclusive();
        let _meta = self.meta();
        let mut report = PruneReport::default();
        let used = |r: &Record| in_use.iter().any(|d| record_is(r, d));
        let before = self.usage()?.0;

        let loaded_refs = self.load_refs()?;
        let mut refs = loaded_refs.clone();
        let mut records = self.records()?;
        refs.retain(|_, digest| records.iter().any(|r| &r.digest == digest));
        let named: HashSet<ImageDigest> = refs.values().cloned().collect();
        let (dangling, kept): (Vec<Record>, Vec<Record>) = records
            .into_iter()
            .partition(|r| !named.contains(&r.digest) && !used(r));
        records = kept;
        // Deletions only, until the end: on a full disk there is no room for the new
        // reference list before something is freed, and a reference to a deleted image
        // reads as no reference.
        for record in dangling {
            self.delete_record(&record.digest)?;
            report.removed_images.push(record.digest.to_string());
        }
        self.collect(&records, &mut report)?;

        let mut candidates: Vec<Record> = records.iter().filter(|r| !used(r)).cloned().collect();
        candidates.sort_by_key(|r| r.last_used);
        let mut candidates = candidates.into_iter();
        loop {
            let (total, _) = self.usage()?;
            report.used_bytes = total;
            if budget_bytes.is_some_and(|budget| total <= budget) {
                break;
            }
            let Some(victim) = candidates.next() else {
                if let Some(budget) = budget_bytes {
                    report.still_over_budget = true;
                    tracing::warn!(
                        used = total,
                        budget,
                        "images in use alone exceed the disk budget"
                    );
                }
                break;
            };
            let names: Vec<String> = refs
                .iter()
                .filter(|(_, d)| **d == victim.digest)
                .map(|(k, _)| k.clone())
                .collect();
            refs.retain(|_, d| *d != victim.digest);
            self.delete_record(&victim.digest)?;
            records.retain(|r| r.digest != victim.digest);
            tracing::info!(image = %victim.digest, references = ?names, "pruned least recently used image");
            if names.is_empty() {
                report.removed_images.push(victim.digest.to_string());
            } else {
                report.removed_images.extend(names);
            }
            self.collect(&records, &mut report)?;
        }
        report.freed_bytes = before.saturating_sub(report.used_bytes);
        if refs != loaded_refs {
            if let Err(e) = self.save_refs(&refs) {
                // What it names is gone: the stale names read as absent until the next try.
                tracing::warn!(error = %e, "cannot rewrite the image reference list; it is retried at the next prune");
            }
        }
        Ok(report)
    }

    /// Deletes blobs and layer dirs that no record in `records` needs.
    fn collect(&self, records: &[Record], report: &mut PruneReport) -> Result<(), ImageError> {
        let mut live_blobs = BTreeSet::new();
        let mut live_layers = BTreeSet::new();
        for record in records {
            live_blobs.insert(record.digest.hex().to_string());
            live_blobs.insert(record.config_digest.hex().to_string());
            for layer in &record.layers {
                live_blobs.insert(layer.blob.hex().to_string());
                live_layers.insert(layer_dir_name(&layer.diff_id));
            }
        }
        let blob_dir = self.blob_dir();
        for entry in fs::read_dir(&blob_dir).ctx("cannot list", &blob_dir)? {
            let entry = entry.ctx("cannot list", &blob_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live_blobs.contains(&name) {
                fs::remove_file(entry.path()).ctx("cannot remove blob", entry.path())?;
                report.removed_blobs += 1;
            }
        }
        let layer_root = self.root.join("l");
        for entry in fs::read_dir(&layer_root).ctx("cannot list", &layer_root)? {
            let entry = entry.ctx("cannot list", &layer_root)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live_layers.contains(&name) {
                fs::remove_dir_all(entry.path()).ctx("cannot remove layer", entry.path())?;
                report.removed_layers += 1;
            }
        }
        Ok(())
    }

    /// Bytes used on disk by blobs and unpacked layers, and the number of blobs.
    fn usage(&self) -> Result<(u64, usize), ImageError> {
        let blob_dir = self.blob_dir();
        let mut total = 0;
        let mut count = 0;
        for entry in fs::read_dir(&blob_dir).ctx("cannot list", &blob_dir)? {
            let entry = entry.ctx("cannot list", &blob_dir)?;
            total += entry.metadata().ctx("cannot stat", entry.path())?.len();
            count += 1;
        }
        let mut layers = BTreeMap::new();
        for record in self.records()? {
            for layer in record.layers {
                layers.insert(layer_dir_name(&layer.diff_id), layer.unpacked);
            }
        }
        total += layers.values().sum::<u64>();
        Ok((total, count))
    }

    // ---- pieces used by pull and import ----

    pub(super) fn gc_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.gc.read().unwrap_or_else(|e| e.into_inner())
    }

    fn gc_exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gc.write().unwrap_or_else(|e| e.into_inner())
    }

    fn meta(&self) -> MutexGuard<'_, ()> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(super) fn blob_path(&self, digest: &ImageDigest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// Whether the blob is stored (with the given size, when known).
    pub(super) fn has_blob(&self, digest: &ImageDigest, size: Option<u64>) -> bool {
        match fs::metadata(self.blob_path(digest)) {
            Ok(meta) => size.is_none_or(|s| s == meta.len()),
            Err(_) => false,
        }
    }

    pub(super) fn unique(&self) -> String {
        format!(
            "{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Streams `reader` into the blob store, hashing as it goes. The blob appears under its
    /// digest only when complete, synced and (when `expected` is given) verified.
    pub(super) fn write_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&ImageDigest>,
        expected_size: Option<u64>,
        limit: u64,
        what: &str,
    ) -> Result<(ImageDigest, u64), ImageError> {
        let temp = self
            .blob_dir()
            .join(format!("{TMP_PREFIX}{}", self.unique()));
        let result = self.write_blob_via(&temp, reader, expected, expected_size, limit, what);
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn write_blob_via(
        &self,
        temp: &Path,
        reader: &mut dyn Read,
        expected: Option<&ImageDigest>,
        expected_size: Option<u64>,
        limit: u64,
        what: &str,
    ) -> Result<(ImageDigest, u64), ImageError> {
        let mut file = File::create(temp).ctx("cannot create temp blob", temp)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut written: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ImageError::BadDocument {
                        what: "blob",
                        source_name: what.to_string(),
                        reason: format!("reading failed after {written} bytes: {e}"),
                    })
                }
            };
            written += n as u64;
            if written > limit {
                return Err(ImageError::TooLarge {
                    what: "blob".into(),
                    source_name: what.to_string(),
                    limit,
                    hint: "raise the image size limit if the image is genuine",
                });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).ctx("cannot write blob", temp)?;
        }
        let digest = ImageDigest::from_hasher(hasher);
        if let Some(expected) = expected {
            if &digest != expected {
                return Err(ImageError::DigestMismatch {
                    what: what.to_string(),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        if let Some(size) = expected_size {
            if size != written {
                return Err(ImageError::BadDocument {
                    what: "blob",
                    source_name: what.to_string(),
                    reason: format!("its descriptor says {size} bytes but it has {written}"),
                });
            }
        }
        file.sync_all().ctx("cannot sync blob", temp)?;
        drop(file);
        let path = self.blob_path(&digest);
        fs::rename(temp, &path).ctx("cannot store blob", &path)?;
        sync_dir(&self.blob_dir());
        Ok((digest, written))
    }

    /// Reads a stored JSON document (manifest, config), refusing one above 4 MiB.
    pub(super) fn read_document(
        &self,
        digest: &ImageDigest,
        what: &'static str,
        source: &str,
    ) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|_| ImageError::BadDocument {
            what,
            source_name: source.to_string(),
            reason: format!("blob {digest} is missing"),
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .ctx("cannot read", &path)?;
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(ImageError::TooLarge {
                what: what.to_string(),
                source_name: source.to_string(),
                limit: MAX_DOCUMENT_BYTES,
                hint: "this is not an image document",
            });
        }
        Ok(bytes)
    }

    /// Checks, unpacks and records an image whose manifest, config and layer blobs are stored,
    /// then points `refs` at it. Nothing about other images changes if this fails.
    pub(super) fn install(&self, new: NewImage<'_>) -> Result<Image, ImageError> {
        let source = new.source.as_str();
        let manifest = new.manifest;
        check_config_media_type(&manifest.config.media_type, source)?;
        let config_digest = manifest.config.digest(source)?;
        if manifest.config.size > MAX_DOCUMENT_BYTES {
            return Err(ImageError::TooLarge {
                what: "image config".into(),
                source_name: source.to_string(),
                limit: MAX_DOCUMENT_BYTES,
                hint: "this is not an image config",
            });
        }
        if !self.has_blob(&config_digest, Some(manifest.config.size)) {
            return Err(ImageError::BadDocument {
                what: "manifest",
                source_name: source.to_string(),
                reason: format!(
                    "config blob {config_digest} of {} bytes is missing",
                    manifest.config.size
                ),
            });
        }
        let config_bytes = self.read_document(&config_digest, "image config", source)?;
        let config = parse_config(&config_bytes, source)?;
        if let Some(platform) = new.platform {
            if !config.architecture.is_empty()
                && (config.architecture != platform.architecture
                    || (!config.os.is_empty() && config.os != platform.os))
            {
                let found = match &config.variant {
                    Some(v) => format!("{}/{}/{v}", config.os, config.architecture),
                    None => format!("{}/{}", config.os, config.architecture),
                };
                return Err(ImageError::WrongPlatform {
                    reference: source.to_string(),
                    found,
                    wanted: platform.to_string(),
                });
            }
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::BadDocument {
                what: "image config",
                source_name: source.to_string(),
                reason: format!(
                    "it lists {} diff ids but the manifest has {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }
        self.check_layers_size(manifest, source)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (descriptor, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            check_layer_media_type(&descriptor.media_type, source)?;
            let blob = descriptor.digest(source)?;
            let diff_id =
                ImageDigest::parse(diff_id).map_err(|reason| ImageError::BadDocument {
                    what: "image config",
                    source_name: source.to_string(),
                    reason,
                })?;
            if !self.has_blob(&blob, Some(descriptor.size)) {
                return Err(ImageError::BadDocument {
                    what: "manifest",
                    source_name: source.to_string(),
                    reason: format!("layer blob {blob} of {} bytes is missing", descriptor.size),
                });
            }
            let blob_path = self.blob_path(&blob);
            let dest = self.layer_dir(&diff_id);
            tracing::debug!(layer = %blob, dir = %dest.display(), "unpacking layer");
            let unpacked = layer::unpack(
                &LayerSource {
                    name: format!("{blob} of {source}"),
                    blob: Blob::File(&blob_path),
                    diff_id: &diff_id,
                    max_bytes: self.config.max_image_bytes,
                },
                &dest,
                &self.unique(),
            )?;
            layers.push(LayerRecord {
                blob,
                diff_id,
                size: descriptor.size,
                unpacked,
            });
        }
        let runtime = config.config.unwrap_or_default();
        let record = Record {
            digest: new.manifest_digest.clone(),
            index_digest: new.index_digest,
            manifest_size: new.manifest_size,
            config_digest,
            config_size: manifest.config.size,
            config: ImageConfig {
                entrypoint: runtime.entrypoint.unwrap_or_default(),
                cmd: runtime.cmd.unwrap_or_default(),
                env: runtime.env.unwrap_or_default(),
                working_dir: runtime.working_dir.filter(|w| !w.is_empty()),
                user: runtime.user.filter(|u| !u.is_empty()),
            },
            layers,
            last_used: wall_ms(),
        };
        let _meta = self.meta();
        self.save_record(&record)?;
        let mut refs = self.load_refs()?;
        // Names of images deleted without rewriting the list (a crash, a full disk) go now,
        // before an image with the same digest could bring them back.
        refs.retain(|_, digest| self.record_path(digest).exists());
        for key in &new.refs {
            refs.insert(key.clone(), record.digest.clone());
        }
        self.save_refs(&refs)?;
        let reference = new
            .refs
            .first()
            .cloned()
            .unwrap_or_else(|| record.digest.to_string());
        tracing::info!(reference = %reference, digest = %record.digest, "image stored");
        Ok(self.image(reference, &record))
    }

    pub(super) fn layer_dir(&self, diff_id: &ImageDigest) -> PathBuf {
        self.root.join("l").join(layer_dir_name(diff_id))
    }

    fn image(&self, reference: String, record: &Record) -> Image {
        let size_bytes = record.manifest_size
            + record.config_size
            + record
                .layers
                .iter()
                .map(|l| l.size + l.unpacked)
                .sum::<u64>();
        Image {
            reference,
            digest: record.digest.clone(),
            config: record.config.clone(),
            layers: record
                .layers
                .iter()
                .map(|l| self.layer_dir(&l.diff_id))
                .collect(),
            size_bytes,
        }
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    fn load_refs(&self) -> Result<BTreeMap<String, ImageDigest>, ImageError> {
        let path = self.refs_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::BadDocument {
                what: "reference list",
                source_name: path.display().to_string(),
                reason: format!("{e}; remove the file and pull the images again"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::io("cannot read", path, e)),
        }
    }

    fn save_refs(&self, refs: &BTreeMap<String, ImageDigest>) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(refs).map_err(|e| ImageError::BadDocument {
            what: "reference list",
            source_name: "memory".into(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.root, &self.refs_path(), &bytes, &self.unique())
    }

    fn record_path(&self, digest: &ImageDigest) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{}.json", digest.hex()))
    }

    fn load_record(&self, digest: &ImageDigest) -> Result<Record, ImageError> {
        let path = self.record_path(digest);
        let bytes = fs::read(&path).map_err(|_| ImageError::NotFound {
            reference: digest.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::BadDocument {
            what: "image record",
            source_name: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    fn save_record(&self, record: &Record) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| ImageError::BadDocument {
            what: "image record",
            source_name: "memory".into(),
            reason: e.to_string(),
        })?;
        let dir = self.root.join("images");
        write_atomic(
            &dir,
            &self.record_path(&record.digest),
            &bytes,
            &self.unique(),
        )
    }

    fn delete_record(&self, digest: &ImageDigest) -> Result<(), ImageError> {
        let path = self.record_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("cannot remove", path, e)),
        }
    }

    /// Every readable record; an unreadable one is logged and skipped (its blobs then count
    /// as unreferenced).
    fn records(&self) -> Result<Vec<Record>, ImageError> {
        let dir = self.root.join("images");
        let mut records = Vec::new();
        for entry in fs::read_dir(&dir).ctx("cannot list", &dir)? {
            let entry = entry.ctx("cannot list", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(digest) = ImageDigest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            match self.load_record(&digest) {
                Ok(record) => records.push(record),
                Err(e) => tracing::warn!(error = %e, "skipping unreadable image record"),
            }
        }
        Ok(records)
    }
}

/// Whether `record` is the image `digest` names (its manifest, or the index it came from).
fn record_is(record: &Record, digest: &ImageDigest) -> bool {
    &record.digest == digest || record.index_digest.as_ref() == Some(digest)
}

/// What [`ImageStore::remove`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The image the reference named.
    pub digest: ImageDigest,
    /// Why the image's data stays, when it does.
    pub data_kept: Option<DataKept>,
    /// Disk space given back.
    pub freed_bytes: u64,
}

/// Why removing a reference kept the image's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataKept {
    /// Another reference names the image.
    NamedBy(String),
    /// A container uses it.
    InUse,
}

/// Layer dirs get short names so that many fit into overlay's one-page mount options.
fn layer_dir_name(diff_id: &ImageDigest) -> String {
    diff_id.hex()[..16].to_string()
}

fn sync_dir(dir: &Path) {
    if let Ok(file) = File::open(dir) {
        let _ = file.sync_all();
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8], unique: &str) -> Result<(), ImageError> {
    let temp = dir.join(format!("{TMP_PREFIX}{unique}"));
    let result = (|| {
        let mut file = File::create(&temp).ctx("cannot create", &temp)?;
        file.write_all(bytes).ctx("cannot write", &temp)?;
        file.sync_all().ctx("cannot sync", &temp)?;
        fs::rename(&temp, path).ctx("cannot replace", path)?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
