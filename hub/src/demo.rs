//! The image of `shoal up --demo`, built on the spot from the static busybox of the Debian
//! package `busybox-static`, so that the quickstart needs no registry: an OCI image layout
//! tarball named `localhost/shoal-demo:latest`, which the local agent imports.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;

/// What the demo manifest runs.
pub const IMAGE: &str = "localhost/shoal-demo:latest";
/// The manifest `shoal up --demo` applies (the file in `manifests/`, built in).
pub const MANIFEST: &str = include_str!("../../manifests/hello.yaml");
pub const MANIFEST_NAME: &str = "manifests/hello.yaml";

/// Applets linked to busybox in the image.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "ls", "hostname", "date", "true", "false", "env", "ps", "wget",
    "nc", "httpd", "kill", "uptime",
];

/// Writes the demo image as an OCI layout tarball to `out`, from the busybox at `busybox`.
pub fn write_image(busybox: &Path, out: &Path) -> anyhow::Result<()> {
    let binary = std::fs::read(busybox).with_context(|| {
        format!(
            "cannot read {}: install busybox-static (`apt-get install -y busybox-static`)",
            busybox.display()
        )
    })?;
    if !is_static_elf(&binary) {
        anyhow::bail!(
            "{} is not a statically linked program, so it cannot run alone in a container: install busybox-static (`apt-get install -y busybox-static`)",
            busybox.display()
        );
    }
    let layer = layer(&binary)?;
    let layer_gz = gzip(&layer)?;
    let config = serde_json::to_vec(&json!({
        "architecture": shoal_model::node::oci_arch(std::env::consts::ARCH),
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [digest(&layer)] },
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest(&layer_gz),
            "size": layer_gz.len(),
        }],
    }))?;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": IMAGE },
        }],
    }))?;
    let mut archive = tar::Builder::new(Vec::new());
    append(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    append(&mut archive, "index.json", &index, 0o644)?;
    for blob in [&config, &manifest, &layer_gz] {
        let name = format!("blobs/sha256/{}", &digest(blob)["sha256:".len()..]);
        append(&mut archive, &name, blob, 0o644)?;
    }
    let bytes = archive.into_inner()?;
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))
}

/// The one layer: `/bin/busybox`, its applets as symlinks, and the usual empty directories.
fn layer(busybox: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        let mut header = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut header, format!("{dir}/"), std::io::empty())?;
    }
    append(&mut tar, "bin/busybox", busybox, 0o755)?;
    for applet in APPLETS {
        let mut header = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
    }
    Ok(tar.into_inner()?)
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, data.len() as u64);
    tar.append_data(&mut header, name, data)?;
    Ok(())
}

/// A header owned by root, dated 1970 so that the same busybox gives the same image digest.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", shoal_model::hex::sha256_hex(bytes))
}

/// Whether `binary` is an ELF executable with no program interpreter (a static program).
/// Only 64- and 32-bit little-endian ELF are recognised; anything else is "not static".
pub fn is_static_elf(binary: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if binary.get(..4) != Some(b"\x7fELF".as_slice()) || binary.get(5) != Some(&1) {
        return false;
    }
    let u16_at = |at: usize| {
        binary
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        binary
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        binary
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    let (table, entry_size, count) = match binary.get(4) {
        Some(2) => (u64_at(0x20), u16_at(0x36), u16_at(0x38)),
        Some(1) => (u32_at(0x1c).map(u64::from), u16_at(0x2a), u16_at(0x2c)),
        _ => return false,
    };
    let (Some(table), Some(entry_size), Some(count)) = (table, entry_size, count) else {
        return false;
    };
    let Ok(table) = usize::try_from(table) else {
        return false;
    };
    for index in 0..usize::from(count) {
        let at = table.saturating_add(index.saturating_mul(usize::from(entry_size)));
        match u32_at(at) {
            Some(PT_INTERP) => return false,
            Some(_) => {}
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_busybox_is_static_and_a_dynamic_program_is_not() {
        let busybox =
            std::fs::read("/bin/busybox").expect("busybox-static is installed by .ci/setup");
        assert!(is_static_elf(&busybox));
        let dynamic = std::fs::read("/bin/ls").expect("coreutils ls");
        assert!(!is_static_elf(&dynamic));
    }

    #[test]
    fn truncated_or_foreign_files_are_not_static_programs() {
        for bytes in [&b""[..], b"\x7fEL", b"#!/bin/sh\n", b"\x7fELF\x02\x01\x01"] {
            assert!(!is_static_elf(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn the_demo_manifest_uses_the_demo_image() {
        assert!(MANIFEST.contains(IMAGE));
    }
}
