//! The one error type of the image store.

use std::io;
use std::path::PathBuf;

/// What went wrong in the image store. Every variant names the thing it was working on (file,
/// registry, image, layer entry) so the message alone tells an operator where to look.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation on the store or an input file failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A layer tar holds an entry the store refuses to unpack.
    #[error("refused layer {layer}: entry `{entry}` {reason}; the image is unsafe or corrupt: rebuild it")]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },

    /// A layer could not be read as a tar stream (or uses a compression we do not support).
    #[error("cannot unpack layer {layer}: {reason}")]
    BadLayer { layer: String, reason: String },

    /// Content does not hash to the digest it was asked for or announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}; the source is corrupt or tampered with")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A JSON document (manifest, index, config, archive metadata) is missing, malformed or
    /// larger than allowed.
    #[error("invalid {what} in {source_name}: {reason}")]
    BadDocument {
        what: &'static str,
        source_name: String,
        reason: String,
    },

    /// A size limit (document, layer, archive) was exceeded.
    #[error("{what} in {source_name} is larger than the limit of {limit} bytes: {hint}")]
    TooLarge {
        what: String,
        source_name: String,
        limit: u64,
        hint: &'static str,
    },

    /// An archive is neither an OCI image layout nor a `docker save` tarball.
    #[error("{path} is not an image archive: {reason}")]
    BadArchive { path: PathBuf, reason: String },

    /// An index has no manifest for the node's platform.
    #[error("no image for {wanted} in {reference} (available: {available}): push one for {wanted} to it, or use an image built for this node")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },

    /// A registry request failed or the registry answered something we cannot accept.
    #[error("registry {registry}, repository {repository}: {what}")]
    Registry {
        registry: String,
        repository: String,
        what: String,
    },

    /// The registry asks for credentials we do not have or refused those we gave.
    #[error("registry {registry} refused access to {repository}: {what}; check the registry credentials")]
    Unauthorized {
        registry: String,
        repository: String,
        what: String,
    },

    /// The reference names no image in the local store.
    #[error("image {reference} is not in the local store: pull or import it first")]
    NotFound { reference: String },

    /// The reference could not be used (e.g. a reference without registry where one is needed).
    #[error("invalid image reference `{reference}`: {reason}")]
    BadReference { reference: String, reason: String },

    /// The disk is full and the operation would need space without freeing any.
    #[error("cannot {action}: the disk is full; {hint}")]
    NoSpace { action: String, hint: String },

    /// The image is for a different platform than the node.
    #[error("image {reference} is for {found}, but this node is {wanted}: push an image for {wanted} or a multi-arch index")]
    WrongPlatform {
        reference: String,
        found: String,
        wanted: String,
    },
}

impl ImageError {
    /// Whether it failed because the disk is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            ImageError::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            ImageError::NoSpace { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand: attach an action and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, ImageError> {
        self.map_err(|source| ImageError::io(action, path, source))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, ImageError> {
        self.map_err(|errno| ImageError::io(action, path, io::Error::from(errno)))
    }
}
