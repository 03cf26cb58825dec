//! The packages `cross/package` builds: the agent's .deb installed with dpkg into a scratch
//! root (files, unit, dpkg's own record of it), and its tarball's install script; the hub's
//! .deb, installed the same way, its unit checked by `systemd-analyze verify` and its binary
//! run from the scratch root until `GET /healthz` answers.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shoal_tests::hub::free_port;
use shoal_tests::{binary, clean_cargo_env, run, workspace};

/// An empty dpkg database under `root`, as `dpkg --root` needs.
fn scratch_root(root: &Path) {
    for sub in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(sub)).expect("dpkg dirs");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
}

/// `dpkg --root=ROOT ARGS...`: its stdout.
fn dpkg(root: &Path, args: &[&str]) -> String {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(args))
}

fn check_installed(root: &Path, agent: &[u8]) {
    assert_eq!(
        std::fs::read(root.join("usr/bin/shoal-agent")).expect("installed agent"),
        agent,
        "the packaged agent is cross/build's"
    );
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/shoal-agent.service"))
        .expect("the unit");
    for line in [
        "ExecStart=/usr/bin/shoal-agent launch",
        "KillMode=process",
        "Restart=always",
        "StateDirectory=shoal",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in:\n{unit}");
    }
}

#[test]
fn the_agent_deb_installs_into_a_scratch_root_and_the_tarball_installs_too() {
    let agent_path = shoal_tests::vm::device_agent(shoal_tests::vm::Arch::X86_64);
    let agent = std::fs::read(agent_path).expect("the static agent");
    let dir = std::env::temp_dir().join(format!("shoal-packages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("out");
    let mut package = Command::new(workspace().join("cross/package"));
    clean_cargo_env(&mut package);
    let printed = run(package
        .arg("x86_64")
        .arg(&out)
        .env("SHOAL_CROSS_NO_SETUP", "1"));
    let version = env!("CARGO_PKG_VERSION");
    let deb = out.join(format!("shoal-agent_{version}_amd64.deb"));
    let tarball = out.join(format!("shoal-agent-{version}-x86_64.tar.gz"));
    assert!(printed.contains(&deb.display().to_string()), "{printed}");

    // dpkg into a scratch root, as it would on a board.
    let root = dir.join("root");
    scratch_root(&root);
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--log=/dev/null", "--install"])
        .arg(&deb));
    check_installed(&root, &agent);
    let status = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--status", "shoal-agent"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("Architecture: amd64"), "{status}");
    let listed = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--listfiles", "shoal-agent"]));
    assert!(listed.contains("/usr/bin/shoal-agent"), "{listed}");

    // The tarball's install script, into another root.
    let unpacked = dir.join("tar");
    std::fs::create_dir_all(&unpacked).expect("dir");
    run(Command::new("tar")
        .arg("-C")
        .arg(&unpacked)
        .arg("-xzf")
        .arg(&tarball));
    let other = dir.join("other-root");
    let said = run(Command::new("sh")
        .arg(unpacked.join(format!("shoal-agent-{version}-x86_64/install.sh")))
        .env("DESTDIR", &other));
    assert!(said.contains("installed"), "{said}");
    check_installed(&other, &agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hub's unit, as installed: the lines that let systemd run it as a user of its own.
fn check_hub_unit(unit: &str) {
    for line in [
        "DynamicUser=yes",
        "StateDirectory=shoal",
        "ExecStart=/usr/bin/shoal serve --data-dir /var/lib/shoal",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in:\n{unit}");
    }
    // With ProtectSystem=strict and a dynamic user, the state directory is the only place the
    // hub may write: every path ExecStart names besides the binary is inside it.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/bin/shoal"));
    for word in words {
        let path = word.rsplit('=').next().unwrap_or(word);
        assert!(
            !path.starts_with('/')
                || path == "/var/lib/shoal"
                || path.starts_with("/var/lib/shoal/"),
            "ExecStart names {path}, which a DynamicUser hub cannot write: {exec}"
        );
    }
}

/// The packages that `Depends:` names are installed here in versions that satisfy it, and
/// they are the libraries the binary links (`readelf -d`).
fn check_depends(depends: &str, installed_binary: &Path) {
    let needed = run(Command::new("readelf").arg("-d").arg(installed_binary));
    assert!(
        needed.contains("[libc.so.6]"),
        "the hub links glibc dynamically:\n{needed}"
    );
    let names: Vec<&str> = depends
        .split(',')
        .filter_map(|d| d.split_whitespace().next())
        .collect();
    assert!(names.contains(&"libc6"), "Depends: {depends}");
    for dependency in depends.split(',') {
        let dependency = dependency.trim();
        let (name, bound) = match dependency.split_once(" (>= ") {
            Some((name, version)) => (name, Some(version.trim_end_matches(')'))),
            None => (dependency, None),
        };
        let version = run(Command::new("dpkg-query")
            .args(["-W", "-f=${Version}"])
            .arg(name));
        if let Some(bound) = bound {
            let ok = Command::new("dpkg")
                .args(["--compare-versions", &version, "ge", bound])
                .status()
                .expect("dpkg --compare-versions");
            assert!(ok.success(), "{name} {version} is older than {dependency}");
        }
    }
    let ldd = run(Command::new("ldd").arg(installed_binary));
    assert!(!ldd.contains("not found"), "ldd: {ldd}");
}

/// `systemd-analyze verify` of the installed unit, in the scratch root (no systemd running:
/// `--root` reads units from there; the targets the unit names are stubs).
fn verify_unit(root: &Path) {
    let units = root.join("lib/systemd/system");
    for target in [
        "sysinit.target",
        "basic.target",
        "shutdown.target",
        "network-online.target",
        "multi-user.target",
    ] {
        std::fs::write(
            units.join(target),
            format!("[Unit]\nDescription={target} (stub)\n"),
        )
        .expect("stub target");
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no"])
        .arg(format!("--root={}", root.display()))
        .arg("/lib/systemd/system/shoal.service")
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warns: {said}"
    );
}

/// Runs `shoal serve` from the scratch root on loopback ports with a data dir of its own,
/// until `GET /healthz` says ok; stops it with SIGTERM.
fn serve_until_healthy(shoal: &Path, data: &Path, log: &Path) {
    let api = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(shoal)
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .arg("--listen-mqtt")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--listen-api")
        .arg(&api)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).expect("log"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("log"))
        .spawn()
        .expect("run the installed shoal serve");
    let logs = || {
        format!(
            "{}{}",
            std::fs::read_to_string(log).unwrap_or_default(),
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        let answer = ureq::get(format!("http://{api}/healthz"))
            .call()
            .ok()
            .and_then(|mut a| a.body_mut().read_to_string().ok());
        if answer.as_deref() == Some("ok\n") {
            break true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the installed hub exited with {status}:\n{}", logs());
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().expect("wait for the hub");
    assert!(healthy, "GET /healthz never said ok:\n{}", logs());
    assert!(
        status.success(),
        "the hub did not stop cleanly on SIGTERM ({status}):\n{}",
        logs()
    );
    assert!(
        data.join("api-token").exists(),
        "the hub wrote no state in its data dir"
    );
}

#[test]
fn the_hub_deb_installs_into_a_scratch_root_and_its_binary_serves() {
    let dir = std::env::temp_dir().join(format!("shoal-hub-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("out");
    // The hub the tests built, packaged (a release build would add minutes for nothing).
    let mut package = Command::new(workspace().join("cross/package"));
    clean_cargo_env(&mut package);
    let printed = run(package
        .arg("hub")
        .arg(&out)
        .env("SHOAL_HUB_BINARY", binary("shoal")));
    let version = env!("CARGO_PKG_VERSION");
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let deb: PathBuf = out.join(format!("shoal_{version}_{}.deb", arch.trim()));
    assert!(printed.contains(&deb.display().to_string()), "{printed}");

    let root = dir.join("root");
    scratch_root(&root);
    // The scratch root has no libc6 of its own: dpkg checks the Depends against this
    // machine below instead.
    dpkg(
        &root,
        &[
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
            "--install",
            &deb.display().to_string(),
        ],
    );
    let status = dpkg(&root, &["--status", "shoal"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    let depends = status
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends in {status}"));
    let listed = dpkg(&root, &["--listfiles", "shoal"]);
    for file in ["/usr/bin/shoal", "/lib/systemd/system/shoal.service"] {
        assert!(listed.lines().any(|l| l == file), "{file} in {listed}");
    }

    let shoal = root.join("usr/bin/shoal");
    let unit_path = root.join("lib/systemd/system/shoal.service");
    for (path, mode) in [(&shoal, 0o755), (&unit_path, 0o644)] {
        let meta = std::fs::metadata(path).expect("installed file");
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            mode,
            "{}",
            path.display()
        );
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "{} owned by root",
            path.display()
        );
    }
    let unit = std::fs::read_to_string(&unit_path).expect("the unit");
    assert_eq!(
        unit,
        std::fs::read_to_string(workspace().join("packaging/shoal.service")).expect("unit"),
        "the packaged unit is packaging/shoal.service"
    );
    check_hub_unit(&unit);
    check_depends(depends, &shoal);
    verify_unit(&root);

    let said = run(Command::new(&shoal).arg("--version"));
    assert!(said.contains(version), "{said}");
    serve_until_healthy(&shoal, &dir.join("data"), &dir.join("hub.log"));
    let _ = std::fs::remove_dir_all(&dir);
}
