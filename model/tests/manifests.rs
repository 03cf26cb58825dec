//! Data and golden tests for manifests: every example validates, and every invalid fixture
//! produces exactly the diagnostics in its `.expected` file (message, line and column).
//! Run with `UPDATE_GOLDEN=1` to rewrite the `.expected` files, then read the diff.

use std::path::{Path, PathBuf};

use shoal_model::manifest::{self, PlacementMode};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_example_manifest_validates() {
    let dir = crate_dir().join("../manifests");
    let loaded = manifest::load(&dir);
    let problems: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        problems.is_empty(),
        "examples must validate:\n{}",
        problems.join("\n")
    );
    assert!(
        loaded.files >= 4,
        "expected at least four example files, found {}",
        loaded.files
    );
    let names: Vec<&str> = loaded
        .workloads
        .iter()
        .map(|w| w.workload.name.as_str())
        .collect();
    for expected in [
        "hello",
        "sensor-reader",
        "camera",
        "mqtt-bridge",
        "db-primary",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn examples_decode_to_the_values_written() {
    let loaded = manifest::load(&crate_dir().join("../manifests/sensor-reader.yaml"));
    let w = &loaded.workloads[0].workload;
    assert_eq!(w.spec.placement.mode, PlacementMode::Every);
    assert_eq!(
        w.spec
            .placement
            .node_selector
            .get("role")
            .map(String::as_str),
        Some("gateway")
    );
    let c = &w.spec.containers[0];
    assert_eq!(c.resources.memory, Some(64 << 20));
    assert_eq!(c.resources.cpu_millis, Some(250));
    assert_eq!(c.env.get("SAMPLE_HZ").map(String::as_str), Some("10"));
    assert_eq!(c.capabilities.drop, vec!["ALL".to_string()]);
    assert_eq!(c.user.map(|u| (u.uid, u.gid)), Some((1000, Some(1000))));
    assert_eq!(
        w.summary(),
        "sensor-reader  every node (role=gateway, arch in (arm64, armv7, amd64), memory >= 256Mi, label.serial exists)  1 container  memory 64Mi  cpu 250m"
    );
}

#[test]
fn invalid_manifests_give_exactly_the_expected_diagnostics() {
    let dir = crate_dir().join("tests/invalid");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 5, "fixtures missing");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for fixture in fixtures {
        let name = fixture.file_name().expect("file name");
        let text = std::fs::read_to_string(&fixture).expect("fixture");
        let (_, diagnostics) = manifest::parse_manifest(Path::new(name), &text);
        assert!(
            !diagnostics.is_empty(),
            "{} must be invalid",
            fixture.display()
        );
        let got: String = diagnostics.iter().map(|d| format!("{d}\n")).collect();
        let expected_path = fixture.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &got).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                fixture.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn a_misspelled_field_names_the_field_its_position_and_the_right_spelling() {
    let text = "apiVersion: shoal/v1\nkind: Workload\nmetadata: { name: a }\nspec:\n  containers:\n    - name: a\n      image: busybox\n      resources:\n        memroy: 64Mi\n";
    let (workloads, diagnostics) = manifest::parse_manifest(Path::new("a.yaml"), text);
    assert!(workloads.is_empty());
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    assert_eq!(d.pos.map(|p| (p.line, p.column)), Some((9, 9)));
    assert_eq!(d.path, "spec.containers[0].resources.memroy");
    assert!(
        d.message.contains("did you mean `memory`?"),
        "{}",
        d.message
    );
}

#[test]
fn duplicate_workload_names_across_files_are_reported_at_the_second() {
    let doc = |name: &str| {
        format!("apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  containers: [{{ name: a, image: busybox }}]\n")
    };
    let mut loaded = manifest::Loaded::default();
    loaded.add_text(Path::new("one.yaml"), &doc("web"));
    loaded.add_text(
        Path::new("two.yaml"),
        &format!("{}---\n{}", doc("api"), doc("web")),
    );
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        vec!["two.yaml:7:1: metadata.name: workload `web` is already defined at one.yaml:1: names must be unique across all files"]
    );
}

#[test]
fn loading_a_folder_reads_yaml_files_only_and_reports_unreadable_ones() {
    let dir = std::env::temp_dir().join(format!("shoal-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("a.yaml"), "apiVersion: shoal/v1\nkind: Workload\nmetadata: { name: a }\nspec:\n  containers: [{ name: a, image: busybox }]\n").expect("write");
    std::fs::write(dir.join("notes.txt"), "not a manifest").expect("write");
    std::fs::write(dir.join(".hidden.yaml"), "garbage: [").expect("write");
    std::fs::write(dir.join("b.yml"), [0xff, 0xfe, 0x00]).expect("write");
    let loaded = manifest::load(&dir);
    assert_eq!(loaded.files, 2);
    assert_eq!(loaded.workloads.len(), 1);
    assert_eq!(loaded.diagnostics.len(), 1);
    assert!(
        loaded.diagnostics[0].message.contains("not UTF-8"),
        "{}",
        loaded.diagnostics[0]
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    assert!(manifest::load(&empty).diagnostics[0]
        .message
        .contains("no .yaml or .yml file"));
    assert!(manifest::load(&dir.join("missing.yaml")).diagnostics[0]
        .message
        .contains("cannot read"));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_workload_that_sets_a_rollout_loads_with_a_warning_that_only_the_hub_enforces_it() {
    let text = "\
apiVersion: shoal/v1
kind: Workload
metadata: { name: web }
spec:
  rollout: { maxUnavailable: 1, canary: 1 }
  containers: [{ name: main, image: busybox }]
";
    let mut loaded = manifest::Loaded::default();
    loaded.add_text(Path::new("web.yaml"), text);
    assert!(
        loaded.is_ok(),
        "a warning does not make the manifest invalid"
    );
    let warnings: Vec<String> = loaded.warnings().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [format!(
            "web.yaml:5:12: spec.rollout: workload `web`: {}",
            manifest::ROLLOUT_LOCAL_ONLY
        )]
    );
    assert_eq!(
        loaded.warning_report(),
        format!("warning: {}\n", warnings[0])
    );
    assert!(
        loaded
            .warning_report()
            .contains("replaces the old one at once"),
        "the warning says what happens instead"
    );
    assert_eq!(loaded.hub_warning_report(), "", "the hub enforces it");
}

#[test]
fn a_workload_without_a_rollout_has_no_warning() {
    let loaded = manifest::load(&crate_dir().join("../manifests/hello.yaml"));
    assert!(loaded.is_ok());
    assert_eq!(loaded.warnings().count(), 0);
    assert_eq!(loaded.warning_report(), "");
}

#[test]
fn the_examples_that_set_a_rollout_are_the_ones_warned_about() {
    let loaded = manifest::load(&crate_dir().join("../manifests"));
    let mut warned: Vec<&str> = loaded
        .workloads
        .iter()
        .filter(|w| !w.warnings.is_empty())
        .map(|w| w.workload.name.as_str())
        .collect();
    warned.sort_unstable();
    assert_eq!(warned, ["mqtt-bridge", "sensor-reader"]);
}

#[test]
fn progress_deadline_and_failure_threshold_are_read_and_zero_is_refused_with_its_place() {
    let with = |rollout: &str| {
        let text = format!(
            "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: web }}\nspec:\n  rollout: {rollout}\n  containers: [{{ name: main, image: busybox }}]\n"
        );
        let mut loaded = manifest::Loaded::default();
        loaded.add_text(Path::new("web.yaml"), &text);
        loaded
    };
    let loaded = with("{ progressDeadline: 90s, failureThreshold: 20% }");
    assert!(loaded.is_ok(), "{}", loaded.report());
    let rollout = &loaded.workloads[0].workload.spec.rollout;
    assert_eq!(
        rollout.progress_deadline,
        std::time::Duration::from_secs(90)
    );
    assert_eq!(
        rollout.failure_threshold,
        shoal_model::quantity::Amount::Percent(20)
    );
    let defaults = with("{ canary: 1 }");
    let rollout = &defaults.workloads[0].workload.spec.rollout;
    assert_eq!(
        rollout.progress_deadline,
        std::time::Duration::from_secs(600)
    );
    assert_eq!(
        rollout.failure_threshold,
        shoal_model::quantity::Amount::Count(1)
    );
    for (rollout, field, says) in [
        (
            "{ progressDeadline: 0s }",
            "spec.rollout.progressDeadline",
            "longer than 0s",
        ),
        (
            "{ failureThreshold: 0 }",
            "spec.rollout.failureThreshold",
            "at least 1 or 1%",
        ),
        (
            "{ failureThreshold: 0% }",
            "spec.rollout.failureThreshold",
            "at least 1 or 1%",
        ),
        (
            "{ failureThreshold: lots }",
            "spec.rollout.failureThreshold",
            "not a count (`2`) or a percentage",
        ),
    ] {
        let report = with(rollout).report();
        assert!(
            report.contains("web.yaml:5:") && report.contains(field) && report.contains(says),
            "{rollout}: {report}"
        );
    }
}
