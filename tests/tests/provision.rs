//! Provisioning a batch of devices: claim tokens (`shoal token create|list|revoke`) enrolling
//! real agents with `shoal-agent enroll` against a real hub; and the README's "Provision
//! devices" block, run as pasted.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shoal_tests::agent::Agent;
use shoal_tests::hub::{Hub, DEFAULT_HUB_SETTINGS};
use shoal_tests::image;
use shoal_tests::{binary, workspace};

/// `shoal token create ARGS...`: the token it printed.
fn claim_token(hub: &Hub, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend(args);
    let out = hub.ok(&all);
    out.split_whitespace()
        .find(|word| word.starts_with("shoalc1."))
        .unwrap_or_else(|| panic!("`shoal token create` printed no claim token:\n{out}"))
        .to_string()
}

/// A device with no node name of its own.
fn device(dir: &str) -> Agent {
    Agent::unnamed(dir, &format!("[hub]\n{DEFAULT_HUB_SETTINGS}\n"))
}

/// `shoal-agent enroll` that must fail: its stderr.
fn refused(hub: &Hub, agent: &Agent, token: &str) -> String {
    let out = hub.try_enroll_agent(agent, token, &[], &[]);
    assert!(
        !out.status.success(),
        "enrolled although it should not: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !agent.root.join("data/enrollment.toml").exists(),
        "a refused enrollment left an identity behind"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn token_list(hub: &Hub) -> Vec<Value> {
    let text = hub.ok(&["token", "list", "-o", "json"]);
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        other => panic!("`shoal token list -o json` printed {other:?}: {text}"),
    }
}

#[test]
fn one_claim_token_enrolls_three_devices_as_three_nodes_and_refuses_a_fourth() {
    let hub = Hub::start("claim-batch");
    let token = claim_token(
        &hub,
        &["--uses", "3", "--ttl", "7d", "--labels", "site=plant-1"],
    );

    // Two devices propose the same name (the host's), one its own with --name.
    let mut devices: Vec<Agent> = (0..3).map(|i| device(&format!("claim-{i}"))).collect();
    let mut names = Vec::new();
    for (i, agent) in devices.iter_mut().enumerate() {
        let extra: &[&str] = if i == 0 { &["--name", "sensor-a"] } else { &[] };
        let out = hub.try_enroll_agent(agent, &token, &[], extra);
        assert!(
            out.status.success(),
            "device {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        names.push(agent.enrolled_name().expect("an enrolled name"));
    }
    assert_eq!(names[0], "sensor-a");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let base = hostname
        .trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        names[1].starts_with(&base),
        "{names:?} from host name {base}"
    );
    assert_eq!(
        names[2],
        format!("{}-2", names[1]),
        "the hub keeps names unique"
    );

    // Each is its own node, with its own credentials: all three connect at once.
    for agent in &mut devices {
        agent.start();
    }
    for name in &names {
        let node = hub.wait_node_online(name);
        assert_eq!(node["labels"]["site"], "plant-1", "{node}");
    }
    let passwords: std::collections::BTreeSet<String> = devices
        .iter()
        .map(|a| std::fs::read_to_string(a.root.join("data/enrollment.toml")).expect("identity"))
        .filter_map(|t| {
            t.lines()
                .find(|l| l.starts_with("password"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(passwords.len(), 3, "every device has its own password");

    let fourth = device("claim-3");
    let error = refused(&hub, &fourth, &token);
    assert!(
        error.contains("has enrolled all 3 devices it allows"),
        "{error}"
    );
    let claims = token_list(&hub);
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(claims[0]["used"], 3);
    assert_eq!(claims[0]["state"], "used-up");
    let mut listed: Vec<String> = claims[0]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    listed.sort();
    names.sort();
    assert_eq!(listed, names);
    assert_eq!(hub.get("nodes").len(), 3, "the refused device made no node");
}

#[test]
fn expired_revoked_and_foreign_claim_tokens_are_refused() {
    let hub = Hub::start("claim-refused");
    let agent = device("claim-refused");

    let short = claim_token(&hub, &["--uses", "5", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let error = refused(&hub, &agent, &short);
    assert!(error.contains("expired"), "{error}");
    assert!(
        error.contains("`shoal token create` issues a new one"),
        "{error}"
    );

    // `-o json`: the token and its claim, as the hub answered.
    let created: Value =
        serde_json::from_str(&hub.ok(&["token", "create", "--uses", "5", "-o", "json"]))
            .expect("`shoal token create -o json` prints JSON");
    let revoked = created["token"].as_str().expect("a token").to_string();
    assert!(revoked.starts_with("shoalc1."), "{created}");
    assert_eq!(created["claim"]["uses"], 5, "{created}");
    let id = revoked.split('.').nth(1).expect("an id").to_string();
    assert_eq!(created["claim"]["id"], id.as_str(), "{created}");
    let out = hub.ok(&["token", "revoke", &id]);
    assert!(
        out.contains(&format!("claim token `{id}` revoked")),
        "{out}"
    );
    let error = refused(&hub, &agent, &revoked);
    assert!(error.contains("was revoked"), "{error}");
    let states: Vec<Value> = token_list(&hub)
        .iter()
        .map(|c| c["state"].clone())
        .collect();
    assert_eq!(states, ["revoked", "expired"], "newest first");

    // A token of another hub pins another CA: nothing is sent.
    let other = Hub::start("claim-other");
    let foreign = claim_token(&other, &["--uses", "5"]);
    let error = refused(&hub, &agent, &foreign);
    assert!(error.contains("nothing was sent"), "{error}");
    assert!(hub.get("nodes").is_empty());
}

/// The command block after `marker` in README.md, as `.ci/run` reads the test command.
fn readme_block(marker: &str) -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    let after = readme
        .split_once(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"))
        .1;
    let mut lines = after.lines().skip_while(|l| l.trim().is_empty());
    assert!(
        lines.next().is_some_and(|l| l.starts_with("```")),
        "a command block follows {marker}"
    );
    let block: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    assert!(!block.is_empty(), "the block after {marker} is empty");
    block.join("\n") + "\n"
}

/// README "Provision devices", run with bash as written, in a root shell that stands for the
/// hub machine: its own network namespace (so the hub gets the README's ports, and nothing
/// leaves loopback), a tmpfs for /var/lib/shoal (the hub's default data dir), and a folder
/// of this test's for /tmp; `shoal` from this build on the PATH. The README's hub is a real
/// one; what it flashed is read back with mtools.
#[test]
fn the_readme_provisioning_block_runs_as_pasted_and_flashes_a_sample_image() {
    let block = readme_block("<!-- ci:provision -->");
    for placeholder in ["…", "/dev/sd", "hub.example", "shoalc1."] {
        assert!(
            !block.contains(placeholder),
            "the block has a placeholder ({placeholder}):\n{block}"
        );
    }
    // Built outside the namespace (cross/setup may download its tools); the block's own
    // `cross/build` then finds it built.
    let agent = shoal_tests::vm::device_agent(shoal_tests::vm::Arch::X86_64);
    let dir = std::env::temp_dir().join(format!("shoal-readme-provision-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    std::fs::write(dir.join("provision.sh"), &block).expect("block");
    let shoal_dir = binary("shoal")
        .parent()
        .expect("the binaries' folder")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        shoal_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A checkout under /tmp would be hidden by the folder mounted there: it is mounted again
    // at its own path on top (through `.repo`, which `--rbind` carries along), so the block's
    // `cross/build` finds the same tree, and so the same build.
    let repo = workspace();
    let (keep, restore) = match repo.strip_prefix("/tmp") {
        Ok(inside) => (
            format!(
                "mkdir -p {tmp}/.repo {tmp}/{inside}\nmount --bind {repo} {tmp}/.repo\n",
                tmp = dir.display(),
                inside = inside.display(),
                repo = repo.display(),
            ),
            format!("mount --bind /tmp/.repo {}\n", repo.display()),
        ),
        Err(_) => (String::new(), String::new()),
    };
    let wrapper = format!(
        "set -e\n\
         ip link set lo up\n\
         mkdir -p /var/lib/shoal\n\
         mount -t tmpfs shoal-state /var/lib/shoal\n\
         {keep}\
         mount --rbind {tmp} /tmp\n\
         {restore}\
         cd {repo}\n\
         bash -euo pipefail /tmp/provision.sh\n",
        tmp = dir.display(),
        repo = repo.display(),
    );
    let started = std::time::Instant::now();
    let mut command = Command::new("unshare");
    shoal_tests::clean_cargo_env(&mut command);
    let out = command
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "bash",
            "-c",
            &wrapper,
        ])
        .env("PATH", path)
        .env("SHOAL_CROSS_NO_SETUP", "1")
        .env_remove("SHOAL_HUB")
        .env_remove("SHOAL_TOKEN")
        .env_remove("SHOAL_CA")
        .output()
        .expect("run unshare bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hub_log = std::fs::read_to_string(dir.join("shoal-hub.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the README block failed:\n{block}\nstdout:\n{stdout}\nstderr:\n{}\nhub log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        shoal_tests::hub::tail(&hub_log, 40)
    );
    eprintln!(
        "README provisioning block: {:?}\n{stdout}",
        started.elapsed()
    );
    let flashed = dir.join("plant-1.img");
    assert!(stdout.contains("flashed /tmp/plant-1.img"), "{stdout}");
    assert!(
        stdout.contains("active"),
        "`shoal token list` shows the token: {stdout}"
    );

    let listing = image::mdir(&flashed, "");
    for file in [
        "shoal-agent",
        "shoal-bootstrap.env",
        "shoal-firstboot.sh",
        "shoal-agent.service",
        "cmdline.txt",
        "config.txt",
    ] {
        assert!(
            listing.contains(&format!("::/{file}\n")),
            "{file} in {listing}"
        );
    }
    let copied = dir.join("agent.out");
    image::mcopy_out(&flashed, "shoal-agent", &copied);
    assert_eq!(
        std::fs::read(&copied).expect("copied agent"),
        std::fs::read(agent).expect("agent"),
        "the agent cross/build made"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let bootstrap = image::mtype(&flashed, "shoal-bootstrap.env");
    for line in [
        format!("SHOAL_HUB=https://{}:7440", host.trim()),
        "SHOAL_LABELS=site=plant-1".to_string(),
    ] {
        assert!(
            bootstrap.lines().any(|l| l == line),
            "{line} in {bootstrap}"
        );
    }
    assert!(bootstrap.contains("SHOAL_TOKEN=shoalc1."), "{bootstrap}");
    let cmdline = image::mtype(&flashed, "cmdline.txt");
    assert!(
        cmdline.starts_with(image::CMDLINE.trim_end())
            && cmdline.contains("cgroup_enable=memory cgroup_memory=1 systemd.run=/boot/firmware/shoal-firstboot.sh"),
        "{cmdline}"
    );
    // --out left the sample image as cross/sample-image made it.
    let sample = image::mdir(&dir.join("sample.img"), "");
    assert!(!sample.contains("shoal"), "{sample}");
    let _ = std::fs::remove_dir_all(&dir);
}
