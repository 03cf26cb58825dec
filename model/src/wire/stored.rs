//! Stored formats: the bytes the hub and the agent keep in SQLite, each row with the number of
//! the format it was written in.
//!
//! A stored format is the postcard encoding of one wire version's frozen types, and has that
//! version's number: format 2 is what release 0.1.0 wrote (the `v2` types), in every table.
//! Each row kind is written in the newest format that changed its shape, so a release that
//! changes one shape leaves every other row readable by the release before. Today every kind
//! is written in format 3: node facts gained the agent's wire versions, workloads two more
//! rollout settings, statuses the workloads a node rolled back by itself and events the
//! `rolled-back` reason.
//! The databases keep the number beside the bytes (a `*_format` column that migrations added
//! with `DEFAULT 2`, so every row 0.1.0 wrote reads as format 2); rows that are whole wire
//! messages (the hub's published desired states, the agent's outbox) carry it as their first
//! byte instead.
//!
//! | database | table.column                             | holds                   | format in | written | read |
//! |----------|------------------------------------------|-------------------------|-----------|---------|------|
//! | hub      | `workloads.spec`, `workload_revisions.spec` | [`Workload`]          | `spec_format` | 3 | 2, 3 |
//! | hub      | `nodes.facts`                            | [`NodeFacts`]           | `facts_format` | 3 | 2, 3 |
//! | hub      | `node_status.payload`                    | [`NodeStatus`], no events | `payload_format` | 3 | 2, 3 |
//! | hub      | `events.payload`                         | [`Event`]               | `payload_format` | 3 | 2, 3 |
//! | hub      | `node_desired.payload`                   | the published envelope  | its first byte | the node's wire version | 2, 3 |
//! | agent    | `desired_state.payload`                  | `[DesiredWorkload]`     | `payload_format` | 3 | 2, 3 |
//! | agent    | `outbox.payload`                         | the status envelope     | its first byte | the hub's wire version | 2, 3 |
//!
//! Rules: a store writes each row kind in its format above (at most [`STORED_FORMAT`]) and
//! reads every format in [`READABLE_FORMATS`];
//! since a row can outlive many releases (a workload's old revisions), a format stays readable
//! for as long as rows of it may exist, or a migration rewrites them first. A row in a format
//! this build does not know was written by a newer release: the store refuses it with an error
//! naming the table, the row and the format, and never drops it.

use super::{v2, v3};
use super::{DesiredWorkload, Event, NodeStatus};
use crate::manifest::Workload;
use crate::node::NodeFacts;

/// The newest format this build writes (see the table for each row kind).
pub const STORED_FORMAT: u8 = v3::VERSION;

/// The formats this build reads, oldest first.
pub const READABLE_FORMATS: &[u8] = &[v2::VERSION, v3::VERSION];

/// Why a stored row could not be read or written. The store adds which table and row.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "it is in format {format}, which this release cannot read (it reads {}): \
         it was written by a newer release; upgrade",
        super::versions_phrase(READABLE_FORMATS).replace("version", "format")
    )]
    UnknownFormat { format: i64 },
    #[error("its format-{format} bytes do not decode ({source}): the row is damaged")]
    Malformed {
        format: u8,
        #[source]
        source: postcard::Error,
    },
    #[error(
        "its format-{format} bytes are followed by {count} unexpected bytes: the row is damaged"
    )]
    TrailingBytes { format: u8, count: usize },
    #[error("its format-{format} value is invalid: {reason}")]
    Invalid { format: u8, reason: String },
    #[error("cannot encode it: {source}")]
    Encode {
        #[source]
        source: postcard::Error,
    },
}

/// The bytes of a row in [`STORED_FORMAT`], and that format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub format: u8,
    pub bytes: Vec<u8>,
}

/// A row in `format`: the bytes of `frozen`, that format's shape.
fn write<T: serde::Serialize>(format: u8, frozen: &T) -> Result<Row, RecordError> {
    let bytes = v2::to_bytes(frozen).map_err(|source| RecordError::Encode { source })?;
    Ok(Row { format, bytes })
}

/// Reads exactly `bytes` as the frozen `T` of `format`, and converts it with `into_domain`.
fn read_as<T: serde::de::DeserializeOwned, D>(
    format: u8,
    bytes: &[u8],
    into_domain: impl FnOnce(T) -> Result<D, v2::Invalid>,
) -> Result<D, RecordError> {
    let frozen = v2::from_bytes::<T>(bytes).map_err(|e| match e {
        v2::DecodeError::Malformed(source) => RecordError::Malformed { format, source },
        v2::DecodeError::Trailing(count) => RecordError::TrailingBytes { format, count },
    })?;
    into_domain(frozen).map_err(|v2::Invalid(reason)| RecordError::Invalid { format, reason })
}

/// A workload (hub: `workloads.spec`, `workload_revisions.spec`), in format 3.
pub fn write_workload(workload: &Workload) -> Result<Row, RecordError> {
    write(v3::VERSION, &v3::Workload::from(workload))
}

pub fn read_workload(format: i64, bytes: &[u8]) -> Result<Workload, RecordError> {
    match u8::try_from(format) {
        Ok(v2::VERSION) => read_as(v2::VERSION, bytes, v2::Workload::try_into),
        Ok(v3::VERSION) => read_as(v3::VERSION, bytes, v3::Workload::try_into),
        _ => Err(RecordError::UnknownFormat { format }),
    }
}

/// A node's facts (hub: `nodes.facts`), in format 3: the agent's wire versions included.
pub fn write_facts(facts: &NodeFacts) -> Result<Row, RecordError> {
    write(v3::VERSION, &v3::NodeFacts::from(facts))
}

pub fn read_facts(format: i64, bytes: &[u8]) -> Result<NodeFacts, RecordError> {
    match u8::try_from(format) {
        Ok(v2::VERSION) => read_as(v2::VERSION, bytes, v2::NodeFacts::try_into),
        Ok(v3::VERSION) => read_as(v3::VERSION, bytes, v3::NodeFacts::try_into),
        _ => Err(RecordError::UnknownFormat { format }),
    }
}

/// One event (hub: `events.payload`), in format 3: its reason may be `RolledBack`.
pub fn write_event(event: &Event) -> Result<Row, RecordError> {
    write(v3::VERSION, &v3::Event::from(event))
}

pub fn read_event(format: i64, bytes: &[u8]) -> Result<Event, RecordError> {
    match u8::try_from(format) {
        Ok(v2::VERSION) => read_as(v2::VERSION, bytes, |e: v2::Event| Ok(e.into())),
        Ok(v3::VERSION) => read_as(v3::VERSION, bytes, |e: v3::Event| Ok(e.into())),
        _ => Err(RecordError::UnknownFormat { format }),
    }
}

/// A node's newest status (hub: `node_status.payload`; stored without its events), in format
/// 3: with the workloads the node rolled back by itself.
pub fn write_status(status: &NodeStatus) -> Result<Row, RecordError> {
    write(v3::VERSION, &v3::NodeStatus::from(status))
}

pub fn read_status(format: i64, bytes: &[u8]) -> Result<NodeStatus, RecordError> {
    match u8::try_from(format) {
        Ok(v2::VERSION) => read_as(v2::VERSION, bytes, |s: v2::NodeStatus| Ok(s.into())),
        Ok(v3::VERSION) => read_as(v3::VERSION, bytes, |s: v3::NodeStatus| s.try_into()),
        _ => Err(RecordError::UnknownFormat { format }),
    }
}

/// The workloads of an accepted desired state (agent: `desired_state.payload`).
pub fn write_desired(workloads: &[DesiredWorkload]) -> Result<Row, RecordError> {
    let frozen: Vec<v3::DesiredWorkload> = workloads.iter().map(Into::into).collect();
    write(v3::VERSION, &frozen)
}

pub fn read_desired(format: i64, bytes: &[u8]) -> Result<Vec<DesiredWorkload>, RecordError> {
    match u8::try_from(format) {
        Ok(v2::VERSION) => read_as(v2::VERSION, bytes, |w: Vec<v2::DesiredWorkload>| {
            w.into_iter().map(TryInto::try_into).collect()
        }),
        Ok(v3::VERSION) => read_as(v3::VERSION, bytes, |w: Vec<v3::DesiredWorkload>| {
            w.into_iter().map(TryInto::try_into).collect()
        }),
        _ => Err(RecordError::UnknownFormat { format }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            arch: "arm64".into(),
            agent_version: "0.1.0".into(),
            wire_versions: vec![2, 3],
            ..NodeFacts::default()
        }
    }

    #[test]
    fn facts_are_written_in_format_3_and_format_2_rows_still_read_with_their_versions() {
        let row = write_facts(&facts()).expect("encodes");
        assert_eq!(row.format, 3);
        // A format-2 row, as release 0.1.0 wrote it (no versions) and as a hub of this
        // release would have had to (the versions in the label).
        let old = v2::to_bytes(&v2::NodeFacts::from(&NodeFacts {
            wire_versions: Vec::new(),
            ..facts()
        }))
        .expect("encodes");
        let read = read_facts(2, &old).expect("decodes");
        assert_eq!(read.wire_versions, Vec::<u8>::new());
        let labelled = v2::to_bytes(&v2::NodeFacts::from(&facts())).expect("encodes");
        assert_eq!(read_facts(2, &labelled).expect("decodes"), facts());
    }

    #[test]
    fn events_are_written_in_format_3_and_format_2_rows_still_read() {
        let event = |reason| Event {
            sequence: 1,
            at_ms: 1,
            severity: super::super::Severity::Warning,
            reason,
            workload: Some("web".into()),
            container: None,
            message: "rolled back".into(),
        };
        let rolled_back = event(super::super::EventReason::RolledBack);
        let row = write_event(&rolled_back).expect("encodes");
        assert_eq!(row.format, 3, "events gained `rolled-back` in version 3");
        assert_eq!(read_event(3, &row.bytes).expect("reads"), rolled_back);
        // A format-2 row, as release 0.1.0 wrote it.
        let started = event(super::super::EventReason::Started);
        let old = v2::to_bytes(&v2::Event::from(&started)).expect("encodes");
        assert_eq!(read_event(2, &old).expect("reads"), started);
        // Version 2 cannot say `rolled-back`: it reads as the node refusing the revision.
        let older = v2::to_bytes(&v2::Event::from(&rolled_back)).expect("encodes");
        assert_eq!(
            read_event(2, &older).expect("reads").reason,
            super::super::EventReason::DesiredStateRejected
        );
    }

    #[test]
    fn a_row_reads_back_as_written_in_the_current_format() {
        let row = write_facts(&facts()).expect("encodes");
        assert_eq!(row.format, STORED_FORMAT);
        assert!(READABLE_FORMATS.contains(&row.format));
        let read = read_facts(i64::from(row.format), &row.bytes).expect("decodes");
        assert_eq!(read, facts());
    }

    #[test]
    fn a_row_in_an_unknown_format_is_refused_with_its_format_and_what_to_do() {
        let row = write_facts(&facts()).expect("encodes");
        for format in [0, 1, 4, 255, -1, i64::MAX] {
            let error = read_facts(format, &row.bytes).expect_err("unknown format");
            let text = error.to_string();
            assert!(
                matches!(error, RecordError::UnknownFormat { format: f } if f == format),
                "{text}"
            );
            assert!(text.contains(&format!("format {format}")), "{text}");
            assert!(text.contains("newer release; upgrade"), "{text}");
        }
    }

    #[test]
    fn a_damaged_row_is_refused_not_half_read() {
        let row = write_facts(&facts()).expect("encodes");
        let mut longer = row.bytes.clone();
        longer.push(0);
        assert!(matches!(
            read_facts(3, &longer),
            Err(RecordError::TrailingBytes {
                format: 3,
                count: 1
            })
        ));
        assert!(matches!(
            read_facts(3, &row.bytes[..row.bytes.len() - 1]),
            Err(RecordError::Malformed { format: 3, .. })
        ));
    }

    #[test]
    fn a_duration_that_overflows_is_refused_instead_of_panicking() {
        // A desired-state row whose one workload's stop grace period is u64::MAX seconds
        // plus 1.5 s: serde would refuse it, and so must the conversion.
        let mut workload = v2::Workload::from(&crate::manifest::Workload {
            name: "w".into(),
            labels: Default::default(),
            spec: crate::manifest::WorkloadSpec {
                placement: crate::manifest::Placement {
                    mode: crate::manifest::PlacementMode::Every,
                    node_selector: Default::default(),
                    constraints: Vec::new(),
                    spread: None,
                    with: Vec::new(),
                    not_with: Vec::new(),
                    reschedule_after: crate::manifest::RescheduleAfter::Never,
                },
                rollout: crate::manifest::Rollout::default(),
                restart_policy: crate::manifest::RestartPolicy::Always,
                network: crate::manifest::NetworkMode::Host,
                stop_grace_period: std::time::Duration::from_secs(1),
                volumes: Vec::new(),
                containers: Vec::new(),
            },
        });
        workload.spec.stop_grace_period = v2::Duration {
            secs: u64::MAX,
            nanos: 1_500_000_000,
        };
        let bytes = v2::to_bytes(&workload).expect("encodes");
        let error = read_workload(2, &bytes).expect_err("overflows");
        assert!(
            matches!(error, RecordError::Invalid { format: 2, .. }),
            "{error}"
        );
        workload.spec.stop_grace_period.secs = 1;
        let read = read_workload(2, &v2::to_bytes(&workload).expect("encodes")).expect("fits");
        assert_eq!(
            read.spec.stop_grace_period,
            std::time::Duration::from_millis(2_500),
            "nanoseconds beyond a second carry over, as serde read them"
        );
    }
}
