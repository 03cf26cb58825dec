//! A workload's shared namespaces ("pod"): an IPC namespace always, a network namespace with
//! loopback up when the workload is `isolated`. They are bind-mounted onto files in the run
//! dir, so they outlive every container and every agent restart; containers join them by path.
//!
//! They are created on a dedicated short-lived thread that `unshare`s only itself: nothing in
//! the multi-threaded agent forks for this.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{mount_bind, unmount, UnmountFlags};
use rustix::thread::UnshareFlags;

use super::sys;

/// The file in a pod's dir holding the caller's tag.
pub const TAG_FILE: &str = "tag";

/// `statfs` magic of nsfs, the filesystem of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// A kind of namespace a pod holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ipc,
    Net,
}

impl Kind {
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Ipc => "ipc",
            Kind::Net => "net",
        }
    }

    fn flag(self) -> UnshareFlags {
        match self {
            Kind::Ipc => UnshareFlags::NEWIPC,
            Kind::Net => UnshareFlags::NEWNET,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create new {kind} namespaces: {source} (the agent needs to run as root)")]
    Unshare {
        kind: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind-mount the {kind} namespace onto {path}: {source}")]
    Bind {
        kind: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot bring up loopback in the pod's network namespace: {0}")]
    Loopback(#[source] io::Error),
    #[error("cannot unmount {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the namespace thread panicked")]
    Thread,
}

/// Whether `path` is a bind-mounted namespace file.
pub fn is_namespace_file(path: &Path) -> bool {
    // `f_type` is i64 on x86_64 and aarch64 but 32 bits on armv7.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|fs| fs.f_type as i64 == NSFS_MAGIC)
}

/// Creates the missing namespaces of `kinds` under `dir` (idempotent).
pub fn ensure(dir: &Path, kinds: &[Kind]) -> Result<(), PodError> {
    std::fs::create_dir_all(dir).map_err(|source| PodError::Create {
        path: dir.to_owned(),
        source,
    })?;
    let missing: Vec<Kind> = kinds
        .iter()
        .copied()
        .filter(|kind| !is_namespace_file(&dir.join(kind.file_name())))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for kind in &missing {
        let path = dir.join(kind.file_name());
        std::fs::File::create(&path).map_err(|source| PodError::Create { path, source })?;
    }
    let dir = dir.to_owned();
    std::thread::Builder::new()
        .name("shoal-pod-ns".to_owned())
        .spawn(move || create_on_this_thread(&dir, &missing))
        .map_err(|source| PodError::Create {
            path: PathBuf::from("a thread"),
            source,
        })?
        .join()
        .map_err(|_| PodError::Thread)?
}

fn create_on_this_thread(dir: &Path, kinds: &[Kind]) -> Result<(), PodError> {
    let flags = kinds
        .iter()
        .fold(UnshareFlags::empty(), |flags, kind| flags | kind.flag());
    sys::unshare_thread(flags).map_err(|source| PodError::Unshare {
        kind: if kinds.contains(&Kind::Net) {
            "network/IPC"
        } else {
            "IPC"
        },
        source,
    })?;
    for kind in kinds {
        let path = dir.join(kind.file_name());
        mount_bind(format!("/proc/thread-self/ns/{}", kind.file_name()), &path).map_err(
            |source| PodError::Bind {
                kind: kind.file_name(),
                path: path.clone(),
                source: source.into(),
            },
        )?;
        if *kind == Kind::Net {
            sys::bring_up_loopback().map_err(PodError::Loopback)?;
        }
    }
    Ok(())
}

/// Unmounts and removes a pod's namespace files and its dir (idempotent).
pub fn remove(dir: &Path) -> Result<(), PodError> {
    for kind in [Kind::Ipc, Kind::Net] {
        let path = dir.join(kind.file_name());
        if is_namespace_file(&path) {
            unmount(&path, UnmountFlags::DETACH).map_err(|source| PodError::Unmount {
                path: path.clone(),
                source: source.into(),
            })?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(PodError::Create { path, source }),
        }
    }
    match std::fs::remove_file(dir.join(TAG_FILE)) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(PodError::Create {
                path: dir.join(TAG_FILE),
                source,
            })
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PodError::Create {
            path: dir.to_owned(),
            source,
        }),
    }
}
