//! Parsing manifests never panics, whatever the bytes: random text, and valid examples with
//! characters deleted, replaced or inserted.

use std::path::Path;

use proptest::prelude::*;
use shoal_model::manifest::parse_manifest;

const EXAMPLES: [&str; 4] = [
    include_str!("../../manifests/hello.yaml"),
    include_str!("../../manifests/sensor-reader.yaml"),
    include_str!("../../manifests/camera-pod.yaml"),
    include_str!("../../manifests/mqtt-bridge.yaml"),
];

fn assert_total(text: &str) {
    let (workloads, diagnostics) = parse_manifest(Path::new("fuzz.yaml"), text);
    // Either something decoded or something was reported: never a silent nothing.
    assert!(!workloads.is_empty() || !diagnostics.is_empty());
    for d in &diagnostics {
        assert!(!d.message.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        assert_total(&text);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "([a-z]{1,6}: ?|- |\\[|\\]|\\{|\\}|&a |\\*a|'|\"|\n  |, |[0-9]{1,3}){0,80}") {
        assert_total(&text);
    }

    #[test]
    fn mutated_examples_never_panic(
        example in 0usize..EXAMPLES.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..8),
    ) {
        let mut chars: Vec<char> = EXAMPLES[example].chars().collect();
        for (at, op, c) in edits {
            if chars.is_empty() {
                break;
            }
            let i = at.index(chars.len());
            match op {
                0 => { chars.remove(i); }
                1 => chars[i] = c,
                _ => chars.insert(i, c),
            }
        }
        let text: String = chars.into_iter().collect();
        assert_total(&text);
    }
}
