//! `shoal-agent selftest`: checks what the agent needs from a device without creating a
//! container, so it runs anywhere the binary runs, qemu-user included: version, arch, kernel,
//! cgroup hierarchy and controllers, privileges, and the SQLite database (opened, migrated,
//! integrity-checked). Exits non-zero when something essential fails.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::runtime::{self, cgroup, Privileges};
use crate::{host, state};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's data dir; the database there is created or migrated as the agent would
    #[arg(long, value_name = "DIR", default_value = "/var/lib/shoal")]
    pub data_dir: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let checks = [
        Check::pass(
            "version",
            format!("shoal-agent {}", crate::version::version()),
        ),
        arch(),
        kernel(),
        cgroups(),
        privileges(),
        database(&args.data_dir),
    ];
    let passed =
        render(&checks, &mut io::stdout().lock()).context("cannot write the self-test report")?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    /// Works, but something an operator should know about.
    Warn,
    /// The agent cannot do its job on this device.
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Pass => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        })
    }
}

#[derive(Debug)]
struct Check {
    name: &'static str,
    verdict: Verdict,
    detail: String,
}

impl Check {
    fn pass(name: &'static str, detail: String) -> Self {
        Check {
            name,
            verdict: Verdict::Pass,
            detail,
        }
    }

    fn warn(name: &'static str, detail: String) -> Self {
        Check {
            name,
            verdict: Verdict::Warn,
            detail,
        }
    }

    fn fail(name: &'static str, detail: String) -> Self {
        Check {
            name,
            verdict: Verdict::Fail,
            detail,
        }
    }
}

/// One line per check, then the outcome; returns whether no check failed.
fn render(checks: &[Check], out: &mut impl Write) -> io::Result<bool> {
    for check in checks {
        writeln!(
            out,
            "{:<4}  {:<10} {}",
            check.verdict, check.name, check.detail
        )?;
    }
    let named = |verdict| {
        checks
            .iter()
            .filter(|check| check.verdict == verdict)
            .map(|check| check.name)
            .collect::<Vec<_>>()
    };
    let (failed, warned) = (named(Verdict::Fail), named(Verdict::Warn));
    if failed.is_empty() {
        if warned.is_empty() {
            writeln!(out, "selftest passed")?;
        } else {
            writeln!(out, "selftest passed with warnings: {}", warned.join(", "))?;
        }
        Ok(true)
    } else {
        writeln!(out, "selftest failed: {}", failed.join(", "))?;
        Ok(false)
    }
}

/// Formats an error with its causes, as anyhow's `{:#}` does.
fn chain(err: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(err))
}

fn arch() -> Check {
    Check::pass(
        "arch",
        format!(
            "{} ({}, {})",
            host::oci_arch(),
            std::env::consts::ARCH,
            host::libc_flavour()
        ),
    )
}

fn kernel() -> Check {
    match host::kernel_release() {
        Ok(release) => Check::pass("kernel", release),
        Err(err) => Check::warn("kernel", format!("cannot read the kernel release: {err}")),
    }
}

fn cgroups() -> Check {
    match cgroup::detect() {
        Ok(facts) => match cgroup::missing_essentials(&facts) {
            None => Check::pass(
                "cgroup",
                format!("{}: {}", facts.hierarchy, facts.controllers.join(" ")),
            ),
            Some(problem) => Check::fail("cgroup", problem),
        },
        Err(err) => Check::fail("cgroup", chain(err)),
    }
}

fn privileges() -> Check {
    match runtime::privileges() {
        Ok(Privileges::Root) => Check::pass("privileges", "root: containers can be created".into()),
        Ok(Privileges::Rootless) => Check::warn(
            "privileges",
            "not root in the initial user namespace: `shoal-agent run` must run as root to \
             create containers"
                .into(),
        ),
        Err(err) => Check::warn("privileges", format!("cannot tell: {err}")),
    }
}

fn database(data_dir: &Path) -> Check {
    let store = match state::Store::open(data_dir) {
        Ok(store) => store,
        // The running agent holds its database exclusively (so that it opens on a full disk).
        Err(err) if err.is_busy() => {
            return Check::warn(
                "database",
                format!(
                    "{} is in use by a running `shoal-agent run`, which checked it when it \
                     opened it; stop the agent to check it here",
                    data_dir.join(state::DB_FILE).display()
                ),
            )
        }
        Err(err) => return Check::fail("database", chain(err)),
    };
    let migrated = store.migrated();
    let schema = if migrated.from == migrated.to {
        format!("schema version {} (up to date)", migrated.to)
    } else if migrated.from == 0 {
        format!("schema version {} (created)", migrated.to)
    } else {
        format!(
            "schema version {} (migrated from {})",
            migrated.to, migrated.from
        )
    };
    let journal = match store.journal_mode() {
        Ok(mode) => mode,
        Err(err) => return Check::fail("database", chain(err)),
    };
    match store.integrity_problems() {
        Ok(problems) if problems.is_empty() => Check::pass(
            "database",
            format!(
                "{}: {schema}, journal {journal}, integrity ok",
                store.path().display()
            ),
        ),
        Ok(problems) => Check::fail(
            "database",
            format!(
                "{}: integrity check failed: {}; restore a backup or move the file away",
                store.path().display(),
                problems.join("; ")
            ),
        ),
        Err(err) => Check::fail("database", chain(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(checks: &[Check]) -> (bool, String) {
        let mut out = Vec::new();
        let passed = render(checks, &mut out).expect("render to memory");
        (passed, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn a_failed_check_fails_the_selftest_and_is_named() {
        let (passed, text) = rendered(&[
            Check::pass("arch", "amd64".into()),
            Check::warn("kernel", "unknown".into()),
            Check::fail("cgroup", "no memory controller".into()),
        ]);
        assert!(!passed);
        assert!(
            text.contains("FAIL  cgroup     no memory controller"),
            "{text}"
        );
        assert!(text.ends_with("selftest failed: cgroup\n"), "{text}");
    }

    #[test]
    fn warnings_alone_pass_the_selftest_and_are_named() {
        let (passed, text) = rendered(&[
            Check::pass("arch", "amd64".into()),
            Check::warn("privileges", "not root".into()),
        ]);
        assert!(passed);
        assert!(
            text.ends_with("selftest passed with warnings: privileges\n"),
            "{text}"
        );
    }

    #[test]
    fn the_database_check_creates_then_finds_an_up_to_date_database() {
        let dir = tempfile::tempdir().expect("tempdir");

        let first = database(dir.path());
        let second = database(dir.path());

        assert_eq!(first.verdict, Verdict::Pass, "{}", first.detail);
        assert!(
            first
                .detail
                .contains("(created), journal wal, integrity ok"),
            "{}",
            first.detail
        );
        assert_eq!(second.verdict, Verdict::Pass, "{}", second.detail);
        assert!(second.detail.contains("(up to date)"), "{}", second.detail);
    }

    #[test]
    fn the_database_check_fails_on_a_database_it_cannot_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(state::DB_FILE),
            b"this is not sqlite, just text",
        )
        .expect("write");

        let check = database(dir.path());

        assert_eq!(check.verdict, Verdict::Fail);
        assert!(check.detail.contains(state::DB_FILE), "{}", check.detail);
    }
}
