//! `shoal apply -f FILE|DIR [--dry-run]` and `shoal diff -f FILE|DIR`: send manifest files to
//! the hub, which validates them and stores new workload revisions (or says what would
//! change).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use shoal_model::api::{
    ApplyRequest, ApplyResponse, ChangeAction, ManifestFile, RolloutInfo, MAX_REQUEST_BYTES,
};
use shoal_model::manifest;

use super::client::{segment, Client, HubArgs};

/// Apply fleet manifests: the hub creates or updates their workloads
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A manifest file, a folder of .yaml/.yml files (not recursive), or `-` for stdin;
    /// repeatable
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    pub paths: Vec<PathBuf>,
    /// Say what would change, store nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until every changed workload's rollout completes: exit 0 then, 1 with the reason
    /// when one halts or rolls back
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    /// Give up waiting after this long (with --wait)
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    shoal_model::quantity::parse_duration(text)
}

/// Show what `shoal apply` would change; exit 0 when nothing would, 1 when something would,
/// 2 on an error
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// A manifest file, a folder of .yaml/.yml files (not recursive), or `-` for stdin;
    /// repeatable
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    pub paths: Vec<PathBuf>,
}

/// Applies the manifests and prints one line per workload, then (on stderr) a warning for
/// each setting the hub stores but does not act on yet.
pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let files = read_manifests(&args.paths)?;
    let answer = send(&files, args.dry_run, hub)?;
    print!("{}", apply_report(&answer));
    eprint!("{}", warnings(&files));
    if args.wait {
        return wait(&answer, args.timeout, hub);
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for the rollout of every workload the answer changed, printing each outcome.
fn wait(
    answer: &ApplyResponse,
    timeout: std::time::Duration,
    hub: &HubArgs,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut code = ExitCode::SUCCESS;
    for change in answer
        .changes
        .iter()
        .filter(|c| c.action != ChangeAction::Unchanged)
    {
        let path = format!("/v1/rollouts/{}", segment(&change.workload));
        loop {
            let info: RolloutInfo = client.get(&path, &[])?;
            let settled = info.revision >= change.revision && info.state != "progressing";
            if settled {
                println!(
                    "workload/{} revision {}: {}",
                    change.workload, info.revision, info.reason
                );
                if info.state != "complete" {
                    code = ExitCode::FAILURE;
                }
                break;
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "workload/{} revision {}: still {} after {} (`shoal rollout status {}`)",
                    change.workload,
                    change.revision,
                    info.reason,
                    shoal_model::quantity::format_duration(timeout),
                    change.workload
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    Ok(code)
}

/// The warnings of the manifests the hub accepted that apply to the hub, from the
/// same parser the hub validates them with.
fn warnings(files: &[ManifestFile]) -> String {
    let mut loaded = manifest::Loaded::default();
    for file in files {
        loaded.add_text(std::path::Path::new(&file.name), &file.text);
    }
    loaded.hub_warning_report()
}

/// Prints what applying the manifests would change; exits 1 when something would change, 0
/// when nothing would (as `kubectl diff`).
pub fn run_diff(args: &DiffArgs, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let answer = send(&read_manifests(&args.paths)?, true, hub)?;
    let report = diff_report(&answer);
    print!("{report}");
    Ok(if report.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn send(files: &[ManifestFile], dry_run: bool, hub: &HubArgs) -> anyhow::Result<ApplyResponse> {
    let request = ApplyRequest {
        files: files.to_vec(),
        dry_run,
    };
    let size = serde_json::to_vec(&request)?.len();
    if size > MAX_REQUEST_BYTES {
        bail!(
            "the manifests make a request of {size} bytes; the hub accepts at most {MAX_REQUEST_BYTES}: apply them in several parts"
        );
    }
    let client = Client::new(hub)?;
    Ok(client.post("/v1/apply", &request)?)
}

/// The name that problems in manifests read from stdin (`-f -`) are reported under.
pub const STDIN_NAME: &str = "<stdin>";

/// Reads each path: a file as it is, a folder as its `.yaml`/`.yml` files (sorted by name,
/// hidden files skipped, not recursive), as [`shoal_model::manifest::load`] does, and `-` as
/// stdin (named [`STDIN_NAME`]; at most once). Every problem is reported, not only the first.
pub fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<ManifestFile>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let stdin_count = paths.iter().filter(|p| p.as_os_str() == "-").count();
    if stdin_count > 1 {
        bail!("`-f -` is given {stdin_count} times: stdin can be read only once");
    }
    for path in paths {
        if path.as_os_str() == "-" {
            match read_stdin(&mut std::io::stdin().lock()) {
                Ok(text) => files.push(ManifestFile {
                    name: STDIN_NAME.into(),
                    text,
                }),
                Err(message) => problems.push(format!("{STDIN_NAME}: {message}")),
            }
            continue;
        }
        let listed = match manifest::manifest_files(path) {
            Ok(files) => files,
            Err(message) => {
                problems.push(format!("{}: {message}", path.display()));
                continue;
            }
        };
        for file in listed {
            match manifest::read_limited(&file) {
                Ok(text) => files.push(ManifestFile {
                    name: file.display().to_string(),
                    text,
                }),
                Err(message) => problems.push(format!("{}: {message}", file.display())),
            }
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        bail!("cannot read the manifests:\n  {}", problems.join("\n  "))
    }
}

/// Manifest text from `input` with the limits of a manifest file: at most
/// [`manifest::MAX_FILE_BYTES`], UTF-8.
fn read_stdin(input: &mut impl std::io::Read) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    input
        .take(manifest::MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if bytes.len() as u64 > manifest::MAX_FILE_BYTES {
        return Err(format!(
            "stdin holds more than {} bytes; manifests are limited to that: split it",
            manifest::MAX_FILE_BYTES
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "stdin is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// `workload/hello created`, `workload/hello configured (revision 3)`,
/// `workload/hello unchanged`, each with ` (dry run)` for a dry run.
pub fn apply_report(answer: &ApplyResponse) -> String {
    let mut out = String::new();
    for change in &answer.changes {
        out.push_str(&format!(
            "workload/{} {}",
            change.workload,
            change.action.as_str()
        ));
        if change.action == ChangeAction::Configured {
            out.push_str(&format!(" (revision {})", change.revision));
        }
        if answer.dry_run {
            out.push_str(" (dry run)");
        }
        out.push('\n');
    }
    out
}

/// Each workload that would change, under a `workload/NAME` header (` (new)` for a workload
/// the hub does not have), with its diff lines indented; empty when nothing would change.
pub fn diff_report(answer: &ApplyResponse) -> String {
    let mut out = String::new();
    for change in &answer.changes {
        if change.action == ChangeAction::Unchanged {
            continue;
        }
        out.push_str(&format!("workload/{}", change.workload));
        if change.action == ChangeAction::Created {
            out.push_str(" (new)");
        }
        out.push('\n');
        for line in &change.diff {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::api::WorkloadChange;
    use shoal_model::manifest::MAX_FILE_BYTES;

    #[test]
    fn stdin_is_read_whole_up_to_the_manifest_limit_and_refused_beyond_it() {
        let text = "a".repeat(MAX_FILE_BYTES as usize);
        assert_eq!(
            read_stdin(&mut text.as_bytes()).as_deref(),
            Ok(text.as_str())
        );
        let over = "a".repeat(MAX_FILE_BYTES as usize + 1);
        let error = read_stdin(&mut over.as_bytes()).expect_err("over the limit");
        assert!(error.contains("limited"), "{error}");
        let error = read_stdin(&mut &[0x61, 0xff][..]).expect_err("not UTF-8");
        assert!(error.contains("offset 1"), "{error}");
    }

    #[test]
    fn stdin_given_twice_is_refused() {
        let error =
            read_manifests(&[PathBuf::from("-"), PathBuf::from("-")]).expect_err("two stdins");
        assert!(error.to_string().contains("only once"), "{error}");
    }

    fn change(
        workload: &str,
        action: ChangeAction,
        revision: u64,
        diff: &[&str],
    ) -> WorkloadChange {
        WorkloadChange {
            workload: workload.into(),
            action,
            revision,
            diff: diff.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn answer(dry_run: bool) -> ApplyResponse {
        ApplyResponse {
            dry_run,
            changes: vec![
                change(
                    "hello",
                    ChangeAction::Created,
                    1,
                    &["+ spec.containers[0].image: busybox"],
                ),
                change(
                    "web",
                    ChangeAction::Configured,
                    3,
                    &[
                        "~ spec.containers[0].image: web:1 -> web:2",
                        "- spec.containers[0].env.DEBUG: 1",
                    ],
                ),
                change("db", ChangeAction::Unchanged, 7, &[]),
            ],
        }
    }

    #[test]
    fn apply_prints_one_kubectl_line_per_workload() {
        let cases = [
            (
                "applied",
                false,
                "workload/hello created\nworkload/web configured (revision 3)\nworkload/db unchanged\n",
            ),
            (
                "dry_run_says_so_on_every_line",
                true,
                "workload/hello created (dry run)\nworkload/web configured (revision 3) (dry run)\nworkload/db unchanged (dry run)\n",
            ),
        ];
        for (name, dry_run, expected) in cases {
            assert_eq!(apply_report(&answer(dry_run)), expected, "{name}");
        }
    }

    #[test]
    fn diff_lists_changed_workloads_with_their_lines_and_skips_unchanged_ones() {
        assert_eq!(
            diff_report(&answer(true)),
            "workload/hello (new)\n\
             \x20 + spec.containers[0].image: busybox\n\
             workload/web\n\
             \x20 ~ spec.containers[0].image: web:1 -> web:2\n\
             \x20 - spec.containers[0].env.DEBUG: 1\n"
        );
    }

    #[test]
    fn diff_is_empty_when_nothing_would_change() {
        let answer = ApplyResponse {
            dry_run: true,
            changes: vec![change("db", ChangeAction::Unchanged, 7, &[])],
        };
        assert_eq!(diff_report(&answer), "");
    }

    #[test]
    fn a_folder_gives_its_visible_yaml_files_sorted_and_not_its_subfolders() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for (name, text) in [
            ("b.yml", "b"),
            ("a.yaml", "a"),
            (".hidden.yaml", "h"),
            ("notes.txt", "n"),
            ("sub/c.yaml", "c"),
        ] {
            let path = d.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let files = read_manifests(&[d.to_path_buf()]).expect("read");
        let got: Vec<(String, String)> = files.into_iter().map(|f| (f.name, f.text)).collect();
        assert_eq!(
            got,
            vec![
                (d.join("a.yaml").display().to_string(), "a".to_string()),
                (d.join("b.yml").display().to_string(), "b".to_string()),
            ]
        );
    }

    #[test]
    fn a_file_is_read_whatever_its_extension() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("workload.txt");
        std::fs::write(&path, "x").expect("write");
        let files = read_manifests(std::slice::from_ref(&path)).expect("read");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, path.display().to_string());
    }

    #[test]
    fn every_unreadable_manifest_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let empty = d.join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        let big = d.join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).expect("write");
        let binary = d.join("binary.yaml");
        std::fs::write(&binary, [b'a', 0xff]).expect("write");
        let missing = d.join("missing.yaml");
        let error = read_manifests(&[empty.clone(), big.clone(), binary.clone(), missing.clone()])
            .expect_err("problems")
            .to_string();
        let expected = [
            format!("{}: the folder holds no .yaml or .yml file", empty.display()),
            format!("{}: the file is {} bytes; manifests are limited to {MAX_FILE_BYTES} bytes: split it", big.display(), MAX_FILE_BYTES + 1),
            format!("{}: the file is not UTF-8 text (invalid byte at offset 1)", binary.display()),
            format!("{}: cannot read the file: ", missing.display()),
        ];
        assert!(
            error.starts_with("cannot read the manifests:\n  "),
            "{error}"
        );
        for line in expected {
            assert!(error.contains(&line), "{error}\nshould contain {line}");
        }
    }
}
