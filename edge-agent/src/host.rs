//! Facts about the device the agent runs on that do not depend on the container runtime:
//! architecture and kernel. They end up in the node's presence message.

use std::path::Path;

/// Where Linux publishes the running kernel's release (what `uname -r` prints).
const KERNEL_RELEASE: &str = "/proc/sys/kernel/osrelease";

/// The OCI architecture name of this build (`amd64`, `arm64`, `armv7`), the name manifests use
/// in placement constraints.
pub fn oci_arch() -> &'static str {
    shoal_model::node::oci_arch(std::env::consts::ARCH)
}

/// The C library this binary is linked against, as the target triple names it (`musl`, `gnu`).
pub fn libc_flavour() -> &'static str {
    if cfg!(target_env = "musl") {
        "musl"
    } else if cfg!(target_env = "gnu") {
        "gnu"
    } else {
        "other"
    }
}

/// The running kernel's release, e.g. `6.1.0-26-amd64`.
pub fn kernel_release() -> std::io::Result<String> {
    read_kernel_release(Path::new(KERNEL_RELEASE))
}

fn read_kernel_release(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_build_has_an_oci_arch_name() {
        let arch = oci_arch();
        assert!(
            ["amd64", "arm64", "armv7"].contains(&arch),
            "unexpected arch {arch}"
        );
    }

    #[test]
    fn kernel_release_is_read_without_the_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("osrelease");
        std::fs::write(&file, "6.1.0-26-amd64\n").expect("write");
        assert_eq!(read_kernel_release(&file).expect("read"), "6.1.0-26-amd64");
    }

    #[test]
    fn the_running_kernel_release_is_readable() {
        assert!(!kernel_release().expect("kernel release").is_empty());
    }
}
