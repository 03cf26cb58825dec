use super::*;

/// A hub data dir as `shoal serve` leaves it: a real store, the secrets and the CA.
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir_all(dir.join("tls")).expect("dirs");
    let store = crate::store::Store::open(&dir).expect("store");
    drop(store);
    for (name, text) in [
        ("api-token", "token-1\n"),
        ("mqtt-password", "password-1\n"),
        ("tls/ca.crt", "-----BEGIN CERTIFICATE-----\nx\n"),
        ("tls/ca.key", "-----BEGIN PRIVATE KEY-----\ny\n"),
        ("tls/server.crt", "not kept"),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
    }
    dir
}

/// A gzip'd tar of these entries, as a foreign or tampered file would be.
fn archive(path: &Path, entries: &[(&str, &[u8])]) {
    let file = File::create(path).expect("create");
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::default(),
    ));
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, *bytes).expect("append");
    }
    tar.into_inner().expect("tar").finish().expect("gzip");
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_backup_restores_to_the_same_files_and_store() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = data_dir(root.path());
    let out = root.path().join("hub.backup");
    let manifest = create(&data, &out, 1_700_000_000_000).expect("backup");
    assert_eq!(
        manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        FILES
    );
    // Nothing but the backup is left beside it.
    assert_eq!(names(root.path()), ["data", "hub.backup"]);

    let restored = root.path().join("new/data");
    assert_eq!(restore(&out, &restored).expect("restore"), manifest);
    for name in &FILES[1..] {
        assert_eq!(
            std::fs::read(restored.join(name)).expect("restored file"),
            std::fs::read(data.join(name)).expect("original file"),
            "{name}"
        );
    }
    assert!(!restored.join("tls/server.crt").exists());
    crate::store::Store::open(&restored).expect("the restored store opens");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&restored), 0o700);
    assert_eq!(mode(&restored.join("tls/ca.key")), 0o600);
    assert_eq!(mode(&restored.join("hub.db")), 0o600);
    assert_eq!(mode(&out), 0o600);
    assert_eq!(names(&root.path().join("new")), ["data"]);

    // An empty dir is fine too.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    restore(&out, &empty).expect("restore into an empty dir");
}

#[test]
fn the_manifest_is_written_as_these_bytes() {
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created_ms: 1_700_000_000_000,
        shoal_version: "0.1.0".into(),
        files: vec![Entry {
            path: "api-token".into(),
            size: 8,
            sha256: "ab".repeat(32),
        }],
    };
    let text = serde_json::to_string_pretty(&manifest).expect("json");
    assert_eq!(
        text,
        format!(
            "{{\n  \"format\": \"shoal-backup\",\n  \"version\": 1,\n  \"created_ms\": 1700000000000,\n  \"shoal_version\": \"0.1.0\",\n  \"files\": [\n    {{\n      \"path\": \"api-token\",\n      \"size\": 8,\n      \"sha256\": \"{}\"\n    }}\n  ]\n}}",
            "ab".repeat(32)
        )
    );
}

#[test]
fn a_data_dir_without_its_files_is_not_backed_up() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = data_dir(root.path());
    std::fs::remove_file(data.join("tls/ca.key")).expect("rm");
    let error = create(&data, &root.path().join("b"), 0).expect_err("no CA key");
    assert!(error.to_string().contains("has no tls/ca.key"), "{error}");
    assert_eq!(names(root.path()), ["data"]);
}

#[test]
fn damaged_foreign_and_newer_files_and_full_dirs_are_refused_and_nothing_is_written() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = data_dir(root.path());
    let good = root.path().join("good.backup");
    create(&data, &good, 0).expect("backup");
    let bytes = std::fs::read(&good).expect("read");
    let cases = root.path().join("cases");
    std::fs::create_dir(&cases).expect("mkdir");
    let file = |name: &str, contents: &[u8]| {
        let path = cases.join(name);
        std::fs::write(&path, contents).expect("write");
        path
    };
    let tar = |name: &str, entries: &[(&str, &[u8])]| {
        let path = cases.join(name);
        archive(&path, entries);
        path
    };
    let manifest_v2 =
        br#"{"format":"shoal-backup","version":2,"shoal_version":"9.0.0","new":true}"#;
    let other_format = br#"{"format":"something-else","version":1}"#;
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        ("text", file("notes.txt", b"hello"), "is not a shoal backup (it is not gzip'd)"),
        ("empty", file("empty", b""), "is not a shoal backup (it is not gzip'd)"),
        (
            "no_manifest",
            tar("other.tgz", &[("etc/passwd", b"root:x:0:0")]),
            "is not a shoal backup (its first entry is etc/passwd, not shoal-backup.json)",
        ),
        (
            "other_format",
            tar("other-format.tgz", &[(MANIFEST, other_format)]),
            "is not a shoal backup (its manifest's format is \"something-else\"",
        ),
        (
            "newer_version",
            tar("v2.tgz", &[(MANIFEST, manifest_v2)]),
            "is a shoal backup of version 2, and this shoal reads version 1: restore it with the shoal that wrote it (9.0.0)",
        ),
        ("truncated", file("truncated", &bytes[..bytes.len() / 2]), "is damaged ("),
        ("flipped_byte", file("flipped", &flipped), "is damaged ("),
    ];
    for (name, archive, message) in cases {
        let target = root.path().join(format!("restored-{name}"));
        let error = restore(&archive, &target).expect_err(name).to_string();
        assert!(error.contains(message), "{name}: {error}");
        assert!(
            error.ends_with("nothing was restored") || error.contains("nothing was restored;"),
            "{name}: {error}"
        );
        assert!(!target.exists(), "{name}: {} was written", target.display());
    }
    // Only what the test made: no temporary dir left behind.
    assert_eq!(names(root.path()), ["cases", "data", "good.backup"]);

    let full = root.path().join("data");
    let error = restore(&good, &full).expect_err("not empty").to_string();
    assert!(
        error.contains("is not empty: restore into a new or empty data dir"),
        "{error}"
    );
}

#[test]
fn manifests_are_checked_before_any_file() {
    let digest = "0".repeat(64);
    let files = |paths: &[&str], digest: &str| {
        serde_json::json!({
            "format": FORMAT, "version": 1, "created_ms": 0, "shoal_version": "0.1.0",
            "files": paths.iter().map(|p| serde_json::json!({"path": p, "size": 1, "sha256": digest})).collect::<Vec<_>>(),
        })
        .to_string()
    };
    let check = |text: &str| check_manifest(text.as_bytes()).map(|_| ());
    assert_eq!(check(&files(&FILES, &digest)), Ok(()));
    let damaged = |text: &str| matches!(check(text), Err(ManifestProblem::Damaged(_)));
    assert!(damaged(&files(&FILES[..4], &digest)), "a file missing");
    assert!(damaged(&files(
        &[
            "hub.db",
            "api-token",
            "mqtt-password",
            "tls/ca.crt",
            "../../etc/cron.d/x"
        ],
        &digest
    )));
    assert!(damaged(&files(&FILES, "xyz")), "not a digest");
    assert!(damaged(&files(&FILES, &"A".repeat(64))), "upper-case hex");
    assert!(damaged(r#"{"format":"shoal-backup"}"#), "no version");
    assert!(matches!(check("[1,2]"), Err(ManifestProblem::Foreign(_))));
    assert!(matches!(
        check("not json"),
        Err(ManifestProblem::Foreign(_))
    ));
}
