//! The pure modules stay pure: the hub's scheduler, its decision core, its desired-state rules
//! and its status admission, and the agent's reconciler import no async runtime, database, MQTT client or web
//! framework, and read no clock. They take plain data and the time as arguments, which is what
//! lets them be table-tested, replayed, and run for ten thousand simulated nodes; an effect
//! belongs in their shells (`hub/src/server/controller.rs`, the agent's `supervisor`), which
//! pass its result in.

use std::path::{Path, PathBuf};

use shoal_tests::workspace;

/// The pure modules: a folder (every `.rs` file under it, tests included) or one file.
const PURE: &[&str] = &[
    "hub/src/scheduler",
    "hub/src/control",
    "hub/src/desired.rs",
    "hub/src/admission.rs",
    "edge-agent/src/reconcile",
    "edge-agent/src/launch/plan.rs",
    "edge-agent/src/update/plan.rs",
];

/// What a pure module must not name, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "an async runtime"),
    ("rusqlite", "a database"),
    ("rumqttc", "an MQTT client"),
    ("axum", "a web framework"),
    ("SystemTime::now", "the wall clock"),
    ("Instant::now", "the monotonic clock"),
    ("wall_ms", "the wall clock (shoal_model::clock)"),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    let entries = std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
            rust_files(&path, out);
        }
    }
}

/// Whether `word` occurs in `code` as a whole path segment (not inside `my_tokio_thing`).
fn names(code: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// `(line number, forbidden name, why)` for every use in `source`; comments are not code.
fn violations(source: &str) -> Vec<(usize, &'static str, &'static str)> {
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for (word, what) in FORBIDDEN {
            if names(code, word) {
                found.push((number + 1, *word, *what));
            }
        }
    }
    found
}

#[test]
fn pure_modules_import_no_runtime_database_mqtt_or_web_crate_and_read_no_clock() {
    let root = workspace();
    let mut problems = Vec::new();
    for module in PURE {
        let mut files = Vec::new();
        rust_files(&root.join(module), &mut files);
        assert!(
            !files.is_empty(),
            "{module} has no Rust files: was it moved? update PURE"
        );
        for file in files {
            let source = std::fs::read_to_string(&file).expect("read source");
            for (line, word, what) in violations(&source) {
                let shown = file.strip_prefix(&root).unwrap_or(&file).display();
                problems.push(format!("{shown}:{line} names `{word}` ({what})"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "pure modules must take plain data and the time as arguments, so they can be \
         table-tested, replayed and simulated at fleet scale; move the effect into the shell \
         (hub/src/server/controller.rs, the agent's supervisor) and pass its result in:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scan_finds_imports_and_clock_reads_but_not_comments_or_longer_names() {
    let source = "use tokio::sync::Notify;\n\
                  let now = std::time::SystemTime::now();\n\
                  // tokio is mentioned in a comment only\n\
                  let t = Instant::now(); // and Instant::now in a comment\n\
                  let my_tokio_thing = 1;\n\
                  fn f(c: &rusqlite::Connection) {}\n\
                  let at = shoal_model::clock::wall_ms();\n";
    let found: Vec<(usize, &str)> = violations(source)
        .into_iter()
        .map(|(line, word, _)| (line, word))
        .collect();
    assert_eq!(
        found,
        [
            (1, "tokio"),
            (2, "SystemTime::now"),
            (4, "Instant::now"),
            (6, "rusqlite"),
            (7, "wall_ms")
        ]
    );
}
