//! Placement constraints: small expressions over node facts and labels.
//!
//! ```text
//! constraint := key op
//! key        := attribute | "label." LABEL-KEY
//! attribute  := arch | os | kernel | cgroup | memory | cpu | pids | agentVersion
//! op         := ("in" | "notin") "(" value ("," value)* ")"
//!             | ("==" | "!=") value
//!             | (">=" | "<=" | ">" | "<") value          numeric or version attributes only
//!             | "exists" | "missing"                      labels only
//! ```
//! Examples: `arch in (arm64, armv7)`, `memory >= 256Mi`, `label.site != lab`,
//! `kernel >= 5.10`, `label.gpu exists`.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::node::NodeFacts;
use crate::quantity::{format_bytes, format_millicpu, parse_bytes, parse_millicpu};

/// A parsed constraint; `source` keeps the text the operator wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub source: String,
    pub key: Key,
    pub test: Test,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    Attribute(Attribute),
    Label(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attribute {
    Arch,
    Os,
    Kernel,
    Cgroup,
    Memory,
    Cpu,
    Pids,
    AgentVersion,
}

const ATTRIBUTES: [(&str, Attribute); 8] = [
    ("arch", Attribute::Arch),
    ("os", Attribute::Os),
    ("kernel", Attribute::Kernel),
    ("cgroup", Attribute::Cgroup),
    ("memory", Attribute::Memory),
    ("cpu", Attribute::Cpu),
    ("pids", Attribute::Pids),
    ("agentVersion", Attribute::AgentVersion),
];

/// How an attribute's values compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    /// Dotted numbers, compared part by part (`5.10.0-21-arm64` >= `5.10`).
    Version,
    Bytes,
    MilliCpu,
    Integer,
}

impl Attribute {
    fn kind(self) -> Kind {
        match self {
            Attribute::Arch | Attribute::Os => Kind::Text,
            Attribute::Kernel | Attribute::AgentVersion => Kind::Version,
            Attribute::Memory => Kind::Bytes,
            Attribute::Cpu => Kind::MilliCpu,
            Attribute::Cgroup | Attribute::Pids => Kind::Integer,
        }
    }

    pub fn name(self) -> &'static str {
        ATTRIBUTES
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Test {
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Compare(Comparison, Value),
    Exists,
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

/// A value normalised for its attribute's kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Text(String),
    Version(Vec<u64>),
    Number(u64),
}

impl Constraint {
    /// Parses one constraint; the error says what would be valid.
    pub fn parse(source: &str) -> Result<Constraint, String> {
        let text = source.trim();
        let key_end = text
            .find(|c: char| c.is_whitespace() || "=!<>(".contains(c))
            .unwrap_or(text.len());
        let (key_text, rest) = text.split_at(key_end);
        let rest = rest.trim_start();
        if key_text.is_empty() {
            return Err(format!(
                "`{source}` does not start with a node attribute or `label.KEY`"
            ));
        }
        let key = parse_key(key_text)?;
        let kind = match &key {
            Key::Attribute(a) => a.kind(),
            Key::Label(_) => Kind::Text,
        };
        let test = parse_test(rest, kind, &key, source)?;
        Ok(Constraint {
            source: text.to_string(),
            key,
            test,
        })
    }

    /// Whether `node` satisfies this constraint.
    pub fn matches(&self, node: &NodeFacts) -> bool {
        let actual = match &self.key {
            Key::Label(name) => node.labels.get(name).map(|v| Value::Text(v.clone())),
            Key::Attribute(a) => Some(attribute_value(*a, node)),
        };
        match (&self.test, actual) {
            (Test::Exists, actual) => actual.is_some(),
            (Test::Missing, actual) => actual.is_none(),
            (_, None) => false,
            (Test::In(values), Some(actual)) => values
                .iter()
                .any(|v| compare(&actual, v) == Some(Ordering::Equal)),
            (Test::NotIn(values), Some(actual)) => values
                .iter()
                .all(|v| compare(&actual, v) != Some(Ordering::Equal)),
            (Test::Compare(op, value), Some(actual)) => match compare(&actual, value) {
                None => false,
                Some(ord) => match op {
                    Comparison::Eq => ord == Ordering::Equal,
                    Comparison::Ne => ord != Ordering::Equal,
                    Comparison::Ge => ord != Ordering::Less,
                    Comparison::Le => ord != Ordering::Greater,
                    Comparison::Gt => ord == Ordering::Greater,
                    Comparison::Lt => ord == Ordering::Less,
                },
            },
        }
    }

    /// What the node has for this constraint's key, for "why not placed" messages.
    pub fn describe_actual(&self, node: &NodeFacts) -> String {
        match &self.key {
            Key::Label(name) => match node.labels.get(name) {
                Some(v) => format!("label {name}={v}"),
                None => format!("no label {name}"),
            },
            Key::Attribute(a) => format!(
                "{} is {}",
                a.name(),
                display_value(*a, &attribute_value(*a, node))
            ),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_key(text: &str) -> Result<Key, String> {
    if let Some(label) = text
        .strip_prefix("label.")
        .or_else(|| text.strip_prefix("labels."))
    {
        crate::manifest::names::check_label_key(label)?;
        return Ok(Key::Label(label.to_string()));
    }
    if let Some((_, attribute)) = ATTRIBUTES.iter().find(|(name, _)| *name == text) {
        return Ok(Key::Attribute(*attribute));
    }
    let names: Vec<&str> = ATTRIBUTES.iter().map(|(n, _)| *n).collect();
    let hint = crate::manifest::names::suggest(text, &names)
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    Err(format!(
        "unknown node attribute `{text}`: {hint}attributes are {}; write `label.{text}` for a node label",
        names.join(", ")
    ))
}

fn parse_test(rest: &str, kind: Kind, key: &Key, source: &str) -> Result<Test, String> {
    let expected = "expected `in (...)`, `notin (...)`, `==`, `!=`, `>=`, `<=`, `>`, `<`, `exists` or `missing`";
    let word_end = rest
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(rest.len());
    let word = &rest[..word_end];
    match word {
        "in" | "notin" => {
            let list = rest[word_end..].trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| format!("`{source}`: write the values in parentheses, like `arch in (arm64, armv7)`"))?;
            let values = inner
                .split(',')
                .map(|v| parse_value(v.trim(), kind, key))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if word == "in" {
                Test::In(values)
            } else {
                Test::NotIn(values)
            })
        }
        "exists" | "missing" => {
            if !matches!(key, Key::Label(_)) {
                return Err(format!(
                    "`{source}`: `{word}` applies to labels only (`label.KEY {word}`)"
                ));
            }
            if !rest[word_end..].trim().is_empty() {
                return Err(format!("`{source}`: nothing may follow `{word}`"));
            }
            Ok(if word == "exists" {
                Test::Exists
            } else {
                Test::Missing
            })
        }
        _ => {
            let (op, value) = [
                ("==", Comparison::Eq),
                ("!=", Comparison::Ne),
                (">=", Comparison::Ge),
                ("<=", Comparison::Le),
                (">", Comparison::Gt),
                ("<", Comparison::Lt),
                ("=", Comparison::Eq),
            ]
            .iter()
            .find_map(|(sym, op)| rest.strip_prefix(sym).map(|v| (*op, v.trim())))
            .ok_or_else(|| format!("`{source}`: {expected}"))?;
            let ordering = !matches!(op, Comparison::Eq | Comparison::Ne);
            if ordering && kind == Kind::Text {
                return Err(format!(
                    "`{source}`: `{}` has no order; use `==`, `!=`, `in (...)` or `notin (...)`",
                    key_name(key)
                ));
            }
            Ok(Test::Compare(op, parse_value(value, kind, key)?))
        }
    }
}

fn key_name(key: &Key) -> String {
    match key {
        Key::Attribute(a) => a.name().to_string(),
        Key::Label(l) => format!("label.{l}"),
    }
}

fn parse_value(text: &str, kind: Kind, key: &Key) -> Result<Value, String> {
    if text.is_empty() {
        return Err(format!("a value for `{}` is missing", key_name(key)));
    }
    match kind {
        Kind::Text => {
            if text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
            {
                Ok(Value::Text(text.to_string()))
            } else {
                Err(format!(
                    "`{text}` is not a valid value: use letters, digits and `._-/`"
                ))
            }
        }
        Kind::Version => parse_version(text)
            .map(Value::Version)
            .ok_or_else(|| format!("`{text}` is not a version like `5.10` or `0.1.0`")),
        Kind::Bytes => parse_bytes(text).map(Value::Number),
        Kind::MilliCpu => parse_millicpu(text).map(|m| Value::Number(u64::from(m))),
        Kind::Integer => text
            .parse::<u64>()
            .map(Value::Number)
            .map_err(|_| format!("`{text}` is not a whole number")),
    }
}

/// Leading dotted numbers of a version string: `5.10.0-21-arm64` -> [5, 10, 0].
fn parse_version(text: &str) -> Option<Vec<u64>> {
    let numeric: &str = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let parts: Option<Vec<u64>> = numeric
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect();
    parts.filter(|p| !p.is_empty())
}

fn attribute_value(attribute: Attribute, node: &NodeFacts) -> Value {
    match attribute {
        Attribute::Arch => Value::Text(node.arch.clone()),
        Attribute::Os => Value::Text(node.os.clone()),
        Attribute::Kernel => Value::Version(parse_version(&node.kernel).unwrap_or_default()),
        Attribute::AgentVersion => {
            Value::Version(parse_version(&node.agent_version).unwrap_or_default())
        }
        Attribute::Cgroup => Value::Number(u64::from(node.cgroup_version)),
        Attribute::Memory => Value::Number(node.capacity.memory_bytes),
        Attribute::Cpu => Value::Number(u64::from(node.capacity.cpu_millis)),
        Attribute::Pids => Value::Number(u64::from(node.capacity.pids)),
    }
}

fn display_value(attribute: Attribute, value: &Value) -> String {
    match (attribute, value) {
        (Attribute::Memory, Value::Number(n)) => format_bytes(*n),
        (Attribute::Cpu, Value::Number(n)) => {
            format_millicpu(u32::try_from(*n).unwrap_or(u32::MAX))
        }
        (_, Value::Number(n)) => n.to_string(),
        (_, Value::Text(t)) => t.clone(),
        (_, Value::Version(v)) => v.iter().map(u64::to_string).collect::<Vec<_>>().join("."),
    }
}

fn compare(actual: &Value, wanted: &Value) -> Option<Ordering> {
    match (actual, wanted) {
        (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::Number(b)) => Some(a.cmp(b)),
        (Value::Version(a), Value::Version(b)) => {
            // Missing trailing parts count as zero: 5.10 == 5.10.0.
            let len = a.len().max(b.len());
            let part = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
            Some(
                (0..len)
                    .map(|i| part(a, i).cmp(&part(b, i)))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Capacity;

    fn pi() -> NodeFacts {
        NodeFacts {
            arch: "arm64".into(),
            os: "linux".into(),
            kernel: "6.1.0-21-arm64".into(),
            cgroup_version: 2,
            capacity: Capacity {
                memory_bytes: 512 << 20,
                cpu_millis: 4000,
                pids: 4096,
            },
            agent_version: "0.1.0".into(),
            labels: [("site".to_string(), "plant-1".to_string())].into(),
            wire_versions: Vec::new(),
        }
    }

    fn check(source: &str, expected: bool) {
        let constraint = Constraint::parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(constraint.matches(&pi()), expected, "{source}");
    }

    #[test]
    fn constraints_match_node_facts_and_labels() {
        check("arch in (arm64, armv7)", true);
        check("arch notin (arm64)", false);
        check("arch == amd64", false);
        check("memory >= 256Mi", true);
        check("memory > 512Mi", false);
        check("memory <= 512Mi", true);
        check("cpu >= 2", true);
        check("cpu < 500m", false);
        check("kernel >= 5.10", true);
        check("kernel < 6.1", false);
        check("kernel == 6.1", true);
        check("cgroup == 2", true);
        check("label.site == plant-1", true);
        check("label.site != plant-1", false);
        check("label.gpu exists", false);
        check("label.gpu missing", true);
        check("label.gpu == yes", false);
        check("labels.site in (plant-1, plant-2)", true);
        check("agentVersion >= 0.1", true);
    }

    #[test]
    fn malformed_constraints_say_what_is_valid() {
        let cases = [
            ("memroy >= 256Mi", "did you mean `memory`"),
            ("arch >= arm64", "has no order"),
            ("arch in arm64", "in parentheses"),
            ("memory >= lots", "not a memory size"),
            ("arch exists", "applies to labels only"),
            ("arch", "expected `in (...)`"),
            ("", "does not start with"),
            ("kernel >= x", "not a version"),
            ("label.site ==", "is missing"),
        ];
        for (source, needle) in cases {
            let err = Constraint::parse(source).expect_err(source);
            assert!(err.contains(needle), "{source}: {err}");
        }
    }

    #[test]
    fn describe_actual_shows_what_the_node_has() {
        let c = Constraint::parse("memory >= 1Gi").expect("valid");
        assert_eq!(c.describe_actual(&pi()), "memory is 512Mi");
        let c = Constraint::parse("label.role == gateway").expect("valid");
        assert_eq!(c.describe_actual(&pi()), "no label role");
    }
}
