//! The runtime against real containers: the real `shoal-agent` binary as shim, libcontainer,
//! overlayfs, cgroups, namespaces. Needs root and `busybox-static` (for the test image).
//!
//! Every test has its own temp dirs and workload names (with this process's PID), so tests run
//! in parallel; a [`Fixture`] removes its containers, pods and cgroups even when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shoal_model::manifest::parse_manifest;

use super::*;

/// The glibc `shoal-agent` of this build, built once per test process (a unit test binary is
/// not the agent binary, and cargo builds the binary only for integration tests).
fn agent_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "shoal-agent",
                    "--bin",
                    "shoal-agent",
                ])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building shoal-agent failed");
            let exe = std::env::current_exe().expect("test executable path");
            exe.parent()
                .and_then(Path::parent)
                .expect("target profile dir")
                .join("shoal-agent")
        })
        .clone()
}

/// An image layer: Debian's static busybox with its applet links.
fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    let bin = layer.join("bin");
    std::fs::create_dir_all(&bin).expect("layer dirs");
    for d in ["etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(layer.join(d)).expect("layer dirs");
    }
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("copy /bin/busybox: apt-get install busybox-static");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.contains('/') {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
    layer
}

struct Fixture {
    runtime: Option<Runtime>,
    config: RuntimeConfig,
    layer: PathBuf,
    workloads: Vec<String>,
    // Last: dropped after the runtime has removed everything inside.
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut RuntimeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = busybox_layer(dir.path());
        let allowed = dir.path().join("allowed");
        std::fs::create_dir_all(&allowed).expect("allowed dir");
        let mut config = RuntimeConfig::new(dir.path().join("data"));
        config.run_dir = dir.path().join("run");
        config.log_dir = dir.path().join("logs");
        config.shim_binary = agent_binary();
        config.allowed_host_paths = vec![allowed];
        config.start_timeout = Duration::from_secs(30);
        adjust(&mut config);
        let runtime = Runtime::new(config.clone()).expect("runtime");
        Fixture {
            runtime: Some(runtime),
            config,
            layer,
            workloads: Vec::new(),
            dir,
        }
    }

    fn rt(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime")
    }

    /// A workload named `<name>-<pid>`: `spec` is the YAML body after `spec:`.
    fn workload(&mut self, name: &str, spec: &str) -> Workload {
        let name = format!("{name}-{}", std::process::id());
        let text = format!(
            "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n{spec}"
        );
        let (mut workloads, diagnostics) = parse_manifest(Path::new("test.yaml"), &text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        self.workloads.push(name);
        workloads.remove(0).workload
    }

    /// A workload with one container `main` running `command` (YAML flow sequence).
    fn one(&mut self, name: &str, command: &str, extra: &str) -> Workload {
        self.workload(
            name,
            &format!("  containers:\n    - {{ name: main, image: busybox, command: {command}{extra} }}\n"),
        )
    }

    fn start(&self, w: &Workload, container: &str) -> (String, Started) {
        self.rt().ensure_pod(w, "t1").expect("pod");
        let c = w
            .spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .expect("container");
        let started = self
            .rt()
            .start(
                w,
                c,
                std::slice::from_ref(&self.layer),
                &ProcessDefaults::default(),
            )
            .expect("start");
        (container_id(&w.name, container).expect("id"), started)
    }

    fn wait_exit(&self, id: &str, timeout: Duration) -> ExitRecord {
        if let Some(fd) = self.rt().exit_fd(id).expect("exit fd") {
            assert!(
                process::wait_readable(&fd, Some(timeout)).expect("poll"),
                "{id} did not exit within {timeout:?}"
            );
        }
        match self
            .rt()
            .inspect(id)
            .expect("inspect")
            .expect("record")
            .state
        {
            ContainerState::Exited(exit) => exit,
            other => panic!("{id} is {other:?}"),
        }
    }

    fn log(&self, id: &str) -> String {
        String::from_utf8_lossy(&logs::tail(&self.rt().log_path(id), usize::MAX).expect("log"))
            .into_owned()
    }

    /// Waits until the container's log contains `text`.
    fn wait_log(&self, id: &str, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log(id).contains(text) {
            assert!(
                Instant::now() < deadline,
                "{id} never logged {text:?}; log: {}",
                self.log(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(rt) = &self.runtime {
            for record in rt.list().unwrap_or_default() {
                if let Err(err) = rt.remove(&record.id) {
                    eprintln!("cleanup: cannot remove {}: {err}", record.id);
                }
            }
            for w in &self.workloads {
                if let Err(err) = rt.remove_pod(w) {
                    eprintln!("cleanup: cannot remove pod {w}: {err}");
                }
            }
        }
        let _ = &self.dir;
    }
}

fn cgroup_file(
    rt: &Runtime,
    workload: &str,
    container: &str,
    v1: (&str, &str),
    v2: &str,
) -> PathBuf {
    let relative = spec::cgroups_path(&rt.config.cgroup_parent, workload, container);
    let relative = relative.trim_start_matches('/');
    match rt.hierarchy {
        Hierarchy::Unified => Path::new("/sys/fs/cgroup").join(relative).join(v2),
        _ => Path::new("/sys/fs/cgroup")
            .join(v1.0)
            .join(relative)
            .join(v1.1),
    }
}

#[test]
fn container_ids_join_workload_and_container_names() {
    assert_eq!(container_id("cam", "server").expect("id"), "cam.server");
    assert!(container_id("Cam", "server").is_err());
    assert!(container_id("cam", "a.b").is_err());
}

#[test]
fn host_paths_must_be_under_an_allowed_path() {
    let allowed = [PathBuf::from("/srv/data"), PathBuf::from("/dev/serial")];
    // (path, allowed)
    let cases = [
        ("/srv/data", true),
        ("/srv/data/cam", true),
        ("/srv/database", false),
        ("/srv", false),
        ("/etc", false),
        ("/dev/serial/by-id", true),
    ];
    for (path, ok) in cases {
        assert_eq!(
            check_host_path(Path::new(path), &allowed).is_ok(),
            ok,
            "{path}"
        );
    }
    let err = check_host_path(Path::new("/etc"), &[]).expect_err("nothing allowed");
    assert!(err.to_string().contains("none are configured"), "{err}");
}

#[test]
fn output_goes_to_the_log_and_the_exit_code_is_reported() {
    let mut fx = Fixture::new();
    let w = fx.one(
        "rt-echo",
        r#"["sh", "-c", "echo hello; echo oops >&2; exit 3"]"#,
        "",
    );
    let (id, started) = fx.start(&w, "main");
    assert!(started.pid > 0);
    let exit = fx.wait_exit(&id, Duration::from_secs(10));
    assert_eq!(exit.status, ExitStatus::Code(3));
    assert!(!exit.oom_killed);
    assert!(exit.exited_ms >= exit.started_ms);
    let log = fx.log(&id);
    assert!(log.contains("hello\n") && log.contains("oops\n"), "{log}");
    assert_eq!(
        log.len(),
        "hello\noops\n".len(),
        "only the container's output: {log}"
    );
    fx.rt().remove(&id).expect("remove");
    assert!(fx.rt().list().expect("list").is_empty());
    assert!(fx.rt().log_path(&id).exists(), "logs are kept");
}

#[test]
fn a_container_past_its_memory_limit_is_reported_oom_killed() {
    let mut fx = Fixture::new();
    let w = fx.one(
        "rt-oom",
        r#"["sh", "-c", "head -c 256m /dev/zero | tail; echo survived"]"#,
        ", resources: { memory: 16Mi }",
    );
    let (id, _) = fx.start(&w, "main");
    let exit = fx.wait_exit(&id, Duration::from_secs(30));
    assert!(exit.oom_killed, "{exit:?}; log: {}", fx.log(&id));
}

#[test]
fn the_pids_limit_stops_a_fork_bomb_and_the_container_lives_on() {
    let mut fx = Fixture::new();
    let bomb = "i=0; while [ $i -lt 100 ]; do sleep 2 & i=$((i+1)); done; wait";
    let w = fx.one(
        "rt-pids",
        &format!(r#"["sh", "-c", "sh -c '{bomb}'; echo survived; sleep 60"]"#),
        ", resources: { pids: 16 }",
    );
    let (id, _) = fx.start(&w, "main");
    let pids_max = cgroup_file(fx.rt(), &w.name, "main", ("pids", "pids.max"), "pids.max");
    assert_eq!(
        std::fs::read_to_string(&pids_max).expect("pids.max").trim(),
        "16"
    );
    fx.wait_log(&id, "survived", Duration::from_secs(20));
    assert!(
        fx.log(&id).contains("fork"),
        "the bomb hit the limit: {}",
        fx.log(&id)
    );
    let record = fx.rt().inspect(&id).expect("inspect").expect("record");
    assert!(
        matches!(record.state, ContainerState::Running { .. }),
        "{record:?}"
    );
}

#[test]
fn the_cpu_quota_is_written_to_the_cgroup_and_usage_is_read_back() {
    let mut fx = Fixture::new();
    let w = fx.one(
        "rt-cpu",
        r#"["sleep", "60"]"#,
        ", resources: { cpu: 250m, memory: 32Mi }",
    );
    let (id, _) = fx.start(&w, "main");
    let file = cgroup_file(
        fx.rt(),
        &w.name,
        "main",
        ("cpu", "cpu.cfs_quota_us"),
        "cpu.max",
    );
    let quota = std::fs::read_to_string(&file).expect("quota");
    assert!(quota.starts_with("25000"), "{}: {quota}", file.display());
    let usage = fx.rt().stats(&id).expect("stats");
    assert!(
        usage.memory_bytes > 0 && usage.memory_bytes < 32 << 20,
        "{usage:?}"
    );
    assert_eq!(usage.oom_kills, 0);
}

#[test]
fn a_graceful_stop_lets_a_term_trap_finish_with_its_own_code() {
    let mut fx = Fixture::new();
    let w = fx.one(
        "rt-trap",
        r#"["sh", "-c", "trap 'sleep 1; exit 7' TERM; echo ready; while true; do sleep 0.1; done"]"#,
        "",
    );
    let (id, _) = fx.start(&w, "main");
    fx.wait_log(&id, "ready", Duration::from_secs(10));
    let begin = Instant::now();
    let exit = fx.rt().stop(&id, Duration::from_secs(10)).expect("stop");
    let took = begin.elapsed();
    assert_eq!(exit.status, ExitStatus::Code(7));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mut fx = Fixture::new();
    let w = fx.one(
        "rt-ignore",
        r#"["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]"#,
        "",
    );
    let (id, _) = fx.start(&w, "main");
    fx.wait_log(&id, "ready", Duration::from_secs(10));
    let begin = Instant::now();
    let exit = fx.rt().stop(&id, Duration::from_secs(1)).expect("stop");
    let took = begin.elapsed();
    assert_eq!(exit.status, ExitStatus::Signal(9));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn a_restarted_agent_re_adopts_running_containers() {
    let mut fx = Fixture::new();
    let w = fx.workload(
        "rt-adopt",
        "  containers:\n    - { name: a, image: busybox, command: [sleep, \"300\"] }\n    - { name: b, image: busybox, command: [sleep, \"300\"] }\n",
    );
    let (a, started_a) = fx.start(&w, "a");
    let (b, started_b) = fx.start(&w, "b");

    // The agent dies: nothing of the old instance survives but the files.
    drop(fx.runtime.take());
    let rt = Runtime::new(fx.config.clone()).expect("new runtime");
    let records = rt.list().expect("list");
    let pids: Vec<_> = records.iter().map(|r| (r.id.clone(), r.state)).collect();
    assert_eq!(
        pids,
        [
            (a.clone(), ContainerState::Running { pid: started_a.pid }),
            (b.clone(), ContainerState::Running { pid: started_b.pid }),
        ]
    );
    assert_eq!(records[0].workload, w.name);
    assert_eq!(records[0].container, "a");
    assert!(Path::new(&format!("/proc/{}", started_a.pid)).exists());
    let exit = rt
        .stop(&a, Duration::from_secs(1))
        .expect("stop from the new instance");
    assert_eq!(
        exit.status,
        ExitStatus::Signal(9),
        "sleep as PID 1 ignores SIGTERM"
    );
    rt.remove(&a).expect("remove");
    rt.remove(&b).expect("remove a running container");
    assert!(rt.list().expect("list").is_empty());
    fx.runtime = Some(rt);
}

#[test]
fn containers_of_an_isolated_workload_share_loopback_and_nothing_else() {
    let mut fx = Fixture::new();
    let w = fx.workload(
        "rt-net",
        "  network: isolated\n  containers:\n    - { name: server, image: busybox, command: [sh, -c, \"mkfifo /tmp/in; exec 3<>/tmp/in; ip -o link; nc -l -p 8080 <&3; echo server-done\"] }\n    - { name: client, image: busybox, command: [sh, -c, \"for i in $(seq 100); do echo hello-pod | nc 127.0.0.1 8080 && exit 0; sleep 0.1; done; exit 1\"] }\n",
    );
    // The server's nc reads its stdin from a FIFO this shell holds open: busybox's `nc -l`
    // quits when its stdin ends, and on a loaded machine that could come before the client's
    // message did.
    let (server, _) = fx.start(&w, "server");
    let (client, _) = fx.start(&w, "client");
    let exit = fx.wait_exit(&server, Duration::from_secs(15));
    assert_eq!(exit.status, ExitStatus::Code(0), "{}", fx.log(&server));
    assert_eq!(
        fx.wait_exit(&client, Duration::from_secs(5)).status,
        ExitStatus::Code(0)
    );
    // The shim may still be copying the last output when the exit is seen (seconds, on a
    // loaded machine): the line after the message says it has all of it.
    fx.wait_log(&server, "server-done", Duration::from_secs(20));
    let log = fx.log(&server);
    assert!(log.contains("hello-pod"), "the client's message: {log}");
    let links = log.lines().filter(|l| l.contains("link/")).count();
    assert_eq!(
        links, 1,
        "only loopback in the pod's network namespace: {log}"
    );

    let rt = fx.rt();
    assert!(rt
        .pods()
        .expect("pods")
        .contains(&(w.name.clone(), "t1".to_owned())));
    let netns = rt.netns(&w.name).expect("isolated pods have a netns");
    rt.remove(&server).expect("remove");
    rt.remove(&client).expect("remove");
    rt.remove_pod(&w.name).expect("remove pod");
    assert!(!netns.exists() && rt.netns(&w.name).is_none());
    assert!(!rt
        .pods()
        .expect("pods")
        .iter()
        .any(|(name, _)| *name == w.name));
}

#[test]
fn logs_are_rotated_at_the_cap() {
    let mut fx = Fixture::with(|c| c.log_max_bytes = 4096);
    let w = fx.one(
        "rt-logs",
        r#"["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"]"#,
        "",
    );
    let (id, _) = fx.start(&w, "main");
    fx.wait_exit(&id, Duration::from_secs(20));
    // The shim may still be copying the last output when the exit is seen (on a loaded
    // machine, a CI run found the tail one line short): wait for the last line.
    fx.wait_log(&id, "line-2999\n", Duration::from_secs(20));
    let path = fx.rt().log_path(&id);
    let current = std::fs::metadata(&path).expect("log").len();
    let old = std::fs::metadata(logs::rotated(&path))
        .expect("rotated log")
        .len();
    assert!(current <= 4096 && old <= 4096, "{current} {old}");
    assert_eq!(logs::tail(&path, 1).expect("tail"), b"line-2999\n");
}

#[test]
fn exec_runs_in_the_container_and_returns_output_and_exit_code() {
    let mut fx = Fixture::new();
    let w = fx.one("rt-exec", r#"["sleep", "60"]"#, ", env: { GREETING: hi }");
    let (id, _) = fx.start(&w, "main");
    let out = fx
        .rt()
        .exec(
            &id,
            &[
                "sh".into(),
                "-c".into(),
                "echo $GREETING $(hostname); echo err >&2; exit 4".into(),
            ],
            Duration::from_secs(10),
        )
        .expect("exec");
    assert_eq!(out.result, ExecResult::Exited(ExitStatus::Code(4)));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hi {}\n", w.name)
    );
    assert_eq!(out.stderr, b"err\n");

    let begin = Instant::now();
    let out = fx
        .rt()
        .exec(
            &id,
            &["sleep".into(), "30".into()],
            Duration::from_millis(500),
        )
        .expect("exec");
    assert_eq!(out.result, ExecResult::TimedOut);
    assert!(begin.elapsed() < Duration::from_secs(5));

    let err = fx
        .rt()
        .exec(&id, &["/no/such/binary".into()], Duration::from_secs(5));
    assert!(
        err.is_err()
            || matches!(err, Ok(ExecOutput { result: ExecResult::Exited(ExitStatus::Code(c)), .. }) if c != 0),
        "{err:?}"
    );
}

/// Runs `command` in the container through [`Runtime::exec`], as a health check does.
fn exec_sh(fx: &Fixture, id: &str, command: &str) -> ExecOutput {
    fx.rt()
        .exec(
            id,
            &["sh".into(), "-c".into(), command.into()],
            Duration::from_secs(10),
        )
        .expect("exec")
}

/// `unshare -U` needs no capability (an unprivileged user namespace), so only the seccomp
/// filter refuses it; `Seccomp:` in `/proc/self/status` is 2 under a filter, 0 without.
const SECCOMP_PROBE: &str = "grep '^Seccomp:' /proc/self/status; unshare -U true; echo unshare=$?";

#[test]
fn a_container_and_what_is_execd_in_it_run_under_the_seccomp_filter() {
    let mut fx = Fixture::new();
    let w = fx.one(
        "rt-seccomp",
        &format!(r#"["sh", "-c", "{SECCOMP_PROBE}; sleep 60"]"#),
        "",
    );
    let (id, _) = fx.start(&w, "main");
    fx.wait_log(&id, "unshare=", Duration::from_secs(10));
    let log = fx.log(&id);
    assert!(log.contains("Seccomp:\t2\n"), "{log}");
    assert!(
        log.contains("Operation not permitted") && log.contains("unshare=1\n"),
        "{log}"
    );

    let out = exec_sh(&fx, &id, SECCOMP_PROBE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "Seccomp:\t2\nunshare=1\n", "stderr: {stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}

#[test]
fn an_added_capability_unlocks_only_the_syscalls_docker_unlocks_with_it() {
    let mut fx = Fixture::new();
    // With SYS_ADMIN the kernel would let swapon through to the file (EINVAL: no swap
    // signature); the filter refuses it first. mount and unshare are unlocked by SYS_ADMIN.
    let w = fx.one(
        "rt-seccomp-admin",
        r#"["sh", "-c", "mount -t tmpfs none /root && echo mounted; unshare -U true && echo unshared; head -c 65536 /dev/zero > /tmp/swap; swapon /tmp/swap; echo swapon=$?"]"#,
        ", capabilities: { add: [SYS_ADMIN] }",
    );
    let (id, _) = fx.start(&w, "main");
    let exit = fx.wait_exit(&id, Duration::from_secs(10));
    let log = fx.log(&id);
    assert_eq!(exit.status, ExitStatus::Code(0), "{log}");
    assert!(
        log.contains("mounted\n") && log.contains("unshared\n"),
        "{log}"
    );
    assert!(
        log.contains("/tmp/swap: Operation not permitted") && log.contains("swapon=1\n"),
        "{log}"
    );
}

#[test]
fn a_privileged_container_and_what_is_execd_in_it_have_no_seccomp_filter() {
    let mut fx = Fixture::new();
    let w = fx.one(
        "rt-seccomp-privileged",
        &format!(r#"["sh", "-c", "{SECCOMP_PROBE}; sleep 60"]"#),
        ", privileged: true",
    );
    let (id, _) = fx.start(&w, "main");
    fx.wait_log(&id, "unshare=", Duration::from_secs(10));
    let log = fx.log(&id);
    assert!(log.contains("Seccomp:\t0\n"), "{log}");
    assert!(log.contains("unshare=0\n"), "{log}");
    let out = exec_sh(&fx, &id, SECCOMP_PROBE);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Seccomp:\t0\nunshare=0\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_host_path_outside_the_allow_list_is_refused() {
    let mut fx = Fixture::new();
    let w = fx.workload(
        "rt-hostpath",
        "  volumes: [{ name: etc, hostPath: /etc }]\n  containers:\n    - { name: main, image: busybox, command: [cat, /host/hostname], mounts: [{ volume: etc, path: /host }] }\n",
    );
    fx.rt().ensure_pod(&w, "t1").expect("pod");
    let err = fx
        .rt()
        .start(
            &w,
            &w.spec.containers[0],
            std::slice::from_ref(&fx.layer),
            &ProcessDefaults::default(),
        )
        .expect_err("/etc is not allowed");
    assert!(
        matches!(err, RuntimeError::HostPathNotAllowed { .. }),
        "{err}"
    );
    assert!(
        fx.rt().list().expect("list").is_empty(),
        "nothing left behind"
    );

    let allowed = fx.dir.path().join("allowed");
    std::fs::write(allowed.join("greeting"), "from the host\n").expect("write");
    let w = fx.workload(
        "rt-hostpath-ok",
        &format!("  volumes: [{{ name: shared, hostPath: {} }}, {{ name: data }}]\n  containers:\n    - {{ name: main, image: busybox, readOnlyRootfs: true, command: [sh, -c, \"cat /host/greeting; echo kept > /data/f; touch /oops\"], mounts: [{{ volume: shared, path: /host, readOnly: true }}, {{ volume: data, path: /data }}] }}\n", allowed.display()),
    );
    let (id, _) = fx.start(&w, "main");
    let exit = fx.wait_exit(&id, Duration::from_secs(10));
    let log = fx.log(&id);
    assert!(log.contains("from the host"), "{log}");
    assert!(
        log.contains("Read-only file system"),
        "read-only rootfs: {log}"
    );
    assert_ne!(exit.status, ExitStatus::Code(0));
    let volume = fx.rt().volume_dir(&w.name, "data");
    assert_eq!(
        std::fs::read_to_string(volume.join("f")).expect("volume file"),
        "kept\n"
    );
    fx.rt().remove(&id).expect("remove");
    fx.rt().remove_pod(&w.name).expect("remove pod");
    assert!(volume.join("f").exists(), "named volumes survive the pod");
}

#[test]
fn a_failing_start_reports_libcontainers_reason_and_leaves_nothing() {
    let mut fx = Fixture::new();
    let w = fx.one("rt-fail", r#"["/no/such/binary"]"#, "");
    fx.rt().ensure_pod(&w, "t1").expect("pod");
    let result = fx.rt().start(
        &w,
        &w.spec.containers[0],
        std::slice::from_ref(&fx.layer),
        &ProcessDefaults::default(),
    );
    match result {
        // libcontainer checks the executable before starting.
        Err(RuntimeError::StartFailed { message, .. }) => {
            assert!(message.contains("no/such/binary") || !message.is_empty())
        }
        // Or it starts and fails at exec: exit code 127-ish.
        Ok(_) => {
            let id = container_id(&w.name, "main").expect("id");
            let exit = fx.wait_exit(&id, Duration::from_secs(10));
            assert_ne!(exit.status, ExitStatus::Code(0));
            fx.rt().remove(&id).expect("remove");
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
    assert!(fx.rt().list().expect("list").is_empty());
    assert!(!fx
        .config
        .run_dir
        .join("libcontainer")
        .join(container_id(&w.name, "main").expect("id"))
        .exists());
}

/// The static musl agent to use as shim: `SHOAL_MUSL_AGENT` (set by `.ci/run` after
/// `cross/ci-check` built it), else built here with `cross/build x86_64` (a no-op when fresh).
fn musl_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOAL_MUSL_AGENT") {
        return PathBuf::from(path);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = "/var/cache/shoal/cross-target";
    let status = Command::new(repo.join("cross/build"))
        .arg("x86_64")
        .env("CARGO_TARGET_DIR", target)
        .current_dir(&repo)
        .status()
        .expect("run cross/build x86_64");
    assert!(status.success(), "cross/build x86_64 failed");
    Path::new(target).join("dist/x86_64-unknown-linux-musl/shoal-agent")
}

#[test]
fn the_static_musl_build_runs_200_containers_20_at_a_time_while_the_agent_is_busy() {
    const PARALLEL: usize = 20;
    const EACH: usize = 10;
    const LIMIT: Duration = Duration::from_secs(120);
    let shim = musl_agent();
    let mut fx = Fixture::with(|c| {
        c.shim_binary = shim;
        c.start_timeout = Duration::from_secs(20);
    });
    let containers: String = (0..PARALLEL)
        .map(|i| format!("    - {{ name: c{i}, image: busybox, command: [\"true\"] }}\n"))
        .collect();
    let w = fx.workload("rt-musl", &format!("  containers:\n{containers}"));
    fx.rt().ensure_pod(&w, "t1").expect("pod");

    let fx = std::sync::Arc::new(fx);
    let w = std::sync::Arc::new(w);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let begin = Instant::now();
    // The agent is busy otherwise: threads allocating and freeing all the time.
    for _ in 0..2 {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut keep = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                keep.push(vec![0u8; 4096]);
                if keep.len() > 1000 {
                    keep.clear();
                }
            }
        });
    }
    // Detached workers: should one hang, the test fails at the deadline instead of waiting.
    for i in 0..PARALLEL {
        let (tx, fx, w) = (done_tx.clone(), fx.clone(), w.clone());
        std::thread::spawn(move || {
            let container = &w.spec.containers[i];
            let result = (|| -> Result<(), String> {
                let id = container_id(&w.name, &container.name).map_err(|e| e.to_string())?;
                for _ in 0..EACH {
                    fx.rt()
                        .start(
                            &w,
                            container,
                            std::slice::from_ref(&fx.layer),
                            &ProcessDefaults::default(),
                        )
                        .map_err(|e| e.to_string())?;
                    if let Some(fd) = fx.rt().exit_fd(&id).map_err(|e| e.to_string())? {
                        if !process::wait_readable(&fd, Some(Duration::from_secs(20)))
                            .map_err(|e| e.to_string())?
                        {
                            return Err(format!("{id} did not exit"));
                        }
                    }
                    match fx
                        .rt()
                        .inspect(&id)
                        .map_err(|e| e.to_string())?
                        .map(|r| r.state)
                    {
                        Some(ContainerState::Exited(exit))
                            if exit.status == ExitStatus::Code(0) => {}
                        other => return Err(format!("{id}: {other:?}")),
                    }
                    fx.rt().remove(&id).map_err(|e| e.to_string())?;
                }
                Ok(())
            })();
            let _ = tx.send(result);
        });
    }
    let mut failures = Vec::new();
    for finished in 0..PARALLEL {
        match done_rx.recv_timeout(LIMIT.saturating_sub(begin.elapsed())) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failures.push(err),
            Err(_) => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("hung: only {finished} of {PARALLEL} workers finished within {LIMIT:?}");
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} workers failed: {failures:?}",
        failures.len()
    );
    eprintln!(
        "musl stress: {} containers in {:?}",
        PARALLEL * EACH,
        begin.elapsed()
    );
}
