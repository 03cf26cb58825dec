use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use shoal_model::manifest::parse_manifest;

use super::*;

/// A workload from YAML: `spec` is the indented body after `spec:`.
fn workload(spec: &str) -> Workload {
    let text =
        format!("apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: cam }}\nspec:\n{spec}");
    let (mut workloads, diagnostics) = parse_manifest(Path::new("test.yaml"), &text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    workloads.remove(0).workload
}

fn one_container(container: &str) -> Workload {
    workload(&format!(
        "  containers:\n    - {{ name: app, image: busybox, {container} }}\n"
    ))
}

const HOST: HostFacts = HostFacts {
    cgroup_v2: false,
    device_cgroup: true,
    swap_limit: true,
    cap_last_cap: 40,
    bounding_set: u64::MAX,
};

fn paths() -> ContainerPaths {
    ContainerPaths {
        rootfs: "/run/shoal/containers/cam.app/rootfs".into(),
        ipc_ns: "/run/shoal/pods/cam/ipc".into(),
        net_ns: Some("/run/shoal/pods/cam/net".into()),
        volumes: [(
            "data".to_owned(),
            PathBuf::from("/var/lib/shoal/volumes/cam/data"),
        )]
        .into(),
        hosts: Some("/run/shoal/containers/cam.app/hosts".into()),
        resolv_conf: None,
    }
}

fn spec_of(w: &Workload, defaults: &ProcessDefaults, host: &HostFacts) -> Result<Spec, SpecError> {
    let devices = [HostDevice {
        path: "/dev/ttyUSB0".into(),
        kind: DeviceKind::Char,
        major: 188,
        minor: 0,
        mode: 0o20660,
        uid: 0,
        gid: 20,
    }];
    build(&SpecInput {
        workload: w,
        container: &w.spec.containers[0],
        defaults,
        paths: &paths(),
        host,
        devices: &devices,
        cgroups_path: "/shoal/node-1/cam/app",
    })
}

fn image(entrypoint: &[&str], cmd: &[&str]) -> ProcessDefaults {
    ProcessDefaults {
        entrypoint: entrypoint.iter().map(|s| (*s).to_owned()).collect(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        ..ProcessDefaults::default()
    }
}

#[test]
fn command_and_args_follow_docker_rules() {
    // (manifest fields, image entrypoint, image cmd, expected argv)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
    let cases: [Case; 6] = [
        ("", &["/init"], &["--serve"], &["/init", "--serve"]),
        ("", &[], &["sh"], &["sh"]),
        ("args: [\"-x\"]", &["/init"], &["--serve"], &["/init", "-x"]),
        (
            "command: [\"/bin/app\"]",
            &["/init"],
            &["--serve"],
            &["/bin/app"],
        ),
        (
            "command: [\"/bin/app\"], args: [\"-v\"]",
            &["/init"],
            &["--serve"],
            &["/bin/app", "-v"],
        ),
        ("args: [\"echo\", \"hi\"]", &[], &["sh"], &["echo", "hi"]),
    ];
    for (fields, entrypoint, cmd, expected) in cases {
        let w = one_container(fields);
        let spec = spec_of(&w, &image(entrypoint, cmd), &HOST).expect("spec");
        let args = spec.process().as_ref().and_then(|p| p.args().clone());
        assert_eq!(
            args.as_deref(),
            Some(&expected.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()[..]),
            "{fields}"
        );
    }
}

#[test]
fn an_image_without_entrypoint_or_cmd_needs_a_command() {
    let w = one_container("");
    let err = spec_of(&w, &image(&[], &[]), &HOST).expect_err("nothing to run");
    assert!(err.to_string().contains("set `command`"), "{err}");
}

#[test]
fn the_manifest_env_overrides_the_image_and_path_has_a_default() {
    let w = one_container("env: { A: manifest, B: b }");
    let defaults = ProcessDefaults {
        env: vec!["A=image".into(), "C=c".into()],
        ..image(&["x"], &[])
    };
    let spec = spec_of(&w, &defaults, &HOST).expect("spec");
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .expect("env");
    assert_eq!(
        env,
        [
            "A=manifest",
            "B=b",
            "C=c",
            "HOSTNAME=cam",
            &format!("PATH={DEFAULT_PATH}")
        ]
    );
}

#[test]
fn the_working_dir_and_user_come_from_the_manifest_then_the_image() {
    // (manifest fields, image working dir, image user, expected cwd, uid, gid)
    let cases = [
        ("", None, None, "/", 0, 0),
        ("", Some("/srv"), Some((5, Some(6))), "/srv", 5, 6),
        (
            "workingDir: /app, user: \"1000\"",
            Some("/srv"),
            Some((5, None)),
            "/app",
            1000,
            0,
        ),
        ("user: \"1000:1001\"", None, None, "/", 1000, 1001),
    ];
    for (fields, dir, user, cwd, uid, gid) in cases {
        let w = one_container(fields);
        let defaults = ProcessDefaults {
            working_dir: dir.map(str::to_owned),
            user: user.map(|(uid, gid)| User { uid, gid }),
            ..image(&["x"], &[])
        };
        let spec = spec_of(&w, &defaults, &HOST).expect("spec");
        let process = spec.process().as_ref().expect("process");
        assert_eq!(process.cwd(), Path::new(cwd), "{fields}");
        assert_eq!(
            (process.user().uid(), process.user().gid()),
            (uid, gid),
            "{fields}"
        );
    }
}

fn caps(fields: &str, host: &HostFacts) -> Vec<&'static str> {
    let w = one_container(fields);
    capabilities(&w.spec.containers[0], host)
        .expect("capabilities")
        .into_iter()
        .collect()
}

#[test]
fn capabilities_start_from_dockers_set_with_add_and_drop() {
    let mut docker: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    docker.sort();
    assert_eq!(caps("", &HOST), docker);

    let dropped = caps(
        "capabilities: { drop: [NET_RAW], add: [CAP_NET_ADMIN] }",
        &HOST,
    );
    assert!(!dropped.contains(&"NET_RAW") && dropped.contains(&"NET_ADMIN"));

    assert_eq!(
        caps(
            "capabilities: { drop: [ALL], add: [NET_BIND_SERVICE] }",
            &HOST
        ),
        ["NET_BIND_SERVICE"]
    );
    assert_eq!(caps("capabilities: { add: [ALL] }", &HOST).len(), 41);
    assert_eq!(caps("privileged: true", &HOST).len(), 41);
    let old_kernel = HostFacts {
        cap_last_cap: 37,
        ..HOST
    };
    assert_eq!(
        caps("privileged: true", &old_kernel).len(),
        38,
        "no PERFMON, BPF, CHECKPOINT_RESTORE"
    );
    let agent_without_sys_resource = HostFacts {
        bounding_set: !(1 << 24),
        ..HOST
    };
    for fields in ["privileged: true", "capabilities: { add: [ALL] }"] {
        let caps = caps(fields, &agent_without_sys_resource);
        assert_eq!(caps.len(), 40, "{fields}");
        assert!(!caps.contains(&"SYS_RESOURCE"), "{fields}");
    }
}

#[test]
fn without_an_enforcing_device_cgroup_mknod_needs_to_be_asked_for() {
    let v2 = HostFacts {
        cgroup_v2: true,
        device_cgroup: false,
        ..HOST
    };
    assert!(!caps("", &v2).contains(&"MKNOD"));
    assert!(caps("capabilities: { add: [MKNOD] }", &v2).contains(&"MKNOD"));
}

#[test]
fn every_capability_name_is_known_to_oci_spec() {
    for (name, _) in ALL_CAPABILITIES {
        assert!(Capability::from_str(name).is_ok(), "{name}");
    }
}

#[test]
fn the_process_is_hardened_unless_privileged() {
    let w = one_container("");
    let spec = spec_of(&w, &image(&["x"], &[]), &HOST).expect("spec");
    let process = spec.process().as_ref().expect("process");
    assert_eq!(process.no_new_privileges(), Some(true));
    let rlimit = &process.rlimits().as_ref().expect("rlimits")[0];
    assert_eq!((rlimit.soft(), rlimit.hard()), (1024, 1024));
    let linux = spec.linux().as_ref().expect("linux");
    assert_eq!(
        linux.masked_paths().as_ref().map(Vec::len),
        Some(MASKED_PATHS.len())
    );
    assert_eq!(
        linux.readonly_paths().as_ref().map(Vec::len),
        Some(READONLY_PATHS.len())
    );
    let devices = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .expect("devices");
    assert!(!devices[0].allow(), "deny all first: {devices:?}");
    assert_eq!(
        seccomp::Profile::of(&spec),
        Ok(seccomp::Profile::Default),
        "{:?}",
        spec.annotations()
    );

    let w = one_container("privileged: true");
    let spec = spec_of(&w, &image(&["x"], &[]), &HOST).expect("spec");
    assert_eq!(
        seccomp::Profile::of(&spec),
        Ok(seccomp::Profile::Unconfined),
        "{:?}",
        spec.annotations()
    );
    assert_eq!(
        spec.process()
            .as_ref()
            .expect("process")
            .no_new_privileges(),
        Some(false)
    );
    let linux = spec.linux().as_ref().expect("linux");
    assert_eq!(linux.masked_paths().as_ref().map(Vec::len), Some(0));
    let devices = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .expect("devices");
    assert!(
        devices[0].allow() && devices[0].typ() == Some(LinuxDeviceType::A),
        "{devices:?}"
    );
}

fn namespaces(w: &Workload, host: &HostFacts) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    let spec = spec_of(w, &image(&["x"], &[]), host).expect("spec");
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .expect("namespaces")
        .into_iter()
        .map(|ns| (ns.typ(), ns.path().clone()))
        .collect()
}

#[test]
fn host_network_has_no_net_namespace_and_isolated_joins_the_pods() {
    let host = one_container("");
    let ns = namespaces(&host, &HOST);
    assert!(
        !ns.iter().any(|(t, _)| *t == LinuxNamespaceType::Network),
        "{ns:?}"
    );
    assert!(ns.contains(&(
        LinuxNamespaceType::Ipc,
        Some("/run/shoal/pods/cam/ipc".into())
    )));
    assert!(ns.contains(&(LinuxNamespaceType::Pid, None)));

    let isolated =
        workload("  network: isolated\n  containers:\n    - { name: app, image: busybox }\n");
    let ns = namespaces(&isolated, &HOST);
    assert!(ns.contains(&(
        LinuxNamespaceType::Network,
        Some("/run/shoal/pods/cam/net".into())
    )));
    assert!(
        !ns.iter().any(|(t, _)| *t == LinuxNamespaceType::Cgroup),
        "no cgroup ns on v1"
    );
    let v2 = HostFacts {
        cgroup_v2: true,
        ..HOST
    };
    assert!(namespaces(&isolated, &v2)
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::Cgroup));
}

#[test]
fn resources_become_cgroup_limits() {
    let w = one_container("resources: { memory: 64Mi, cpu: 250m, pids: 32 }");
    let spec = spec_of(&w, &image(&["x"], &[]), &HOST).expect("spec");
    let linux = spec.linux().as_ref().expect("linux");
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/shoal/node-1/cam/app"))
    );
    let resources = linux.resources().as_ref().expect("resources");
    let memory = resources.memory().as_ref().expect("memory");
    assert_eq!(
        (memory.limit(), memory.swap()),
        (Some(64 << 20), Some(64 << 20))
    );
    let cpu = resources.cpu().as_ref().expect("cpu");
    assert_eq!((cpu.quota(), cpu.period()), (Some(25_000), Some(100_000)));
    assert_eq!(resources.pids().as_ref().map(|p| p.limit()), Some(32));

    let no_swap_accounting = HostFacts {
        swap_limit: false,
        ..HOST
    };
    let spec = spec_of(&w, &image(&["x"], &[]), &no_swap_accounting).expect("spec");
    let memory = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .and_then(|r| *r.memory())
        .expect("memory");
    assert_eq!(memory.swap(), None);
}

#[test]
fn devices_are_created_and_allowed() {
    let w = one_container("devices: [/dev/ttyUSB0]");
    let spec = spec_of(&w, &image(&["x"], &[]), &HOST).expect("spec");
    let linux = spec.linux().as_ref().expect("linux");
    let node = &linux.devices().as_ref().expect("devices")[0];
    assert_eq!(
        (
            node.path().as_path(),
            node.typ(),
            node.major(),
            node.minor()
        ),
        (Path::new("/dev/ttyUSB0"), LinuxDeviceType::C, 188, 0)
    );
    assert_eq!(node.file_mode(), Some(0o660));
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .expect("rules");
    assert!(
        rules
            .iter()
            .any(|r| r.allow() && r.major() == Some(188) && r.minor() == Some(0)),
        "{rules:?}"
    );

    let w = one_container("devices: [/dev/ttyACM0]");
    let err = spec_of(&w, &image(&["x"], &[]), &HOST).expect_err("not looked up");
    assert_eq!(
        err,
        SpecError::DeviceNotFound {
            path: "/dev/ttyACM0".into()
        }
    );
}

#[test]
fn volumes_are_bind_mounted_read_only_when_asked() {
    let w = workload(
        "  volumes: [{ name: data }]\n  containers:\n    - { name: app, image: busybox, readOnlyRootfs: true, mounts: [{ volume: data, path: /data, readOnly: true }] }\n",
    );
    let spec = spec_of(&w, &image(&["x"], &[]), &HOST).expect("spec");
    assert_eq!(spec.root().as_ref().map(|r| r.readonly()), Some(Some(true)));
    let mounts = spec.mounts().as_ref().expect("mounts");
    let data = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/data"))
        .expect("data mount");
    assert_eq!(
        data.source().as_deref(),
        Some(Path::new("/var/lib/shoal/volumes/cam/data"))
    );
    assert!(data
        .options()
        .as_ref()
        .is_some_and(|o| o.contains(&"ro".to_owned())));
    assert!(mounts
        .iter()
        .any(|m| m.destination() == Path::new("/etc/hosts")));
    for fs in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        assert!(
            mounts.iter().any(|m| m.destination() == Path::new(fs)),
            "{fs}"
        );
    }
}

#[test]
fn a_volume_the_caller_did_not_prepare_is_an_error() {
    let w = workload(
        "  volumes: [{ name: other }]\n  containers:\n    - { name: app, image: busybox, mounts: [{ volume: other, path: /o }] }\n",
    );
    let err = spec_of(&w, &image(&["x"], &[]), &HOST).expect_err("not prepared");
    assert!(matches!(err, SpecError::VolumeNotPrepared { .. }), "{err}");
}
