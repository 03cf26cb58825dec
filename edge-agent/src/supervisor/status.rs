//! The node's status as `shoal-agent ps` and the hub see it, built from the supervisor's
//! state: one entry per desired container, plus containers still being taken down.

use shoal_model::clock::wall_ms;
use shoal_model::manifest::RestartPolicy;
use shoal_model::wire::{
    ContainerState, ContainerStatus, DesiredWorkload, Health, NodeStatus, NodeUsage, RolledBack,
    WorkloadStatus,
};

use super::{describe_exit, Key, Supervisor, Tracked};
use crate::reconcile::{spec_hash, ImageState, Run};

impl Supervisor {
    /// The status `shoal-agent ps` and the hub's `Status` request see: with usage figures and
    /// the newest events.
    pub(super) fn status(&self) -> NodeStatus {
        let mut status = self.node_status(true);
        status.events = self.store.recent_events(20).unwrap_or_default();
        self.add_disk_condition(&mut status.events);
        status
    }

    /// The node's state, without events; with the containers' memory and CPU figures only
    /// when `usage` is set (they cost a cgroup read per container).
    pub(super) fn node_status(&self, usage: bool) -> NodeStatus {
        let mut workloads: Vec<WorkloadStatus> = self
            .desired
            .iter()
            .map(|d| self.workload_status(d, usage))
            .collect();
        // Containers no longer desired, on their way out.
        for (key, t) in &self.tracked {
            if self
                .workload(&key.0)
                .is_some_and(|w| w.spec.containers.iter().any(|c| c.name == key.1))
            {
                continue;
            }
            let status = self.container_status(key, t, RestartPolicy::Never, usage);
            match workloads.iter_mut().find(|w| w.name == key.0) {
                Some(w) => w.containers.push(status),
                None => workloads.push(WorkloadStatus {
                    name: key.0.clone(),
                    revision: 0,
                    containers: vec![status],
                    rolled_back: None,
                }),
            }
        }
        NodeStatus {
            node_id: self.node_id().to_string(),
            observed_generation: self.generation,
            sequence: 0,
            sent_at_ms: wall_ms(),
            workloads,
            usage: NodeUsage {
                memory_total_bytes: self.node.capacity.memory_bytes,
                ..NodeUsage::default()
            },
            events: Vec::new(),
            dropped_events: 0,
            agent_update: self
                .updater
                .as_ref()
                .and_then(crate::update::Updater::status),
        }
    }

    /// Desired workload `d` as it runs here: each container of its spec, and the revision
    /// the node went back from when that one failed here.
    pub(super) fn workload_status(&self, d: &DesiredWorkload, usage: bool) -> WorkloadStatus {
        let containers = d
            .workload
            .spec
            .containers
            .iter()
            .map(|c| {
                let key = (d.workload.name.clone(), c.name.clone());
                match self.tracked.get(&key) {
                    // A container of another spec (an older revision's, being replaced) is
                    // not this revision's: it is waiting for its turn.
                    Some(t) if t.record.spec_hash != spec_hash(&d.workload, c) => ContainerStatus {
                        message: Some("replacing the container of another revision".to_string()),
                        ..self.waiting_status(&key, &c.image.to_string())
                    },
                    Some(t) => {
                        self.container_status(&key, t, d.workload.spec.restart_policy, usage)
                    }
                    None => self.waiting_status(&key, &c.image.to_string()),
                }
            })
            .collect();
        let rolled_back = self
            .trials
            .get(&d.workload.name)
            .and_then(|t| t.failed.map(|failure| (t.revision, failure)))
            .filter(|_| {
                self.accepted
                    .iter()
                    .any(|a| a.workload.name == d.workload.name)
            })
            .map(|(revision, failure)| RolledBack { revision, failure });
        WorkloadStatus {
            name: d.workload.name.clone(),
            revision: d.revision,
            containers,
            rolled_back,
        }
    }

    fn container_status(
        &self,
        key: &Key,
        t: &Tracked,
        policy: RestartPolicy,
        usage: bool,
    ) -> ContainerStatus {
        let busy = self.busy.contains(&super::busy_key(key));
        let (state, message) = match t.run {
            Run::Starting { .. } => (ContainerState::Creating, None),
            Run::Running { .. } => (ContainerState::Running, None),
            Run::Stopping { .. } => (ContainerState::Stopped, t.message.clone()),
            Run::Exited { exit, .. } => {
                let restarts = match policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => exit.is_failure(),
                    RestartPolicy::Never => false,
                };
                let state = match (busy, restarts, t.start_failed) {
                    (true, _, _) => ContainerState::Creating,
                    (false, true, _) => ContainerState::BackOff,
                    (false, false, true) => ContainerState::Failed,
                    (false, false, false) => ContainerState::Exited,
                };
                let why = t
                    .message
                    .clone()
                    .or_else(|| t.record.last_exit.as_ref().map(describe_exit));
                (state, why)
            }
        };
        let stats = match state {
            ContainerState::Running if usage => self.containers.stats(&key.0, &key.1),
            _ => None,
        };
        ContainerStatus {
            name: key.1.clone(),
            state,
            health: if state == ContainerState::Running {
                t.health
            } else {
                Health::Unknown
            },
            restarts: t.record.restarts,
            last_exit: t.record.last_exit,
            oom_kills: t.record.oom_kills,
            started_at_ms: t
                .started_wall_ms
                .filter(|_| state == ContainerState::Running),
            pid: t.pid.filter(|_| state == ContainerState::Running),
            memory_bytes: stats.map(|s| s.memory_bytes),
            cpu_usage_ns: stats.map(|s| s.cpu_usage_ns),
            message,
        }
    }

    /// A desired container that does not exist yet: waiting for its image or its turn.
    fn waiting_status(&self, key: &Key, image: &str) -> ContainerStatus {
        let record = self.records.get(key);
        let pulling = self.busy.contains(&super::pull_key(image));
        let (state, message) = match (pulling, self.images_state.get(image)) {
            (
                true,
                Some(ImageState::Failed {
                    attempts, reason, ..
                }),
            ) => (
                ContainerState::Pulling,
                Some(format!(
                    "pulling {image} again (attempt {}); the last attempt failed: {reason}",
                    attempts.saturating_add(1)
                )),
            ),
            (true, _) => (ContainerState::Pulling, Some(format!("pulling {image}"))),
            (
                false,
                Some(ImageState::Failed {
                    attempts, reason, ..
                }),
            ) => (
                ContainerState::Failed,
                Some(format!(
                    "cannot pull {image}: {reason} ({attempts} attempt{}; retrying, or import it with `shoal-agent images import`)",
                    if *attempts == 1 { "" } else { "s" }
                )),
            ),
            (false, _) => (ContainerState::Pending, None),
        };
        ContainerStatus {
            name: key.1.clone(),
            state,
            health: Health::Unknown,
            restarts: record.map_or(0, |r| r.restarts),
            last_exit: record.and_then(|r| r.last_exit),
            oom_kills: record.map_or(0, |r| r.oom_kills),
            started_at_ms: None,
            pid: None,
            memory_bytes: None,
            cpu_usage_ns: None,
            message,
        }
    }

    pub(super) fn node_id(&self) -> &str {
        &self.node_name
    }
}
