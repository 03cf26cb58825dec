//! Test images built from scratch: layers (including deliberately malicious ones), OCI image
//! layouts with multi-arch indexes, `docker save` tarballs, a local `docker-registry` and
//! `skopeo copy` to feed it. Needs the Debian packages `busybox-static`, `docker-registry`,
//! `skopeo` and (for registries with passwords) `apache2-utils`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", shoal_model::hex::sha256_hex(bytes))
}

/// What a tar entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    Fifo,
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
}

/// One tar entry. Paths and link targets are written into the header verbatim, so entries
/// may be malicious (`../x`, `/abs`): the tar crate's own checks are bypassed on purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Entry {
    fn new(path: &str, kind: Kind, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        }
    }
    pub fn file(path: &str, contents: impl Into<Vec<u8>>) -> Entry {
        Entry::new(path, Kind::File(contents.into()), 0o644)
    }
    pub fn dir(path: &str) -> Entry {
        Entry::new(path, Kind::Dir, 0o755)
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::new(path, Kind::Symlink(target.into()), 0o777)
    }
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::new(path, Kind::Hardlink(target.into()), 0o644)
    }
    pub fn fifo(path: &str) -> Entry {
        Entry::new(path, Kind::Fifo, 0o644)
    }
    pub fn char_device(path: &str, major: u32, minor: u32) -> Entry {
        Entry::new(path, Kind::CharDevice(major, minor), 0o666)
    }
    pub fn block_device(path: &str, major: u32, minor: u32) -> Entry {
        Entry::new(path, Kind::BlockDevice(major, minor), 0o660)
    }
    /// An OCI whiteout hiding `dir/name` of lower layers.
    pub fn whiteout(dir: &str, name: &str) -> Entry {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{}/.wh.{name}", dir.trim_end_matches('/'))
        };
        Entry::file(&path, Vec::new())
    }
    /// An OCI opaque-dir marker: `dir` hides everything of lower layers below it.
    pub fn opaque(dir: &str) -> Entry {
        Entry::file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            Vec::new(),
        )
    }
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }
}

/// A layer: entries in tar order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    pub entries: Vec<Entry>,
}

impl Layer {
    pub fn new(entries: Vec<Entry>) -> Layer {
        Layer { entries }
    }

    /// The uncompressed tar (its sha256 is the layer's diff id).
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            let name = entry.path.as_bytes();
            assert!(name.len() <= 100, "test entry paths must fit in 100 bytes");
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_mode(entry.mode);
            header.set_uid(entry.uid);
            header.set_gid(entry.gid);
            header.set_mtime(entry.mtime);
            let mut data: &[u8] = &[];
            let set_link = |header: &mut tar::Header, target: &str| {
                let target = target.as_bytes();
                assert!(
                    target.len() <= 100,
                    "test link targets must fit in 100 bytes"
                );
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target);
            };
            match &entry.kind {
                Kind::File(contents) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(contents.len() as u64);
                    data = contents;
                }
                Kind::Dir => header.set_entry_type(tar::EntryType::Directory),
                Kind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    set_link(&mut header, target);
                }
                Kind::Hardlink(target) => {
                    header.set_entry_type(tar::EntryType::Link);
                    set_link(&mut header, target);
                }
                Kind::Fifo => header.set_entry_type(tar::EntryType::Fifo),
                Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) => {
                    header.set_entry_type(if matches!(entry.kind, Kind::CharDevice(..)) {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Block
                    });
                    header
                        .set_device_major(*major)
                        .expect("gnu header has device fields");
                    header
                        .set_device_minor(*minor)
                        .expect("gnu header has device fields");
                }
            }
            if !matches!(entry.kind, Kind::File(_)) {
                header.set_size(0);
            }
            header.set_cksum();
            builder
                .append(&header, data)
                .expect("append to an in-memory tar");
        }
        builder.into_inner().expect("finish an in-memory tar")
    }

    pub fn tar_gz(&self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Debian's static busybox as `/bin/busybox`, with `/bin/sh` and common applets as symlinks.
pub fn busybox_layer() -> Layer {
    let busybox = fs::read("/bin/busybox")
        .expect("read /bin/busybox: install the Debian package busybox-static");
    busybox_layer_of(busybox)
}

/// As [`busybox_layer`], with the given busybox binary (another architecture's, for a VM).
pub fn busybox_layer_of(busybox: Vec<u8>) -> Layer {
    let mut entries = vec![
        Entry::dir("bin"),
        Entry::file("bin/busybox", busybox).mode(0o755),
    ];
    for applet in [
        "sh", "echo", "sleep", "cat", "ls", "true", "false", "wget", "nc", "httpd", "ps", "kill",
    ] {
        entries.push(Entry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    entries.extend([
        Entry::dir("tmp").mode(0o1777),
        Entry::dir("etc"),
        Entry::dir("proc"),
    ]);
    Layer::new(entries)
}

/// An image to build: layers, the runtime config, the platform.
#[derive(Clone, Debug)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// gzip the layers (OCI `tar+gzip`); plain tar otherwise.
    pub gzip: bool,
}

impl Image {
    pub fn new(layers: Vec<Layer>) -> Image {
        Image {
            layers,
            entrypoint: Vec::new(),
            cmd: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            os: "linux".into(),
            architecture: host_arch().into(),
            variant: None,
            gzip: true,
        }
    }
    pub fn platform(mut self, architecture: &str, variant: Option<&str>) -> Image {
        self.architecture = architecture.into();
        self.variant = variant.map(str::to_string);
        self
    }
    pub fn cmd(mut self, cmd: &[&str]) -> Image {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn entrypoint(mut self, entrypoint: &[&str]) -> Image {
        self.entrypoint = entrypoint.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The image config JSON.
    pub fn config(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| digest(&l.tar())).collect();
        let mut config = json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": { "Cmd": self.cmd, "Env": self.env, "WorkingDir": "/" },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        if !self.entrypoint.is_empty() {
            config["config"]["Entrypoint"] = json!(self.entrypoint);
        }
        if let Some(variant) = &self.variant {
            config["variant"] = json!(variant);
        }
        serde_json::to_vec(&config).expect("serialise config")
    }

    fn platform_json(&self) -> Value {
        let mut platform = json!({ "os": self.os, "architecture": self.architecture });
        if let Some(variant) = &self.variant {
            platform["variant"] = json!(variant);
        }
        platform
    }
}

/// The OCI name of the architecture these tests run on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// An OCI descriptor (`mediaType`, `digest`, `size`, maybe `platform`).
#[derive(Clone, Debug, PartialEq)]
pub struct Descriptor(pub Value);

impl Descriptor {
    pub fn digest(&self) -> String {
        self.0["digest"]
            .as_str()
            .expect("descriptor digest")
            .to_string()
    }
}

/// An OCI image layout directory being built.
#[derive(Debug)]
pub struct OciLayout {
    pub dir: PathBuf,
    index: Vec<Value>,
}

impl OciLayout {
    pub fn create(dir: &Path) -> OciLayout {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout dir");
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let layout = OciLayout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        };
        layout.write_index();
        layout
    }

    /// Stores a blob; returns its descriptor with `media_type`.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = digest(bytes);
        let path = self
            .dir
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..]);
        fs::write(path, bytes).expect("write blob");
        Descriptor(json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() }))
    }

    /// Writes the image's layers, config and manifest; returns the manifest's descriptor (with
    /// its platform, ready for an index).
    pub fn add_image(&self, image: &Image) -> Descriptor {
        let config = self.blob("application/vnd.oci.image.config.v1+json", &image.config());
        let layers: Vec<Value> = image
            .layers
            .iter()
            .map(|layer| {
                if image.gzip {
                    self.blob(
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                        &layer.tar_gz(),
                    )
                    .0
                } else {
                    self.blob("application/vnd.oci.image.layer.v1.tar", &layer.tar())
                        .0
                }
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.0,
            "layers": layers,
        });
        let mut descriptor = self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).expect("serialise manifest"),
        );
        descriptor.0["platform"] = image.platform_json();
        descriptor
    }

    /// Writes an index over `manifests` (a multi-arch image); returns its descriptor.
    pub fn add_index(&self, manifests: &[Descriptor]) -> Descriptor {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
        });
        self.blob(
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&index).expect("serialise index"),
        )
    }

    /// Names `descriptor` in index.json (`org.opencontainers.image.ref.name`), as skopeo's
    /// `oci:<dir>:<name>` expects.
    pub fn tag(&mut self, name: &str, descriptor: &Descriptor) {
        let mut entry = descriptor.0.clone();
        if let Some(object) = entry.as_object_mut() {
            object.remove("platform");
        }
        entry["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
        self.index.push(entry);
        self.write_index();
    }

    fn write_index(&self) {
        let index = json!({ "schemaVersion": 2, "manifests": self.index });
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("serialise index.json"),
        )
        .expect("write index.json");
    }

    /// The layout as a tar archive (an `oci-archive`).
    pub fn to_tar(&self, out: &Path) {
        let file = fs::File::create(out).expect("create archive");
        let mut builder = tar::Builder::new(file);
        builder
            .append_dir_all(".", &self.dir)
            .expect("tar the layout");
        builder.finish().expect("finish the archive");
    }
}

/// Writes `image` as `docker save` would: `manifest.json`, `<id>.json`, `<id>/layer.tar`.
/// With `shared_layer_symlink`, a layer identical to an earlier one is a symlink to that one's
/// tar, as docker does.
pub fn docker_save(image: &Image, repo_tag: &str, out: &Path, shared_layer_symlink: bool) {
    let file = fs::File::create(out).expect("create archive");
    let mut builder = tar::Builder::new(file);
    let mut append = |path: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, bytes)
            .expect("append to archive");
    };
    let config = image.config();
    let config_name = format!("{}.json", &digest(&config)["sha256:".len()..]);
    append(&config_name, &config);
    let mut layer_names = Vec::new();
    let mut links = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let tar = layer.tar();
        let layer_digest = digest(&tar);
        let id = format!("{:064x}", i + 1);
        let name = format!("{id}/layer.tar");
        layer_names.push(name.clone());
        if shared_layer_symlink {
            if let Some((_, first)) = seen.iter().find(|(d, _)| *d == layer_digest) {
                links.push((name, format!("../{first}/layer.tar")));
                continue;
            }
        }
        append(&name, &tar);
        seen.push((layer_digest, id));
    }
    let manifest =
        json!([{ "Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names }]);
    append(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("serialise"),
    );
    for (name, target) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, name, target)
            .expect("append symlink");
    }
    builder.finish().expect("finish archive");
}

/// A Debian `docker-registry` on a free 127.0.0.1 port with its storage in a temp dir; stopped
/// (and its storage removed) on drop.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:<port>`
    pub addr: String,
    dir: PathBuf,
    child: Child,
}

impl Registry {
    /// An open registry.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that wants HTTP basic auth for `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_password(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let dir =
            std::env::temp_dir().join(format!("shoal-registry-{}-{port}", std::process::id()));
        fs::create_dir_all(dir.join("data")).expect("create registry dir");
        let mut config = format!(
            "version: 0.1\nlog: {{ level: warn }}\nstorage: {{ filesystem: {{ rootdirectory: {} }}, delete: {{ enabled: true }} }}\nhttp: {{ addr: {addr} }}\n",
            dir.join("data").display()
        );
        if let Some((user, password)) = credentials {
            let output = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd: install the Debian package apache2-utils");
            assert!(output.status.success(), "htpasswd failed");
            let file = dir.join("htpasswd");
            fs::write(&file, output.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth: {{ htpasswd: {{ realm: shoal-test, path: {} }} }}\n",
                file.display()
            ));
        }
        let config_path = dir.join("registry.yml");
        fs::write(&config_path, config).expect("write registry config");
        let log = fs::File::create(dir.join("registry.log")).expect("create registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry: install the Debian package docker-registry");
        let registry = Registry { addr, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !registry.answers() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {} within 20 s; log: {}",
                registry.addr,
                fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.")
    }

    /// `127.0.0.1:<port>/<repository_and_tag>`
    pub fn reference(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.addr)
    }

    /// Flips one byte in the middle of the stored blob `digest` (`sha256:…`), as a failing
    /// disk or a tampering proxy would: the registry keeps serving it under its digest.
    pub fn corrupt_blob(&self, digest: &str) {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let path = self
            .dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let mut bytes = fs::read(&path)
            .unwrap_or_else(|e| panic!("read the registry's blob {}: {e}", path.display()));
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&path, bytes).expect("write the corrupted blob");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `skopeo copy --all oci:<layout>:<tag> docker://<destination>` over plain HTTP.
pub fn skopeo_copy(layout: &Path, tag: &str, destination: &str) {
    skopeo_copy_as(layout, tag, destination, None)
}

/// As [`skopeo_copy`], with registry credentials.
pub fn skopeo_copy_as(layout: &Path, tag: &str, destination: &str, creds: Option<(&str, &str)>) {
    let mut command = Command::new("skopeo");
    command
        .args([
            "--insecure-policy",
            "copy",
            "--all",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{destination}"));
    if let Some((user, password)) = creds {
        command.arg(format!("--dest-creds={user}:{password}"));
    }
    let output = command
        .output()
        .expect("run skopeo: install the Debian package skopeo");
    assert!(
        output.status.success(),
        "skopeo copy to {destination} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A registry serving two images no node can pull, for tests of what a failed pull reports.
#[derive(Debug)]
pub struct UnpullableImages {
    pub registry: Registry,
    /// A multi-arch index with entries for linux/arm64/v8 and linux/s390x only (never the
    /// machine the tests run on; they refuse to run on either).
    pub foreign: String,
    /// An image whose layer blob the registry serves with one byte changed.
    pub corrupt: String,
}

impl UnpullableImages {
    pub fn start() -> UnpullableImages {
        assert!(
            !["arm64", "s390x"].contains(&host_arch()),
            "the foreign index must not have this machine's architecture"
        );
        let registry = Registry::start();
        let dir = std::env::temp_dir().join(format!(
            "shoal-unpullable-{}-{}",
            std::process::id(),
            registry.addr.replace(':', "-")
        ));
        let _ = fs::remove_dir_all(&dir);
        let mut layout = OciLayout::create(&dir);
        let arm =
            layout.add_image(&Image::new(vec![busybox_layer()]).platform("arm64", Some("v8")));
        let s390 = layout.add_image(&Image::new(vec![busybox_layer()]).platform("s390x", None));
        let index = layout.add_index(&[arm, s390]);
        layout.tag("foreign", &index);
        let foreign = registry.reference("foreign:v1");
        skopeo_copy(&dir, "foreign", &foreign);

        let layer = Layer::new(vec![
            Entry::dir("etc"),
            Entry::file("etc/corrupt", "served with a byte changed"),
        ]);
        let image = Image::new(vec![busybox_layer(), layer.clone()]);
        let manifest = layout.add_image(&image);
        layout.tag("corrupt", &manifest);
        let corrupt = registry.reference("corrupt:v1");
        skopeo_copy(&dir, "corrupt", &corrupt);
        registry.corrupt_blob(&digest(&layer.tar_gz()));
        let _ = fs::remove_dir_all(&dir);
        UnpullableImages {
            registry,
            foreign,
            corrupt,
        }
    }

    /// The agent.toml line that lets an agent pull from this registry over plain HTTP.
    pub fn agent_config(&self) -> String {
        format!("insecure_registries = [\"{}\"]\n", self.registry.addr)
    }
}

/// How GNU tar stores a sparse file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseFormat {
    /// `--format=gnu`: old GNU `S` entries, the map in the headers.
    OldGnu,
    /// `--format=pax --sparse-version=0.0`: the map in repeated PAX records.
    Pax00,
    /// `--format=pax --sparse-version=0.1`: the map in one PAX record, the name in another.
    Pax01,
    /// `--format=pax` (version 1.0, GNU tar's default): the map at the start of the data.
    Pax10,
}

impl SparseFormat {
    pub const ALL: [SparseFormat; 4] = [
        SparseFormat::OldGnu,
        SparseFormat::Pax00,
        SparseFormat::Pax01,
        SparseFormat::Pax10,
    ];

    fn args(self) -> &'static [&'static str] {
        match self {
            SparseFormat::OldGnu => &["--format=gnu"],
            SparseFormat::Pax00 => &["--format=pax", "--sparse-version=0.0"],
            SparseFormat::Pax01 => &["--format=pax", "--sparse-version=0.1"],
            SparseFormat::Pax10 => &["--format=pax", "--sparse-version=1.0"],
        }
    }
}

/// A layer tar written by GNU tar (`tar --sparse`, in `format`) holding the directory `d`, the
/// sparse file `d/sparse` (made with `truncate -s size`, then each of `writes` written at its
/// offset) and the plain file `d/after` (`after`). Needs GNU tar.
pub fn gnu_sparse_layer(format: SparseFormat, size: u64, writes: &[(u64, &[u8])]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let dir = std::env::temp_dir().join(format!(
        "shoal-sparse-{}-{format:?}-{size}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("d")).expect("create the sparse file's dir");
    let sparse = dir.join("d/sparse");
    let status = Command::new("truncate")
        .arg("-s")
        .arg(size.to_string())
        .arg(&sparse)
        .status()
        .expect("run truncate");
    assert!(status.success(), "truncate failed");
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&sparse)
        .expect("open the sparse file");
    for (offset, bytes) in writes {
        file.write_all_at(bytes, *offset)
            .expect("write into the sparse file");
    }
    drop(file);
    fs::write(dir.join("d/after"), "after the sparse file").expect("write d/after");
    let output = Command::new("tar")
        .arg("--sparse")
        .args(format.args())
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@1700000000",
            "-cf",
            "-",
            "-C",
        ])
        .arg(&dir)
        .arg("d")
        .output()
        .expect("run GNU tar");
    assert!(
        output.status.success(),
        "tar --sparse {:?} failed: {}",
        format.args(),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = fs::remove_dir_all(&dir);
    output.stdout
}

/// What `d/sparse` of [`gnu_sparse_layer`] reads as.
pub fn sparse_content(size: u64, writes: &[(u64, &[u8])]) -> Vec<u8> {
    let mut content = vec![0u8; usize::try_from(size).expect("a test size")];
    for (offset, bytes) in writes {
        let at = usize::try_from(*offset).expect("a test offset");
        content[at..at + bytes.len()].copy_from_slice(bytes);
    }
    content
}
