//! The JSON documents of the OCI image spec (and Docker's v2 equivalents) that the store reads:
//! indexes, manifests and image configs. Everything here decodes untrusted bytes: sizes are
//! capped by the caller, digests are validated before they become file names, and decoding
//! never panics.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shoal_model::hex::Hex;

use super::error::ImageError;
use super::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Manifests, indexes and configs are small; anything larger is refused before parsing.
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;

/// A validated `sha256:<64 lower-case hex>` digest: safe to use as a file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageDigest(String);

impl ImageDigest {
    /// Parses a digest, refusing anything but sha256 with 64 lower-case hex digits.
    pub fn parse(text: &str) -> Result<ImageDigest, String> {
        let Some(hex) = text.strip_prefix("sha256:") else {
            return Err(format!(
                "`{}` is not a sha256 digest (only sha256 is supported)",
                truncate(text)
            ));
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "`{}` is not a digest: expected `sha256:` and 64 lower-case hex digits",
                truncate(text)
            ));
        }
        Ok(ImageDigest(text.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> ImageDigest {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> ImageDigest {
        ImageDigest(format!("sha256:{}", Hex(&hasher.finalize())))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ImageDigest {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        ImageDigest::parse(&text)
    }
}

impl From<ImageDigest> for String {
    fn from(digest: ImageDigest) -> String {
        digest.0
    }
}

impl fmt::Display for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shortens hostile text before it goes into an error message.
pub(crate) fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub fn digest(&self, source_name: &str) -> Result<ImageDigest, ImageError> {
        ImageDigest::parse(&self.digest).map_err(|reason| ImageError::BadDocument {
            what: "descriptor",
            source_name: source_name.to_string(),
            reason,
        })
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl DescriptorPlatform {
    fn display(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}/{}/{}", self.os, self.architecture, variant),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// A manifest or an index: what a registry answers for a tag.
#[derive(Debug)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Decodes a manifest or an index, from the declared media type when there is one and from the
/// shape of the JSON otherwise.
pub fn parse_document(
    bytes: &[u8],
    content_type: Option<&str>,
    source_name: &str,
) -> Result<Document, ImageError> {
    let bad = |reason: String| ImageError::BadDocument {
        what: "manifest",
        source_name: source_name.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()));
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(bad(
            "Docker schema 1 manifests are not supported: push the image again with a current tool"
                .into(),
        ));
    }
    let is_index = match media_type.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        _ => value.get("manifests").is_some(),
    };
    if is_index {
        serde_json::from_value(value)
            .map(Document::Index)
            .map_err(|e| bad(format!("not an image index: {e}")))
    } else {
        serde_json::from_value(value)
            .map(Document::Manifest)
            .map_err(|e| bad(format!("not an image manifest: {e}")))
    }
}

/// Picks the entry of an index for `platform`: an exact variant match first, then an entry
/// without variant. Entries for other platforms (and attestation entries, `unknown/unknown`)
/// are listed in the error.
pub fn select_platform<'a>(
    index: &'a Index,
    platform: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, ImageError> {
    let candidates = index.manifests.iter().filter(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
    });
    let mut without_variant = None;
    for descriptor in candidates {
        let variant = descriptor
            .platform
            .as_ref()
            .and_then(|p| p.variant.as_deref());
        if variant == platform.variant.as_deref()
            || (platform.architecture == "arm64"
                && platform.variant.is_none()
                && variant == Some("v8"))
        {
            return Ok(descriptor);
        }
        if variant.is_none() && without_variant.is_none() {
            without_variant = Some(descriptor);
        }
    }
    if let Some(descriptor) = without_variant {
        return Ok(descriptor);
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(DescriptorPlatform::display)
        .collect();
    available.dedup();
    Err(ImageError::NoMatchingPlatform {
        reference: reference.to_string(),
        wanted: platform.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

/// The parts of an image config the store keeps.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct RootFs {
    pub diff_ids: Vec<String>,
}

pub fn parse_config(bytes: &[u8], source_name: &str) -> Result<ConfigFile, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::BadDocument {
        what: "image config",
        source_name: source_name.to_string(),
        reason: e.to_string(),
    })
}

/// Accepts the layer media types the unpacker handles (tar, gzip; it tells which from the first
/// bytes) and refuses the others by name.
pub fn check_layer_media_type(media_type: &str, source_name: &str) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::BadLayer {
        layer: source_name.to_string(),
        reason,
    };
    match media_type {
        ""
        | OCI_LAYER_TAR
        | OCI_LAYER_GZIP
        | DOCKER_LAYER_TAR
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(()),
        m if m.contains("zstd") => Err(bad(format!(
            "zstd-compressed layers ({m}) are not supported: push the image with gzip layers"
        ))),
        m if m.contains("nondistributable") || m.contains("foreign") => Err(bad(format!(
            "non-distributable layers ({m}) are not supported: use an image without foreign layers"
        ))),
        m => Err(bad(format!("unknown layer media type `{}`", truncate(m)))),
    }
}

/// A config or manifest media type the store understands.
pub fn check_config_media_type(media_type: &str, source_name: &str) -> Result<(), ImageError> {
    match media_type {
        "" | OCI_CONFIG | "application/vnd.docker.container.image.v1+json" => Ok(()),
        other => Err(ImageError::BadDocument {
            what: "manifest",
            source_name: source_name.to_string(),
            reason: format!(
                "config media type `{}` is not an image config (is this an artifact, not an image?)",
                truncate(other)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_that_could_become_paths_are_refused() {
        for bad in [
            "sha256:../../etc/passwd",
            "sha512:00",
            "sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000",
            "",
            "sha256:",
        ] {
            assert!(ImageDigest::parse(bad).is_err(), "{bad:?}");
        }
        let good = ImageDigest::of(b"x");
        assert_eq!(ImageDigest::parse(good.as_str()), Ok(good.clone()));
        assert_eq!(good.hex().len(), 64);
    }

    #[test]
    fn garbage_documents_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"{}",
            b"[]",
            b"{\"manifests\": 3}",
            b"\xff\xfe",
            b"{\"schemaVersion\":1}",
        ] {
            assert!(parse_document(bytes, None, "test").is_err());
            assert!(parse_config(bytes, "test").is_err());
        }
    }
}
