//! The packages `cross/package` builds: the agent's .deb installed with dpkg into a scratch
//! root (files, unit, dpkg's own record of it), and its tarball's install script.

use std::path::Path;
use std::process::Command;

use shoal_tests::{clean_cargo_env, run, workspace};

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
    for sub in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(sub)).expect("dpkg dirs");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
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
