//! `shoal flash` on real disk images built by Debian's tools, run as an unprivileged user
//! (`setpriv --reuid nobody`), its work checked with an independent reader (mtools,
//! fsck.vfat); and hostile images refused, with their reason, byte for byte unchanged.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shoal_tests::binary;
use shoal_tests::hub::Hub;
use shoal_tests::image::{self, Shape};

/// A folder anyone may write, as the unprivileged user needs.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-flash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// `shoal flash IMAGE --token TOKEN ARGS...` as user nobody, against `hub`.
fn flash(hub: &Hub, image: &Path, token: &str, args: &[&str]) -> Output {
    std::fs::set_permissions(image, std::fs::Permissions::from_mode(0o666)).expect("chmod image");
    Command::new("setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
        ])
        .arg(binary("shoal"))
        .arg("flash")
        .arg(image)
        .arg("--token")
        .arg(token)
        .arg("--hub")
        .arg(&hub.api)
        .args(args)
        .env("SHOAL_TOKEN", hub.token())
        .env("HOME", "/tmp")
        .output()
        .expect("run setpriv shoal flash")
}

fn claim_token(hub: &Hub, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend(args);
    let out = hub.ok(&all);
    out.split_whitespace()
        .find(|w| w.starts_with("shoalc1."))
        .unwrap_or_else(|| panic!("no claim token in:\n{out}"))
        .to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn agent() -> String {
    shoal_tests::vm::device_agent(shoal_tests::vm::Arch::X86_64)
        .display()
        .to_string()
}

#[test]
fn an_unprivileged_user_flashes_a_pi_image_and_mtools_reads_what_it_wrote() {
    let hub = Hub::start("flash");
    let token = claim_token(&hub, &["--uses", "10", "--labels", "site=plant-1"]);
    let dir = scratch("pi");
    let pi = image::build(&dir, "pi", &Shape::pi());
    let agent = agent();

    let started = std::time::Instant::now();
    let out = flash(
        &hub,
        &pi,
        &token,
        &["--agent", &agent, "--hub-url", "https://hub.example:7440"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    eprintln!("shoal flash took {:?}:\n{printed}", started.elapsed());
    assert!(printed.contains("x86_64 (from /bin/sh)"), "{printed}");
    assert!(
        printed.contains("first boot through cmdline.txt"),
        "{printed}"
    );

    let listing = image::mdir(&pi, "");
    for file in [
        "shoal-agent",
        "shoal-bootstrap.env",
        "shoal-firstboot.sh",
        "shoal-agent.service",
    ] {
        assert!(
            listing.contains(&format!("::/{file}\n")),
            "{file} in {listing}"
        );
    }
    let copied = dir.join("agent.out");
    image::mcopy_out(&pi, "shoal-agent", &copied);
    assert_eq!(
        std::fs::read(&copied).expect("copied agent"),
        std::fs::read(&agent).expect("agent"),
        "the agent in the image is the agent given, byte for byte"
    );
    let bootstrap = image::mtype(&pi, "shoal-bootstrap.env");
    assert!(bootstrap.contains("SHOAL_BOOTSTRAP=1\n"), "{bootstrap}");
    assert!(
        bootstrap.contains("SHOAL_HUB=https://hub.example:7440\n"),
        "{bootstrap}"
    );
    assert!(
        bootstrap.contains(&format!("SHOAL_TOKEN={token}\n")),
        "{bootstrap}"
    );
    assert!(
        bootstrap.contains("SHOAL_LABELS=site=plant-1\n"),
        "{bootstrap}"
    );
    let cmdline = image::mtype(&pi, "cmdline.txt");
    assert_eq!(
        cmdline,
        format!(
            "{} cgroup_enable=memory cgroup_memory=1 systemd.run=/boot/firmware/shoal-firstboot.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n",
            image::CMDLINE.trim_end()
        )
    );
    assert!(
        image::mtype(&pi, "config.txt").starts_with("arm_64bit=1"),
        "the board's own files stay"
    );
    let fsck = image::fsck_boot(&pi, 64);
    assert!(!fsck.contains("differences"), "fsck.vfat: {fsck}");

    // Flashing again changes no file's text (the same token, the same agent).
    let before = image::mtype(&pi, "cmdline.txt");
    let out = flash(
        &hub,
        &pi,
        &token,
        &["--agent", &agent, "--hub-url", "https://hub.example:7440"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(image::mtype(&pi, "cmdline.txt"), before);

    // --out leaves the source alone.
    let fresh = image::build(&dir, "fresh", &Shape::pi());
    let sum = image::sha256(&fresh);
    let copy = dir.join("copy.img");
    let out = flash(
        &hub,
        &fresh,
        &token,
        &[
            "--agent",
            &agent,
            "--hub-url",
            "https://hub.example:7440",
            "--out",
            &copy.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(image::sha256(&fresh), sum, "--out changed the source");
    assert!(image::mtype(&copy, "shoal-bootstrap.env").contains(&token));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gpt_and_cloud_init_images_are_flashed_too() {
    let hub = Hub::start("flash-gpt");
    let token = claim_token(&hub, &["--uses", "2"]);
    let dir = scratch("gpt");
    let agent = agent();
    let gpt = image::build(
        &dir,
        "gpt",
        &Shape {
            label: "gpt",
            ..Shape::pi()
        },
    );
    let out = flash(
        &hub,
        &gpt,
        &token,
        &["--agent", &agent, "--hub-url", "https://hub.example:7440"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(image::mtype(&gpt, "shoal-bootstrap.env").contains(&token));

    let mut shape = Shape::pi();
    shape
        .boot_files
        .push(("user-data", "#cloud-config\nhostname: pi-7\n".into()));
    let cloud = image::build(&dir, "cloud", &shape);
    let out = flash(
        &hub,
        &cloud,
        &token,
        &["--agent", &agent, "--hub-url", "https://hub.example:7440"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("first boot through user-data"));
    let user_data = image::mtype(&cloud, "user-data");
    assert!(
        user_data.starts_with("#cloud-config\nhostname: pi-7\n"),
        "{user_data}"
    );
    assert!(user_data.contains("runcmd:\n  - [sh, -c,"), "{user_data}");
    let cmdline = image::mtype(&cloud, "cmdline.txt");
    assert!(
        cmdline.contains("cgroup_enable=memory cgroup_memory=1"),
        "{cmdline}"
    );
    assert!(
        !cmdline.contains("systemd.run="),
        "cloud-init runs the hook: {cmdline}"
    );

    // A user-data with a runcmd of its own: the hook joins its list, once, and the rest of
    // the file stays byte for byte.
    let own = "#cloud-config\nhostname: pi-8\nruncmd:\n  # the site's own\n  - [sh, -c, 'echo site > /etc/site']\n  - touch /var/tmp/ready\npackages: [curl]\n";
    let mut shape = Shape::pi();
    shape.boot_files.push(("user-data", own.into()));
    let with_runcmd = image::build(&dir, "runcmd", &shape);
    for _ in 0..2 {
        let out = flash(
            &hub,
            &with_runcmd,
            &token,
            &["--agent", &agent, "--hub-url", "https://hub.example:7440"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let user_data = image::mtype(&with_runcmd, "user-data");
    let hook_line = user_data
        .lines()
        .find(|l| l.contains("shoal-firstboot.sh"))
        .unwrap_or_else(|| panic!("no hook in {user_data}"));
    assert_eq!(
        user_data,
        own.replace(
            "  - touch /var/tmp/ready\n",
            &format!("  - touch /var/tmp/ready\n{hook_line}\n")
        ),
        "one more line, nothing else changed"
    );
    let items = runcmd_items(&user_data);
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0], "[sh, -c, echo site > /etc/site]");
    assert_eq!(items[1], "touch /var/tmp/ready");
    assert!(
        items[2].starts_with("[sh, -c, for d in /boot/firmware /boot;")
            && items[2].contains("shoal-firstboot.sh"),
        "{items:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The items of the top-level `runcmd` a YAML parser (saphyr, through the manifest
/// loader's tree) sees in `text`, each rendered in flow style.
fn runcmd_items(text: &str) -> Vec<String> {
    use shoal_model::manifest::yaml::{parse_documents, Node, Value};
    fn render(node: &Node) -> String {
        match &node.value {
            Value::Scalar { text, .. } => text.clone(),
            Value::Seq(items) => format!(
                "[{}]",
                items.iter().map(render).collect::<Vec<_>>().join(", ")
            ),
            Value::Map(_) => "{..}".into(),
        }
    }
    let documents = parse_documents(text).unwrap_or_else(|e| panic!("{e:?} in {text}"));
    assert_eq!(documents.len(), 1, "one document: {text}");
    let Value::Map(entries) = &documents[0].value else {
        panic!("not a mapping: {text}")
    };
    let runcmds: Vec<&Node> = entries
        .iter()
        .filter(|(k, _)| matches!(&k.value, Value::Scalar { text, .. } if text == "runcmd"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(runcmds.len(), 1, "one runcmd key: {text}");
    match &runcmds[0].value {
        Value::Seq(items) => items.iter().map(render).collect(),
        _ => panic!("runcmd is not a list: {text}"),
    }
}

#[test]
fn hostile_images_and_wrong_tokens_are_refused_with_the_reason_and_change_nothing() {
    let hub = Hub::start("flash-hostile");
    let token = claim_token(&hub, &["--uses", "2"]);
    let dir = scratch("hostile");
    let agent = agent();
    let pi = image::build(&dir, "pi", &Shape::pi());
    let url = ["--hub-url", "https://hub.example:7440"];

    // Each case: an image, extra arguments, a token, what the refusal says.
    let patch = |name: &str, edit: &dyn Fn(&mut Vec<u8>)| -> PathBuf {
        let mut bytes = std::fs::read(&pi).expect("image");
        edit(&mut bytes);
        let path = dir.join(format!("{name}.img"));
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let set_entry = |bytes: &mut Vec<u8>, index: usize, field: usize, value: u32| {
        let at = 446 + 16 * index + field;
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    };
    let garbage = {
        let path = dir.join("garbage.img");
        let bytes: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, bytes).expect("garbage");
        path
    };
    let truncated = {
        let path = dir.join("truncated.img");
        std::fs::copy(&pi, &path).expect("copy");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(80 << 20)
            .expect("truncate");
        path
    };
    let overlapping = patch("overlap", &|b| set_entry(b, 1, 8, 60_000));
    let out_of_range = patch("range", &|b| set_entry(b, 1, 12, 4_000_000));
    let no_boot_files = image::build(
        &dir,
        "bare",
        &Shape {
            boot_files: vec![("config.txt", "x\n".into())],
            ..Shape::pi()
        },
    );
    let small = image::build(
        &dir,
        "small",
        &Shape {
            boot_mib: 2,
            ..Shape::pi()
        },
    );
    let other_hub = Hub::start("flash-other");
    let foreign = claim_token(&other_hub, &["--uses", "1"]);
    let revoked = claim_token(&hub, &["--uses", "1"]);
    hub.ok(&["token", "revoke", revoked.split('.').nth(1).expect("id")]);
    let dynamic = binary("shoal-agent").display().to_string();

    let cases: Vec<(&Path, Vec<&str>, &str, &str)> = vec![
        (&garbage, vec![], &token, "no partition table"),
        (
            &truncated,
            vec![],
            &token,
            "beyond the image's end (83886080 bytes): the image is truncated",
        ),
        (&overlapping, vec![], &token, "partitions 1 and 2 overlap"),
        (&out_of_range, vec![], &token, "partition 2 ends at byte"),
        (
            &no_boot_files,
            vec![],
            &token,
            "neither cmdline.txt nor user-data",
        ),
        (
            &small,
            vec![],
            &token,
            "too little room in the boot partition",
        ),
        (&pi, vec![], &foreign, "is not one of this hub's"),
        (&pi, vec![], &revoked, "is revoked"),
        (
            &pi,
            vec!["--arch", "aarch64"],
            &token,
            "is built for x86_64, but the image is aarch64",
        ),
    ];
    for (image, extra, token, expected) in &cases {
        let sum = image::sha256(image);
        let mut args = vec!["--agent", agent.as_str()];
        args.extend(url);
        args.extend(extra.iter().copied());
        let out = flash(&hub, image, token, &args);
        assert!(
            !out.status.success(),
            "{expected}: flashed {}",
            image.display()
        );
        let error = stderr(&out);
        assert!(
            error.contains(expected),
            "{}: expected `{expected}`, got {error}",
            image.display()
        );
        assert_eq!(image::sha256(image), sum, "{expected}: the image changed");
    }
    let sum = image::sha256(&pi);
    let out = flash(
        &hub,
        &pi,
        &token,
        &["--agent", &dynamic, "--hub-url", "https://hub.example:7440"],
    );
    let error = stderr(&out);
    assert!(error.contains("dynamically linked"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");
    assert_eq!(image::sha256(&pi), sum);
    // A hub that advertises loopback: a device could not reach it.
    let out = flash(&hub, &pi, &token, &["--agent", &agent]);
    assert!(
        stderr(&out).contains("which a device cannot reach"),
        "{}",
        stderr(&out)
    );
    assert_eq!(image::sha256(&pi), sum);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Loop devices and mounts of a test, detached and unmounted on drop.
#[derive(Default)]
struct Devices {
    loops: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Drop for Devices {
    fn drop(&mut self) {
        for mount in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
        for device in &self.loops {
            let _ = Command::new("losetup").arg("-d").arg(device).status();
        }
    }
}

impl Devices {
    /// A loop device over a new file of `bytes` bytes.
    fn blank(&mut self, file: &Path, bytes: u64) -> String {
        std::fs::File::create(file)
            .and_then(|f| f.set_len(bytes))
            .expect("card file");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("losetup");
        assert!(out.status.success(), "losetup: {}", stderr(&out));
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.loops.push(device.clone());
        device
    }
}

#[test]
fn a_card_is_written_whole_and_read_back_and_a_mounted_one_is_refused() {
    let hub = Hub::start("flash-device");
    let token = claim_token(&hub, &["--uses", "3"]);
    let dir = scratch("device");
    let agent = agent();
    let pi = image::build(&dir, "pi", &Shape::pi());
    let sum = image::sha256(&pi);
    let len = std::fs::metadata(&pi).expect("image").len();
    let mut devices = Devices::default();
    let flash_root = |device: &str| {
        Command::new(binary("shoal"))
            .arg("flash")
            .arg(&pi)
            .args(["--token", &token, "--hub", &hub.api, "--agent", &agent])
            .args(["--hub-url", "https://hub.example:7440", "--device", device])
            .env("SHOAL_TOKEN", hub.token())
            .output()
            .expect("shoal flash --device")
    };

    let card_file = dir.join("card.raw");
    let card = devices.blank(&card_file, len + (1 << 20));
    let out = flash_root(&card);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("flashed {card}")));
    assert_eq!(
        image::sha256(&pi),
        sum,
        "--device leaves the image file alone"
    );
    assert!(image::mtype(&card_file, "shoal-bootstrap.env").contains(&token));
    assert_eq!(
        image::mtype(&card_file, "config.txt"),
        image::mtype(&pi, "config.txt")
    );

    // A card that is mounted (here an ext4 file system on it) is refused, and left alone.
    let mounted_file = dir.join("mounted.raw");
    let mounted = devices.blank(&mounted_file, len + (1 << 20));
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", &mounted])
        .status()
        .expect("mkfs");
    assert!(mkfs.success());
    let point = dir.join("mnt");
    std::fs::create_dir_all(&point).expect("mount point");
    let status = Command::new("mount")
        .arg(&mounted)
        .arg(&point)
        .status()
        .expect("mount");
    assert!(status.success());
    devices.mounts.push(point.clone());
    let before = image::sha256(&mounted_file);
    let out = flash_root(&mounted);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{mounted} is mounted")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        image::sha256(&mounted_file),
        before,
        "a mounted card changed"
    );
    drop(devices);
    let _ = std::fs::remove_dir_all(&dir);
}
