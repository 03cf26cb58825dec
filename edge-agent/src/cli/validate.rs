//! `shoal-agent validate -f FILE|DIR`: the same manifest checks and the same report as the
//! hub's `shoal validate`, offline, so an operator on an air-gapped box learns what is wrong
//! before applying anything.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use shoal_model::manifest::{self, Loaded};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A manifest file, or a folder whose manifests are all checked
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR")]
    pub path: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let loaded = manifest::load(&args.path);
    let valid = report(&loaded, &mut io::stdout().lock(), &mut io::stderr().lock())
        .context("cannot write the validation report")?;
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes the model's report: one summary line per workload to `out` (and any warning to
/// `err`) when everything is valid, otherwise every diagnostic to `err`. Returns whether
/// everything is valid.
fn report(loaded: &Loaded, out: &mut impl Write, err: &mut impl Write) -> io::Result<bool> {
    if loaded.is_ok() {
        err.write_all(loaded.warning_report().as_bytes())?;
        out.write_all(loaded.report().as_bytes())?;
        Ok(true)
    } else {
        err.write_all(loaded.report().as_bytes())?;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "\
apiVersion: shoal/v1
kind: Workload
metadata:
  name: hello
spec:
  containers:
    - name: hello
      image: localhost/shoal-demo:latest
      resources: { memory: 16Mi, cpu: 100m }
";

    fn validate(files: &[(&str, &str)]) -> (bool, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write manifest");
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let valid = report(&manifest::load(dir.path()), &mut out, &mut err).expect("report");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8");
        (valid, text(out), text(err))
    }

    #[test]
    fn valid_manifests_print_one_summary_line_per_workload_on_stdout() {
        let (valid, out, err) = validate(&[("hello.yaml", VALID)]);
        assert!(valid, "{err}");
        assert!(
            out.lines()
                .next()
                .is_some_and(|line| line.starts_with("hello")),
            "{out}"
        );
        assert!(err.is_empty(), "{err}");
    }

    #[test]
    fn invalid_manifests_print_every_diagnostic_with_its_position_on_stderr() {
        let broken = VALID.replace("16Mi", "lots");
        let (valid, out, err) = validate(&[("ok.yaml", VALID), ("broken.yaml", &broken)]);
        assert!(!valid);
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("broken.yaml:9:"), "{err}");
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn a_rollout_is_valid_but_warned_about_on_stderr_as_enforced_by_the_hub_only() {
        let with_rollout = VALID.replace(
            "spec:\n",
            "spec:\n  rollout: { maxUnavailable: 10%, canary: 1 }\n",
        );
        let (valid, out, err) = validate(&[("hello.yaml", &with_rollout)]);
        assert!(valid, "{err}");
        assert!(out.starts_with("hello"), "{out}");
        assert!(
            err.starts_with("warning: ")
                && err.contains("hello.yaml:6:12: spec.rollout: workload `hello`: ")
                && err.contains(manifest::ROLLOUT_LOCAL_ONLY),
            "{err}"
        );
        let (_, _, err) = validate(&[("hello.yaml", VALID)]);
        assert!(err.is_empty(), "no rollout, no warning: {err}");
    }

    #[test]
    fn a_folder_without_manifests_is_invalid() {
        let (valid, _, err) = validate(&[]);
        assert!(!valid);
        assert!(!err.is_empty());
    }
}
