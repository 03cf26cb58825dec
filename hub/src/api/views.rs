//! What `shoal get` and `shoal describe` show, assembled from the store, the scheduler's last
//! decision and what nodes report.

use std::collections::BTreeMap;

use shoal_model::api::{
    EventInfo, Instance, NodeDetail, NodeInfo, RolloutInfo, RolloutNode, WorkloadDetail,
    WorkloadInfo,
};
use shoal_model::manifest::PlacementMode;
use shoal_model::wire::{ContainerState, NodeStatus};

use crate::context::Hub;
use crate::control::rollout::{Rollout, State};
use crate::scheduler::{Placement, Schedulable};
use crate::store::{StoreError, StoredEvent, StoredNode, StoredWorkload};

/// Events shown by `describe`.
const EVENTS_SHOWN: u32 = 20;

pub fn nodes(hub: &Hub) -> Result<Vec<NodeInfo>, StoreError> {
    let placement = hub.store.placement()?;
    let statuses = hub.store.statuses()?;
    let desired = hub.store.node_desired()?;
    Ok(hub
        .store
        .nodes()?
        .iter()
        .map(|n| {
            node_info(
                n,
                &placement,
                statuses.get(&n.name),
                desired.get(&n.name).map_or(0, |d| d.generation),
            )
        })
        .collect())
}

pub fn node(hub: &Hub, name: &str) -> Result<NodeDetail, StoreError> {
    let stored = hub.store.node(name)?;
    let placement = hub.store.placement()?;
    let statuses = hub.store.statuses()?;
    let status = statuses.get(name);
    let generation = hub
        .store
        .node_desired()?
        .get(name)
        .map_or(0, |d| d.generation);
    Ok(NodeDetail {
        node: node_info(&stored, &placement, status, generation),
        instances: status.map(|s| instances(name, s, None)).unwrap_or_default(),
        usage: status.map(|s| s.usage),
        events: events(hub.store.events(Some(name), None, EVENTS_SHOWN)?),
    })
}

fn node_info(
    node: &StoredNode,
    placement: &Placement,
    status: Option<&NodeStatus>,
    desired_generation: u64,
) -> NodeInfo {
    let mut state = if node.online {
        "Ready"
    } else if node.facts.is_none() {
        "Unknown"
    } else {
        "NotReady"
    }
    .to_string();
    if node.schedulable != Schedulable::Yes {
        state.push_str(",SchedulingDisabled");
    }
    NodeInfo {
        name: node.name.clone(),
        online: node.online,
        status: state,
        schedulable: match node.schedulable {
            Schedulable::Yes => "yes",
            Schedulable::Cordoned => "cordoned",
            Schedulable::Drained => "drained",
        }
        .into(),
        labels: node.effective_facts().labels,
        facts: node.facts.clone(),
        created_ms: node.created_ms,
        last_seen_ms: node.last_seen_ms,
        offline_since_ms: node.offline_since_ms,
        desired_generation,
        observed_generation: status.map_or(0, |s| s.observed_generation),
        workloads: placement
            .iter()
            .filter(|(_, nodes)| nodes.contains(&node.name))
            .map(|(w, _)| w.clone())
            .collect(),
        agent_update: status.and_then(|s| s.agent_update.clone()),
    }
}

pub fn workloads(hub: &Hub) -> Result<Vec<WorkloadInfo>, StoreError> {
    let placement = hub.store.placement()?;
    let statuses = hub.store.statuses()?;
    Ok(hub
        .store
        .workloads()?
        .iter()
        .map(|w| workload_info(hub, w, &placement, &statuses))
        .collect())
}

pub fn workload(hub: &Hub, name: &str) -> Result<Option<WorkloadDetail>, StoreError> {
    let Some(stored) = hub.store.workload(name)? else {
        return Ok(None);
    };
    let placement = hub.store.placement()?;
    let statuses = hub.store.statuses()?;
    let (placed_on, not_placed) = hub
        .decision
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|d| d.reasons.get(name))
        .map(|r| (rendered(&r.placed_on), rendered(&r.not_placed)))
        .unwrap_or_default();
    Ok(Some(WorkloadDetail {
        workload: workload_info(hub, &stored, &placement, &statuses),
        spec: stored.workload.clone(),
        placed_on,
        not_placed,
        instances: statuses
            .iter()
            .flat_map(|(node, s)| instances(node, s, Some(name)))
            .collect(),
        events: events(hub.store.events(None, Some(name), EVENTS_SHOWN)?),
    }))
}

fn workload_info(
    hub: &Hub,
    stored: &StoredWorkload,
    placement: &Placement,
    statuses: &BTreeMap<String, NodeStatus>,
) -> WorkloadInfo {
    let name = &stored.workload.name;
    let nodes: Vec<String> = placement
        .get(name)
        .map(|n| n.iter().cloned().collect())
        .unwrap_or_default();
    let reasons = hub
        .decision
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|d| d.reasons.get(name))
        .map(|r| (r.wanted, r.summary.to_string()));
    let mode = match stored.workload.spec.placement.mode {
        PlacementMode::Every => "every".to_string(),
        PlacementMode::Replicas(n) => format!("replicas: {n}"),
    };
    let (wanted, summary) = reasons.unwrap_or_else(|| (nodes.len(), "not scheduled yet".into()));
    let ready = nodes
        .iter()
        .filter(|node| {
            statuses.get(*node).is_some_and(|s| {
                is_ready(
                    s,
                    name,
                    stored.revision,
                    stored.workload.spec.containers.len(),
                )
            })
        })
        .count();
    WorkloadInfo {
        name: name.clone(),
        revision: stored.revision,
        mode,
        wanted,
        placed: nodes.len(),
        ready,
        nodes,
        summary,
        updated_ms: stored.updated_ms,
    }
}

/// Reasons per node, in words.
fn rendered<T: std::fmt::Display>(reasons: &BTreeMap<String, T>) -> BTreeMap<String, String> {
    reasons
        .iter()
        .map(|(node, reason)| (node.clone(), reason.to_string()))
        .collect()
}

/// Whether `status` shows every container of `workload` running at `revision`.
fn is_ready(status: &NodeStatus, workload: &str, revision: u64, containers: usize) -> bool {
    status.workloads.iter().any(|w| {
        w.name == workload
            && w.revision == revision
            && w.containers.len() == containers
            && w.containers
                .iter()
                .all(|c| c.state == ContainerState::Running)
    })
}

fn instances(node: &str, status: &NodeStatus, only: Option<&str>) -> Vec<Instance> {
    status
        .workloads
        .iter()
        .filter(|w| only.is_none_or(|name| w.name == name))
        .map(|w| Instance {
            node: node.to_string(),
            workload: w.name.clone(),
            revision: w.revision,
            containers: w.containers.clone(),
            reported_ms: status.sent_at_ms,
        })
        .collect()
}

fn events(stored: Vec<StoredEvent>) -> Vec<EventInfo> {
    stored
        .into_iter()
        .map(|e| EventInfo {
            node: e.node,
            event: e.event,
        })
        .collect()
}

/// `GET /v1/rollouts/W`: the workload's rollout and each node's part in it. `None`: no such
/// workload. A workload the controller has not stepped yet shows no node.
pub fn rollout(hub: &Hub, name: &str) -> Result<Option<RolloutInfo>, StoreError> {
    let Some(stored) = hub.store.workload(name)? else {
        return Ok(None);
    };
    let spec = stored.workload.spec.rollout;
    let (rollout, assigned) = hub.store.rollout(name)?.unwrap_or_else(|| {
        (
            Rollout {
                revision: stored.revision,
                stable: None,
                state: State::Progressing,
                started_ms: stored.updated_ms,
                changed_ms: stored.updated_ms,
                paused: false,
                immediate: false,
            },
            BTreeMap::new(),
        )
    });
    let online: BTreeMap<String, bool> = hub
        .store
        .nodes()?
        .into_iter()
        .map(|n| (n.name, n.online))
        .collect();
    let (state, failed) = match rollout.state {
        State::Progressing => ("progressing", 0),
        State::Complete => ("complete", 0),
        State::Halted { failed } => ("halted", failed),
        State::RolledBack { failed, .. } => ("rolled-back", failed),
    };
    Ok(Some(RolloutInfo {
        workload: name.to_string(),
        revision: rollout.revision,
        stable: rollout.stable,
        state: state.to_string(),
        reason: rollout.state.to_string(),
        failed,
        started_ms: rollout.started_ms,
        changed_ms: rollout.changed_ms,
        canary: spec.canary.to_string(),
        max_unavailable: spec.max_unavailable.to_string(),
        healthy_for_ms: u64::try_from(spec.healthy_for.as_millis()).unwrap_or(u64::MAX),
        auto_rollback: spec.auto_rollback,
        nodes: assigned
            .into_iter()
            .map(|(node, a)| RolloutNode {
                online: online.get(&node).copied().unwrap_or(false),
                node,
                revision: a.revision,
                outcome: a.outcome.to_string(),
                since_ms: a.since_ms,
                ready_since_ms: a.ready_since_ms,
                outcome_ms: a.outcome_ms,
            })
            .collect(),
    }))
}
