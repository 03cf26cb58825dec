//! How a claim token names the devices it enrolls (pure): a name template such as
//! `pi-{serial:8}` or `{name}` rendered with what the device reports about itself
//! ([`DeviceIdentity`]), made into a DNS label, then made unique among the hub's nodes.
//!
//! Placeholders: `{name}` (the name the device proposes: `shoal-agent enroll --name`, else
//! its host name), `{machine-id}`, `{serial}`, `{mac}`; `{VAR:N}` keeps the last `N`
//! characters (the part of a MAC or a serial that differs between boards). Values are
//! lower-cased, a MAC loses its colons, any other character outside `a-z0-9` becomes `-`.
//! A template that names an item the device did not report refuses that device, with the
//! reason. When the name is taken, `-2`, `-3`, ... is added: the hub keeps names unique,
//! the device learns its name from the answer.

use shoal_model::api::{DeviceIdentity, MAX_IDENTITY_ITEM};
use shoal_model::manifest::names::check_dns_label;

/// The longest a rendered name may be before a `-N` suffix (a DNS label is at most 63).
const MAX_BASE: usize = 56;
/// How many suffixes are tried before giving up (bounded: every try is a lookup).
pub const MAX_SUFFIX: u32 = 10_000;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Item { item: Item, last: Option<usize> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Name,
    MachineId,
    Serial,
    Mac,
}

impl Item {
    fn as_str(self) -> &'static str {
        match self {
            Item::Name => "name",
            Item::MachineId => "machine-id",
            Item::Serial => "serial",
            Item::Mac => "mac",
        }
    }

    fn of(self, device: &DeviceIdentity) -> Option<&str> {
        match self {
            Item::Name => device.name.as_deref(),
            Item::MachineId => device.machine_id.as_deref(),
            Item::Serial => device.serial.as_deref(),
            Item::Mac => device.mac.as_deref(),
        }
    }
}

/// A checked name template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate {
    pieces: Vec<Piece>,
}

impl NameTemplate {
    /// Checks a template: balanced braces, known placeholders, literal text of `a-z0-9-`,
    /// at least one placeholder (else every device would get the same name plus a number).
    pub fn parse(text: &str) -> Result<NameTemplate, String> {
        let wrong = |why: String| format!("name template `{text}`: {why}");
        if text.len() > 200 {
            return Err(wrong("longer than 200 characters".into()));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some(end) = after.find('}') else {
                    return Err(wrong("a `{` is not closed".into()));
                };
                let inside = &after[..end];
                let (name, last) = match inside.split_once(':') {
                    Some((name, count)) => {
                        let count: usize = count.parse().ok().filter(|n| (1..=63).contains(n)).ok_or_else(|| {
                            wrong(format!("`{{{inside}}}`: after `:` comes how many characters to keep, 1 to 63"))
                        })?;
                        (name, Some(count))
                    }
                    None => (inside, None),
                };
                let item = match name {
                    "name" => Item::Name,
                    "machine-id" => Item::MachineId,
                    "serial" => Item::Serial,
                    "mac" => Item::Mac,
                    other => {
                        return Err(wrong(format!(
                            "unknown placeholder `{{{other}}}`: use {{name}}, {{machine-id}}, {{serial}} or {{mac}}, optionally with :N to keep the last N characters"
                        )))
                    }
                };
                pieces.push(Piece::Item { item, last });
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if let Some(bad) = literal
                    .chars()
                    .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
                {
                    return Err(wrong(format!(
                        "`{bad}` cannot be part of a node name: outside placeholders use a-z, 0-9 and -"
                    )));
                }
                pieces.push(Piece::Text(literal.to_string()));
                rest = &rest[end..];
            }
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Item { .. })) {
            return Err(wrong(
                "it has no placeholder, so every device would get the same name: add one of {name}, {machine-id}, {serial}, {mac}".into(),
            ));
        }
        Ok(NameTemplate { pieces })
    }

    /// The name `device` gets before the hub makes it unique: a DNS label, or why there is
    /// none.
    pub fn render(&self, device: &DeviceIdentity) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Item { item, last } => {
                    let value = item
                        .of(device)
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            format!(
                                "the claim token names its nodes from {{{}}}, which this device did not report",
                                item.as_str()
                            )
                        })?;
                    if value.len() > MAX_IDENTITY_ITEM {
                        return Err(format!(
                            "the device's {} is longer than {MAX_IDENTITY_ITEM} bytes",
                            item.as_str()
                        ));
                    }
                    let clean = clean(*item, value);
                    let kept = match last {
                        Some(n) => clean
                            .chars()
                            .skip(clean.chars().count().saturating_sub(*n))
                            .collect(),
                        None => clean,
                    };
                    out.push_str(&kept);
                }
            }
        }
        let name = squeeze(&out);
        let name: String = name.chars().take(MAX_BASE).collect();
        let name = name.trim_end_matches('-').to_string();
        check_dns_label(&name)
            .map_err(|e| format!("the name template gives `{name}` for this device: {e}"))?;
        Ok(name)
    }
}

impl std::fmt::Display for NameTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => f.write_str(text)?,
                Piece::Item { item, last: None } => write!(f, "{{{}}}", item.as_str())?,
                Piece::Item {
                    item,
                    last: Some(n),
                } => write!(f, "{{{}:{n}}}", item.as_str())?,
            }
        }
        Ok(())
    }
}

/// Lower case; a MAC without its colons; anything else outside `a-z0-9` as `-`.
fn clean(item: Item, value: &str) -> String {
    value
        .chars()
        .filter(|c| !(item == Item::Mac && (*c == ':' || *c == '-')))
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// No leading, trailing or doubled `-`.
fn squeeze(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

/// `base` if nobody has it, else the first free `base-2`, `base-3`, ...; `None` when
/// [`MAX_SUFFIX`] names are all taken.
pub fn unique(base: &str, mut taken: impl FnMut(&str) -> bool) -> Option<String> {
    if !taken(base) {
        return Some(base.to_string());
    }
    (2..=MAX_SUFFIX)
        .map(|n| format!("{base}-{n}"))
        .find(|name| !taken(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceIdentity {
        DeviceIdentity {
            name: Some("RaspberryPi".into()),
            machine_id: Some("3f9a2b7c0d1e4f5a6b7c8d9e0f1a2b3c\n".into()),
            serial: Some("10000000d3a1b2c4".into()),
            mac: Some("DC:A6:32:01:02:03".into()),
        }
    }

    /// (template, what the device reports, the name or the start of the reason)
    #[test]
    fn templates_name_devices_from_what_they_report() {
        let rows: &[(&str, DeviceIdentity, Result<&str, &str>)] = &[
            ("{name}", device(), Ok("raspberrypi")),
            ("pi-{serial:8}", device(), Ok("pi-d3a1b2c4")),
            ("gw-{mac:6}", device(), Ok("gw-010203")),
            ("{mac}", device(), Ok("dca632010203")),
            ("n-{machine-id:6}", device(), Ok("n-1a2b3c")),
            (
                "{name}.{serial}",
                device(),
                Err("name template `{name}.{serial}`: `.`"),
            ),
            (
                "x-{serial}",
                DeviceIdentity::default(),
                Err("the claim token names its nodes from {serial}, which this device did not report"),
            ),
            (
                "{name}",
                DeviceIdentity {
                    name: Some("my_board.local".into()),
                    ..DeviceIdentity::default()
                },
                Ok("my-board-local"),
            ),
            (
                "{name}",
                DeviceIdentity {
                    name: Some("---".into()),
                    ..DeviceIdentity::default()
                },
                Err("the name template gives ``"),
            ),
            ("{name}{machine-id}{serial}", device(), Ok("raspberrypi3f9a2b7c0d1e4f5a6b7c8d9e0f1a2b3c10000000d3a1b")),
            ("plant", device(), Err("name template `plant`: it has no placeholder")),
            ("{host}", device(), Err("name template `{host}`: unknown placeholder `{host}`")),
            ("{name", device(), Err("name template `{name`: a `{` is not closed")),
            ("{serial:0}", device(), Err("name template `{serial:0}`: `{serial:0}`: after `:`")),
        ];
        for (template, identity, expected) in rows {
            let got = NameTemplate::parse(template).and_then(|t| {
                assert_eq!(&t.to_string(), template, "a template prints as written");
                t.render(identity)
            });
            match (expected, &got) {
                (Ok(name), Ok(got)) => assert_eq!(got, name, "{template}"),
                (Err(start), Err(got)) => assert!(got.starts_with(start), "{template}: {got}"),
                _ => panic!("{template}: expected {expected:?}, got {got:?}"),
            }
            if let Ok(name) = got {
                assert!(check_dns_label(&name).is_ok(), "{name}");
                assert!(name.len() <= MAX_BASE, "{name}");
            }
        }
    }

    #[test]
    fn a_taken_name_gets_the_first_free_number() {
        let taken = ["pi", "pi-2", "pi-4"];
        assert_eq!(
            unique("pi", |n| taken.contains(&n)).as_deref(),
            Some("pi-3")
        );
        assert_eq!(unique("gw", |n| taken.contains(&n)).as_deref(), Some("gw"));
        assert_eq!(unique("pi", |_| true), None);
    }

    proptest::proptest! {
        /// Whatever a device reports, rendering gives a DNS label or a reason, never a panic.
        #[test]
        fn any_identity_renders_to_a_dns_label_or_a_reason(
            name in proptest::option::of(".{0,140}"),
            serial in proptest::option::of("[ -~]{0,80}"),
            mac in proptest::option::of("[0-9a-fA-F:]{0,40}"),
        ) {
            let device = DeviceIdentity { name, serial, mac, machine_id: None };
            for template in ["{name}", "d-{serial:6}-{mac}", "{mac:4}{name:10}"] {
                let template = NameTemplate::parse(template).expect("valid");
                if let Ok(name) = template.render(&device) {
                    proptest::prop_assert!(check_dns_label(&name).is_ok(), "{}", name);
                }
            }
        }
    }
}
