//! Fleet manifests: YAML with positions, decoded into typed workloads by a validator that
//! reports every problem with file, line, column, field path and what would be valid.
//!
//! Entry points: [`load`] for a file or a folder, [`parse_manifest`] for text already in
//! memory (the hub re-validates what the CLI sends with it).

pub mod constraint;
mod decode;
pub mod image;
pub mod names;
mod types;
/// Also what `shoal flash` checks its edits of cloud-init's `user-data` with.
pub mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use decode::{CAPABILITIES, MIN_MEMORY, ROLLOUT_LOCAL_ONLY, ROLLOUT_PATH};
pub use types::*;
pub use yaml::Pos;

use crate::quantity::{format_bytes, format_millicpu};

/// Largest manifest file accepted.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One problem in a manifest, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// Absent for problems with the file as a whole (unreadable, not UTF-8, ...).
    pub pos: Option<Pos>,
    /// The field path, such as `spec.containers[0].resources.memory`; empty for the document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(pos) = self.pos {
            write!(f, ":{}:{}", pos.line, pos.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A valid workload and where it was defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedWorkload {
    pub workload: Workload,
    pub file: PathBuf,
    /// Line where the workload's document starts.
    pub line: usize,
    /// Settings of this workload that are accepted but not acted on yet (`spec.rollout`):
    /// worth telling whoever applies it, not a reason to refuse it.
    pub warnings: Vec<Diagnostic>,
}

/// Everything read from a file or folder: the valid workloads and every problem found.
/// A set with any diagnostic must not be applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub workloads: Vec<LoadedWorkload>,
    pub diagnostics: Vec<Diagnostic>,
    pub files: usize,
}

impl Loaded {
    pub fn is_ok(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// Every warning of every valid workload, in file order.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.workloads.iter().flat_map(|w| &w.warnings)
    }

    /// One `warning: FILE:LINE:COLUMN: FIELD: MESSAGE` line per warning (for stderr); empty
    /// when there is none.
    pub fn warning_report(&self) -> String {
        self.warnings().map(|w| format!("warning: {w}\n")).collect()
    }

    /// As [`Loaded::warning_report`], for the hub: without the warnings about what only a
    /// device applying the manifest itself does not enforce (`spec.rollout`).
    pub fn hub_warning_report(&self) -> String {
        self.warnings()
            .filter(|w| w.path != ROLLOUT_PATH)
            .map(|w| format!("warning: {w}\n"))
            .collect()
    }

    /// What `validate` prints: one summary line per workload and a count when all is valid
    /// (for stdout), or every diagnostic and a count (for stderr).
    pub fn report(&self) -> String {
        let files = plural(self.files, "file");
        let mut out = String::new();
        if self.is_ok() {
            for w in &self.workloads {
                out.push_str(&w.workload.summary());
                out.push('\n');
            }
            out.push_str(&format!(
                "{} valid in {files}\n",
                plural(self.workloads.len(), "workload")
            ));
        } else {
            for d in &self.diagnostics {
                out.push_str(&format!("{d}\n"));
            }
            out.push_str(&format!(
                "{} in {files}\n",
                plural(self.diagnostics.len(), "problem")
            ));
        }
        out
    }

    /// Adds the workloads and problems of one more file and re-checks names across files.
    /// Text over [`MAX_FILE_BYTES`] is refused as a whole, as [`load`] refuses such a file.
    pub fn add_text(&mut self, file: &Path, text: &str) {
        self.files += 1;
        if text.len() as u64 > MAX_FILE_BYTES {
            self.diagnostics.push(Diagnostic {
                file: file.to_owned(),
                pos: None,
                path: String::new(),
                message: format!(
                    "the file is {} bytes; manifests are limited to {MAX_FILE_BYTES} bytes: split it",
                    text.len()
                ),
            });
            return;
        }
        let (workloads, diagnostics) = parse_manifest(file, text);
        self.workloads.extend(workloads);
        self.diagnostics.extend(diagnostics);
        self.check_duplicates();
    }

    /// Reports a workload name defined more than once, at each later definition.
    fn check_duplicates(&mut self) {
        let mut first: HashMap<&str, &LoadedWorkload> = HashMap::new();
        let mut found = Vec::new();
        for w in &self.workloads {
            match first.get(w.workload.name.as_str()) {
                Some(earlier) => found.push(Diagnostic {
                    file: w.file.clone(),
                    pos: Some(Pos { line: w.line, column: 1 }),
                    path: "metadata.name".into(),
                    message: format!(
                        "workload `{}` is already defined at {}:{}: names must be unique across all files",
                        w.workload.name,
                        earlier.file.display(),
                        earlier.line
                    ),
                }),
                None => {
                    first.insert(&w.workload.name, w);
                }
            }
        }
        for d in found {
            if !self.diagnostics.contains(&d) {
                self.diagnostics.push(d);
            }
        }
    }
}

/// Parses the text of one manifest file, which may hold several documents.
pub fn parse_manifest(file: &Path, text: &str) -> (Vec<LoadedWorkload>, Vec<Diagnostic>) {
    let diagnostic = |pos, path: String, message: String| Diagnostic {
        file: file.to_path_buf(),
        pos,
        path,
        message,
    };
    let documents = match yaml::parse_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            return (
                Vec::new(),
                vec![diagnostic(
                    Some(e.pos),
                    String::new(),
                    format!("invalid YAML: {}", e.message),
                )],
            )
        }
    };
    let mut workloads = Vec::new();
    let mut diagnostics = Vec::new();
    for document in &documents {
        match decode::decode_workload(document) {
            Ok(decoded) => workloads.push(LoadedWorkload {
                workload: decoded.workload,
                file: file.to_path_buf(),
                line: document.pos.line,
                warnings: decoded
                    .warnings
                    .into_iter()
                    .map(|p| diagnostic(Some(p.pos), p.path, p.message))
                    .collect(),
            }),
            Err(problems) => {
                diagnostics.extend(
                    problems
                        .into_iter()
                        .map(|p| diagnostic(Some(p.pos), p.path, p.message)),
                );
            }
        }
    }
    if documents.is_empty() {
        diagnostics.push(diagnostic(
            None,
            String::new(),
            "the file holds no workload".into(),
        ));
    }
    diagnostics.sort_by_key(|d| d.pos);
    (workloads, diagnostics)
}

/// Loads a manifest file, or every `.yaml`/`.yml` file directly inside a folder (sorted by
/// name, hidden files skipped), and checks workload names across all of them.
pub fn load(path: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let whole_file = |file: &Path, message: String| Diagnostic {
        file: file.to_path_buf(),
        pos: None,
        path: String::new(),
        message,
    };
    let files = match manifest_files(path) {
        Ok(files) => files,
        Err(message) => {
            loaded.diagnostics.push(whole_file(path, message));
            Vec::new()
        }
    };
    for file in files {
        match read_limited(&file) {
            Ok(text) => loaded.add_text(&file, &text),
            Err(message) => {
                loaded.files += 1;
                loaded.diagnostics.push(whole_file(&file, message));
            }
        }
    }
    loaded
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn is_manifest_name(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    yaml && !hidden
}

/// The manifest files `path` names: itself, or the visible `.yaml`/`.yml` files directly
/// inside it when it is a folder, sorted by name. The error says what is wrong with the folder.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("cannot read the folder: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_manifest_name(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err("the folder holds no .yaml or .yml file".into());
    }
    Ok(files)
}

/// A manifest file's text: at most [`MAX_FILE_BYTES`], UTF-8. The error says which rule it broke.
pub fn read_limited(file: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read the file: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes; manifests are limited to {MAX_FILE_BYTES} bytes: split it",
            meta.len()
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read the file: {e}"))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "the file is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

impl Workload {
    /// One line for `shoal validate` and listings:
    /// `sensor-reader  every node (role=gateway)  1 container  memory 64Mi  cpu 250m`.
    pub fn summary(&self) -> String {
        let p = &self.spec.placement;
        let mut where_ = match p.mode {
            PlacementMode::Every => "every node".to_string(),
            PlacementMode::Replicas(1) => "1 replica".to_string(),
            PlacementMode::Replicas(n) => format!("{n} replicas"),
        };
        let mut filters: Vec<String> = p
            .node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        filters.extend(p.constraints.iter().map(|c| c.source.clone()));
        if !filters.is_empty() {
            where_.push_str(&format!(" ({})", filters.join(", ")));
        }
        if let Some(spread) = &p.spread {
            where_.push_str(&format!(", spread over {spread}"));
        }
        let containers = self.spec.containers.len();
        let mut line = format!(
            "{}  {}  {} container{}",
            self.name,
            where_,
            containers,
            if containers == 1 { "" } else { "s" }
        );
        let requested = self.requested();
        if let Some(memory) = requested.memory {
            line.push_str(&format!("  memory {}", format_bytes(memory)));
        }
        if let Some(cpu) = requested.cpu_millis {
            line.push_str(&format!("  cpu {}", format_millicpu(cpu)));
        }
        line
    }
}
