//! A container's root filesystem: an overlay of the image's unpacked layers (read-only, shared
//! by every container of the image) under a writable upper dir of its own.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// `statfs` magic of overlayfs.
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;
/// The kernel copies mount data into one page.
const MAX_MOUNT_DATA: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("the image has no layers")]
    NoLayers,
    #[error("layer path {0} contains `:` or `,`, which overlayfs options cannot carry")]
    BadPath(PathBuf),
    #[error(
        "the image's {layers} layer paths do not fit in one overlayfs mount ({len} bytes of \
         options, at most {MAX_MOUNT_DATA}); use an image with fewer layers or a shorter data dir"
    )]
    TooManyLayers { layers: usize, len: usize },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount the overlay rootfs at {path}: {source} (is overlayfs available?)")]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot unmount the rootfs at {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The overlayfs mount options for `layers` (bottom first) under `upper`/`work`.
pub fn overlay_options(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<String, RootfsError> {
    if layers.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    for path in layers.iter().map(PathBuf::as_path).chain([upper, work]) {
        let text = path.to_string_lossy();
        if text.contains(':') || text.contains(',') {
            return Err(RootfsError::BadPath(path.to_owned()));
        }
    }
    // overlayfs lists lower dirs top first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if options.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::TooManyLayers {
            layers: layers.len(),
            len: options.len(),
        });
    }
    Ok(options)
}

/// Mounts the overlay at `bundle/rootfs` with `bundle/upper` and `bundle/work`; returns the
/// rootfs path.
pub fn mount_overlay(bundle: &Path, layers: &[PathBuf]) -> Result<PathBuf, RootfsError> {
    let rootfs = bundle.join(super::state::ROOTFS_DIR);
    let upper = bundle.join("upper");
    let work = bundle.join("work");
    let options = overlay_options(layers, &upper, &work)?;
    for dir in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(dir).map_err(|source| RootfsError::Create {
            path: dir.clone(),
            source,
        })?;
    }
    let data =
        std::ffi::CString::new(options).map_err(|_| RootfsError::BadPath(bundle.to_owned()))?;
    mount(
        "overlay",
        &rootfs,
        "overlay",
        MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(|source| RootfsError::Mount {
        path: rootfs.clone(),
        source: source.into(),
    })?;
    Ok(rootfs)
}

/// Whether an overlay is mounted at `path`.
pub fn is_mounted(path: &Path) -> bool {
    // `f_type` is i64 on x86_64 and aarch64 but 32 bits on armv7.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|fs| fs.f_type as i64 == OVERLAYFS_MAGIC)
}

/// Unmounts the rootfs if it is mounted.
pub fn unmount_overlay(rootfs: &Path) -> Result<(), RootfsError> {
    if !is_mounted(rootfs) {
        return Ok(());
    }
    unmount(rootfs, UnmountFlags::empty())
        .or_else(|_| unmount(rootfs, UnmountFlags::DETACH))
        .map_err(|source| RootfsError::Unmount {
            path: rootfs.to_owned(),
            source: source.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lists_lower_layers_top_first() {
        let layers = [PathBuf::from("/l/base"), PathBuf::from("/l/app")];
        let options =
            overlay_options(&layers, Path::new("/b/upper"), Path::new("/b/work")).expect("options");
        assert_eq!(
            options,
            "lowerdir=/l/app:/l/base,upperdir=/b/upper,workdir=/b/work"
        );
    }

    #[test]
    fn overlay_options_refuse_what_they_cannot_express() {
        let upper = Path::new("/b/upper");
        let work = Path::new("/b/work");
        assert!(matches!(
            overlay_options(&[], upper, work),
            Err(RootfsError::NoLayers)
        ));
        assert!(matches!(
            overlay_options(&[PathBuf::from("/l/a:b")], upper, work),
            Err(RootfsError::BadPath(_))
        ));
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/shoal/images/layers/{i:064}")))
            .collect();
        assert!(matches!(
            overlay_options(&many, upper, work),
            Err(RootfsError::TooManyLayers { .. })
        ));
    }
}
