//! Nothing postcard-encodes a domain type: the only code that calls postcard is the frozen
//! `model/src/wire/vN/` modules, so every byte that crosses the wire or is stored goes through
//! a versioned shape with explicit conversions (the rule in `model/src/wire/mod.rs`).
//!
//! This scans the sources of the hub, the agent and the model. Other files of `wire/` may
//! name `postcard::Error` (their error types carry it), nothing else.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    dir.canonicalize().unwrap_or(dir)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `path` (relative to the workspace) is a frozen format module, `model/src/wire/vN/`.
fn is_format_module(path: &str) -> bool {
    path.strip_prefix("model/src/wire/v")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The uses of postcard in `text` that `path` may not make, as `path:line: text`.
fn forbidden_uses(path: &str, text: &str) -> Vec<String> {
    if is_format_module(path) {
        return Vec::new();
    }
    let in_wire = path.starts_with("model/src/wire/");
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.trim_start();
            !code.starts_with("//")
        })
        .filter(|(_, line)| {
            let names_postcard = line.contains("postcard::")
                || line.contains("use postcard")
                || line.contains("extern crate postcard");
            let only_the_error_type = in_wire
                && line.matches("postcard::").count() == line.matches("postcard::Error").count();
            names_postcard && !only_the_error_type
        })
        .map(|(i, line)| format!("{path}:{}: {}", i + 1, line.trim()))
        .collect()
}

#[test]
fn only_the_frozen_wire_modules_call_postcard() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["hub/src", "edge-agent/src", "model/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 50,
        "found only {} source files under {}: is the scan looking in the right place?",
        files.len(),
        root.display()
    );
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let relative = file.strip_prefix(&root).unwrap_or(file);
        found.extend(forbidden_uses(&relative.to_string_lossy(), &text));
    }
    assert!(
        found.is_empty(),
        "postcard is used outside the frozen wire modules (model/src/wire/vN/):\n  {}\n\
         Encoding a domain type directly freezes it by accident and breaks deployed nodes or \
         stored rows the day it changes. Go through shoal_model::wire instead: `wire::encode` / \
         `wire::decode` for messages, `wire::stored` for database rows, `wire::identity` for \
         hashes; a new shape goes in a new wire version (see model/src/wire/mod.rs)",
        found.join("\n  ")
    );
}

#[test]
fn the_scan_tells_format_modules_from_the_rest() {
    let call = "let bytes = postcard::to_allocvec(&workload)?;";
    for path in ["model/src/wire/v2/manifest.rs", "model/src/wire/v13/mod.rs"] {
        assert!(forbidden_uses(path, call).is_empty(), "{path}");
    }
    for path in [
        "hub/src/store/mod.rs",
        "edge-agent/src/state/records.rs",
        "model/src/wire/stored.rs",
        "model/src/wire/vx/mod.rs",
        "model/src/node.rs",
    ] {
        assert_eq!(forbidden_uses(path, call).len(), 1, "{path}");
        assert_eq!(
            forbidden_uses(path, "use postcard::to_allocvec;").len(),
            1,
            "{path}"
        );
    }
    let error_type = "    Malformed { source: postcard::Error },";
    assert!(forbidden_uses("model/src/wire/mod.rs", error_type).is_empty());
    assert_eq!(forbidden_uses("hub/src/store/mod.rs", error_type).len(), 1);
    assert!(forbidden_uses("hub/src/x.rs", "// postcard::to_allocvec is not used").is_empty());
}
