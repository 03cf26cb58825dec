//! Component tests of the image store: real files, real overlay mounts, a real
//! `docker-registry` fed by `skopeo`; a small HTTP server thread only for hostile registries.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shoal_model::manifest::image::ImageRef;
use shoal_tests::images::{
    busybox_layer, digest, docker_save, gnu_sparse_layer, skopeo_copy, skopeo_copy_as,
    sparse_content, Entry, Image as TestImage, Layer, OciLayout, Registry, SparseFormat,
};
use tempfile::TempDir;

use super::*;

fn store() -> (TempDir, ImageStore) {
    let dir = TempDir::new().expect("temp dir");
    let store = ImageStore::open(&dir.path().join("images")).expect("open store");
    (dir, store)
}

fn reference(text: &str) -> ImageRef {
    ImageRef::parse(text).expect("valid reference")
}

fn host() -> Platform {
    Platform::host()
}

/// An OCI archive holding `image` named `name`, written under `dir`.
fn oci_archive(dir: &Path, file: &str, name: &str, image: &TestImage) -> PathBuf {
    let layout_dir = dir.join(format!("{file}.layout"));
    let mut layout = OciLayout::create(&layout_dir);
    let descriptor = layout.add_image(image);
    layout.tag(name, &descriptor);
    let archive = dir.join(file);
    layout.to_tar(&archive);
    archive
}

fn small_image(marker: &str) -> TestImage {
    TestImage::new(vec![Layer::new(vec![
        Entry::dir("etc"),
        Entry::file("etc/marker", marker.as_bytes().to_vec()),
    ])])
}

/// Every path below `dir` whose file name is `name`.
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name() == name {
                found.push(path.clone());
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            }
        }
    }
    found
}

fn leftovers(store: &ImageStore) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for sub in ["l", "blobs/sha256", "images", ""] {
        for entry in fs::read_dir(store.root().join(sub))
            .expect("list")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".partial-") || name.starts_with(".tmp-") {
                found.push(entry.path());
            }
        }
    }
    found
}

// ---- import ----

#[test]
fn an_oci_layout_archive_imports_with_its_name_config_and_unpacked_layers() {
    let (dir, store) = store();
    let image = TestImage::new(vec![busybox_layer()])
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo hi"]);
    let archive = oci_archive(
        dir.path(),
        "busybox.tar",
        "127.0.0.1:5099/busybox:test",
        &image,
    );

    let images = store.import_archive(&archive).expect("import");

    assert_eq!(images.len(), 1);
    let stored = &images[0];
    assert_eq!(stored.reference, "127.0.0.1:5099/busybox:test");
    assert_eq!(stored.config.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(stored.config.cmd, ["echo hi"]);
    assert_eq!(stored.config.env, ["PATH=/bin"]);
    assert_eq!(stored.layers.len(), 1);
    let busybox = stored.layers[0].join("bin/busybox");
    assert!(fs::metadata(&busybox).expect("busybox unpacked").mode() & 0o111 != 0);
    assert_eq!(
        fs::read_link(stored.layers[0].join("bin/sh")).expect("sh link"),
        Path::new("busybox")
    );
    assert!(stored.size_bytes > 1_000_000);
    assert_eq!(
        store.resolve(&reference("127.0.0.1:5099/busybox:test")),
        Some(stored.clone())
    );
    let by_digest = reference(&format!("127.0.0.1:5099/busybox@{}", stored.digest));
    assert_eq!(
        store.resolve(&by_digest).map(|i| i.digest),
        Some(stored.digest.clone())
    );
}

#[test]
fn a_docker_save_archive_imports_and_its_shared_layer_symlinks_are_followed() {
    let (dir, store) = store();
    let layer = Layer::new(vec![Entry::file("same", "twice")]);
    let image = TestImage::new(vec![busybox_layer(), layer.clone(), layer]);
    let archive = dir.path().join("saved.tar");
    docker_save(&image, "busybox:saved", &archive, true);

    let images = store.import_archive(&archive).expect("import docker save");

    assert_eq!(images.len(), 1);
    assert_eq!(images[0].reference, "docker.io/library/busybox:saved");
    assert_eq!(images[0].layers.len(), 3);
    assert!(images[0].layers[1].join("same").is_file());
    // `busybox:saved` in a manifest means the same as Docker Hub's library image.
    assert!(store.resolve(&reference("busybox:saved")).is_some());
}

#[test]
fn importing_the_same_archive_twice_changes_nothing() {
    let (dir, store) = store();
    let archive = oci_archive(dir.path(), "a.tar", "example.org/app:1", &small_image("a"));
    let first = store.import_archive(&archive).expect("first import");
    let blobs = fs::read_dir(store.root().join("blobs/sha256"))
        .expect("list")
        .count();

    let second = store.import_archive(&archive).expect("second import");

    assert_eq!(first[0].digest, second[0].digest);
    assert_eq!(first[0].layers, second[0].layers);
    assert_eq!(store.list().len(), 1);
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .expect("list")
            .count(),
        blobs
    );
    assert!(leftovers(&store).is_empty());
}

#[test]
fn something_that_is_not_an_image_archive_is_refused_clearly() {
    let (dir, store) = store();
    let path = dir.path().join("junk.tar");
    fs::write(
        &path,
        b"this is not a tar file at all, but long enough to look at........",
    )
    .expect("write");
    let err = store.import_archive(&path).expect_err("junk refused");
    assert!(err.to_string().contains("junk.tar"), "{err}");
}

// ---- layer contents ----

#[test]
fn ownership_modes_mtimes_hardlinks_and_fifos_are_kept() {
    let (dir, store) = store();
    let image = TestImage::new(vec![Layer::new(vec![
        Entry::dir("srv").owner(1000, 1001).mode(0o750),
        Entry::file("srv/tool", "#!/bin/sh\n")
            .owner(1000, 1001)
            .mode(0o4755)
            .mtime(1_600_000_000),
        Entry::hardlink("srv/tool-again", "srv/tool"),
        Entry::fifo("srv/pipe"),
        Entry::symlink("srv/abs", "/etc/passwd"),
        Entry::file("deep/implicit/parent", "x"),
    ])]);
    let archive = oci_archive(dir.path(), "a.tar", "example.org/meta:1", &image);

    let stored = store.import_archive(&archive).expect("import").remove(0);

    let layer = &stored.layers[0];
    let tool = fs::symlink_metadata(layer.join("srv/tool")).expect("tool");
    assert_eq!(
        (tool.uid(), tool.gid(), tool.mode() & 0o7777),
        (1000, 1001, 0o4755)
    );
    assert_eq!(tool.mtime(), 1_600_000_000);
    let srv = fs::symlink_metadata(layer.join("srv")).expect("srv");
    assert_eq!(
        (srv.uid(), srv.mode() & 0o7777, srv.mtime()),
        (1000, 0o750, 1_700_000_000)
    );
    assert_eq!(
        fs::metadata(layer.join("srv/tool-again"))
            .expect("hardlink")
            .ino(),
        tool.ino()
    );
    assert!(fs::symlink_metadata(layer.join("srv/pipe"))
        .expect("fifo")
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::read_link(layer.join("srv/abs")).expect("link"),
        Path::new("/etc/passwd")
    );
    assert!(layer.join("deep/implicit/parent").is_file());
}

#[test]
fn whiteouts_and_opaque_dirs_give_the_right_files_in_a_real_overlay_mount() {
    let (dir, store) = store();
    let lower = Layer::new(vec![
        Entry::dir("etc"),
        Entry::file("etc/keep", "kept"),
        Entry::file("etc/gone", "deleted above"),
        Entry::dir("data"),
        Entry::file("data/old", "hidden by the opaque dir"),
    ]);
    let upper = Layer::new(vec![
        Entry::dir("etc"),
        Entry::whiteout("etc", "gone"),
        Entry::dir("data"),
        Entry::opaque("data"),
        Entry::file("data/new", "visible"),
    ]);
    let archive = oci_archive(
        dir.path(),
        "a.tar",
        "example.org/ovl:1",
        &TestImage::new(vec![lower, upper]),
    );
    let image = store.import_archive(&archive).expect("import").remove(0);

    let whiteout = fs::symlink_metadata(image.layers[1].join("etc/gone")).expect("whiteout");
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    let opaque = rustix::fs::lgetxattr(
        image.layers[1].join("data"),
        "trusted.overlay.opaque",
        &mut [0u8; 4],
    )
    .expect("opaque xattr");
    assert_eq!(opaque, 1);
    assert!(!image.layers[1].join("data/.wh..wh..opq").exists());

    let target =
        crate::runtime::rootfs::mount_overlay(&dir.path().join("c"), &image.layers).expect("mount");
    let seen = (
        fs::read_to_string(target.join("etc/keep")).ok(),
        target.join("etc/gone").exists(),
        target.join("data/old").exists(),
        fs::read_to_string(target.join("data/new")).ok(),
    );
    rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH).expect("unmount");
    assert_eq!(
        seen,
        (Some("kept".into()), false, false, Some("visible".into()))
    );
}

#[test]
fn a_layer_in_memory_unpacks_plain_or_gzipped_and_one_refused_or_too_large_leaves_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let layer = Layer::new(vec![
        Entry::dir("etc"),
        Entry::file("etc/marker", "x"),
        Entry::symlink("etc/link", "marker"),
    ]);
    for (name, bytes) in [("plain", layer.tar()), ("gzip", layer.tar_gz())] {
        let dest = dir.path().join(name);
        assert_eq!(unpack_layer(&bytes, &dest, 1 << 20).expect(name), 1);
        assert_eq!(
            fs::read_to_string(dest.join("etc/link")).expect("marker through the link"),
            "x"
        );
    }

    let escaping = Layer::new(vec![Entry::file("ok", "fine"), Entry::file("../evil", "x")]);
    let err = unpack_layer(&escaping.tar_gz(), &dir.path().join("escaping"), 1 << 20)
        .expect_err("an entry with `..` is refused");
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    let err = unpack_layer(&layer.tar_gz(), &dir.path().join("large"), 1024)
        .expect_err("over the size limit");
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err}");

    let mut names: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["gzip", "plain"]);
}

// ---- sparse files ----

/// The offsets and bytes written into the sparse test file: a few bytes in the middle and at
/// the very end, so that the holes around them must be kept.
fn sparse_writes(size: u64) -> Vec<(u64, &'static [u8])> {
    vec![(100_000, &b"hello"[..]), (size - 5, &b"tail!"[..])]
}

#[test]
fn gnu_sparse_files_of_every_format_unpack_under_their_own_name_with_their_holes() {
    let dir = TempDir::new().expect("temp dir");
    let size = 3 << 20;
    let writes = sparse_writes(size);
    for format in SparseFormat::ALL {
        let tar = gnu_sparse_layer(format, size, &writes);
        assert!(
            tar.len() < 64 * 1024,
            "{format:?}: GNU tar did not store it sparse"
        );
        let dest = dir.path().join(format!("{format:?}"));
        let content =
            unpack_layer(&tar, &dest, 16 << 20).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        let file = dest.join("d/sparse");
        let meta = fs::metadata(&file).unwrap_or_else(|e| panic!("{format:?}: d/sparse: {e}"));
        assert_eq!(meta.len(), size, "{format:?}");
        assert!(
            fs::read(&file).expect("read") == sparse_content(size, &writes),
            "{format:?}: the content differs"
        );
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "{format:?}: {} bytes allocated for {size} bytes of mostly holes",
            meta.blocks() * 512
        );
        assert_eq!(
            fs::read_to_string(dest.join("d/after")).expect("the entry after it"),
            "after the sparse file",
            "{format:?}"
        );
        assert_eq!(content, size + 21, "{format:?}: content bytes");
        let mut names: Vec<String> = fs::read_dir(dest.join("d"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["after", "sparse"], "{format:?}");
    }
}

#[test]
fn a_sparse_file_counts_at_its_full_size_toward_the_layer_limit() {
    let dir = TempDir::new().expect("temp dir");
    // 1 GiB of holes in a tar of a few KiB.
    let size = 1 << 30;
    for format in SparseFormat::ALL {
        let tar = gnu_sparse_layer(format, size, &sparse_writes(size));
        let dest = dir.path().join(format!("{format:?}"));
        let err = unpack_layer(&tar, &dest, 16 << 20).expect_err("over the limit");
        assert!(
            matches!(err, ImageError::BadLayer { .. }) && err.to_string().contains("full size"),
            "{format:?}: {err}"
        );
        assert!(!dest.exists(), "{format:?}: left {}", dest.display());
    }
    assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
}

/// A tar of one regular entry `name` with `data`, after a PAX header of `records`.
fn pax_sparse_tar(records: &[(&str, &str)], name: &str, data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions(records.iter().map(|(k, v)| (*k, v.as_bytes())))
        .expect("pax records");
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_size(data.len() as u64);
    header.set_path(name).expect("a short name");
    header.set_cksum();
    builder.append(&header, data).expect("append");
    builder.into_inner().expect("finish")
}

/// A format 1.0 map (`numbers`, one a line) padded to a block, then `data`.
fn map_1x0(numbers: &[&str], data: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = numbers
        .iter()
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    out.resize(out.len().next_multiple_of(512), 0);
    out.extend_from_slice(data);
    out
}

#[test]
fn hostile_sparse_maps_are_refused_and_leave_nothing() {
    let v01 = |map: &str, size: &str| {
        vec![
            ("GNU.sparse.major", "0"),
            ("GNU.sparse.minor", "1"),
            ("GNU.sparse.name", "f"),
            ("GNU.sparse.size", size),
        ]
        .into_iter()
        .chain([("GNU.sparse.map", map)])
        .map(|(k, v)| (k, v.to_string()))
        .collect::<Vec<_>>()
    };
    let v10 = |name: &str| {
        vec![
            ("GNU.sparse.major", "1".to_string()),
            ("GNU.sparse.minor", "0".to_string()),
            ("GNU.sparse.name", name.to_string()),
            ("GNU.sparse.realsize", "1000".to_string()),
        ]
    };
    let huge_count = format!("{}", u64::MAX / 2);
    /// What a case is, its PAX records, the entry's data, and what the refusal says.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "overlapping segments",
            v01("0,10,5,10", "100"),
            vec![1; 20],
            "overlap",
        ),
        (
            "out of order",
            v01("50,10,0,10", "100"),
            vec![1; 20],
            "overlap",
        ),
        (
            "past the real size",
            v01("95,10", "100"),
            vec![1; 10],
            "past its size",
        ),
        (
            "an offset that overflows",
            v01(&format!("{},10", u64::MAX), "100"),
            vec![1; 10],
            "past its size",
        ),
        (
            "more data than mapped",
            v01("0,10", "100"),
            vec![1; 30],
            "bytes follow it",
        ),
        (
            "less data than mapped",
            v01("0,10,20,10", "100"),
            vec![1; 10],
            "bytes follow it",
        ),
        (
            "an offset without a size",
            v01("0,10,20", "100"),
            vec![1; 10],
            "does not add up",
        ),
        ("not a number", v01("0,1a", "100"), vec![1], "for a number"),
        (
            "a signed number",
            v01("-0,1", "100"),
            vec![1],
            "for a number",
        ),
        (
            "no real size",
            v01("0,1", "")
                .into_iter()
                .filter(|(k, _)| *k != "GNU.sparse.size")
                .collect(),
            vec![1],
            "real size",
        ),
        (
            "an unknown version",
            vec![
                ("GNU.sparse.major", "2".into()),
                ("GNU.sparse.minor", "0".into()),
                ("GNU.sparse.realsize", "1".into()),
            ],
            vec![1],
            "format 2.0",
        ),
        (
            "0.0 numbers out of turn",
            vec![
                ("GNU.sparse.size", "100".into()),
                ("GNU.sparse.numbytes", "1".into()),
            ],
            vec![1],
            "out of turn",
        ),
        (
            "0.0 with another count than announced",
            vec![
                ("GNU.sparse.size", "100".into()),
                ("GNU.sparse.numblocks", "2".into()),
                ("GNU.sparse.offset", "0".into()),
                ("GNU.sparse.numbytes", "1".into()),
            ],
            vec![1],
            "does not add up",
        ),
        (
            "a 1.0 map of absurdly many segments",
            v10("f"),
            map_1x0(&[&huge_count], b""),
            "segments",
        ),
        (
            "a 1.0 map past its data",
            v10("f"),
            b"3\n0\n1\n".to_vec(),
            "runs past",
        ),
        (
            "a 1.0 map that is not numbers",
            v10("f"),
            map_1x0(&["1", "0", "x"], b"x"),
            "one number a line",
        ),
        (
            "a 1.0 number too large",
            v10("f"),
            map_1x0(&["1", &"9".repeat(20), "1"], b"x"),
            "too large",
        ),
        (
            "a 1.0 number of too many digits",
            v10("f"),
            map_1x0(&["1", &format!("{}1", "0".repeat(20)), "1"], b"x"),
            "one number a line",
        ),
        (
            "a real name that escapes",
            v10("../evil"),
            map_1x0(&["1", "0", "1"], b"x"),
            "`..`",
        ),
        (
            "an absolute real name",
            v10("/tmp/shoal-sparse-evil"),
            map_1x0(&["1", "0", "1"], b"x"),
            "absolute",
        ),
    ];
    let dir = TempDir::new().expect("temp dir");
    for (i, (what, records, data, says)) in cases.into_iter().enumerate() {
        let records: Vec<(&str, &str)> = records.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let tar = pax_sparse_tar(&records, "GNUSparseFile.1/f", &data);
        let dest = dir.path().join(format!("case-{i}"));
        let err = unpack_layer(&tar, &dest, 1 << 20).expect_err(what);
        assert!(
            matches!(
                err,
                ImageError::UnsafeEntry { .. } | ImageError::BadLayer { .. }
            ) && err.to_string().contains(says),
            "{what}: {err}"
        );
        assert!(!dest.exists(), "{what}: left {}", dest.display());
    }
    assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
    assert!(find_named(Path::new("/tmp"), "shoal-sparse-evil").is_empty());
}

#[test]
fn a_fully_sparse_file_and_an_empty_map_unpack() {
    let dir = TempDir::new().expect("temp dir");
    for (what, records, data) in [
        (
            "1.0, no segment",
            vec![
                ("GNU.sparse.major", "1"),
                ("GNU.sparse.minor", "0"),
                ("GNU.sparse.name", "holes"),
                ("GNU.sparse.realsize", "4096"),
            ],
            map_1x0(&["0"], b""),
        ),
        (
            "0.1, one empty segment at the end",
            vec![
                ("GNU.sparse.major", "0"),
                ("GNU.sparse.minor", "1"),
                ("GNU.sparse.name", "holes"),
                ("GNU.sparse.size", "4096"),
                ("GNU.sparse.map", "4096,0"),
            ],
            Vec::new(),
        ),
    ] {
        let tar = pax_sparse_tar(&records, "GNUSparseFile.1/holes", &data);
        let dest = dir.path().join(what.replace([' ', ','], "-"));
        assert_eq!(
            unpack_layer(&tar, &dest, 1 << 20).expect(what),
            4096,
            "{what}"
        );
        assert_eq!(
            fs::read(dest.join("holes")).expect(what),
            vec![0; 4096],
            "{what}"
        );
        assert!(!dest.join("GNUSparseFile.1").exists(), "{what}");
    }
}

/// `value` as a NUL-terminated octal tar field.
fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}", width = field.len() - 1);
    field[..text.len()].copy_from_slice(text.as_bytes());
    field[text.len()..].fill(0);
}

/// An old GNU sparse entry whose map goes on for `extensions` extension headers of 21 empty
/// segments each, all at offset 0 (the tar reader accepts that): nothing to unpack, but a map
/// the tar reader holds whole, and that compresses to next to nothing.
fn sparse_map_chain(extensions: usize) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_path("chain").expect("name");
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_size(0);
    let empty = |s: &mut tar::GnuSparseHeader| {
        octal(&mut s.offset, 0);
        octal(&mut s.numbytes, 0);
    };
    let gnu = header.as_gnu_mut().expect("a GNU header");
    gnu.sparse.iter_mut().for_each(empty);
    gnu.isextended[0] = u8::from(extensions > 0);
    octal(&mut gnu.realsize, 0);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    for i in 0..extensions {
        let mut ext = tar::GnuExtSparseHeader::new();
        ext.sparse_mut().iter_mut().for_each(empty);
        ext.isextended[0] = u8::from(i + 1 < extensions);
        tar.extend_from_slice(ext.as_bytes());
    }
    tar.extend_from_slice(&[0; 1024]);
    tar
}

#[test]
fn a_layer_whose_headers_would_fill_memory_is_refused() {
    let dir = TempDir::new().expect("temp dir");
    // A short map is fine.
    let dest = dir.path().join("short");
    unpack_layer(&sparse_map_chain(3), &dest, 1 << 20).expect("a short map");
    assert_eq!(fs::metadata(dest.join("chain")).expect("chain").len(), 0);

    let huge = 5 << 20;
    let mut long_name = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(huge as u64);
    header.set_cksum();
    long_name
        .append(&header, &vec![b'a'; huge][..])
        .expect("append");
    let cases = [
        (
            "an old GNU sparse map of 10000 extensions",
            sparse_map_chain(10_000),
        ),
        (
            "a 5 MiB PAX record",
            pax_sparse_tar(&[("comment", &"x".repeat(huge))], "f", b""),
        ),
        (
            "a 5 MiB GNU long name",
            long_name.into_inner().expect("tar"),
        ),
    ];
    for (what, tar) in cases {
        let blob = shoal_tests::images::gzip(&tar);
        assert!(
            blob.len() * 32 < tar.len(),
            "{what}: {} bytes gzip'd, of {}",
            blob.len(),
            tar.len()
        );
        let dest = dir.path().join("refused");
        let err = unpack_layer(&blob, &dest, 64 << 20).expect_err(what);
        assert!(
            err.to_string().contains("bytes of headers"),
            "{what}: {err}"
        );
        assert!(!dest.exists(), "{what}");
    }
}

// ---- hostile layers ----

/// Imports a good image, then an archive with `entries` as its layer; checks that the second
/// is refused naming `entry`, leaves nothing half-unpacked, and the first image is intact.
fn refuse_layer(entries: Vec<Entry>, entry: &str) -> (TempDir, ImageError) {
    let (dir, store) = store();
    let good = oci_archive(
        dir.path(),
        "good.tar",
        "example.org/good:1",
        &small_image("good"),
    );
    let good = store.import_archive(&good).expect("good import").remove(0);
    let layers_before = fs::read_dir(store.root().join("l")).expect("list").count();
    let bad = oci_archive(
        dir.path(),
        "bad.tar",
        "example.org/bad:1",
        &TestImage::new(vec![Layer::new(entries)]),
    );

    let err = store
        .import_archive(&bad)
        .expect_err("malicious layer refused");

    let message = err.to_string();
    assert!(
        message.contains(entry),
        "error should name `{entry}`: {message}"
    );
    assert!(
        leftovers(&store).is_empty(),
        "half-unpacked layer left: {:?}",
        leftovers(&store)
    );
    assert_eq!(
        fs::read_dir(store.root().join("l")).expect("list").count(),
        layers_before
    );
    assert!(store.resolve(&reference("example.org/bad:1")).is_none());
    let still = store
        .resolve(&reference("example.org/good:1"))
        .expect("good image kept");
    assert_eq!(still, good);
    assert_eq!(
        fs::read_to_string(still.layers[0].join("etc/marker")).expect("marker"),
        "good"
    );
    assert!(
        find_named(dir.path(), "evil").is_empty(),
        "{:?}",
        find_named(dir.path(), "evil")
    );
    (dir, err)
}

#[test]
fn a_layer_that_climbs_out_with_dotdot_is_refused_and_nothing_is_written() {
    let (_dir, err) = refuse_layer(
        vec![
            Entry::file("ok", "fine"),
            Entry::file("../../../evil", "escaped"),
        ],
        "../../../evil",
    );
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    assert!(err.to_string().contains("`..`"), "{err}");
}

#[test]
fn a_layer_with_an_absolute_path_is_refused_and_nothing_is_written() {
    let outside = std::env::temp_dir().join(format!("shoal-abs-{}", std::process::id()));
    let path = format!("{}/evil", outside.display());
    let (_dir, err) = refuse_layer(vec![Entry::file(&path, "escaped")], &path);
    assert!(err.to_string().contains("absolute"), "{err}");
    assert!(!outside.exists());
}

#[test]
fn a_hardlink_that_escapes_the_layer_is_refused() {
    let (_dir, err) = refuse_layer(
        vec![Entry::hardlink("evil", "../../../../etc/passwd")],
        "evil",
    );
    assert!(err.to_string().contains("outside the layer"), "{err}");
}

#[test]
fn a_hardlink_to_a_file_missing_from_the_layer_is_refused() {
    let (_dir, err) = refuse_layer(vec![Entry::hardlink("evil", "etc/shadow")], "evil");
    assert!(
        err.to_string()
            .contains("not an earlier file of this layer"),
        "{err}"
    );
}

#[test]
fn writing_through_a_symlink_in_a_layer_is_refused_and_the_target_is_untouched() {
    let outside = TempDir::new().expect("outside dir");
    let target = outside.path().to_string_lossy().into_owned();
    let (_dir, err) = refuse_layer(
        vec![
            Entry::symlink("link", &target),
            Entry::file("link/evil", "written through"),
        ],
        "link/evil",
    );
    assert!(
        err.to_string().contains("through the symlink `link`"),
        "{err}"
    );
    assert!(!outside.path().join("evil").exists());
}

#[test]
fn a_relative_symlink_that_climbs_above_the_layer_is_refused() {
    let (_dir, err) = refuse_layer(
        vec![Entry::dir("a"), Entry::symlink("a/evil", "../../../../tmp")],
        "a/evil",
    );
    assert!(
        err.to_string().contains("points outside the layer"),
        "{err}"
    );
}

#[test]
fn a_hardlink_that_moves_a_relative_symlink_up_to_where_it_climbs_out_is_refused() {
    // `a/b/up -> ../../etc` stays inside the layer; the same inode at the root would not.
    let (_dir, err) = refuse_layer(
        vec![
            Entry::dir("a"),
            Entry::dir("a/b"),
            Entry::symlink("a/b/up", "../../etc"),
            Entry::hardlink("evil", "a/b/up"),
        ],
        "evil",
    );
    assert!(
        err.to_string().contains("points outside the layer"),
        "{err}"
    );
}

#[test]
fn a_device_node_in_a_layer_is_refused() {
    let (_dir, err) = refuse_layer(
        vec![Entry::dir("dev"), Entry::char_device("dev/evil", 1, 3)],
        "dev/evil",
    );
    assert!(err.to_string().contains("device"), "{err}");
    let (_dir, err) = refuse_layer(vec![Entry::block_device("evil", 8, 0)], "evil");
    assert!(err.to_string().contains("device"), "{err}");
}

#[test]
fn a_layer_whose_content_does_not_match_its_diff_id_is_refused() {
    let (dir, store) = store();
    let image = small_image("x");
    let layout_dir = dir.path().join("layout");
    let mut layout = OciLayout::create(&layout_dir);
    let descriptor = layout.add_image(&image);
    layout.tag("example.org/lie:1", &descriptor);
    // Rewrite the config's diff id to something else, and the manifest to point at it.
    let manifest_path = layout_dir
        .join("blobs/sha256")
        .join(&descriptor.digest()["sha256:".len()..]);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).expect("manifest")).expect("json");
    let mut config: serde_json::Value = serde_json::from_slice(&image.config()).expect("json");
    config["rootfs"]["diff_ids"][0] = serde_json::json!(digest(b"another layer"));
    let config_bytes = serde_json::to_vec(&config).expect("json");
    manifest["config"] = layout
        .blob("application/vnd.oci.image.config.v1+json", &config_bytes)
        .0;
    let manifest = layout.blob(
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    let mut fresh = OciLayout::create(&dir.path().join("unused"));
    fresh.tag("x", &manifest);
    fs::copy(
        dir.path().join("unused/index.json"),
        layout_dir.join("index.json"),
    )
    .expect("copy index");
    let archive = dir.path().join("lie.tar");
    layout.to_tar(&archive);

    let err = store
        .import_archive(&archive)
        .expect_err("diff id mismatch");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(leftovers(&store).is_empty());
    assert_eq!(
        fs::read_dir(store.root().join("l")).expect("list").count(),
        0
    );
}

// ---- registry ----

#[test]
fn an_image_pulled_by_tag_from_a_local_registry_resolves_offline_afterwards() {
    let (dir, store) = store();
    let mut layout = OciLayout::create(&dir.path().join("layout"));
    let descriptor = layout.add_image(&TestImage::new(vec![busybox_layer()]));
    layout.tag("test", &descriptor);
    let registry = Registry::start();
    skopeo_copy(&layout.dir, "test", &registry.reference("busybox:test"));
    let wanted = reference(&registry.reference("busybox:test"));

    let pulled = store
        .pull(
            &wanted,
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::Always,
        )
        .expect("pull by tag");
    drop(registry);

    assert_eq!(pulled.digest.as_str(), descriptor.digest());
    assert!(pulled.layers[0].join("bin/busybox").is_file());
    assert_eq!(store.resolve(&wanted), Some(pulled.clone()));
    let again = store
        .pull(
            &wanted,
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::IfNotPresent,
        )
        .expect("present locally, no registry needed");
    assert_eq!(again.digest, pulled.digest);
}

#[test]
fn an_image_pulled_by_digest_is_verified_and_resolves_by_that_digest() {
    let (dir, store) = store();
    let mut layout = OciLayout::create(&dir.path().join("layout"));
    let descriptor = layout.add_image(&small_image("pinned"));
    layout.tag("v1", &descriptor);
    let registry = Registry::start();
    skopeo_copy(&layout.dir, "v1", &registry.reference("app:v1"));
    let pinned = reference(&registry.reference(&format!("app@{}", descriptor.digest())));

    let pulled = store
        .pull(
            &pinned,
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::IfNotPresent,
        )
        .expect("pull by digest");

    assert_eq!(pulled.digest.as_str(), descriptor.digest());
    assert_eq!(
        store.resolve(&pinned).map(|i| i.digest),
        Some(pulled.digest)
    );
    assert!(
        store
            .resolve(&reference(&registry.reference("app:v1")))
            .is_none(),
        "only the digest was pulled"
    );
}

/// A layout with one image per `(architecture, variant)`, each with `/arch` naming it, under
/// one index tagged `multi`.
fn multi_arch_layout(dir: &Path, platforms: &[(&str, Option<&str>)]) -> OciLayout {
    let mut layout = OciLayout::create(dir);
    let manifests: Vec<_> = platforms
        .iter()
        .map(|(arch, variant)| {
            let name = format!(
                "{arch}{}",
                variant.map(|v| format!("/{v}")).unwrap_or_default()
            );
            let image = TestImage::new(vec![Layer::new(vec![Entry::file("arch", name)])])
                .platform(arch, *variant);
            layout.add_image(&image)
        })
        .collect();
    let index = layout.add_index(&manifests);
    layout.tag("multi", &index);
    layout
}

#[test]
fn a_multi_arch_index_yields_the_image_for_the_nodes_architecture() {
    let (dir, store) = store();
    let layout = multi_arch_layout(
        &dir.path().join("layout"),
        &[("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))],
    );
    let registry = Registry::start();
    skopeo_copy(&layout.dir, "multi", &registry.reference("multi:1"));
    let wanted = reference(&registry.reference("multi:1"));

    for (node_arch, expected) in [
        ("armv7", "arm/v7"),
        ("arm64", "arm64/v8"),
        ("amd64", "amd64"),
    ] {
        let platform = Platform::for_node_arch(node_arch).expect("known arch");
        let image = store
            .pull(
                &wanted,
                &platform,
                &RegistryAuth::Anonymous,
                &PullPolicy::Always,
            )
            .expect("pull from index");
        assert_eq!(
            fs::read_to_string(image.layers[0].join("arch")).expect("arch file"),
            expected
        );
    }
}

#[test]
fn a_multi_arch_index_without_the_nodes_architecture_is_refused_with_the_available_platforms() {
    let (dir, store) = store();
    let layout = multi_arch_layout(
        &dir.path().join("layout"),
        &[("amd64", None), ("arm64", None)],
    );
    let registry = Registry::start();
    skopeo_copy(&layout.dir, "multi", &registry.reference("multi:1"));
    let wanted = reference(&registry.reference("multi:1"));

    let err = store
        .pull(
            &wanted,
            &Platform::for_node_arch("armv7").expect("known"),
            &RegistryAuth::Anonymous,
            &PullPolicy::Always,
        )
        .expect_err("no armv7 image");

    assert_eq!(
        err.to_string(),
        format!("no image for linux/arm/v7 in {wanted} (available: linux/amd64, linux/arm64): push one for linux/arm/v7 to it, or use an image built for this node")
    );
    assert!(store.list().is_empty());
}

#[test]
fn a_registry_with_a_password_is_pulled_from_with_basic_auth_and_refuses_anonymous_pulls() {
    let (dir, store) = store();
    let mut layout = OciLayout::create(&dir.path().join("layout"));
    let descriptor = layout.add_image(&small_image("secret"));
    layout.tag("v1", &descriptor);
    let registry = Registry::start_with_password("fleet", "s3cret");
    skopeo_copy_as(
        &layout.dir,
        "v1",
        &registry.reference("private:v1"),
        Some(("fleet", "s3cret")),
    );
    let wanted = reference(&registry.reference("private:v1"));

    let err = store
        .pull(
            &wanted,
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::Always,
        )
        .expect_err("anonymous refused");
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("credentials"), "{err}");
    let wrong = RegistryAuth::Basic {
        username: "fleet".into(),
        password: "wrong".into(),
    };
    assert!(store
        .pull(&wanted, &host(), &wrong, &PullPolicy::Always)
        .is_err());

    let auth = RegistryAuth::Basic {
        username: "fleet".into(),
        password: "s3cret".into(),
    };
    let image = store
        .pull(&wanted, &host(), &auth, &PullPolicy::Always)
        .expect("pull with password");
    assert_eq!(image.digest.as_str(), descriptor.digest());
}

/// What the fake registry answers: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);
/// The requests a fake registry saw: path and lower-case headers.
type Seen = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// A tiny HTTP/1.0 server on 127.0.0.1 answering each request with `handler(path, headers)`.
/// Returns its address and the requests it saw.
fn fake_registry(
    handler: impl Fn(&str, &BTreeMap<String, String>) -> Answer + Send + 'static,
) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = BTreeMap::new();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = header.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let (status, extra, body) = handler(&path, &headers);
            log.lock().expect("log").push((path, headers));
            let mut response = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in extra {
                response.push_str(&format!("{k}: {v}\r\n"));
            }
            response.push_str("\r\n");
            let _ = stream.write_all(response.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (addr, seen)
}

/// Serves the blobs of `layout` by digest and `tag` as `manifest`.
fn serve_blob(layout: &Path, path: &str, tag: &str, manifest: &str) -> Answer {
    let blob = |digest: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
    };
    let not_found = (404, vec![], b"{}".to_vec());
    if let Some(reference) = path.split("/manifests/").nth(1) {
        let digest = if reference == tag {
            manifest
        } else {
            reference
        };
        return match blob(digest) {
            Ok(bytes) => (
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                bytes,
            ),
            Err(_) => not_found,
        };
    }
    match path.split("/blobs/").nth(1).map(blob) {
        Some(Ok(bytes)) => (200, vec![], bytes),
        _ => not_found,
    }
}

#[test]
fn token_auth_gets_a_bearer_token_from_the_realm_with_the_credentials() {
    let (dir, store) = store();
    let mut layout = OciLayout::create(&dir.path().join("layout"));
    let descriptor = layout.add_image(&small_image("token"));
    layout.tag("v1", &descriptor);
    let layout_dir = layout.dir.clone();
    let manifest = descriptor.digest();
    let realm = Arc::new(Mutex::new(String::new()));
    let realm_in = realm.clone();
    let (addr, seen) = fake_registry(move |path, headers| {
        if path.starts_with("/token") {
            return (200, vec![], br#"{"token":"t0ken"}"#.to_vec());
        }
        if headers.get("authorization").map(String::as_str) != Some("Bearer t0ken") {
            let challenge = format!(
                r#"Bearer realm="{}",service="fake",scope="repository:app:pull""#,
                realm_in.lock().expect("realm")
            );
            return (401, vec![("WWW-Authenticate".into(), challenge)], vec![]);
        }
        serve_blob(&layout_dir, path, "v1", &manifest)
    });
    *realm.lock().expect("realm") = format!("http://{addr}/token");
    let auth = RegistryAuth::Basic {
        username: "u".into(),
        password: "p".into(),
    };

    let image = store
        .pull(
            &reference(&format!("{addr}/app:v1")),
            &host(),
            &auth,
            &PullPolicy::Always,
        )
        .expect("pull with token");

    assert_eq!(image.digest.as_str(), descriptor.digest());
    let seen = seen.lock().expect("seen");
    let token_request = seen
        .iter()
        .find(|(p, _)| p.starts_with("/token"))
        .expect("token requested");
    assert!(
        token_request.0.contains("scope=repository%3Aapp%3Apull"),
        "{}",
        token_request.0
    );
    assert!(
        token_request.0.contains("service=fake"),
        "{}",
        token_request.0
    );
    assert_eq!(
        token_request.1.get("authorization").map(String::as_str),
        Some("Basic dTpw")
    );
}

#[test]
fn a_manifest_that_does_not_match_the_registrys_announced_digest_is_refused() {
    let (dir, store) = store();
    let mut layout = OciLayout::create(&dir.path().join("layout"));
    let descriptor = layout.add_image(&small_image("x"));
    layout.tag("v1", &descriptor);
    let layout_dir = layout.dir.clone();
    let manifest = descriptor.digest();
    let (addr, _) = fake_registry(move |path, _| {
        let (status, mut headers, body) = serve_blob(&layout_dir, path, "v1", &manifest);
        headers.push(("Docker-Content-Digest".into(), digest(b"something else")));
        (status, headers, body)
    });

    let err = store
        .pull(
            &reference(&format!("{addr}/app:v1")),
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::Always,
        )
        .expect_err("digest mismatch");

    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
    assert!(store.list().is_empty());
}

#[test]
fn a_blob_whose_content_does_not_match_its_digest_is_refused_and_never_stored() {
    let (dir, store) = store();
    let mut layout = OciLayout::create(&dir.path().join("layout"));
    let descriptor = layout.add_image(&small_image("x"));
    layout.tag("v1", &descriptor);
    let layout_dir = layout.dir.clone();
    let manifest = descriptor.digest();
    let (addr, _) = fake_registry(move |path, _| {
        let (status, headers, mut body) = serve_blob(&layout_dir, path, "v1", &manifest);
        if path.contains("/blobs/") {
            // Same size, different content.
            for b in body.iter_mut().take(8) {
                *b ^= 0xff;
            }
        }
        (status, headers, body)
    });

    let err = store
        .pull(
            &reference(&format!("{addr}/app:v1")),
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::Always,
        )
        .expect_err("corrupt blob");

    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .expect("list")
            .count(),
        0
    );
}

#[test]
fn an_oversized_manifest_is_refused_before_it_is_parsed() {
    let (_dir, store) = store();
    let (addr, _) = fake_registry(|_, _| {
        let mut body = b"{\"manifests\":[".to_vec();
        body.resize(5 * 1024 * 1024, b' ');
        (
            200,
            vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.index.v1+json".into(),
            )],
            body,
        )
    });

    let err = store
        .pull(
            &reference(&format!("{addr}/big:v1")),
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::Always,
        )
        .expect_err("too large");

    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("4194304"), "{err}");
}

#[test]
fn a_registry_that_is_not_listed_as_insecure_is_only_spoken_to_over_https() {
    let (_dir, store) = store();
    let (addr, seen) = fake_registry(|_, _| (200, vec![], b"{}".to_vec()));
    let port = addr
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("port");
    // `.invalid` never resolves; the point is that the URL tried is https.
    let err = store
        .pull(
            &reference(&format!("127.0.0.2.nip.invalid:{port}/app:v1")),
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::Always,
        )
        .expect_err("no https there");
    assert!(err.to_string().contains("https://"), "{err}");
    assert!(seen.lock().expect("seen").is_empty());
}

#[test]
fn pull_policy_never_uses_only_the_local_store() {
    let (_dir, store) = store();
    let err = store
        .pull(
            &reference("127.0.0.1:9/none:v1"),
            &host(),
            &RegistryAuth::Anonymous,
            &PullPolicy::Never,
        )
        .expect_err("not stored");
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
}

// ---- garbage collection and crashes ----

#[test]
fn a_start_rewrites_the_image_record_only_when_its_last_use_is_an_hour_old() {
    let hour = store::USE_MARK_INTERVAL_MS;
    for (stored, now, due) in [
        (1_000, 1_000, false),
        (1_000, 1_000 + hour - 1, false),
        (1_000, 1_000 + hour, true),
        (0, 1_700_000_000_000, true),
        // The clock went back (a device that rebooted into 1970): keep the newer time.
        (1_700_000_000_000, 86_400_000, false),
    ] {
        assert_eq!(
            store::use_mark_due(stored, now),
            due,
            "stored {stored}, now {now}"
        );
    }
}

#[test]
fn a_crash_looping_container_does_not_rewrite_its_image_record_on_every_start() {
    let (dir, store) = store();
    let archive = oci_archive(dir.path(), "a.tar", "example.org/a:1", &small_image("a"));
    let image = store.import_archive(&archive).expect("import").remove(0);
    let record = store
        .root()
        .join("images")
        .join(format!("{}.json", image.digest.hex()));
    let identity = |path: &Path| {
        let meta = fs::metadata(path).expect("the image record");
        (
            meta.ino(),
            meta.modified().expect("mtime"),
            fs::read(path).expect("read"),
        )
    };
    let imported = identity(&record);

    // A hundred starts right after the import: the record stays as it was.
    for _ in 0..100 {
        store.mark_used(&image.digest).expect("mark used");
    }
    assert!(identity(&record) == imported, "the record was rewritten");

    // Last used two hours ago: the next start records it, once.
    let mut json: serde_json::Value = serde_json::from_slice(&imported.2).expect("a JSON record");
    let two_hours_ago =
        json["last_used"].as_u64().expect("last_used") - 2 * store::USE_MARK_INTERVAL_MS;
    json["last_used"] = two_hours_ago.into();
    fs::write(&record, serde_json::to_vec(&json).expect("serialise")).expect("write");
    let aged = identity(&record);
    store.mark_used(&image.digest).expect("mark used");
    let marked = identity(&record);
    assert!(marked != aged, "an hour-old last use was not refreshed");
    let json: serde_json::Value = serde_json::from_slice(&marked.2).expect("a JSON record");
    assert!(json["last_used"].as_u64().expect("last_used") > two_hours_ago);
    store.mark_used(&image.digest).expect("mark used");
    assert!(identity(&record) == marked, "refreshed twice");
}

#[test]
fn prune_under_a_budget_removes_least_recently_used_images_but_never_those_in_use() {
    let (dir, store) = store();
    let mut images = Vec::new();
    for name in ["a", "b", "c"] {
        let archive = oci_archive(
            dir.path(),
            &format!("{name}.tar"),
            &format!("example.org/{name}:1"),
            &small_image(name),
        );
        images.push(store.import_archive(&archive).expect("import").remove(0));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let [a, b, c] = [&images[0], &images[1], &images[2]];
    let nothing = store
        .prune(&[], u64::MAX)
        .expect("prune with room to spare");
    assert!(
        nothing.removed_images.is_empty() && nothing.removed_blobs == 0,
        "{nothing:?}"
    );

    let report = store
        .prune(std::slice::from_ref(&a.digest), nothing.used_bytes - 1)
        .expect("prune");

    assert_eq!(report.removed_images, ["example.org/b:1"]);
    assert!(!b.layers[0].exists());
    assert!(store.resolve(&reference("example.org/a:1")).is_some());
    assert!(store.resolve(&reference("example.org/c:1")).is_some());
    assert!(
        !report.still_over_budget && report.freed_bytes > 0,
        "{report:?}"
    );

    let report = store
        .prune(std::slice::from_ref(&a.digest), 0)
        .expect("prune to nothing");
    assert_eq!(report.removed_images, ["example.org/c:1"]);
    assert!(!c.layers[0].exists());
    assert!(report.still_over_budget);
    assert!(a.layers[0].join("etc/marker").is_file());
}

#[test]
fn a_removed_tag_of_an_image_in_use_keeps_its_data_until_prune_finds_it_unused() {
    let (dir, store) = store();
    let archive = oci_archive(dir.path(), "a.tar", "example.org/a:1", &small_image("a"));
    let image = store.import_archive(&archive).expect("import").remove(0);
    let removed = store
        .remove(
            &reference("example.org/a:1"),
            std::slice::from_ref(&image.digest),
        )
        .expect("untag");
    assert_eq!(removed.digest, image.digest);
    assert_eq!(removed.data_kept, Some(DataKept::InUse));
    assert!(store.resolve(&reference("example.org/a:1")).is_none());
    assert!(image.layers[0].exists());

    let kept = store
        .prune(std::slice::from_ref(&image.digest), u64::MAX)
        .expect("prune");
    assert!(
        kept.removed_images.is_empty() && image.layers[0].exists(),
        "{kept:?}"
    );
    let pruned = store.prune(&[], u64::MAX).expect("prune");
    assert_eq!(pruned.removed_images, [image.digest.to_string()]);
    assert!(!image.layers[0].exists());
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .expect("list")
            .count(),
        0
    );
}

#[test]
fn pruning_every_unused_image_removes_named_ones_too_but_never_those_in_use() {
    let (dir, store) = store();
    let mut images = Vec::new();
    for name in ["a", "b"] {
        let archive = oci_archive(
            dir.path(),
            &format!("{name}.tar"),
            &format!("example.org/{name}:1"),
            &small_image(name),
        );
        images.push(store.import_archive(&archive).expect("import").remove(0));
    }
    let report = store
        .prune_unused(std::slice::from_ref(&images[0].digest))
        .expect("prune");
    assert_eq!(report.removed_images, ["example.org/b:1"]);
    assert!(
        !report.still_over_budget && report.freed_bytes > 0,
        "{report:?}"
    );
    assert!(store.resolve(&reference("example.org/a:1")).is_some());
    assert!(!images[1].layers[0].exists());
}

#[test]
fn removing_the_last_name_of_an_unused_image_frees_its_data_at_once() {
    let (dir, store) = store();
    let layout_dir = dir.path().join("two-names.layout");
    let mut layout = OciLayout::create(&layout_dir);
    let descriptor = layout.add_image(&small_image("a"));
    layout.tag("example.org/a:1", &descriptor);
    layout.tag("example.org/a:latest", &descriptor);
    let archive = dir.path().join("two-names.tar");
    layout.to_tar(&archive);
    let other = oci_archive(dir.path(), "b.tar", "example.org/b:1", &small_image("b"));
    let image = store.import_archive(&archive).expect("import").remove(0);
    let b = store.import_archive(&other).expect("import").remove(0);

    let first = store
        .remove(&reference("example.org/a:1"), &[])
        .expect("remove one name");
    assert_eq!(
        first.data_kept,
        Some(DataKept::NamedBy("example.org/a:latest".into()))
    );
    assert!(image.layers[0].exists());
    let last = store
        .remove(&reference("example.org/a:latest"), &[])
        .expect("remove the last name");
    assert_eq!(last.data_kept, None);
    assert!(last.freed_bytes > 0, "{last:?}");
    assert!(!image.layers[0].exists(), "its layer went with it");
    assert!(store.resolve(&reference("example.org/a:latest")).is_none());
    assert!(b.layers[0].exists(), "other images keep theirs");
    assert_eq!(store.list().len(), 1);
    let err = store
        .remove(&reference("example.org/a:latest"), &[])
        .expect_err("gone");
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
}

#[test]
fn a_name_left_pointing_at_a_deleted_image_reads_as_no_name_and_goes_at_the_next_write() {
    let (dir, store) = store();
    let a = oci_archive(dir.path(), "a.tar", "example.org/a:1", &small_image("a"));
    let image = store.import_archive(&a).expect("import").remove(0);
    // What a crash between deleting the image and rewriting the names leaves.
    fs::remove_file(
        store
            .root()
            .join("images")
            .join(format!("{}.json", image.digest.hex())),
    )
    .expect("delete the record");

    assert!(store.resolve(&reference("example.org/a:1")).is_none());
    assert!(store.list().is_empty());
    let b = oci_archive(dir.path(), "b.tar", "example.org/b:1", &small_image("b"));
    store.import_archive(&b).expect("import another");
    let refs = fs::read_to_string(store.root().join("refs.json")).expect("refs");
    assert!(!refs.contains("example.org/a:1"), "{refs}");
    // The same image imported again does not bring the old name back.
    let again = oci_archive(
        dir.path(),
        "again.tar",
        "example.org/again:1",
        &small_image("a"),
    );
    store.import_archive(&again).expect("import the same image");
    assert!(store.resolve(&reference("example.org/a:1")).is_none());
}

#[test]
fn on_a_full_disk_rm_and_prune_free_space_instead_of_needing_it() {
    let disk = crate::testing::SmallDisk::mount(8);
    let dir = TempDir::new().expect("temp dir");
    let store = ImageStore::open(&disk.path().join("images")).expect("open store");
    let mut images = Vec::new();
    for name in ["a", "b", "c"] {
        let archive = oci_archive(
            dir.path(),
            &format!("{name}.tar"),
            &format!("example.org/{name}:1"),
            &small_image(name),
        );
        images.push(store.import_archive(&archive).expect("import").remove(0));
    }
    let shared = TestImage::new(vec![Layer::new(vec![Entry::file("x", vec![1u8; 100])])]);
    let layout_dir = dir.path().join("d.layout");
    let mut layout = OciLayout::create(&layout_dir);
    let descriptor = layout.add_image(&shared);
    layout.tag("example.org/d:1", &descriptor);
    layout.tag("example.org/d:2", &descriptor);
    layout.to_tar(&dir.path().join("d.tar"));
    store
        .import_archive(&dir.path().join("d.tar"))
        .expect("import d");
    let free = || crate::state::disk::free_bytes(disk.path()).expect("statvfs");
    disk.fill();

    let removed = store
        .remove(&reference("example.org/a:1"), &[])
        .expect("rm works on a full disk");
    assert!(removed.freed_bytes > 0 && free() > 0, "{removed:?}");
    assert!(!images[0].layers[0].exists());
    let refs = fs::read_to_string(store.root().join("refs.json")).expect("refs");
    assert!(
        !refs.contains("example.org/a:1"),
        "the names were rewritten: {refs}"
    );

    disk.fill();
    // Removing one of two names frees nothing and needs room: refused, nothing changes.
    let err = store
        .remove(&reference("example.org/d:1"), &[])
        .expect_err("needs room");
    assert!(err.is_disk_full(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot remove example.org/d:1: the disk is full; ")
            && message.contains("example.org/d:2 names the same image"),
        "{message}"
    );
    assert!(store.resolve(&reference("example.org/d:1")).is_some());

    let report = store
        .prune(std::slice::from_ref(&images[2].digest), 0)
        .expect("prune works on a full disk");
    assert!(report.freed_bytes > 0 && free() > 0, "{report:?}");
    assert!(store.resolve(&reference("example.org/b:1")).is_none());
    assert!(
        store.resolve(&reference("example.org/c:1")).is_some(),
        "in use"
    );
    assert!(leftovers(&store).is_empty(), "{:?}", leftovers(&store));
}

#[test]
fn a_store_reopened_after_a_crash_mid_pull_removes_temp_files_and_partial_layers() {
    let (dir, store) = store();
    let archive = oci_archive(dir.path(), "a.tar", "example.org/a:1", &small_image("a"));
    let image = store.import_archive(&archive).expect("import").remove(0);
    let root = store.root().to_path_buf();
    drop(store);
    fs::write(root.join("blobs/sha256/.tmp-999-1"), b"half a download").expect("temp blob");
    fs::create_dir_all(root.join("l/0123456789abcdef.partial-999-2/usr")).expect("partial layer");
    fs::write(root.join(".tmp-999-3"), b"half a refs file").expect("temp refs");

    let store = ImageStore::open(&root).expect("reopen");

    assert!(leftovers(&store).is_empty(), "{:?}", leftovers(&store));
    assert_eq!(store.resolve(&reference("example.org/a:1")), Some(image));
}

#[test]
fn unknown_node_architectures_are_refused_and_armv7_maps_to_arm_v7() {
    let armv7 = Platform::for_node_arch("armv7").expect("armv7");
    assert_eq!(armv7.to_string(), "linux/arm/v7");
    assert_eq!(
        Platform::for_node_arch("aarch64")
            .expect("arm64")
            .to_string(),
        "linux/arm64"
    );
    assert!(Platform::for_node_arch("sparc").is_err());
}

// ---- decoding hostile bytes never panics ----

mod never_panics {
    use proptest::prelude::*;

    use super::super::document::{parse_config, parse_document, ImageDigest};
    use super::super::layer::{unpack, Blob, LayerSource};
    use super::*;

    fn unpack_bytes(bytes: &[u8]) {
        let dir = TempDir::new().expect("temp dir");
        let blob = dir.path().join("blob");
        fs::write(&blob, bytes).expect("write blob");
        let diff_id = ImageDigest::of(bytes);
        let source = LayerSource {
            name: "fuzz".into(),
            blob: Blob::File(&blob),
            diff_id: &diff_id,
            max_bytes: 1 << 20,
        };
        let dest = dir.path().join("l").join("layer");
        fs::create_dir_all(dir.path().join("l")).expect("layer root");
        if unpack(&source, &dest, "1").is_err() {
            assert!(!dest.exists(), "a refused layer must leave nothing");
        }
        let names: Vec<_> = fs::read_dir(dir.path().join("l"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(names.iter().all(|n| n == "layer"), "{names:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_bytes_as_a_layer_are_refused_or_unpacked_without_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096)
        ) {
            unpack_bytes(&bytes);
        }

        #[test]
        fn a_valid_layer_with_corrupted_bytes_never_panics(
            flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8)
        ) {
            let mut tar = Layer::new(vec![
                Entry::dir("a"),
                Entry::file("a/f", "content"),
                Entry::symlink("a/s", "f"),
                Entry::hardlink("a/h", "a/f"),
            ])
            .tar();
            for (at, byte) in flips {
                let len = tar.len();
                tar[at % len] = byte;
            }
            unpack_bytes(&tar);
        }

        #[test]
        fn random_documents_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_document(&bytes, None, "fuzz");
            let _ = parse_config(&bytes, "fuzz");
        }
    }
}
