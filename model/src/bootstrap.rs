//! The bootstrap file `shoal flash` writes into a disk image's boot partition and
//! `shoal-agent enroll --bootstrap` reads on the device's first boot: where the hub is, the
//! claim token (which pins the hub's CA) and the labels the token gives.
//!
//! `KEY=VALUE` lines, `#` comments, so the first-boot shell hook can read it too:
//!
//! ```text
//! SHOAL_BOOTSTRAP=1
//! SHOAL_HUB=https://hub.example:7440
//! SHOAL_TOKEN=shoalc1.ID.SECRET.CA
//! SHOAL_LABELS=site=plant-1,role=gateway
//! ```
//!
//! `SHOAL_BOOTSTRAP` is the format's version. Every value is checked (a url, a token, labels),
//! so none needs quoting. Parsing is pure, bounded and never panics: the file comes from a
//! partition anyone with the card can write.

use std::collections::BTreeMap;

use crate::api::Token;
use crate::endpoint::ApiUrl;
use crate::manifest::names::{check_label_key, check_label_value};

/// The version this code writes and reads.
pub const BOOTSTRAP_VERSION: u32 = 1;
/// The largest bootstrap file read.
pub const MAX_BOOTSTRAP_BYTES: usize = 16 * 1024;

/// What a device needs to enroll on its first boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    pub hub: ApiUrl,
    /// A claim token or a per-node token; `None` once used (the device removes it).
    pub token: Option<String>,
    /// The labels the token gives (for people reading the card: the hub sets them).
    pub labels: BTreeMap<String, String>,
}

impl Bootstrap {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Shoal bootstrap, written by `shoal flash`: the device enrolls with it at first boot\n\
             # (`shoal-agent enroll --bootstrap`) and then removes the token from this file.\n",
        );
        out.push_str(&format!("SHOAL_BOOTSTRAP={BOOTSTRAP_VERSION}\n"));
        out.push_str(&format!("SHOAL_HUB={}\n", self.hub));
        if let Some(token) = &self.token {
            out.push_str(&format!("SHOAL_TOKEN={token}\n"));
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("SHOAL_LABELS={}\n", labels.join(",")));
        out
    }

    /// Reads the file's text, refusing anything it does not understand, with the line.
    pub fn parse(text: &str) -> Result<Bootstrap, String> {
        if text.len() > MAX_BOOTSTRAP_BYTES {
            return Err(format!(
                "the bootstrap file is larger than {MAX_BOOTSTRAP_BYTES} bytes"
            ));
        }
        let (mut version, mut hub, mut token, mut labels) = (None, None, None, BTreeMap::new());
        for (index, line) in text.lines().enumerate() {
            let at = |why: String| format!("bootstrap line {}: {why}", index + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(at("expected KEY=VALUE".into()));
            };
            match key {
                "SHOAL_BOOTSTRAP" => {
                    let found: u32 = value
                        .parse()
                        .map_err(|_| at(format!("`{value}` is not a version number")))?;
                    if found != BOOTSTRAP_VERSION {
                        return Err(at(format!(
                            "format version {found}; this agent reads version {BOOTSTRAP_VERSION}: flash with a matching `shoal`"
                        )));
                    }
                    version = Some(found);
                }
                "SHOAL_HUB" => {
                    hub = Some(value.parse::<ApiUrl>().map_err(|e| at(e.to_string()))?);
                }
                "SHOAL_TOKEN" => {
                    if !value.is_empty() {
                        Token::parse(value).map_err(at)?;
                        token = Some(value.to_string());
                    }
                }
                "SHOAL_LABELS" => {
                    for item in value.split(',').filter(|i| !i.is_empty()) {
                        let (k, v) = item
                            .split_once('=')
                            .ok_or_else(|| at(format!("label `{item}` is not KEY=VALUE")))?;
                        check_label_key(k)
                            .and_then(|()| check_label_value(v))
                            .map_err(at)?;
                        labels.insert(k.to_string(), v.to_string());
                    }
                }
                other => {
                    return Err(at(format!(
                        "unknown key `{}`",
                        other.chars().take(40).collect::<String>()
                    )))
                }
            }
        }
        if version.is_none() {
            return Err("not a Shoal bootstrap file: it has no SHOAL_BOOTSTRAP line".into());
        }
        let hub = hub.ok_or("the bootstrap file has no SHOAL_HUB line")?;
        Ok(Bootstrap { hub, token, labels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bootstrap {
        Bootstrap {
            hub: "https://hub.example:7440".parse().expect("url"),
            token: Some(format!(
                "shoalc1.k3x9q2abcd.{}.{}",
                "A".repeat(43),
                "ab".repeat(32)
            )),
            labels: [("site".to_string(), "plant-1".to_string())].into(),
        }
    }

    #[test]
    fn a_bootstrap_reads_back_as_written_also_without_its_token() {
        let bootstrap = sample();
        assert_eq!(Bootstrap::parse(&bootstrap.render()), Ok(bootstrap.clone()));
        let used = Bootstrap {
            token: None,
            ..bootstrap
        };
        assert_eq!(Bootstrap::parse(&used.render()), Ok(used));
    }

    #[test]
    fn what_is_not_a_bootstrap_is_refused_with_the_line() {
        let good = sample().render();
        let rows = [
            ("", "no SHOAL_BOOTSTRAP line"),
            ("SHOAL_BOOTSTRAP=1\n", "no SHOAL_HUB"),
            (
                &good.replace("SHOAL_BOOTSTRAP=1", "SHOAL_BOOTSTRAP=2"),
                "format version 2",
            ),
            (&good.replace("https://", "ftp://"), "line 4: `ftp://"),
            (
                &good.replace("shoalc1.k3x9q2abcd", "shoalc1.K"),
                "line 5: `K` is not a claim token id",
            ),
            (&format!("{good}EVIL=1\n"), "unknown key `EVIL`"),
            (&format!("{good}garbage\n"), "expected KEY=VALUE"),
            (&good.replace("site=plant-1", "site=plant 1"), "line 6"),
            (&"#".repeat(MAX_BOOTSTRAP_BYTES + 1), "larger than"),
        ];
        for (text, expected) in rows {
            let error = Bootstrap::parse(text).expect_err(expected);
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}
