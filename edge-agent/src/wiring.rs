//! The real effects behind the supervisor's traits: the image store and the libcontainer
//! runtime. Only `cli::run` builds these; tests of the supervisor's logic may build others.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_model::manifest::image::ImageRef;
use shoal_model::manifest::{Container, User, Workload};
use shoal_model::node::NodeFacts;
use shoal_model::quantity::{format_bytes, format_duration};
use shoal_model::wire::{ExitInfo, ImageSummary};

use crate::config::{AgentConfig, Registry};
use crate::image::{
    DataKept, Image, ImageDigest, ImageStore, Platform, PruneReport, PullPolicy, RegistryAuth,
    StoreConfig,
};
use crate::runtime::shim::ExecResult;
use crate::runtime::spec::ProcessDefaults;
use crate::runtime::state::{ExitRecord, ExitStatus};
use crate::runtime::{container_id, ContainerState, Runtime, RuntimeConfig};
use crate::supervisor::{ContainerStats, Containers, ExecOutput, Images, LiveContainer};

/// The image store as the supervisor's [`Images`].
#[derive(Debug)]
pub struct StoreImages {
    store: Arc<ImageStore>,
    platform: Platform,
    budget_bytes: u64,
    policy: PullPolicy,
    registries: Vec<Registry>,
}

/// Opens the image store under the data dir, for this node's architecture.
pub fn image_store(config: &AgentConfig, node: &NodeFacts) -> anyhow::Result<StoreImages> {
    let platform = Platform::for_node_arch(&node.arch)?;
    let store_config = StoreConfig {
        insecure_registries: config.insecure_registries.clone(),
        platform: platform.clone(),
        ..StoreConfig::default()
    };
    let root = config.data_dir.join("images");
    let store = ImageStore::open_with(&root, store_config)
        .with_context(|| format!("cannot open the image store in {}", root.display()))?;
    Ok(StoreImages {
        store: Arc::new(store),
        platform,
        budget_bytes: config.disk_budget_bytes,
        policy: config.pull_policy,
        registries: config.registries.clone(),
    })
}

impl StoreImages {
    pub fn store(&self) -> Arc<ImageStore> {
        Arc::clone(&self.store)
    }

    /// The credentials configured for the image's registry.
    fn auth(&self, image: &ImageRef) -> RegistryAuth {
        let host = image.registry.as_deref().unwrap_or("docker.io");
        self.registries
            .iter()
            .find(|r| r.host == host)
            .map_or(RegistryAuth::Anonymous, |r| RegistryAuth::Basic {
                username: r.username.clone(),
                password: r.password.clone(),
            })
    }

    fn digests(&self, images: &[ImageRef]) -> Vec<ImageDigest> {
        images
            .iter()
            .filter_map(|i| self.store.resolve(i))
            .map(|i| i.digest)
            .collect()
    }
}

fn summary(image: &Image, in_use: &[ImageDigest]) -> ImageSummary {
    ImageSummary {
        reference: image.reference.clone(),
        digest: image.digest.to_string(),
        size_bytes: image.size_bytes,
        in_use: u32::try_from(in_use.iter().filter(|d| **d == image.digest).count())
            .unwrap_or(u32::MAX),
    }
}

impl Images for StoreImages {
    fn present(&self, image: &ImageRef) -> bool {
        self.policy != PullPolicy::Always && self.store.resolve(image).is_some()
    }

    fn pull(&self, image: &ImageRef) -> anyhow::Result<()> {
        self.store
            .pull(image, &self.platform, &self.auth(image), &self.policy)?;
        Ok(())
    }

    fn list(&self, in_use: &[ImageRef]) -> anyhow::Result<Vec<ImageSummary>> {
        let used = self.digests(in_use);
        Ok(self
            .store
            .list()
            .iter()
            .map(|i| summary(i, &used))
            .collect())
    }

    fn import(&self, archive: &Path) -> anyhow::Result<Vec<ImageSummary>> {
        let images = self.store.import_archive(archive)?;
        Ok(images.iter().map(|i| summary(i, &[])).collect())
    }

    fn remove(&self, reference: &str, in_use: &[ImageRef]) -> anyhow::Result<String> {
        let parsed = ImageRef::parse(reference).map_err(anyhow::Error::msg)?;
        let removed = self.store.remove(&parsed, &self.digests(in_use))?;
        Ok(match removed.data_kept {
            None => format!(
                "removed {reference}; freed {}",
                format_bytes(removed.freed_bytes)
            ),
            Some(DataKept::NamedBy(other)) => {
                format!("removed {reference}; its image stays, as {other} names it too")
            }
            Some(DataKept::InUse) => {
                format!("removed {reference}; its image stays, as a workload uses it")
            }
        })
    }

    fn prune(&self, in_use: &[ImageRef]) -> anyhow::Result<String> {
        let report = self.store.prune(&self.digests(in_use), self.budget_bytes)?;
        Ok(self.pruned(&report))
    }

    fn prune_unused(&self, in_use: &[ImageRef]) -> anyhow::Result<String> {
        let report = self.store.prune_unused(&self.digests(in_use))?;
        Ok(self.pruned(&report))
    }
}

impl StoreImages {
    /// What a prune did, in words.
    fn pruned(&self, report: &PruneReport) -> String {
        let mut message = format!(
            "removed {} images, {} layers and {} blobs; freed {}, {} in use",
            report.removed_images.len(),
            report.removed_layers,
            report.removed_blobs,
            format_bytes(report.freed_bytes),
            format_bytes(report.used_bytes)
        );
        if report.used_bytes > self.budget_bytes {
            message.push_str(&format!(
                "; still over the disk budget of {}: the images in use need more",
                format_bytes(self.budget_bytes)
            ));
        }
        message
    }
}

/// The real container runtime and image store.
pub fn real(
    config: &AgentConfig,
    node: &NodeFacts,
) -> anyhow::Result<(Arc<dyn Containers>, Arc<dyn Images>)> {
    let images = image_store(config, node)?;
    let containers = runtime_containers(config, images.store())?;
    Ok((containers, Arc::new(images)))
}

/// The libcontainer runtime as the supervisor's [`Containers`]; images come from the store.
#[derive(Debug)]
pub struct RuntimeContainers {
    runtime: Runtime,
    images: Arc<ImageStore>,
}

fn runtime_containers(
    config: &AgentConfig,
    images: Arc<ImageStore>,
) -> anyhow::Result<Arc<dyn Containers>> {
    let mut runtime_config = RuntimeConfig::new(config.data_dir.clone());
    runtime_config.run_dir = config.run_dir.clone();
    runtime_config.allowed_host_paths = config.allowed_host_paths.clone();
    runtime_config.log_max_bytes = config.log_max_bytes;
    runtime_config.cgroup_parent = format!("shoal/{}", config.node_name);
    let runtime = Runtime::new(runtime_config).context("cannot set up the container runtime")?;
    Ok(Arc::new(RuntimeContainers { runtime, images }))
}

fn id(workload: &str, container: &str) -> anyhow::Result<String> {
    Ok(container_id(workload, container)?)
}

/// The image's `USER` when it is numeric (`1000` or `1000:1000`); names would need the
/// image's `/etc/passwd`, so they fall back to the image's default (root) with a warning.
fn numeric_user(user: Option<&str>) -> Option<User> {
    let user = user.filter(|u| !u.is_empty())?;
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    match (uid.parse(), gid.map(str::parse).transpose()) {
        (Ok(uid), Ok(gid)) => Some(User { uid, gid }),
        _ => {
            tracing::warn!(user, "the image names its user; only numeric users are supported, running as root: set `user` in the manifest");
            None
        }
    }
}

fn exit_info(record: &ExitRecord) -> ExitInfo {
    let (code, signal) = match record.status {
        ExitStatus::Code(code) => (Some(code), None),
        ExitStatus::Signal(signal) => (None, Some(signal)),
        ExitStatus::Unknown => (None, None),
    };
    ExitInfo {
        code,
        signal,
        oom_killed: record.oom_killed,
        at_ms: record.exited_ms,
    }
}

impl Containers for RuntimeContainers {
    fn ensure_pod(&self, workload: &Workload, hash: &str) -> anyhow::Result<()> {
        Ok(self.runtime.ensure_pod(workload, hash)?)
    }

    fn remove_pod(&self, workload: &str) -> anyhow::Result<()> {
        Ok(self.runtime.remove_pod(workload)?)
    }

    fn pods(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(self.runtime.pods()?)
    }

    fn start(&self, workload: &Workload, container: &Container) -> anyhow::Result<LiveContainer> {
        let image = self.images.resolve(&container.image).with_context(|| {
            format!("image {} is not in the local store: it is pulled first, or import it with `shoal-agent images import`", container.image)
        })?;
        if let Err(e) = self.images.mark_used(&image.digest) {
            tracing::debug!(error = %e, "cannot record when the image was last used");
        }
        let defaults = ProcessDefaults {
            entrypoint: image.config.entrypoint.clone(),
            cmd: image.config.cmd.clone(),
            env: image.config.env.clone(),
            working_dir: image.config.working_dir.clone(),
            user: numeric_user(image.config.user.as_deref()),
        };
        let started = self
            .runtime
            .start(workload, container, &image.layers, &defaults)?;
        Ok(LiveContainer {
            workload: workload.name.clone(),
            name: container.name.clone(),
            pid: u32::try_from(started.pid).ok(),
            started_ms: started.started_ms,
            exit: None,
        })
    }

    fn stop(&self, workload: &str, container: &str, grace: Duration) -> anyhow::Result<()> {
        self.runtime.stop(&id(workload, container)?, grace)?;
        Ok(())
    }

    fn remove(&self, workload: &str, container: &str) -> anyhow::Result<()> {
        Ok(self.runtime.remove(&id(workload, container)?)?)
    }

    fn list(&self) -> anyhow::Result<Vec<LiveContainer>> {
        Ok(self
            .runtime
            .list()?
            .into_iter()
            .map(|record| {
                let (pid, exit) = match &record.state {
                    ContainerState::Starting => (None, None),
                    ContainerState::Running { pid } => (u32::try_from(*pid).ok(), None),
                    ContainerState::Exited(exit) => (None, Some(exit_info(exit))),
                };
                LiveContainer {
                    workload: record.workload,
                    name: record.container,
                    pid,
                    started_ms: record.started_ms,
                    exit,
                }
            })
            .collect())
    }

    fn stats(&self, workload: &str, container: &str) -> Option<ContainerStats> {
        let usage = self.runtime.stats(&id(workload, container).ok()?).ok()?;
        Some(ContainerStats {
            memory_bytes: usage.memory_bytes,
            cpu_usage_ns: usage.cpu_usage_ns,
        })
    }

    fn exec(
        &self,
        workload: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> anyhow::Result<ExecOutput> {
        let output = self
            .runtime
            .exec(&id(workload, container)?, command, timeout)?;
        let exit_code = match output.result {
            ExecResult::Exited(ExitStatus::Code(code)) => code,
            ExecResult::Exited(ExitStatus::Signal(signal)) => 128 + signal,
            ExecResult::Exited(ExitStatus::Unknown) => {
                anyhow::bail!("the command's status is unknown")
            }
            ExecResult::TimedOut => anyhow::bail!("timed out after {}", format_duration(timeout)),
            ExecResult::Failed(message) => anyhow::bail!("{message}"),
        };
        Ok(ExecOutput {
            exit_code,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    fn log_path(&self, workload: &str, container: &str) -> Option<PathBuf> {
        Some(self.runtime.log_path(&id(workload, container).ok()?))
    }

    fn netns(&self, workload: &str) -> Option<PathBuf> {
        self.runtime.netns(workload)
    }

    fn exit_fd(&self, workload: &str, container: &str) -> Option<OwnedFd> {
        let id = id(workload, container).ok()?;
        match self.runtime.exit_fd(&id) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(workload, container, error = %e, "no exit fd: the next look notices the exit");
                None
            }
        }
    }
}
