//! Air-gapped import: an OCI image layout in a tar (`oci-archive`), or a `docker save` tarball
//! (`manifest.json`, `<id>.json` configs, `<id>/layer.tar` layers). Either may be gzipped.
//!
//! The archive is read once, as a stream: every regular file goes into the blob store under its
//! content digest (a file named `blobs/sha256/<hex>` must match its name), the small metadata
//! files are kept in memory. Nothing is ever extracted under a path taken from the archive.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use shoal_model::manifest::image::ImageRef;

use super::document::{
    parse_document, select_platform, truncate, Descriptor, Document, ImageDigest, Manifest,
    DOCKER_LAYER_TAR, MAX_DOCUMENT_BYTES, OCI_CONFIG, OCI_MANIFEST,
};
use super::error::{ImageError, IoContext};
use super::store::{canonical_key, ImageStore, NewImage};
use super::Image;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Metadata files read into memory rather than stored as blobs.
const METADATA: [&str; 4] = ["oci-layout", "index.json", "manifest.json", "repositories"];

/// One entry of `docker save`'s manifest.json.
#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// What the archive held: stored files by archive path, links, metadata documents.
#[derive(Debug, Default)]
struct Contents {
    files: BTreeMap<String, (ImageDigest, u64)>,
    links: BTreeMap<String, String>,
    metadata: BTreeMap<String, Vec<u8>>,
}

impl Contents {
    /// The stored file at `path`, following links recorded in the archive (a few hops).
    fn file(&self, path: &str) -> Option<&(ImageDigest, u64)> {
        let mut path = normalize(path)?;
        for _ in 0..8 {
            if let Some(file) = self.files.get(&path) {
                return Some(file);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }
}

/// `a/./b` → `a/b`; `None` when the path leaves the archive root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

impl ImageStore {
    /// Imports every image of an OCI-layout tar or a `docker save` tar (gzipped or not). The
    /// images keep the names the archive gives them; an OCI index entry whose name is only a
    /// tag is stored as `localhost/<archive file stem>:<tag>`.
    pub fn import_archive(&self, path: &Path) -> Result<Vec<Image>, ImageError> {
        let _gc = self.gc_shared();
        let source = path.display().to_string();
        let contents = self.read_archive(path)?;
        let bad = |reason: String| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason,
        };
        let images = if contents.metadata.contains_key("index.json") {
            self.import_oci(path, &contents)?
        } else if let Some(bytes) = contents.metadata.get("manifest.json") {
            self.import_docker(path, &contents, bytes)?
        } else {
            return Err(bad(
                "it has neither index.json (OCI image layout) nor manifest.json (docker save)"
                    .into(),
            ));
        };
        if images.is_empty() {
            return Err(bad(format!("{source} lists no images")));
        }
        Ok(images)
    }

    fn read_archive(&self, path: &Path) -> Result<Contents, ImageError> {
        let bad = |reason: String| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).ctx("cannot open image archive", path)?;
        let mut buffered = BufReader::new(file);
        let head = buffered.fill_buf().ctx("cannot read image archive", path)?;
        let stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        let mut archive = tar::Archive::new(stream);
        let mut contents = Contents::default();
        let mut total: u64 = 0;
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("not a tar file: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("corrupt tar: {e}")))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(name) = normalize(&raw) else {
                return Err(bad(format!(
                    "entry `{}` leaves the archive",
                    truncate(&raw)
                )));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(link) = entry.link_name_bytes() else {
                        continue;
                    };
                    let link = String::from_utf8_lossy(&link).into_owned();
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        normalize(&format!("{dir}/{link}"))
                    } else {
                        normalize(&link)
                    };
                    if let Some(target) = target {
                        contents.links.insert(name, target);
                    }
                    continue;
                }
                _ => continue,
            }
            if METADATA.contains(&name.as_str()) {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(MAX_DOCUMENT_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(format!("cannot read `{name}`: {e}")))?;
                if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
                    return Err(ImageError::TooLarge {
                        what: name,
                        source_name: path.display().to_string(),
                        limit: MAX_DOCUMENT_BYTES,
                        hint: "this is not an image archive",
                    });
                }
                contents.metadata.insert(name, bytes);
                continue;
            }
            // A blob of an OCI layout must match its name; anything else is addressed by what
            // it hashes to.
            let expected = name
                .strip_prefix("blobs/sha256/")
                .map(|hex| {
                    ImageDigest::parse(&format!("sha256:{hex}"))
                        .map_err(|reason| bad(format!("entry `{}`: {reason}", truncate(&name))))
                })
                .transpose()?;
            let remaining = self.config.max_image_bytes.saturating_sub(total);
            let what = format!("`{}` in {}", truncate(&name), path.display());
            let (digest, size) =
                self.write_blob(&mut entry, expected.as_ref(), None, remaining, &what)?;
            total += size;
            tracing::debug!(entry = %name, digest = %digest, size, "archive file stored");
            contents.files.insert(name, (digest, size));
        }
        Ok(contents)
    }

    fn import_oci(&self, path: &Path, contents: &Contents) -> Result<Vec<Image>, ImageError> {
        let source = path.display().to_string();
        let index_bytes = contents
            .metadata
            .get("index.json")
            .map(Vec::as_slice)
            .unwrap_or(b"");
        let Document::Index(index) =
            parse_document(index_bytes, None, &format!("{source}: index.json"))?
        else {
            return Err(ImageError::BadArchive {
                path: path.to_path_buf(),
                reason: "index.json is not an image index".into(),
            });
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let mut images = Vec::new();
        for descriptor in &index.manifests {
            let refs = oci_ref_name(descriptor, &stem);
            let shown = refs
                .first()
                .cloned()
                .unwrap_or_else(|| descriptor.digest.clone());
            let what = format!("{shown} in {source}");
            let (digest, size, index_digest, manifest, platform) =
                self.oci_manifest(descriptor, &what, 0)?;
            images.push(self.install(NewImage {
                manifest_digest: digest,
                manifest_size: size,
                index_digest,
                manifest: &manifest,
                source: what,
                refs,
                platform: if platform {
                    Some(&self.config.platform)
                } else {
                    None
                },
            })?);
        }
        Ok(images)
    }

    /// Follows a descriptor from index.json to a platform manifest (through nested indexes).
    /// Returns the manifest's digest and size, the index digest when one was crossed, the
    /// manifest, and whether its config's platform still needs checking.
    fn oci_manifest(
        &self,
        descriptor: &Descriptor,
        what: &str,
        depth: usize,
    ) -> Result<(ImageDigest, u64, Option<ImageDigest>, Manifest, bool), ImageError> {
        if depth > 2 {
            return Err(ImageError::BadDocument {
                what: "index",
                source_name: what.to_string(),
                reason: "indexes nest too deep".into(),
            });
        }
        let digest = descriptor.digest(what)?;
        if !self.has_blob(&digest, Some(descriptor.size)) {
            return Err(ImageError::BadDocument {
                what: "index",
                source_name: what.to_string(),
                reason: format!(
                    "the archive has no blob {digest} of {} bytes",
                    descriptor.size
                ),
            });
        }
        let bytes = self.read_document(&digest, "manifest", what)?;
        match parse_document(&bytes, Some(&descriptor.media_type), what)? {
            Document::Manifest(manifest) => {
                Ok((digest, descriptor.size, None, manifest, depth == 0))
            }
            Document::Index(index) => {
                let chosen = select_platform(&index, &self.config.platform, what)?;
                let (d, s, _, m, _) = self.oci_manifest(chosen, what, depth + 1)?;
                Ok((d, s, Some(digest), m, false))
            }
        }
    }

    fn import_docker(
        &self,
        path: &Path,
        contents: &Contents,
        manifest_json: &[u8],
    ) -> Result<Vec<Image>, ImageError> {
        let source = path.display().to_string();
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(manifest_json).map_err(|e| ImageError::BadDocument {
                what: "docker save manifest.json",
                source_name: source.clone(),
                reason: e.to_string(),
            })?;
        let missing = |name: &str| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason: format!(
                "manifest.json names `{}`, which the archive does not hold",
                truncate(name)
            ),
        };
        let mut images = Vec::new();
        for entry in entries {
            let (config_digest, config_size) = contents
                .file(&entry.config)
                .ok_or_else(|| missing(&entry.config))?
                .clone();
            let mut layers = Vec::new();
            for layer in &entry.layers {
                let (digest, size) = contents.file(layer).ok_or_else(|| missing(layer))?.clone();
                layers.push(Descriptor {
                    media_type: DOCKER_LAYER_TAR.into(),
                    digest: digest.to_string(),
                    size,
                    platform: None,
                    annotations: None,
                });
            }
            // docker save has no manifest: write the OCI manifest it stands for, so the image
            // gets a stable digest (the same archive always imports to the same digest).
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.into()),
                config: Descriptor {
                    media_type: OCI_CONFIG.into(),
                    digest: config_digest.to_string(),
                    size: config_size,
                    platform: None,
                    annotations: None,
                },
                layers,
            };
            let bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::BadDocument {
                what: "manifest",
                source_name: source.clone(),
                reason: e.to_string(),
            })?;
            let what = format!("{} in {source}", entry.config);
            let (digest, size) =
                self.write_blob(&mut bytes.as_slice(), None, None, MAX_DOCUMENT_BYTES, &what)?;
            let mut refs = Vec::new();
            for tag in entry.repo_tags.unwrap_or_default() {
                let parsed = ImageRef::parse(&tag).map_err(|reason| ImageError::BadReference {
                    reference: truncate(&tag),
                    reason,
                })?;
                refs.push(canonical_key(&parsed));
            }
            images.push(self.install(NewImage {
                manifest_digest: digest,
                manifest_size: size,
                index_digest: None,
                manifest: &manifest,
                source: refs.first().cloned().unwrap_or(what),
                refs,
                platform: Some(&self.config.platform),
            })?);
        }
        Ok(images)
    }
}

/// The references an index.json entry names: the containerd name, or the OCI ref name when it
/// is a full reference, or `localhost/<stem>:<tag>` when it is only a tag.
fn oci_ref_name(descriptor: &Descriptor, stem: &str) -> Vec<String> {
    let name = descriptor
        .annotation(CONTAINERD_NAME)
        .or_else(|| descriptor.annotation(REF_NAME));
    let Some(name) = name else {
        return Vec::new();
    };
    let full = if name.contains(':') || name.contains('/') {
        name.to_string()
    } else {
        format!("localhost/{stem}:{name}")
    };
    match ImageRef::parse(&full) {
        Ok(parsed) => vec![canonical_key(&parsed)],
        Err(reason) => {
            tracing::warn!(name = %truncate(name), %reason, "ignoring an unusable image name in the archive");
            Vec::new()
        }
    }
}
