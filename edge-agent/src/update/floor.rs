//! The node's floor: the lowest agent version it will ever be asked to run again, from the
//! signed minimum of a release it has proven (`shoal agent-release add --minimum M`).
//!
//! Why on the device and not the hub: whoever can sign desired states (or a hub restored
//! from an old backup) can name any release that was ever signed, including an old one with
//! a known flaw. The release key signs the minimum with the release, so only a node that has
//! *run* a release with minimum M knows M applies to it; it keeps M in
//! `{data_dir}/agent-floor` and refuses a lower target whatever asks for it.
//!
//! - Taken once the release is proven: the hub's target names the version this agent runs
//!   and the launcher is not judging it any more (a trial that is reverted sets no floor).
//!   The target's signature must verify with the release keys the node trusts.
//! - Only ever raised: a release with a lower minimum, or none, leaves the floor as it is.
//! - The file is text (`shoal-agent-floor/1`, then `minimum=` and the `release=` it came
//!   from), written atomically. A file that cannot be read refuses every target (fail
//!   closed) with a reason saying to fix or remove it: a floor silently dropped is a
//!   downgrade let through.

use std::path::Path;

use anyhow::Context as _;
use shoal_model::release::{parse_version, Version};

use crate::launch;

/// The floor's file in the data dir.
pub const FLOOR_FILE: &str = "agent-floor";
/// Its first line (after comments); a new layout gets a new number.
const FORMAT: &str = "shoal-agent-floor/1";

/// The lowest version this node runs, and the proven release whose minimum it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Floor {
    pub minimum: Version,
    pub release: Version,
}

impl Floor {
    /// The file's text.
    pub fn render(&self) -> String {
        format!(
            "# The lowest agent version this node runs: the signed minimum of a release it has proven (shoal-agent).\n\
             {FORMAT}\nminimum={}\nrelease={}\n",
            self.minimum, self.release
        )
    }

    /// Reads the file's text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Floor, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        match lines.next() {
            Some(FORMAT) => {}
            Some(other) => {
                let shown: String = other.chars().take(40).collect();
                return Err(format!("it starts with `{shown}`, not `{FORMAT}`"));
            }
            None => return Err("it is empty".into()),
        }
        let mut minimum = None;
        let mut release = None;
        for line in lines {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("`{}` is not key=value", clip(line)))?;
            let slot = match key {
                "minimum" => &mut minimum,
                "release" => &mut release,
                _ => return Err(format!("unknown key `{}`", clip(key))),
            };
            if slot.is_some() {
                return Err(format!("`{key}` is given twice"));
            }
            *slot = Some(parse_version(value).map_err(|e| format!("{key}: {e}"))?);
        }
        match (minimum, release) {
            (Some(minimum), Some(release)) => Ok(Floor { minimum, release }),
            _ => Err("it needs both `minimum=` and `release=`".into()),
        }
    }

    /// The floor after proving `release` with `minimum`: raised, or `None` when it stays.
    pub fn raised(current: Option<&Floor>, release: &Version, minimum: &Version) -> Option<Floor> {
        match current {
            Some(floor) if floor.minimum >= *minimum => None,
            _ => Some(Floor {
                minimum: minimum.clone(),
                release: release.clone(),
            }),
        }
    }
}

fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The node's floor: none when the file is absent; an error (naming the file) when it cannot
/// be read.
pub fn read(data_dir: &Path) -> anyhow::Result<Option<Floor>> {
    let path = data_dir.join(FLOOR_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Floor::parse(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Keeps `floor` (atomically, durably).
pub fn keep(data_dir: &Path, floor: &Floor) -> anyhow::Result<()> {
    launch::write_atomic(data_dir, FLOOR_FILE, floor.render().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).expect("version")
    }

    #[test]
    fn a_floor_survives_a_restart_only_ever_rises_and_a_spoiled_file_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(read(dir.path()).expect("absent"), None);
        let first = Floor::raised(None, &v("0.4.0"), &v("0.3.0")).expect("a first floor");
        keep(dir.path(), &first).expect("keep");
        // What a restarted agent reads back.
        assert_eq!(read(dir.path()).expect("read"), Some(first.clone()));
        let text = std::fs::read_to_string(dir.path().join(FLOOR_FILE)).expect("text");
        assert!(
            text.ends_with("shoal-agent-floor/1\nminimum=0.3.0\nrelease=0.4.0\n"),
            "{text}"
        );
        // A lower or equal minimum leaves it; a higher one raises it.
        assert_eq!(Floor::raised(Some(&first), &v("0.5.0"), &v("0.2.0")), None);
        assert_eq!(Floor::raised(Some(&first), &v("0.5.0"), &v("0.3.0")), None);
        assert_eq!(
            Floor::raised(Some(&first), &v("0.6.0"), &v("0.5.0")),
            Some(Floor {
                minimum: v("0.5.0"),
                release: v("0.6.0")
            })
        );
        for (spoiled, expected) in [
            ("", "empty"),
            (
                "shoal-agent-floor/9\nminimum=0.1.0\nrelease=0.1.0\n",
                "not `shoal-agent-floor/1`",
            ),
            ("shoal-agent-floor/1\nminimum=0.1.0\n", "needs both"),
            (
                "shoal-agent-floor/1\nminimum=soon\nrelease=0.1.0\n",
                "minimum: `soon`",
            ),
            (
                "shoal-agent-floor/1\nminimum=0.1.0\nminimum=0.2.0\nrelease=0.2.0\n",
                "twice",
            ),
            ("shoal-agent-floor/1\nmaximum=0.1.0\n", "unknown key"),
            ("shoal-agent-floor/1\nminimum\n", "not key=value"),
        ] {
            std::fs::write(dir.path().join(FLOOR_FILE), spoiled).expect("spoil");
            let error = format!("{:#}", read(dir.path()).expect_err(expected));
            assert!(error.contains(expected), "{expected}: {error}");
            assert!(error.contains(FLOOR_FILE), "names the file: {error}");
        }
    }
}
