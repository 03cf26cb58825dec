//! Requests from the local API (and, with the hub, from `rpc/req`): answered from the
//! supervisor's state, or by a worker for anything that blocks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_model::clock::wall_ms;
use shoal_model::fit;
use shoal_model::manifest::image::ImageRef;
use shoal_model::wire::{DesiredWorkload, EventReason, RpcRequestBody, RpcResponseBody, Severity};
use tokio::sync::mpsc;

use super::Supervisor;
use crate::api::Incoming;
use crate::reconcile::placement;
use crate::runtime::logs::{self, LogFollower};
use crate::state::{Source, StateError};

/// Largest log chunk sent in one response.
const LOG_CHUNK: usize = 64 * 1024;
/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Longest an `exec` request may run.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

type Reply = mpsc::Sender<RpcResponseBody>;

impl Supervisor {
    pub(super) fn request(&mut self, incoming: Incoming) {
        let Incoming { request, reply } = incoming;
        let answer = |reply: &Reply, body| {
            let _ = reply.try_send(body);
        };
        match request.body {
            RpcRequestBody::Ping => answer(&reply, RpcResponseBody::Pong),
            RpcRequestBody::Status => answer(&reply, RpcResponseBody::Status(self.status())),
            RpcRequestBody::Diagnostics => answer(
                &reply,
                RpcResponseBody::Diagnostics {
                    text: self.diagnostics(),
                },
            ),
            RpcRequestBody::Apply { .. } | RpcRequestBody::DeleteWorkload { .. }
                if self.hub.is_some() =>
            {
                let broker = self.hub.as_ref().map_or("", |h| h.mode.broker.as_str());
                let message = format!(
                    "this node is managed by the hub at {broker}: change its workloads with `shoal apply` on the hub (local apply and delete work only without [hub] in agent.toml)"
                );
                answer(&reply, RpcResponseBody::Error { message })
            }
            RpcRequestBody::Apply { workloads } => answer(&reply, self.apply(workloads)),
            RpcRequestBody::DeleteWorkload { workload } => answer(&reply, self.delete(&workload)),
            RpcRequestBody::Cancel { id } => {
                let message = format!(
                    "nothing to cancel: request {id} is not from the hub; to stop a local request, end its command"
                );
                answer(&reply, RpcResponseBody::Error { message })
            }
            RpcRequestBody::Logs {
                workload,
                container,
                tail,
                follow,
            } => match self.container_name(&workload, container) {
                Ok(container) => match self.containers.log_path(&workload, &container) {
                    Some(path) => {
                        tokio::spawn(stream_logs(path, tail, follow, reply));
                    }
                    None => {
                        let message = format!("no log for {workload}/{container}");
                        answer(&reply, RpcResponseBody::Error { message })
                    }
                },
                Err(message) => answer(&reply, RpcResponseBody::Error { message }),
            },
            RpcRequestBody::Exec {
                workload,
                container,
                command,
            } => match self.container_name(&workload, container) {
                Ok(container) => {
                    let containers = Arc::clone(&self.containers);
                    blocking(reply, move || {
                        let output =
                            containers.exec(&workload, &container, &command, EXEC_TIMEOUT)?;
                        Ok(RpcResponseBody::ExecResult {
                            exit_code: output.exit_code,
                            stdout: output.stdout,
                            stderr: output.stderr,
                        })
                    });
                }
                Err(message) => answer(&reply, RpcResponseBody::Error { message }),
            },
            RpcRequestBody::ListImages => {
                let (images, in_use) = (Arc::clone(&self.images), self.images_in_use());
                blocking(reply, move || {
                    Ok(RpcResponseBody::Images(images.list(&in_use)?))
                });
            }
            RpcRequestBody::ImportImage { path } => {
                let images = Arc::clone(&self.images);
                blocking(reply, move || {
                    Ok(RpcResponseBody::Images(
                        images.import(std::path::Path::new(&path))?,
                    ))
                });
            }
            RpcRequestBody::RemoveImage { reference } => {
                let in_use = self.images_in_use();
                if in_use.iter().any(|i| i.to_string() == reference) {
                    let message = format!("{reference} is used by a desired workload: delete or change that workload first");
                    answer(&reply, RpcResponseBody::Error { message });
                    return;
                }
                let images = Arc::clone(&self.images);
                blocking(reply, move || {
                    Ok(RpcResponseBody::Done {
                        message: images.remove(&reference, &in_use)?,
                    })
                });
            }
            RpcRequestBody::PruneImages => {
                let (images, in_use) = (Arc::clone(&self.images), self.images_in_use());
                blocking(reply, move || {
                    Ok(RpcResponseBody::Done {
                        message: images.prune_unused(&in_use)?,
                    })
                });
            }
        }
    }

    /// Merges `workloads` into the local desired state: new ones are created, changed ones
    /// get a new revision, others stay. Workloads whose placement excludes this node are
    /// skipped and said so. Nothing is stored when the result would not fit the node.
    fn apply(&mut self, workloads: Vec<DesiredWorkload>) -> RpcResponseBody {
        let mut next = self.desired.clone();
        let mut changes = Vec::new();
        for d in workloads {
            let name = d.workload.name.clone();
            if let Some(why) = placement::mismatch(&d.workload, &self.node) {
                changes.push(format!("{name}: skipped, {why}"));
                continue;
            }
            match next.iter_mut().find(|x| x.workload.name == name) {
                Some(existing) if existing.workload == d.workload => {
                    changes.push(format!("{name}: unchanged"))
                }
                Some(existing) => {
                    existing.workload = d.workload;
                    existing.revision = existing.revision.saturating_add(1);
                    changes.push(format!(
                        "{name}: configured (revision {})",
                        existing.revision
                    ));
                }
                None => {
                    next.push(DesiredWorkload {
                        workload: d.workload,
                        revision: 1,
                    });
                    changes.push(format!("{name}: created"));
                }
            }
        }
        if let Err(message) = self.fits(&next) {
            return RpcResponseBody::Error { message };
        }
        if self.disk.is_full() && grows(&self.desired, &next) {
            // The reserve the agent gave up is for its own records and for deletes that free
            // space, not for more workloads that would need more.
            let error = StateError::disk_full(self.store.path(), "save the desired state");
            return RpcResponseBody::Error {
                message: format!("nothing was applied: {error}, then apply again"),
            };
        }
        match self.replace_desired(next, &changes) {
            Ok(generation) => RpcResponseBody::Applied {
                generation,
                changes,
            },
            Err(e) => RpcResponseBody::Error {
                message: format!("nothing was applied: {e}"),
            },
        }
    }

    fn delete(&mut self, workload: &str) -> RpcResponseBody {
        if !self.desired.iter().any(|d| d.workload.name == workload) {
            return RpcResponseBody::Error {
                message: format!("no workload `{workload}` on this node (see `shoal-agent ps`)"),
            };
        }
        let next = self
            .desired
            .iter()
            .filter(|d| d.workload.name != workload)
            .cloned()
            .collect();
        match self.replace_desired(next, &[format!("{workload}: deleted")]) {
            Ok(_) => RpcResponseBody::Done {
                message: format!("{workload}: deleted; its containers are being stopped"),
            },
            Err(e) => RpcResponseBody::Error {
                message: format!("{workload} was not deleted: {e}"),
            },
        }
    }

    /// Stores a new local desired state, then makes it the one the loop converges to;
    /// returns its generation. Nothing changes, stored or in memory, when storing fails.
    fn replace_desired(
        &mut self,
        next: Vec<DesiredWorkload>,
        changes: &[String],
    ) -> Result<u64, StateError> {
        if next == self.desired {
            return Ok(self.generation);
        }
        let generation = self.generation.saturating_add(1);
        self.store
            .save_desired(Source::Local, generation, &next, &[], &[], wall_ms())?;
        // Standalone: no revision is tried (rollouts are the hub's), what is accepted runs.
        self.accepted = next.clone();
        self.desired = next;
        self.generation = generation;
        let summary = changes.join("; ");
        self.note(
            Severity::Info,
            None,
            None,
            EventReason::DesiredStateAccepted,
            format!("generation {generation}: {summary}"),
        );
        Ok(generation)
    }

    /// Refuses a desired state whose requests add up to more than the node has: the rule the
    /// hub places by ([`fit::overcommitted`]).
    pub(super) fn fits(&self, desired: &[DesiredWorkload]) -> Result<(), String> {
        let requests = desired.iter().map(|d| d.workload.requested());
        let short = fit::overcommitted(requests, self.node.capacity);
        if short.is_empty() {
            return Ok(());
        }
        let short: Vec<String> = short.iter().map(ToString::to_string).collect();
        Err(format!(
            "nothing was applied: the workloads ask for more than this node's capacity ({}); lower their `resources` or move some elsewhere",
            short.join("; ")
        ))
    }

    /// The container a request names, defaulting to the workload's first.
    fn container_name(&self, workload: &str, container: Option<String>) -> Result<String, String> {
        let Some(w) = self.workload(workload) else {
            return Err(format!(
                "no workload `{workload}` on this node (see `shoal-agent ps`)"
            ));
        };
        match container {
            Some(name) if w.spec.containers.iter().any(|c| c.name == name) => Ok(name),
            Some(name) => {
                let names: Vec<&str> = w.spec.containers.iter().map(|c| c.name.as_str()).collect();
                Err(format!(
                    "workload `{workload}` has no container `{name}`; it has {}",
                    names.join(", ")
                ))
            }
            None => w
                .spec
                .containers
                .first()
                .map(|c| c.name.clone())
                .ok_or_else(|| format!("workload `{workload}` has no container")),
        }
    }

    /// The images desired workloads run, those of containers still there (being stopped, or
    /// not yet removed: their layers are mounted), and those a revision on trial would go
    /// back to (a rollback offline cannot pull).
    pub(super) fn images_in_use(&self) -> Vec<ImageRef> {
        let previous = self.trials.values().map(|t| &t.previous);
        let desired = self
            .desired
            .iter()
            .chain(previous)
            .flat_map(|d| d.workload.spec.containers.iter().map(|c| c.image.clone()));
        let live = self
            .tracked
            .values()
            .filter_map(|t| ImageRef::parse(&t.record.image).ok());
        desired.chain(live).collect()
    }

    fn diagnostics(&self) -> String {
        let running = self
            .tracked
            .values()
            .filter(|t| matches!(t.run, crate::reconcile::Run::Running { .. }))
            .count();
        let mut text = format!(
            "node {}\ndesired generation {} with {} workloads\ncontainers tracked {}, running {}\npods {}\nbusy workers {}\n",
            self.node_name,
            self.generation,
            self.desired.len(),
            self.tracked.len(),
            running,
            self.pods.len(),
            self.busy.len()
        );
        if let Some(hub) = &self.hub {
            let waiting = self
                .store
                .outbox_len()
                .map_or_else(|e| e.to_string(), |n| n.to_string());
            text.push_str(&format!(
                "hub {}\nstatuses waiting in the outbox {waiting}\n",
                hub.mode.broker
            ));
        }
        text
    }
}

/// Whether `next` adds a workload to `current` or changes one (a delete does neither). Pure.
pub(super) fn grows(current: &[DesiredWorkload], next: &[DesiredWorkload]) -> bool {
    next.iter().any(|n| {
        !current
            .iter()
            .any(|c| c.workload.name == n.workload.name && c.workload == n.workload)
    })
}

/// Runs `work` on a worker thread and sends its answer (or its error).
fn blocking(reply: Reply, work: impl FnOnce() -> anyhow::Result<RpcResponseBody> + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        let body = work().unwrap_or_else(|e| RpcResponseBody::Error {
            message: format!("{e:#}"),
        });
        let _ = reply.blocking_send(body);
    });
}

/// Sends the last `tail` lines of the log (all of it when `None`), then, with `follow`, new
/// output as it comes until the client goes away; rotation is followed.
async fn stream_logs(path: PathBuf, tail: Option<u32>, follow: bool, reply: Reply) {
    let lines = tail.map_or(usize::MAX, |n| n as usize);
    let first = tokio::task::spawn_blocking(move || {
        let text = logs::tail(&path, lines)?;
        let follower = if follow {
            Some(LogFollower::from_end(path)?)
        } else {
            None
        };
        Ok::<_, std::io::Error>((text, follower))
    })
    .await;
    let (text, follower) = match first {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            let message = format!("cannot read the log: {e}");
            let _ = reply.send(RpcResponseBody::Error { message }).await;
            return;
        }
        Err(e) => {
            let _ = reply
                .send(RpcResponseBody::Error {
                    message: e.to_string(),
                })
                .await;
            return;
        }
    };
    if !send_chunks(&reply, &text).await {
        return;
    }
    let Some(mut follower) = follower else {
        let _ = reply
            .send(RpcResponseBody::LogChunk {
                data: Vec::new(),
                eof: true,
            })
            .await;
        return;
    };
    while !reply.is_closed() {
        tokio::time::sleep(FOLLOW_POLL).await;
        let next = tokio::task::spawn_blocking(move || (follower.read_new(), follower)).await;
        let Ok((Ok(data), next_follower)) = next else {
            return;
        };
        follower = next_follower;
        if !send_chunks(&reply, &data).await {
            return;
        }
    }
}

/// Sends `data` in chunks; false when the client went away.
async fn send_chunks(reply: &Reply, data: &[u8]) -> bool {
    for chunk in data.chunks(LOG_CHUNK) {
        if reply
            .send(RpcResponseBody::LogChunk {
                data: chunk.to_vec(),
                eof: false,
            })
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use shoal_model::manifest::parse_manifest;

    use super::*;

    fn workload(name: &str, command: &str) -> DesiredWorkload {
        let text = format!(
            "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  containers: [{{ name: a, image: busybox, command: [{command}] }}]\n"
        );
        let (mut loaded, problems) = parse_manifest(std::path::Path::new("t.yaml"), &text);
        assert!(problems.is_empty(), "{problems:?}");
        DesiredWorkload {
            workload: loaded.remove(0).workload,
            revision: 1,
        }
    }

    #[test]
    fn on_a_full_disk_only_a_desired_state_that_adds_or_changes_a_workload_grows() {
        let a = workload("a", "sleep");
        let b = workload("b", "sleep");
        let a_changed = workload("a", "true");
        let current = [a.clone(), b.clone()];
        let cases: [(&[DesiredWorkload], bool); 5] = [
            (&[a.clone(), b.clone()], false),
            (&[b.clone(), a.clone()], false),
            (std::slice::from_ref(&a), false),
            (&[a_changed, b.clone()], true),
            (&[a.clone(), b.clone(), workload("c", "sleep")], true),
        ];
        for (next, expected) in cases {
            let names: Vec<&str> = next.iter().map(|d| d.workload.name.as_str()).collect();
            assert_eq!(grows(&current, next), expected, "{names:?}");
        }
        assert!(!grows(&current, &[]), "deleting everything");
    }
}
