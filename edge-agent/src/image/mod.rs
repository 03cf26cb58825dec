//! The agent's image store: a content-addressed store in the data dir that pulls images from
//! OCI registries, imports OCI-layout and `docker save` archives, unpacks each layer once into a
//! directory usable as an overlayfs lower dir, mounts a container's rootfs, and collects
//! garbage under a disk budget.
//!
//! The API is blocking (std only): the supervisor calls it from a worker thread.
//!
//! Layout under the store root (`<data-dir>/images`):
//! ```text
//! blobs/sha256/<hex>      verified blobs: manifests, configs, compressed layers
//! l/<16 hex of diff id>   unpacked layers, used directly as overlay lower dirs
//! images/<hex>.json       one record per image (manifest digest): config, layers, last use
//! refs.json               canonical reference -> manifest digest
//! ```
//! Invariants: a file under `blobs/` always has the content its name says (written to a temp
//! file, hashed while streaming, fsynced, renamed); a dir under `l/` is always a complete layer
//! (unpacked into `.partial-…`, renamed when done); records and refs are replaced atomically
//! (temp + fsync + rename); a failed pull or import never changes refs or records of images
//! already stored. Leftover temp files and partial dirs from a crash are removed on `open`.

mod archive;
mod document;
mod error;
mod layer;
mod registry;
mod store;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use document::ImageDigest;
pub use error::ImageError;
pub use layer::unpack_layer;
pub use store::{DataKept, ImageStore};

/// An image in the store, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The canonical reference it was found by (`127.0.0.1:5099/busybox:test`,
    /// `docker.io/library/busybox:latest`), or the digest for an image without a name.
    pub reference: String,
    /// Digest of the image's (platform-specific) manifest.
    pub digest: ImageDigest,
    pub config: ImageConfig,
    /// Unpacked layer dirs, bottom first (reverse them for overlay's `lowerdir`).
    pub layers: Vec<PathBuf>,
    /// Disk used by the image: blobs plus unpacked layers (shared layers are counted in each
    /// image that uses them).
    pub size_bytes: u64,
}

/// What the image's config says about running it. Exposed ports and the rest are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An OCI platform, as index entries name them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of a node from the architecture name Shoal manifests use
    /// (`amd64`, `arm64`, `armv7`, `armv6`; `x86_64` and `aarch64` are accepted too).
    pub fn for_node_arch(arch: &str) -> Result<Platform, ImageError> {
        let (architecture, variant) = match arch {
            "amd64" | "x86_64" => ("amd64", None),
            "arm64" | "aarch64" => ("arm64", None),
            "armv7" | "arm" | "armhf" => ("arm", Some("v7")),
            "armv6" => ("arm", Some("v6")),
            "386" | "riscv64" | "ppc64le" | "s390x" => (arch, None),
            other => {
                return Err(ImageError::BadReference {
                    reference: other.to_string(),
                    reason: "unknown node architecture: use amd64, arm64, armv7 or armv6".into(),
                })
            }
        };
        Ok(Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        })
    }

    /// The platform this binary was built for.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "arm" => "armv7",
            other => other,
        };
        Platform::for_node_arch(arch).unwrap_or(Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Credentials for a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    /// Sent as HTTP basic auth, or to the token service when the registry asks for a bearer
    /// token.
    Basic { username: String, password: String },
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
        }
    }
}

/// When `pull` contacts the registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Use the local image when the reference resolves; pull otherwise.
    #[default]
    IfNotPresent,
    /// Always ask the registry what the reference names now (blobs already stored are not
    /// downloaded again).
    Always,
    /// Never contact a registry: the image must already be in the store.
    Never,
}

/// Settings of the store; `Default` suits a device.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `host[:port]` of registries spoken to over plain HTTP; every other registry needs HTTPS.
    /// A host without port matches any port.
    pub insecure_registries: Vec<String>,
    /// Connect and per-read timeout of each registry request.
    pub request_timeout: Duration,
    /// Most bytes one image may have in layers, compressed and (per layer) uncompressed.
    pub max_image_bytes: u64,
    /// The platform picked from multi-arch archives on import.
    pub platform: Platform,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            insecure_registries: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
            request_timeout: Duration::from_secs(30),
            max_image_bytes: 4 * 1024 * 1024 * 1024,
            platform: Platform::host(),
        }
    }
}

/// What `prune` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// References (or digests, for unnamed images) of the images removed.
    pub removed_images: Vec<String>,
    pub removed_blobs: usize,
    pub removed_layers: usize,
    pub freed_bytes: u64,
    /// Disk used by the store after pruning.
    pub used_bytes: u64,
    /// True when images in use alone exceed the budget.
    pub still_over_budget: bool,
}
