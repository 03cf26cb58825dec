//! Placement constraints: `Constraint::parse` on arbitrary text, `matches` against arbitrary
//! node facts.
//!
//! Input: the constraint text, then a NUL byte, then bytes that build the node's facts.
//! Never panics; an error says something; what parses keeps its (trimmed) source and parses
//! again to the same constraint; `in` and `notin` over the same values disagree whenever the
//! node has the key, and `exists`/`missing` always disagree.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use shoal_model::manifest::constraint::{Constraint, Key, Test};
use shoal_model::node::{Capacity, NodeFacts};

fn facts(u: &mut Unstructured<'_>) -> Result<NodeFacts> {
    Ok(NodeFacts {
        arch: u.arbitrary()?,
        os: u.arbitrary()?,
        kernel: u.arbitrary()?,
        cgroup_version: u.arbitrary()?,
        capacity: Capacity {
            memory_bytes: u.arbitrary()?,
            cpu_millis: u.arbitrary()?,
            pids: u.arbitrary()?,
        },
        agent_version: u.arbitrary()?,
        labels: u.arbitrary::<BTreeMap<String, String>>()?,
        wire_versions: Vec::new(),
    })
}

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let constraint = match Constraint::parse(text) {
        Ok(constraint) => constraint,
        Err(message) => {
            assert!(!message.trim().is_empty(), "an error without a message");
            return;
        }
    };
    assert_eq!(constraint.source, text.trim());
    assert_eq!(constraint.to_string(), constraint.source);
    assert_eq!(
        Constraint::parse(&constraint.source).as_ref(),
        Ok(&constraint),
        "the source of a parsed constraint parses differently"
    );

    let node = facts(&mut Unstructured::new(rest)).unwrap_or_default();
    let matched = constraint.matches(&node);
    assert!(!constraint.describe_actual(&node).is_empty());

    let has_key = match &constraint.key {
        Key::Label(name) => node.labels.contains_key(name),
        Key::Attribute(_) => true,
    };
    let with = |test: Test| Constraint {
        test,
        ..constraint.clone()
    };
    match &constraint.test {
        Test::In(values) | Test::NotIn(values) => {
            let is_in = with(Test::In(values.clone())).matches(&node);
            let not_in = with(Test::NotIn(values.clone())).matches(&node);
            assert_eq!(
                matched,
                if matches!(constraint.test, Test::In(_)) {
                    is_in
                } else {
                    not_in
                }
            );
            if has_key {
                assert_ne!(
                    is_in, not_in,
                    "`in` and `notin` agree on a node that has the key"
                );
            } else {
                assert!(
                    !is_in && !not_in,
                    "a node without the label matches `in` or `notin`"
                );
            }
        }
        Test::Exists | Test::Missing => {
            let exists = with(Test::Exists).matches(&node);
            let missing = with(Test::Missing).matches(&node);
            assert_ne!(exists, missing, "`exists` and `missing` agree");
            assert_eq!(exists, has_key);
            assert_eq!(
                matched,
                if matches!(constraint.test, Test::Exists) {
                    exists
                } else {
                    missing
                }
            );
        }
        Test::Compare(..) => {}
    }
});
