//! Manifest parsing (`parse_manifest`, `Loaded::add_text`) on arbitrary UTF-8.
//!
//! Never panics and finishes in bounded time (libFuzzer's `-timeout`, `-rss_limit_mb`); the
//! outcome is never silent (a workload or a diagnostic) and every diagnostic says something.
//! What validates can be sent: each workload, in a `DesiredState`, passes the wire encoder's
//! checks (size aside) and comes back from the decoder unchanged.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shoal_model::manifest::{parse_manifest, Loaded};
use shoal_model::wire::{decode, encode, DesiredState, DesiredWorkload, Limits, WireError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (workloads, diagnostics) = parse_manifest(Path::new("fuzz.yaml"), text);
    assert!(
        !workloads.is_empty() || !diagnostics.is_empty(),
        "neither a workload nor a diagnostic"
    );
    for d in &diagnostics {
        assert!(
            !d.message.trim().is_empty(),
            "a diagnostic without a message: {d:?}"
        );
        assert_eq!(d.file, Path::new("fuzz.yaml"));
    }

    // Twice the same file: every workload is then a duplicate, reported at the second file.
    let mut loaded = Loaded::default();
    loaded.add_text(Path::new("one.yaml"), text);
    loaded.add_text(Path::new("two.yaml"), text);
    assert_eq!(loaded.files, 2);
    assert!(!loaded.is_ok() || workloads.is_empty());
    for d in &loaded.diagnostics {
        assert!(
            !d.message.trim().is_empty(),
            "a diagnostic without a message: {d:?}"
        );
    }
    let _ = loaded.report();

    let limits = Limits::default();
    for (i, loaded) in workloads.into_iter().enumerate() {
        let _ = loaded.workload.summary();
        let state = DesiredState {
            node_id: "fuzz-node".into(),
            generation: i as u64 + 1,
            workloads: vec![DesiredWorkload {
                workload: loaded.workload,
                revision: 1,
            }],
            signing_keys: Vec::new(),
            agent: None,
        };
        let bytes = match encode("fuzz-node", &state, &limits) {
            Ok(bytes) => bytes,
            // Aliases can make a small file a large workload; refusing it is the encoder's job.
            Err(WireError::TooLarge { .. }) => continue,
            Err(e) => panic!("a valid workload cannot be sent to a node: {e}"),
        };
        let (_, again) =
            decode::<DesiredState>(&bytes, &limits).expect("a valid workload that encodes decodes");
        assert_eq!(again, state, "the workload changed on the wire");
    }
});
