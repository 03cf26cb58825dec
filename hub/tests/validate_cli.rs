//! `shoal validate` as a user runs it: the real binary, real files, exit codes and output.

use std::path::PathBuf;
use std::process::{Command, Output};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .expect("run shoal")
}

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .display()
        .to_string()
}

#[test]
fn validating_the_examples_prints_a_line_per_workload_and_exits_0() {
    let out = shoal(&["validate", "-f", &repo("manifests")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("hello  1 replica  1 container")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("mqtt-bridge  2 replicas")),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("5 workloads valid in 4 files\n"),
        "{stdout}"
    );
}

#[test]
fn a_misspelled_field_exits_1_naming_the_field_its_line_and_the_right_spelling() {
    let fixture = repo("model/tests/invalid/misspelled-field.yaml");
    let out = shoal(&["validate", "-f", &fixture]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("misspelled-field.yaml:9:20: spec.containers[0].resources.memroy: unknown field `memroy`: did you mean `memory`?"),
        "{stderr}"
    );
    assert!(stderr.ends_with("1 problem in 1 file\n"), "{stderr}");
}

#[test]
fn every_problem_in_a_file_is_printed_at_once() {
    let out = shoal(&[
        "validate",
        "-f",
        &repo("model/tests/invalid/many-problems.yaml"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.lines().count() > 20, "{stderr}");
}

#[test]
fn usage_errors_exit_2_and_help_lists_only_working_commands() {
    assert_eq!(shoal(&["validate"]).status.code(), Some(2));
    assert_eq!(shoal(&["frobnicate"]).status.code(), Some(2));
    let help = String::from_utf8_lossy(&shoal(&["--help"]).stdout).to_string();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "serve",
            "up",
            "apply",
            "diff",
            "get",
            "describe",
            "delete",
            "logs",
            "rollout",
            "node",
            "key",
            "token",
            "agent-release",
            "agent",
            "flash",
            "broker-config",
            "context",
            "backup",
            "restore",
            "demo-image",
            "validate",
            "help"
        ],
        "{help}"
    );
    let version = String::from_utf8_lossy(&shoal(&["--version"]).stdout).to_string();
    assert_eq!(
        version.trim(),
        format!("shoal {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_rollout_is_valid_and_the_hub_does_not_warn_about_what_it_enforces() {
    let file = repo("manifests/mqtt-bridge.yaml");
    let out = shoal(&["validate", "-f", &file]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.ends_with("2 workloads valid in 1 file\n"),
        "{stdout}"
    );
    assert_eq!(stderr, "", "the hub enforces rollouts: no warning");

    let out = shoal(&["validate", "-f", &repo("manifests/hello.yaml")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "no rollout, no warning");
}
