//! The agent as a device runs it: a real `shoal-agent run`, real containers through
//! libcontainer, and what an operator sees through `shoal-agent ps` and `logs`. Each test
//! has its own agent, data dir and workload names, and prints how long each wait took.

use std::process::Command;
use std::time::{Duration, Instant};

use shoal_model::wire::NodeStatus;
use shoal_tests::agent::{
    cell, image_workload, kill_until_gone, processes_mentioning, row, shell_workload, Agent, Row,
};
use shoal_tests::images::{busybox_layer, Image, OciLayout, UnpullableImages};

const RUNNING: &str = "Running";

fn running(rows: &[Row], workload: &str) -> bool {
    cell(rows, workload, "main", "STATE") == RUNNING
}

fn pid(rows: &[Row], workload: &str) -> String {
    cell(rows, workload, "main", "PID")
}

fn started(name: &str, extra_config: &str) -> Agent {
    let mut agent = Agent::new(name, extra_config);
    agent.start();
    agent.import_busybox();
    agent
}

#[test]
fn an_applied_workload_runs_and_ps_and_logs_show_it() {
    let agent = started("e2e-basic", "");
    let script =
        "echo hello from shoal; i=0; while true; i=$((i+1)); do echo tick $i; sleep 0.2; done";
    let applied = agent.apply("hello", &shell_workload("hello", script, "", ""));
    assert!(applied.contains("hello: created"), "{applied}");
    let rows = agent.wait_for("hello running", Duration::from_secs(20), |rows| {
        running(rows, "hello")
    });
    let row = row(&rows, "hello", "main").expect("row");
    assert!(row["PID"].parse::<u32>().is_ok(), "{row:?}");
    assert_eq!(row["RESTARTS"], "0");
    let start = Instant::now();
    let logs = loop {
        let logs = agent.ok(&["logs", "hello"]);
        if logs.contains("tick 3\n") || start.elapsed() > Duration::from_secs(10) {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        logs.starts_with("hello from shoal\ntick 1\ntick 2\ntick 3\n"),
        "{logs}"
    );
    let last = agent.ok(&["logs", "hello/main", "--tail", "1"]);
    assert!(
        last.starts_with("tick ") && last.lines().count() == 1,
        "{last:?}"
    );

    // `logs -f` keeps printing what the container writes next.
    let mut follow = Command::new(shoal_tests::binary("shoal-agent"))
        .args(["logs", "hello", "-f", "--tail", "0", "--socket"])
        .arg(&agent.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut first = String::new();
    let stdout = follow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    });
    for _ in 0..100 {
        if reader.is_finished() {
            first = reader.join().expect("reader").expect("a line");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(first.starts_with("tick "), "logs -f printed {first:?}");

    let again = agent.apply("hello", &shell_workload("hello", script, "", ""));
    assert!(again.contains("hello: unchanged"), "{again}");
}

#[test]
fn a_crashing_container_is_restarted_with_a_growing_backoff() {
    let agent = started("e2e-crash", "");
    let records = image_records(&agent);
    assert!(!records.is_empty(), "no image record found");
    agent.apply(
        "crash",
        &shell_workload("crash", "echo boom; exit 3", "", ""),
    );
    // Backoff 1 s, 2 s, 4 s, ...: in about 8 s there are three or four restarts, not dozens.
    std::thread::sleep(Duration::from_secs(8));
    let rows = agent.ps();
    let restarts: u32 = cell(&rows, "crash", "main", "RESTARTS")
        .parse()
        .expect("restart count");
    assert!(
        (2..=5).contains(&restarts),
        "restarts after 8 s: {restarts}\n{rows:?}"
    );
    assert_eq!(cell(&rows, "crash", "main", "LAST EXIT"), "code 3");
    // Starting again and again from an image imported a moment ago rewrites nothing of it.
    assert_eq!(
        image_records(&agent),
        records,
        "image records rewritten by restarts (flash wear)"
    );
}

/// The image store's records (`images/images/*.json` in the data dir), with inode and mtime:
/// a rewrite (a new file renamed over the old) changes both.
fn image_records(
    agent: &Agent,
) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(agent.root.join("data/images/images"))
        .expect("the image store's records")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let meta = e.metadata().expect("metadata");
            (
                e.path().display().to_string(),
                (meta.ino(), meta.modified().expect("mtime")),
            )
        })
        .collect()
}

#[test]
fn a_container_past_its_memory_limit_is_oom_killed_reported_and_restarted() {
    let agent = started("e2e-oom", "");
    let script = "a=$(busybox head -c 67108864 /dev/zero | busybox tr '\\0' x); sleep 300";
    let resources = "      resources: { memory: 16Mi }\n";
    agent.apply("hog", &shell_workload("hog", script, "", resources));
    let rows = agent.wait_for("an OOM kill", Duration::from_secs(30), |rows| {
        cell(rows, "hog", "main", "RESTARTS").contains("OOM")
    });
    assert_eq!(
        cell(&rows, "hog", "main", "LAST EXIT"),
        "OOMKilled",
        "{rows:?}"
    );
}

#[test]
fn a_failing_health_check_restarts_the_container() {
    let agent = started("e2e-health", "");
    let health =
        "      health: { exec: [\"/bin/false\"], interval: 1s, timeout: 1s, retries: 2 }\n";
    // `sleep` as PID 1 of its namespace ignores SIGTERM: the agent kills it after the grace.
    agent.apply(
        "sick",
        &shell_workload("sick", "sleep 300", "  stopGracePeriod: 1s\n", health),
    );
    let rows = agent.wait_for(
        "a restart after failed checks",
        Duration::from_secs(30),
        |rows| {
            cell(rows, "sick", "main", "RESTARTS")
                .parse::<u32>()
                .unwrap_or(0)
                >= 1
        },
    );
    assert_eq!(
        cell(&rows, "sick", "main", "LAST EXIT"),
        "SIGKILL",
        "killed after the grace period: {rows:?}"
    );
    assert!(
        agent
            .log()
            .contains("health check failed 2 times in a row: exit status 1"),
        "the reason is logged"
    );
    let ok = "      health: { exec: [\"/bin/true\"], interval: 1s, timeout: 1s, retries: 2 }\n";
    agent.apply("well", &shell_workload("well", "sleep 300", "", ok));
    agent.wait_for("a healthy container", Duration::from_secs(20), |rows| {
        cell(rows, "well", "main", "HEALTH") == "Healthy"
    });
}

#[test]
fn an_agent_killed_with_sigkill_re_adopts_its_containers_without_restarting_them() {
    let mut agent = started("e2e-adopt", "");
    agent.apply("keep", &shell_workload("keep", "sleep 300", "", ""));
    let before = agent.wait_for("keep running", Duration::from_secs(20), |rows| {
        running(rows, "keep")
    });
    agent.kill9();
    let start = Instant::now();
    agent.start();
    let after = agent.wait_for("keep re-adopted", Duration::from_secs(20), |rows| {
        running(rows, "keep")
    });
    eprintln!(
        "[agent restart to re-adopted: {} ms]",
        start.elapsed().as_millis()
    );
    assert_eq!(
        pid(&after, "keep"),
        pid(&before, "keep"),
        "same process, not a new container"
    );
    assert_eq!(cell(&after, "keep", "main", "RESTARTS"), "0");
    assert!(agent.log().contains("re-adopted"), "the adoption is logged");
}

#[test]
fn after_a_power_cut_with_no_network_every_workload_runs_again_from_sqlite_alone() {
    let mut agent = started("e2e-powercut", "");
    agent.apply("one", &shell_workload("one", "sleep 300", "", ""));
    agent.apply(
        "two",
        &shell_workload("two", "sleep 300", "  restartPolicy: on-failure\n", ""),
    );
    let before = agent.wait_for("both running", Duration::from_secs(20), |rows| {
        running(rows, "one") && running(rows, "two")
    });

    // The power cut: the agent, every shim and container die, and the tmpfs run dir is gone.
    agent.kill9();
    let root = format!("{}/", agent.root.display());
    kill_until_gone(|| processes_mentioning(&root));
    for workload in ["one", "two"] {
        let _ = Command::new("kill")
            .args(["-9", &pid(&before, workload)])
            .status();
    }
    shoal_tests::agent::unmount_under(&agent.root);
    std::fs::remove_dir_all(agent.root.join("run")).expect("clear the run dir");

    // Back up with no network at all: only loopback, in a fresh network namespace.
    let start = Instant::now();
    let mut offline = Command::new("unshare");
    offline
        .args(["--net", "--"])
        .arg(shoal_tests::binary("shoal-agent"));
    agent.start_with(offline);
    let after = agent.wait_for("both running again", Duration::from_secs(30), |rows| {
        running(rows, "one") && running(rows, "two")
    });
    eprintln!(
        "[power cut to all running: {} ms]",
        start.elapsed().as_millis()
    );
    assert_ne!(
        pid(&after, "one"),
        pid(&before, "one"),
        "a new container after the reboot"
    );
}

#[test]
fn deleting_a_workload_stops_and_removes_its_containers() {
    let agent = started("e2e-delete", "");
    agent.apply(
        "gone",
        &shell_workload("gone", "trap 'exit 0' TERM; sleep 300 & wait", "", ""),
    );
    let rows = agent.wait_for("gone running", Duration::from_secs(20), |rows| {
        running(rows, "gone")
    });
    let pid = pid(&rows, "gone");
    agent.ok(&["delete", "gone"]);
    agent.wait_for("gone removed", Duration::from_secs(20), |rows| {
        row(rows, "gone", "main").is_none()
    });
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the process is gone"
    );
    let out = agent.cli(&["delete", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workload `gone`"));
}

#[test]
fn apply_keeps_this_nodes_share_and_refuses_what_does_not_fit() {
    let agent = started("e2e-apply", "labels = { role = \"gateway\" }");
    let mine = shell_workload(
        "mine",
        "sleep 300",
        "  placement: { nodeSelector: { role: gateway } }\n",
        "",
    );
    let theirs = shell_workload(
        "theirs",
        "sleep 300",
        "  placement: { nodeSelector: { role: camera } }\n",
        "",
    );
    let out = agent.apply("fleet", &format!("{mine}---\n{theirs}"));
    assert!(out.contains("mine: created"), "{out}");
    assert!(
        out.contains(
            "theirs: skipped, not for this node: nodeSelector role=camera (node has role=gateway)"
        ),
        "{out}"
    );

    let huge = shell_workload(
        "huge",
        "sleep 300",
        "",
        "      resources: { memory: 64Ti }\n",
    );
    let file = agent.root.join("huge.yaml");
    std::fs::write(&file, huge).expect("write");
    let out = agent.cli(&["apply", "-f", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing was applied") && err.contains("more than this node's"),
        "{err}"
    );
    let rows = agent.wait_for("mine running", Duration::from_secs(20), |rows| {
        running(rows, "mine")
    });
    assert!(
        row(&rows, "huge", "main").is_none() && row(&rows, "theirs", "main").is_none(),
        "{rows:?}"
    );
}

#[test]
fn apply_runs_a_workload_with_a_rollout_and_warns_that_only_the_hub_enforces_rollouts() {
    let agent = started("e2e-rollout", "");
    let staged = shell_workload("staged", "sleep 300", "  rollout: { canary: 1 }\n", "");
    let file = agent.root.join("staged.yaml");
    std::fs::write(&file, staged).expect("write");
    let out = agent.cli(&["apply", "-f", &file.display().to_string()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("staged: created"), "{stdout}");
    assert_eq!(
        stderr,
        format!(
            "warning: {}:5:12: spec.rollout: workload `staged`: {}\n",
            file.display(),
            shoal_model::manifest::ROLLOUT_LOCAL_ONLY
        )
    );
    agent.wait_for("staged running", Duration::from_secs(20), |rows| {
        running(rows, "staged")
    });
}

#[test]
fn restart_policies_decide_whether_an_exited_container_comes_back() {
    let agent = started("e2e-policy", "");
    agent.apply(
        "once",
        &shell_workload("once", "exit 0", "  restartPolicy: never\n", ""),
    );
    agent.apply(
        "done",
        &shell_workload("done", "exit 0", "  restartPolicy: on-failure\n", ""),
    );
    let rows = agent.wait_for("both exited", Duration::from_secs(20), |rows| {
        cell(rows, "once", "main", "STATE") == "Exited"
            && cell(rows, "done", "main", "STATE") == "Exited"
    });
    std::thread::sleep(Duration::from_secs(3));
    let later = agent.ps();
    for w in ["once", "done"] {
        assert_eq!(cell(&later, w, "main", "RESTARTS"), "0", "{rows:?}");
        assert_eq!(cell(&later, w, "main", "LAST EXIT"), "code 0");
    }
}

#[test]
fn http_and_tcp_checks_probe_inside_an_isolated_workloads_own_network() {
    let agent = started("e2e-probes", "");
    let isolated = "  network: isolated\n  stopGracePeriod: 1s\n";
    // The ports exist only inside each workload's network namespace, not on the host.
    let web =
        "busybox mkdir -p /tmp/www && echo ok > /tmp/www/healthz && httpd -f -p 18080 -h /tmp/www";
    let http = "      health: { http: { port: 18080, path: /healthz }, interval: 1s, timeout: 1s, retries: 2 }\n";
    agent.apply("web", &shell_workload("web", web, isolated, http));
    let tcp = "      health: { tcp: { port: 18081 }, interval: 1s, timeout: 1s, retries: 2 }\n";
    agent.apply("deaf", &shell_workload("deaf", "sleep 300", isolated, tcp));
    agent.wait_for("web healthy over http", Duration::from_secs(30), |rows| {
        cell(rows, "web", "main", "HEALTH") == "Healthy"
    });
    agent.wait_for(
        "deaf restarted for its closed port",
        Duration::from_secs(30),
        |rows| {
            cell(rows, "deaf", "main", "RESTARTS")
                .parse::<u32>()
                .unwrap_or(0)
                >= 1
        },
    );
    assert!(
        agent.log().contains("cannot connect to port 18081"),
        "the reason is logged"
    );
    assert_eq!(cell(&agent.ps(), "web", "main", "RESTARTS"), "0");
}

#[test]
fn an_idle_agent_writes_nothing_to_its_data_dir() {
    let agent = started("e2e-idle", "");
    agent.apply("quiet", &shell_workload("quiet", "sleep 300", "", ""));
    agent.wait_for("quiet running", Duration::from_secs(20), |rows| {
        running(rows, "quiet")
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = data_files(&agent);
    // Five ticks of the loop, and operators looking.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        agent.ps();
    }
    let after = data_files(&agent);
    assert_eq!(before, after, "files written while idle (flash wear)");
    assert!(before.keys().any(|f| f.ends_with("agent.db")), "{before:?}");
}

/// Every file in the agent's data dir outside the image store, with its size and mtime.
fn data_files(agent: &Agent) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut files = std::collections::BTreeMap::new();
    let mut dirs = vec![agent.root.join("data")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("data dir").flatten() {
            let path = entry.path();
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                if !path.ends_with("images") {
                    dirs.push(path);
                }
            } else {
                files.insert(
                    path.display().to_string(),
                    (meta.len(), meta.modified().expect("mtime")),
                );
            }
        }
    }
    files
}

/// The events of `status` about `workload` with `reason` (`image-pull-failed`, ...).
fn events_of(status: &NodeStatus, workload: &str, reason: &str) -> Vec<String> {
    status
        .events
        .iter()
        .filter(|e| e.workload.as_deref() == Some(workload) && e.reason.as_str() == reason)
        .map(|e| e.message.clone())
        .collect()
}

#[test]
fn a_pull_that_fails_says_why_in_ps_and_in_the_events_and_backs_off() {
    let images = UnpullableImages::start();
    let agent = started("e2e-pull", &images.agent_config());
    agent.apply("foreign", &image_workload("foreign", &images.foreign));
    agent.apply("corrupt", &image_workload("corrupt", &images.corrupt));
    let wanted = format!("no image for linux/{}", shoal_tests::images::host_arch());
    agent.wait_for("both pulls failed", Duration::from_secs(30), |rows| {
        cell(rows, "foreign", "main", "STATE") == "Failed"
            && cell(rows, "corrupt", "main", "STATE") == "Failed"
    });
    let text = agent.ok(&["ps"]);
    eprintln!("[ps]\n{text}");
    // `ps` says why, with what to do.
    let foreign_note = text
        .lines()
        .find(|l| l.starts_with("foreign/main: "))
        .unwrap_or_else(|| panic!("no note for foreign/main:\n{text}"));
    assert!(
        foreign_note.contains(&wanted)
            && foreign_note.contains("linux/arm64/v8, linux/s390x")
            && foreign_note.contains("images import"),
        "{foreign_note}"
    );
    let corrupt_note = text
        .lines()
        .find(|l| l.starts_with("corrupt/main: "))
        .unwrap_or_else(|| panic!("no note for corrupt/main:\n{text}"));
    assert!(
        corrupt_note.contains("digest mismatch") && corrupt_note.contains("corrupt or tampered"),
        "{corrupt_note}"
    );

    // The events say it too, about the workload that waits for the image.
    let status = agent.status();
    let foreign = events_of(&status, "foreign", "image-pull-failed");
    assert!(
        foreign.len() == 1 && foreign[0].contains(&wanted) && foreign[0].contains("linux/s390x"),
        "{:#?}",
        status.events
    );
    let corrupt = events_of(&status, "corrupt", "image-pull-failed");
    assert!(
        corrupt.len() == 1 && corrupt[0].contains("digest mismatch"),
        "{:#?}",
        status.events
    );

    // Retries count up and back off (5 s, then 10 s), and failing again for the same reason
    // is no new event.
    let start = Instant::now();
    agent.wait_for("a second attempt", Duration::from_secs(30), |_| {
        agent.ok(&["ps"]).contains("(2 attempts;")
    });
    let second = start.elapsed();
    assert!(
        second >= Duration::from_secs(3),
        "retried after {second:?}, not after its backoff"
    );
    std::thread::sleep(Duration::from_secs(3));
    let text = agent.ok(&["ps"]);
    assert!(
        !text.contains("(3 attempts;"),
        "the third attempt came before the doubled backoff:\n{text}"
    );
    let status = agent.status();
    assert_eq!(
        events_of(&status, "foreign", "image-pull-failed").len(),
        1,
        "{:#?}",
        status.events
    );
    let pulling = status
        .events
        .iter()
        .filter(|e| e.reason.as_str() == "image-pulling")
        .count();
    assert_eq!(
        pulling, 2,
        "one `pulling` event per image: {:#?}",
        status.events
    );

    // Importing the image, as the message says, starts the workload without waiting for
    // the next attempt (10 s after the second).
    let archive = agent.root.join("foreign.tar");
    let mut layout = OciLayout::create(&agent.root.join("foreign-layout"));
    let descriptor = layout.add_image(&Image::new(vec![busybox_layer()]));
    layout.tag(&images.foreign, &descriptor);
    layout.to_tar(&archive);
    agent.ok(&["images", "import", &archive.display().to_string()]);
    agent.wait_for(
        "foreign running once imported",
        Duration::from_secs(4),
        |rows| running(rows, "foreign"),
    );
}
