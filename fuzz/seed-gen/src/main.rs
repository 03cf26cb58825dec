//! Writes one seed folder per fuzz target into `OUT_DIR` (default `fuzz/target/seeds`), from
//! the repository's real data, so the seeds always follow the current wire format and
//! manifests:
//!
//! - `wire_*`: every message kind encoded with `wire::encode` (`*.wire`, a whole MQTT payload)
//!   and as the bare postcard payload (`*.payload`); desired states and `Apply` requests carry
//!   the workloads of `manifests/*.yaml`;
//! - `manifest`: `manifests/*.yaml`, `model/tests/invalid/*.yaml` and a few hostile documents;
//! - `constraint`: the constraints of the examples and one of each operator;
//! - `broker_acl`, `hub_password`: lines in each target's input format;
//! - `endpoint`: broker and hub API urls of every shape the parser accepts or refuses;
//! - `layer`: small layer tars (files, dirs, symlinks, hardlinks, fifos, whiteouts, replaced
//!   entries, long names, sparse files in each of GNU tar's formats: it needs GNU tar) and
//!   each path-traversal shape the unpacker refuses, behind the target's mode byte.

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use shoal_model::manifest::{self, Workload};
use shoal_model::node::{Capacity, NodeFacts};
use shoal_model::wire::{
    encode, ContainerState, ContainerStatus, DesiredState, DesiredWorkload, Envelope, Event,
    EventReason, ExitInfo, Health, ImageSummary, Limits, Message, NodeStatus, NodeUsage, Presence,
    RpcRequest, RpcRequestBody, RpcResponse, RpcResponseBody, Severity, WorkloadStatus,
    WIRE_VERSION,
};
use shoal_tests::images::{gnu_sparse_layer, gzip, Entry, Layer, SparseFormat};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

const NODE: &str = "gw-7";

fn main() -> Result {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("fuzz/target/seeds"));
    let workloads: Vec<Workload> = manifest::load(&repo.join("manifests"))
        .workloads
        .into_iter()
        .map(|w| w.workload)
        .collect();
    if workloads.is_empty() {
        return Err("manifests/ holds no valid workload to seed from".into());
    }

    let mut seeds = Seeds::new(&out);
    wire_seeds(&mut seeds, &workloads)?;
    manifest_seeds(&mut seeds, &repo)?;
    constraint_seeds(&mut seeds, &workloads)?;
    acl_seeds(&mut seeds)?;
    endpoint_seeds(&mut seeds)?;
    password_seeds(&mut seeds)?;
    layer_seeds(&mut seeds)?;
    provision_seeds(&mut seeds)?;
    println!("{} seeds in {}", seeds.written, out.display());
    Ok(())
}

struct Seeds {
    out: PathBuf,
    written: usize,
}

impl Seeds {
    fn new(out: &Path) -> Seeds {
        Seeds {
            out: out.to_path_buf(),
            written: 0,
        }
    }

    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result {
        let dir = self.out.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
        self.written += 1;
        Ok(())
    }

    /// A message as a whole MQTT payload, unsigned and signed, and as a bare payload.
    fn message<M: Message>(&mut self, target: &str, name: &str, node: &str, message: &M) -> Result {
        let limits = Limits::default();
        self.write(
            target,
            &format!("{name}.wire"),
            &encode(node, message, &limits)?,
        )?;
        let mut signed = Envelope::seal(node, message)?;
        signed.signature = Some(vec![0x5a; 64]);
        self.write(
            target,
            &format!("{name}.signed.wire"),
            &signed.encode(&limits)?,
        )?;
        self.write(
            target,
            &format!("{name}.payload"),
            &message.to_payload(WIRE_VERSION)?,
        )
    }
}

fn wire_seeds(seeds: &mut Seeds, workloads: &[Workload]) -> Result {
    let desired = |generation, workloads: &[Workload]| DesiredState {
        node_id: NODE.into(),
        generation,
        workloads: workloads
            .iter()
            .map(|w| DesiredWorkload {
                workload: w.clone(),
                revision: generation,
            })
            .collect(),
        signing_keys: Vec::new(),
        agent: None,
    };
    seeds.message("wire_desired", "empty", NODE, &desired(1, &[]))?;
    seeds.message("wire_desired", "examples", NODE, &desired(7, workloads))?;
    for (i, w) in workloads.iter().enumerate() {
        seeds.message(
            "wire_desired",
            &w.name,
            NODE,
            &desired(i as u64 + 2, std::slice::from_ref(w)),
        )?;
    }

    let status = node_status();
    seeds.message("wire_status", "full", NODE, &status)?;
    seeds.message(
        "wire_status",
        "empty",
        NODE,
        &NodeStatus {
            workloads: Vec::new(),
            events: Vec::new(),
            ..status.clone()
        },
    )?;

    let facts = NodeFacts {
        arch: "arm64".into(),
        os: "linux".into(),
        kernel: "6.1.0-rpi7-rpi-v8".into(),
        cgroup_version: 2,
        capacity: Capacity {
            memory_bytes: 4 << 30,
            cpu_millis: 4000,
            pids: 32768,
        },
        agent_version: "0.1.0".into(),
        labels: BTreeMap::from([
            ("role".into(), "gateway".into()),
            ("site".into(), "plant-1".into()),
            ("example.com/serial".into(), "A1B2".into()),
        ]),
        wire_versions: Vec::new(),
    };
    for online in [true, false] {
        seeds.message(
            "wire_presence",
            if online { "online" } else { "offline" },
            NODE,
            &Presence {
                node_id: NODE.into(),
                online,
                facts: facts.clone(),
            },
        )?;
    }

    let bodies = [
        RpcRequestBody::Logs {
            workload: "sensor-reader".into(),
            container: Some("reader".into()),
            tail: Some(100),
            follow: true,
        },
        RpcRequestBody::Exec {
            workload: "sensor-reader".into(),
            container: None,
            command: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
        },
        RpcRequestBody::Diagnostics,
        RpcRequestBody::Ping,
        RpcRequestBody::Status,
        RpcRequestBody::Apply {
            workloads: desired(1, workloads).workloads,
        },
        RpcRequestBody::DeleteWorkload {
            workload: "hello".into(),
        },
        RpcRequestBody::ListImages,
        RpcRequestBody::ImportImage {
            path: "/var/lib/shoal/import/busybox.tar".into(),
        },
        RpcRequestBody::RemoveImage {
            reference: "busybox:latest".into(),
        },
        RpcRequestBody::PruneImages,
        RpcRequestBody::Cancel { id: 41 },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let request = RpcRequest {
            id: 42 + i as u64,
            body,
        };
        seeds.message("wire_rpc_request", &format!("body-{i}"), NODE, &request)?;
    }

    let bodies = [
        RpcResponseBody::LogChunk {
            data: b"2024-01-01T00:00:00Z reading 21.5C\n".to_vec(),
            eof: false,
        },
        RpcResponseBody::ExecResult {
            exit_code: 137,
            stdout: b"hi\n".to_vec(),
            stderr: Vec::new(),
        },
        RpcResponseBody::Diagnostics {
            text: "agent 0.1.0, 3 containers".into(),
        },
        RpcResponseBody::Pong,
        RpcResponseBody::Error {
            message: "no workload `x` on this node".into(),
        },
        RpcResponseBody::Status(status),
        RpcResponseBody::Applied {
            generation: 3,
            changes: vec!["start hello/web".into()],
        },
        RpcResponseBody::Images(vec![ImageSummary {
            reference: "docker.io/library/busybox:latest".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size_bytes: 2 << 20,
            in_use: 1,
        }]),
        RpcResponseBody::Done {
            message: "removed 2 images".into(),
        },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let response = RpcResponse {
            id: 42 + i as u64,
            body,
        };
        seeds.message("wire_rpc_response", &format!("body-{i}"), NODE, &response)?;
    }
    Ok(())
}

fn node_status() -> NodeStatus {
    let container = |name: &str, state, health, last_exit| ContainerStatus {
        name: name.into(),
        state,
        health,
        restarts: 3,
        last_exit,
        oom_kills: 1,
        started_at_ms: Some(1_700_000_000_000),
        pid: Some(4242),
        memory_bytes: Some(12 << 20),
        cpu_usage_ns: Some(9_000_000_000),
        message: Some("restarting in 8s".into()),
    };
    NodeStatus {
        node_id: NODE.into(),
        observed_generation: 7,
        sequence: 99,
        sent_at_ms: 1_700_000_000_000,
        workloads: vec![WorkloadStatus {
            name: "sensor-reader".into(),
            revision: 3,
            containers: vec![
                container("reader", ContainerState::Running, Health::Healthy, None),
                container(
                    "uploader",
                    ContainerState::BackOff,
                    Health::Unhealthy,
                    Some(ExitInfo {
                        code: None,
                        signal: Some(9),
                        oom_killed: true,
                        at_ms: 1_700_000_000_500,
                    }),
                ),
            ],
            rolled_back: None,
        }],
        usage: NodeUsage {
            memory_used_bytes: 300 << 20,
            memory_total_bytes: 4 << 30,
            cpu_millis_used: 250,
            disk_used_bytes: 1 << 30,
            disk_budget_bytes: 8 << 30,
        },
        events: EventReason::ALL
            .iter()
            .filter(|reason| !reason.is_recorded_by_hub())
            .enumerate()
            .map(|(i, &reason)| Event {
                sequence: 1000 + i as u64,
                at_ms: 1_700_000_000_000 + i as u64,
                severity: [Severity::Info, Severity::Warning, Severity::Error][i % 3],
                workload: Some("sensor-reader".into()),
                container: (i % 2 == 0).then(|| "reader".into()),
                reason,
                message: format!("event {i}"),
            })
            .collect(),
        dropped_events: 2,
        agent_update: None,
    }
}

fn manifest_seeds(seeds: &mut Seeds, repo: &Path) -> Result {
    for dir in ["manifests", "model/tests/invalid"] {
        let mut files: Vec<PathBuf> = fs::read_dir(repo.join(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or("a fixture name is not UTF-8")?;
            let prefix = dir.replace('/', "-");
            seeds.write("manifest", &format!("{prefix}-{name}"), &fs::read(&file)?)?;
        }
    }
    let hostile = [
        ("anchors", "apiVersion: shoal/v1\nkind: Workload\nmetadata: { name: a, labels: &l { app: a } }\nspec:\n  placement: { nodeSelector: *l }\n  containers:\n    - &c { name: a, image: busybox, env: { A: b } }\n"),
        ("alias-bomb", "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n"),
        ("deep-flow", "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"),
        ("host-paths", "apiVersion: shoal/v1\nkind: Workload\nmetadata: { name: a }\nspec:\n  volumes: [{ name: ../etc, hostPath: /var/../etc }, { name: root, hostPath: / }]\n  containers:\n    - name: a\n      image: busybox\n      devices: [/dev/../etc/shadow]\n      workingDir: ../../\n      mounts: [{ volume: root, path: /proc/../.. }]\n"),
        ("documents", "---\n...\n---\napiVersion: shoal/v1\nkind: Workload\nmetadata: { name: a }\nspec: { containers: [{ name: a, image: busybox }] }\n---\n"),
        ("tags", "!!map { ? !!str apiVersion : !!str shoal/v1, kind: !x Workload }\n"),
    ];
    for (name, text) in hostile {
        seeds.write("manifest", &format!("hostile-{name}.yaml"), text.as_bytes())?;
    }
    Ok(())
}

fn constraint_seeds(seeds: &mut Seeds, workloads: &[Workload]) -> Result {
    let mut texts: Vec<String> = workloads
        .iter()
        .flat_map(|w| {
            w.spec
                .placement
                .constraints
                .iter()
                .map(|c| c.source.clone())
        })
        .collect();
    texts.extend(
        [
            "arch in (arm64, armv7)",
            "os notin (windows)",
            "kernel >= 5.10",
            "agentVersion < 1.0.0",
            "cgroup == 2",
            "memory >= 256Mi",
            "cpu > 500m",
            "pids <= 4096",
            "label.site != lab",
            "label.example.com/gpu exists",
            "labels.zone missing",
        ]
        .map(String::from),
    );
    for (i, text) in texts.iter().enumerate() {
        // Without facts (a default node), and with a few bytes of facts after the NUL.
        seeds.write("constraint", &format!("c{i}"), text.as_bytes())?;
        let mut with_facts = text.as_bytes().to_vec();
        with_facts.push(0);
        with_facts.extend_from_slice(
            b"\x05arm64\x05linux\x065.10.0\x02\xff\xff\xff\x7f\xe8\x03\x00\x00site\x03lab",
        );
        seeds.write("constraint", &format!("c{i}-facts"), &with_facts)?;
    }
    Ok(())
}

fn acl_seeds(seeds: &mut Seeds) -> Result {
    let lines = [
        "node-a\nsub\n\nshoal/v1/node/node-a/desired",
        "node-a\nsub\n\nshoal/v1/node/node-a/rpc/req",
        "node-a\nsub\n\nshoal/v1/node/node-b/desired",
        "node-a\nsub\n\nshoal/v1/node/+/desired",
        "node-a\nsub\n\n$share/g/shoal/v1/node/node-a/desired",
        "node-a\npub\n\nshoal/v1/node/node-a/status",
        "node-a\npub\n\nshoal/v1/node/node-a/presence",
        "node-a\npub\n\nshoal/v1/node/node-a/rpc/resp",
        "node-a\npub\n\nshoal/v1/node/node-b/status",
        "node-a\npub\nacme/plant-1\nacme/plant-1/node/node-a/status",
        "_shoal-hub\nsub\n\nshoal/v1/node/+/status",
        "_shoal-hub\nsub\n\n$share/hubs/shoal/v1/#",
        "_shoal-hub\nsub\n\n$SYS/#",
        "_shoal-hub\npub\n\nshoal/v1/node/node-a/desired",
        "_shoal-hub\npub\nacme/plant-1\nacme/plant-1/node/+/desired",
    ];
    for (i, line) in lines.iter().enumerate() {
        seeds.write("broker_acl", &format!("acl{i}"), line.as_bytes())?;
    }
    Ok(())
}

/// A bootstrap file, and small disk images: an MBR with a FAT12 boot partition holding a
/// `cmdline.txt` (with and without `user-data`), and the same behind a GPT-looking MBR.
fn provision_seeds(seeds: &mut Seeds) -> Result {
    use std::io::Write;
    let bootstrap = shoal_model::bootstrap::Bootstrap {
        hub: "https://hub.example:7440".parse()?,
        token: Some(format!("shoalc1.k3x9q2abcd.{}.{}", "A".repeat(43), "ab".repeat(32))),
        labels: [("site".to_string(), "plant-1".to_string())].into(),
    };
    seeds.write("bootstrap", "sample", bootstrap.render().as_bytes())?;
    for (name, files) in [
        ("pi", vec![("cmdline.txt", "root=/dev/mmcblk0p2 rootwait\n")]),
        (
            "cloud",
            vec![("cmdline.txt", "root=/dev/sda2\n"), ("user-data", "#cloud-config\n")],
        ),
    ] {
        let sectors: u64 = 400;
        let mut fat = std::io::Cursor::new(vec![0u8; (sectors * 512) as usize]);
        fatfs::format_volume(&mut fat, fatfs::FormatVolumeOptions::new())?;
        {
            let fs = fatfs::FileSystem::new(&mut fat, fatfs::FsOptions::new())?;
            for (file, text) in files {
                fs.root_dir().create_file(file)?.write_all(text.as_bytes())?;
            }
            fs.unmount()?;
        }
        let mut image = vec![0u8; 512];
        image[446 + 4] = 0x0c;
        image[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        image[446 + 12..446 + 16].copy_from_slice(&(sectors as u32).to_le_bytes());
        image[510] = 0x55;
        image[511] = 0xAA;
        image.extend_from_slice(fat.get_ref());
        image.resize(image.len().max(34 * 512), 0);
        seeds.write("disk_image", name, &image)?;
    }
    Ok(())
}

fn endpoint_seeds(seeds: &mut Seeds) -> Result {
    let urls = [
        "mqtts://hub.example:8883",
        "mqtt://10.0.0.5",
        "MQTTS://[fd00::7]:8883/",
        "https://hub.example:7440",
        "http://[::1]",
        "tcp://hub",
        "mqtt://user:pw@hub",
        "mqtt://hub:+1",
        "mqtt://[::1",
        "mqtt://::1:1883",
        "http://hub:7440/v1?x#y",
        "mqtt://hub..example",
    ];
    for (i, url) in urls.iter().enumerate() {
        seeds.write("endpoint", &format!("url{i}"), url.as_bytes())?;
    }
    Ok(())
}

fn password_seeds(seeds: &mut Seeds) -> Result {
    // Written by `mosquitto_passwd` 2.0.11 (the hub's own test vector).
    let mosquitto = "$7$101$8TD+rk18xV+axStd$BVFfRNLLHtMMGHWhnFtOrutDuH0d61e5ok4nzV6vCQdJ/COSFfYFgT+kot9S7fho/KSRVBgTQSt6UI5uZtuiPg==";
    let lines = [
        format!("correct horse battery staple\n{mosquitto}"),
        format!("wrong\n{mosquitto}"),
        "x\n$7$0$AAAA$AAAA".into(),
        "x\n$6$salt$hash".into(),
        String::new(),
    ];
    for (i, line) in lines.iter().enumerate() {
        seeds.write("hub_password", &format!("p{i}"), line.as_bytes())?;
    }
    Ok(())
}

fn layer_seeds(seeds: &mut Seeds) -> Result {
    // The target's mode byte: bit 0 gzips the rest, bit 1 recomputes tar header checksums.
    const AS_IS: u8 = 0b00;
    const GZIP: u8 = 0b01;
    const FIX: u8 = 0b10;
    let mut write = |name: &str, mode: u8, blob: &[u8]| {
        let mut input = vec![mode];
        input.extend_from_slice(blob);
        seeds.write("layer", name, &input)
    };
    // Without the two zero blocks that end an archive (the tar reader stops at the end of the
    // stream as well): smaller inputs, so each mutation is likelier to hit a header.
    let tar = |layer: &Layer| {
        let mut tar = layer.tar();
        while tar.len() >= 512 && tar[tar.len() - 512..].iter().all(|&b| b == 0) {
            tar.truncate(tar.len() - 512);
        }
        tar
    };

    let good = [
        (
            "basic",
            vec![
                Entry::dir("etc"),
                Entry::file("etc/hostname", "gw-7\n"),
                Entry::dir("srv").owner(1000, 1001).mode(0o750),
                Entry::file("srv/tool", "#!/bin/sh\n")
                    .owner(1000, 1001)
                    .mode(0o4755)
                    .mtime(1_600_000_000),
                Entry::file("deep/implicit/parent", "x"),
                Entry::fifo("srv/pipe"),
                Entry::dir("./"),
            ],
        ),
        (
            "links",
            vec![
                Entry::dir("a"),
                Entry::dir("a/b"),
                Entry::file("a/f", "content"),
                Entry::symlink("a/s", "f"),
                Entry::symlink("a/b/up", "../../a/f"),
                Entry::symlink("a/abs", "/etc/passwd"),
                Entry::hardlink("a/h", "a/f"),
                Entry::hardlink("a/b/h", "./a/b/up"),
                Entry::hardlink("a/f", "a/f"),
            ],
        ),
        (
            "whiteouts",
            vec![
                Entry::dir("etc"),
                Entry::whiteout("etc", "gone"),
                Entry::whiteout("", "rootfile"),
                Entry::dir("data"),
                Entry::opaque("data"),
                Entry::file("data/new", "visible"),
                Entry::file("data/.wh..wh.plnk", ""),
            ],
        ),
        (
            "replaced",
            vec![
                Entry::file("x", "file first"),
                Entry::dir("x"),
                Entry::file("x/inner", "then a dir"),
                Entry::file("x", "a file again"),
                Entry::symlink("y", "x"),
                Entry::file("y", "a file over a symlink"),
                Entry::dir("z"),
                Entry::whiteout("", "z"),
                Entry::dir("z"),
            ],
        ),
    ];
    for (name, entries) in good {
        let layer = Layer::new(entries);
        write(&format!("{name}.tar"), FIX, &tar(&layer))?;
        write(&format!("{name}.gzip"), GZIP | FIX, &tar(&layer))?;
        write(&format!("{name}.tar.gz"), AS_IS, &layer.tar_gz())?;
    }

    // Names and link targets longer than a header holds: GNU long-name entries.
    let mut builder = tar::Builder::new(Vec::new());
    let long_dir = "d".repeat(60);
    let long_path = format!("{long_dir}/{long_dir}/{}", "f".repeat(60));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(4);
    builder.append_data(&mut header, &long_path, &b"long"[..])?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder.append_link(&mut header, "short", format!("{long_path}/../../x"))?;
    write("long-names.tar", FIX, &builder.into_inner()?)?;

    // Every shape the unpacker refuses, each after a harmless entry.
    let refused = [
        ("dotdot", Entry::file("../../../evil", "escaped")),
        ("inner-dotdot", Entry::file("a/../../evil", "escaped")),
        ("absolute", Entry::file("/tmp/shoal-fuzz-evil", "escaped")),
        (
            "hardlink-out",
            Entry::hardlink("evil", "../../../../etc/passwd"),
        ),
        ("hardlink-absolute", Entry::hardlink("evil", "/etc/passwd")),
        ("hardlink-missing", Entry::hardlink("evil", "etc/shadow")),
        ("hardlink-root", Entry::hardlink("evil", "./")),
        ("hardlink-dir", Entry::hardlink("evil", "ok-dir")),
        (
            "symlink-climbs",
            Entry::symlink("ok-dir/evil", "../../../../tmp"),
        ),
        ("symlink-empty", Entry::symlink("evil", "")),
        ("char-device", Entry::char_device("evil", 1, 3)),
        ("block-device", Entry::block_device("evil", 8, 0)),
        ("whiteout-empty", Entry::file(".wh.", "")),
        ("whiteout-dot", Entry::file(".wh..", "")),
        ("whiteout-dotdot", Entry::file("ok-dir/.wh...", "")),
    ];
    for (name, entry) in refused {
        let layer = Layer::new(vec![Entry::dir("ok-dir"), Entry::file("ok", "fine"), entry]);
        write(&format!("refused-{name}.tar"), FIX, &tar(&layer))?;
    }
    let through_symlink = Layer::new(vec![
        Entry::symlink("link", "/tmp"),
        Entry::file("link/evil", "written through"),
    ]);
    write("refused-through-symlink.tar", FIX, &tar(&through_symlink))?;
    let through_file = Layer::new(vec![
        Entry::file("file", "not a dir"),
        Entry::file("file/evil", "below a file"),
    ]);
    write("refused-below-a-file.tar", FIX, &tar(&through_file))?;

    // Sparse files as GNU tar writes them, in each format: small ones that unpack, and ones
    // whose full size (1 GiB of holes) is over the target's limit.
    for format in SparseFormat::ALL {
        let small = gnu_sparse_layer(format, 12_288, &[(5_000, b"hello"), (12_283, b"tail!")]);
        write(&format!("sparse-{format:?}.tar"), FIX, &small)?;
        let huge = gnu_sparse_layer(format, 1 << 30, &[(1 << 29, b"middle")]);
        write(&format!("sparse-{format:?}-over-the-limit.tar"), FIX, &huge)?;
    }

    // Streams the tar reader or the decompressor refuses.
    let basic = Layer::new(vec![Entry::file("f", "content")]).tar();
    write("truncated.tar", AS_IS, &basic[..700])?;
    write("corrupt.tar.gz", AS_IS, &gzip(&basic)[..40])?;
    write("zstd", AS_IS, &[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0])?;
    write("empty", AS_IS, &[])
}
