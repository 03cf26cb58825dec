//! Decodes position-carrying YAML nodes into typed workloads, collecting every problem in a
//! document instead of stopping at the first. Each problem names its position, the field
//! path (`spec.containers[0].resources.memory`) and what would be valid.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::manifest::constraint::Constraint;
use crate::manifest::image::ImageRef;
use crate::manifest::names::{
    check_dns_label, check_env_name, check_label_key, check_label_value, suggest,
};
use crate::manifest::types::*;
use crate::manifest::yaml::{Node, Pos, Value};
use crate::quantity::{format_duration, parse_bytes, parse_duration, parse_millicpu, Amount};

/// One problem found in a document, before the file name is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub pos: Pos,
    pub path: String,
    pub message: String,
}

/// Smallest memory limit a container can start with.
pub const MIN_MEMORY: u64 = 4 << 20;

/// Linux capabilities by name, without the `CAP_` prefix.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A valid workload and what in it deserves a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub workload: Workload,
    /// Settings that are accepted but do not do what they say (yet).
    pub warnings: Vec<Problem>,
}

/// What a warning about `spec.rollout` says where no hub rolls the workload out: the hub
/// enforces rollouts (canary, waves, health gates, rollback), a device applying a manifest
/// itself does not. The hub's `validate` and `apply` leave it out (see [`ROLLOUT_PATH`]).
pub const ROLLOUT_LOCAL_ONLY: &str = "rollout settings take effect when the hub rolls a new \
     revision out; applied on a device itself, a new revision replaces the old one at once";

/// The field the rollout warning is about.
pub const ROLLOUT_PATH: &str = "spec.rollout";

/// Decodes one document into a workload, or returns every problem it has.
pub fn decode_workload(root: &Node) -> Result<Decoded, Vec<Problem>> {
    let mut d = Decoder {
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let workload = d.workload(root);
    match workload {
        Some(workload) if d.problems.is_empty() => Ok(Decoded {
            workload,
            warnings: d.warnings,
        }),
        _ => {
            if d.problems.is_empty() {
                // A field returned nothing without saying why: a bug, but never a silent pass.
                d.problems.push(Problem {
                    pos: root.pos,
                    path: String::new(),
                    message: "invalid workload".into(),
                });
            }
            Err(d.problems)
        }
    }
}

struct Decoder {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

/// The entries of a mapping whose keys were checked against the allowed fields.
struct Fields<'n> {
    pos: Pos,
    path: String,
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `name`, treating an explicit null as absent.
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    fn child(&self, name: &str) -> String {
        join(&self.path, name)
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

impl Decoder {
    fn problem(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            pos,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Checks that `node` is a mapping with only `allowed` keys, each once.
    fn fields<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(raw) = &node.value else {
            self.problem(
                node.pos,
                path,
                format!(
                    "expected a mapping with fields {}, found {}",
                    list(allowed),
                    node.describe()
                ),
            );
            return None;
        };
        let mut entries = Vec::with_capacity(raw.len());
        let mut seen = HashSet::new();
        for (key, value) in raw {
            let Value::Scalar { text, .. } = &key.value else {
                self.problem(
                    key.pos,
                    path,
                    "a key must be a plain name, not a list or mapping",
                );
                continue;
            };
            let field_path = join(path, text);
            if !allowed.contains(&text.as_str()) {
                let hint = match suggest(text, allowed) {
                    Some(s) => format!("did you mean `{s}`? "),
                    None => String::new(),
                };
                self.problem(
                    key.pos,
                    &field_path,
                    format!(
                        "unknown field `{text}`: {hint}valid fields here are {}",
                        list(allowed)
                    ),
                );
                continue;
            }
            if !seen.insert(text.as_str()) {
                self.problem(
                    key.pos,
                    &field_path,
                    format!("`{text}` is given twice: keep one"),
                );
                continue;
            }
            entries.push((text.as_str(), value));
        }
        Some(Fields {
            pos: node.pos,
            path: path.to_string(),
            entries,
        })
    }

    fn required<'n>(&mut self, f: &Fields<'n>, name: &str, what: &str) -> Option<&'n Node> {
        let node = f.get(name);
        if node.is_none() {
            self.problem(
                f.pos,
                &f.child(name),
                format!("missing field `{name}`: {what}"),
            );
        }
        node
    }

    fn scalar<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> Option<&'n str> {
        match &node.value {
            Value::Scalar { text, .. } if !node.is_null() => Some(text.as_str()),
            _ => {
                self.problem(
                    node.pos,
                    path,
                    format!("expected {expected}, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        self.scalar(node, path, "a text value").map(str::to_string)
    }

    /// A scalar checked by `parse`, whose error message is reported as is.
    fn parsed<T>(
        &mut self,
        node: &Node,
        path: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.scalar(node, path, expected)?;
        match parse(text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.problem(node.pos, path, message);
                None
            }
        }
    }

    fn integer<T: TryFrom<u64>>(&mut self, node: &Node, path: &str, max: u64) -> Option<T> {
        let plain = matches!(&node.value, Value::Scalar { plain: true, .. });
        self.parsed(node, path, "a whole number", |text| {
            let value: u64 = text
                .parse()
                .ok()
                .filter(|_| plain)
                .ok_or_else(|| format!("`{text}` is not a whole number"))?;
            if value > max {
                return Err(format!("{value} is too large: at most {max}"));
            }
            T::try_from(value).map_err(|_| format!("{value} is too large"))
        })
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        let plain = matches!(&node.value, Value::Scalar { plain: true, .. });
        self.parsed(node, path, "`true` or `false`", |text| match text {
            "true" | "True" | "TRUE" if plain => Ok(true),
            "false" | "False" | "FALSE" if plain => Ok(false),
            _ => Err(format!("`{text}` is not a boolean: use `true` or `false`")),
        })
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        self.parsed(node, path, "a duration such as `30s`", parse_duration)
    }

    fn choice<T: Copy>(&mut self, node: &Node, path: &str, options: &[(&str, T)]) -> Option<T> {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.parsed(node, path, "one of the listed values", |text| {
            options
                .iter()
                .find(|(n, _)| *n == text)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    let hint = suggest(text, &names)
                        .map(|s| format!("did you mean `{s}`? "))
                        .unwrap_or_default();
                    format!("`{text}` is not valid here: {hint}use {}", list(&names))
                })
        })
    }

    fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.problem(
                    node.pos,
                    path,
                    format!("expected a list, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let items = self.list(node, path)?;
        let values: Vec<Option<String>> = items
            .iter()
            .enumerate()
            .map(|(i, n)| self.string(n, &index(path, i)))
            .collect();
        values.into_iter().collect()
    }

    /// A mapping of text to text, each key and value checked.
    fn string_map(
        &mut self,
        node: &Node,
        path: &str,
        check_key: fn(&str) -> Result<(), String>,
        check_value: fn(&str) -> Result<(), String>,
    ) -> Option<BTreeMap<String, String>> {
        let Value::Map(entries) = &node.value else {
            self.problem(
                node.pos,
                path,
                format!(
                    "expected a mapping of names to values, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut map = BTreeMap::new();
        let mut ok = true;
        for (key, value) in entries {
            let Some(k) = self.scalar(key, path, "a name") else {
                ok = false;
                continue;
            };
            let entry_path = join(path, k);
            if let Err(message) = check_key(k) {
                self.problem(key.pos, &entry_path, message);
                ok = false;
            }
            // Values such as `PORT: 8080` are text to us, whatever YAML makes of them.
            let v = match &value.value {
                Value::Scalar { text, .. } if !value.is_null() => text.clone(),
                Value::Scalar { .. } => String::new(),
                _ => {
                    self.problem(
                        value.pos,
                        &entry_path,
                        format!("expected a single value, found {}", value.describe()),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Err(message) = check_value(&v) {
                self.problem(value.pos, &entry_path, message);
                ok = false;
            }
            if map.insert(k.to_string(), v).is_some() {
                self.problem(
                    key.pos,
                    &entry_path,
                    format!("`{k}` is given twice: keep one"),
                );
                ok = false;
            }
        }
        ok.then_some(map)
    }

    fn workload(&mut self, root: &Node) -> Option<Workload> {
        let f = self.fields(root, "", &["apiVersion", "kind", "metadata", "spec"])?;
        if let Some(node) = self.required(&f, "apiVersion", "add `apiVersion: shoal/v1`") {
            if let Some(v) = self.scalar(node, "apiVersion", "`shoal/v1`") {
                if v != API_VERSION {
                    self.problem(
                        node.pos,
                        "apiVersion",
                        format!("`{v}` is not supported: use `apiVersion: {API_VERSION}`"),
                    );
                }
            }
        }
        if let Some(node) = self.required(&f, "kind", "add `kind: Workload`") {
            if let Some(v) = self.scalar(node, "kind", "`Workload`") {
                if v != KIND_WORKLOAD {
                    self.problem(
                        node.pos,
                        "kind",
                        format!("`{v}` is not a kind Shoal knows: use `kind: {KIND_WORKLOAD}`"),
                    );
                }
            }
        }
        let metadata = self
            .required(&f, "metadata", "add `metadata: { name: ... }`")
            .and_then(|n| self.metadata(n));
        let name = metadata.as_ref().map(|(name, _)| name.as_str());
        let spec = self
            .required(&f, "spec", "add a `spec` with at least one container")
            .and_then(|n| self.spec(n, name));
        let (name, labels) = metadata?;
        Some(Workload {
            name,
            labels,
            spec: spec?,
        })
    }

    fn metadata(&mut self, node: &Node) -> Option<(String, BTreeMap<String, String>)> {
        let f = self.fields(node, "metadata", &["name", "labels"])?;
        let name = self
            .required(&f, "name", "every workload needs a name")
            .and_then(|n| {
                self.parsed(n, "metadata.name", "a name", |t| {
                    check_dns_label(t).map(|()| t.to_string())
                })
            });
        let labels = match f.get("labels") {
            Some(n) => self.string_map(n, "metadata.labels", check_label_key, check_label_value),
            None => Some(BTreeMap::new()),
        };
        Some((name?, labels?))
    }

    fn spec(&mut self, node: &Node, name: Option<&str>) -> Option<WorkloadSpec> {
        let f = self.fields(
            node,
            "spec",
            &[
                "placement",
                "rollout",
                "restartPolicy",
                "network",
                "stopGracePeriod",
                "volumes",
                "containers",
            ],
        )?;
        let placement = match f.get("placement") {
            Some(n) => self.placement(n, name),
            None => Some(default_placement()),
        };
        let rollout = match f.get("rollout") {
            Some(n) => {
                let workload = name.map_or_else(String::new, |name| format!("workload `{name}`: "));
                self.warnings.push(Problem {
                    pos: n.pos,
                    path: ROLLOUT_PATH.into(),
                    message: format!("{workload}{ROLLOUT_LOCAL_ONLY}"),
                });
                self.rollout(n)
            }
            None => Some(Rollout::default()),
        };
        let restart_policy = match f.get("restartPolicy") {
            Some(n) => self.choice(
                n,
                "spec.restartPolicy",
                &[
                    ("always", RestartPolicy::Always),
                    ("on-failure", RestartPolicy::OnFailure),
                    ("never", RestartPolicy::Never),
                ],
            ),
            None => Some(RestartPolicy::default()),
        };
        let network = match f.get("network") {
            Some(n) => self.choice(
                n,
                "spec.network",
                &[
                    ("host", NetworkMode::Host),
                    ("isolated", NetworkMode::Isolated),
                ],
            ),
            None => Some(NetworkMode::default()),
        };
        let stop_grace_period = match f.get("stopGracePeriod") {
            Some(n) => self.duration(n, "spec.stopGracePeriod"),
            None => Some(DEFAULT_STOP_GRACE_PERIOD),
        };
        let (volumes, volumes_ok) = match f.get("volumes") {
            Some(n) => self.volumes(n),
            None => (Vec::new(), true),
        };
        let containers = self
            .required(&f, "containers", "a workload runs at least one container")
            .and_then(|n| self.containers(n, &volumes));
        let volumes = volumes_ok.then_some(volumes);
        Some(WorkloadSpec {
            placement: placement?,
            rollout: rollout?,
            restart_policy: restart_policy?,
            network: network?,
            stop_grace_period: stop_grace_period?,
            volumes: volumes?,
            containers: containers?,
        })
    }

    fn placement(&mut self, node: &Node, name: Option<&str>) -> Option<Placement> {
        let path = "spec.placement";
        let f = self.fields(
            node,
            path,
            &[
                "mode",
                "replicas",
                "nodeSelector",
                "constraints",
                "spread",
                "with",
                "notWith",
                "rescheduleAfter",
            ],
        )?;
        let mode_name = f.get("mode").and_then(|n| {
            self.choice(n, &f.child("mode"), &[("every", true), ("replicas", false)])
        });
        let replicas = f
            .get("replicas")
            .map(|n| (n.pos, self.integer::<u32>(n, &f.child("replicas"), 10_000)));
        let mode = match (mode_name, replicas) {
            (Some(true), Some((pos, _))) => {
                self.problem(
                    pos,
                    &f.child("replicas"),
                    "`replicas` does not apply to `mode: every`: remove one of the two",
                );
                None
            }
            (Some(true), None) => Some(PlacementMode::Every),
            (_, Some((_, count))) => count.map(PlacementMode::Replicas),
            (Some(false), None) => Some(PlacementMode::Replicas(1)),
            (None, None) if f.get("mode").is_some() => None,
            (None, None) => Some(PlacementMode::Replicas(1)),
        };
        let node_selector = match f.get("nodeSelector") {
            Some(n) => self.string_map(
                n,
                &f.child("nodeSelector"),
                check_label_key,
                check_label_value,
            ),
            None => Some(BTreeMap::new()),
        };
        let constraints = match f.get("constraints") {
            Some(n) => self.list(n, &f.child("constraints")).and_then(|items| {
                let parsed: Vec<Option<Constraint>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        self.parsed(
                            item,
                            &index(&f.child("constraints"), i),
                            "a constraint such as `memory >= 256Mi`",
                            Constraint::parse,
                        )
                    })
                    .collect();
                parsed.into_iter().collect()
            }),
            None => Some(Vec::new()),
        };
        let spread = self.optional(&f, "spread", None, |d, n, p| {
            d.parsed(n, p, "a node label key", |t| {
                check_label_key(t).map(|()| Some(t.to_string()))
            })
        });
        let with = self.name_list(&f, "with");
        let not_with = self.name_list(&f, "notWith");
        if let (Some(name), Some(with), Some(node)) = (name, &with, f.get("with")) {
            if with.iter().any(|w| w == name) {
                self.problem(node.pos, &f.child("with"), format!("`{name}` cannot require itself: use `notWith: [{name}]` for one copy per node"));
            }
        }
        let reschedule_after = match f.get("rescheduleAfter") {
            Some(n) => self.parsed(
                n,
                &f.child("rescheduleAfter"),
                "a duration or `never`",
                |t| match t {
                    "never" => Ok(RescheduleAfter::Never),
                    _ => parse_duration(t)
                        .map(RescheduleAfter::After)
                        .map_err(|e| format!("{e}, or `never`")),
                },
            ),
            None => Some(RescheduleAfter::After(DEFAULT_RESCHEDULE_AFTER)),
        };
        if mode == Some(PlacementMode::Every) {
            for field in ["spread", "rescheduleAfter"] {
                if let Some((_, n)) = f.entries.iter().find(|(k, _)| *k == field) {
                    self.problem(n.pos, &f.child(field), format!("`{field}` applies to `replicas` placement only: `every` runs one copy on each matching node and never moves it"));
                }
            }
        }
        Some(Placement {
            mode: mode?,
            node_selector: node_selector?,
            constraints: constraints?,
            spread: spread?,
            with: with?,
            not_with: not_with?,
            reschedule_after: reschedule_after?,
        })
    }

    fn name_list(&mut self, f: &Fields<'_>, field: &str) -> Option<Vec<String>> {
        let Some(node) = f.get(field) else {
            return Some(Vec::new());
        };
        let path = f.child(field);
        let items = self.list(node, &path)?;
        let names: Vec<Option<String>> = items
            .iter()
            .enumerate()
            .map(|(i, n)| {
                self.parsed(n, &index(&path, i), "a workload name", |t| {
                    check_dns_label(t).map(|()| t.to_string())
                })
            })
            .collect();
        names.into_iter().collect()
    }

    fn rollout(&mut self, node: &Node) -> Option<Rollout> {
        let f = self.fields(
            node,
            "spec.rollout",
            &[
                "maxUnavailable",
                "canary",
                "healthyFor",
                "autoRollback",
                "progressDeadline",
                "failureThreshold",
            ],
        )?;
        let defaults = Rollout::default();
        let max_unavailable = match f.get("maxUnavailable") {
            Some(n) => self.parsed(
                n,
                &f.child("maxUnavailable"),
                "a count or a percentage",
                Amount::parse,
            ),
            None => Some(defaults.max_unavailable),
        };
        let canary = match f.get("canary") {
            Some(n) => self.parsed(
                n,
                &f.child("canary"),
                "a count or a percentage",
                Amount::parse,
            ),
            None => Some(defaults.canary),
        };
        let healthy_for = match f.get("healthyFor") {
            Some(n) => self.duration(n, &f.child("healthyFor")),
            None => Some(defaults.healthy_for),
        };
        let auto_rollback = match f.get("autoRollback") {
            Some(n) => self.boolean(n, &f.child("autoRollback")),
            None => Some(defaults.auto_rollback),
        };
        let progress_deadline = match f.get("progressDeadline") {
            Some(n) => self.duration(n, &f.child("progressDeadline")).and_then(|d| {
                if d.is_zero() {
                    self.problem(
                        n.pos,
                        &f.child("progressDeadline"),
                        "must be longer than 0s: it is how long a node has to be done with a revision",
                    );
                    None
                } else {
                    Some(d)
                }
            }),
            None => Some(defaults.progress_deadline),
        };
        let failure_threshold = match f.get("failureThreshold") {
            Some(n) => self
                .parsed(
                    n,
                    &f.child("failureThreshold"),
                    "a count or a percentage",
                    Amount::parse,
                )
                .and_then(|a| {
                    if matches!(a, Amount::Count(0) | Amount::Percent(0)) {
                        self.problem(
                            n.pos,
                            &f.child("failureThreshold"),
                            "must be at least 1 or 1%: it is how many failed nodes halt the rollout",
                        );
                        None
                    } else {
                        Some(a)
                    }
                }),
            None => Some(defaults.failure_threshold),
        };
        Some(Rollout {
            max_unavailable: max_unavailable?,
            canary: canary?,
            healthy_for: healthy_for?,
            auto_rollback: auto_rollback?,
            progress_deadline: progress_deadline?,
            failure_threshold: failure_threshold?,
        })
    }

    /// The volumes that decoded, and whether all of them did (the containers' mounts are
    /// checked against the first even when the second is false).
    fn volumes(&mut self, node: &Node) -> (Vec<Volume>, bool) {
        let Some(items) = self.list(node, "spec.volumes") else {
            return (Vec::new(), false);
        };
        let mut volumes = Vec::new();
        let mut names = HashSet::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = index("spec.volumes", i);
            let Some(f) = self.fields(item, &path, &["name", "hostPath"]) else {
                ok = false;
                continue;
            };
            let name = self
                .required(&f, "name", "every volume needs a name")
                .and_then(|n| {
                    self.parsed(n, &f.child("name"), "a name", |t| {
                        check_dns_label(t).map(|()| t.to_string())
                    })
                });
            let source = match f.get("hostPath") {
                Some(n) => self.parsed(n, &f.child("hostPath"), "an absolute path", |t| {
                    check_absolute_path(t).map(|()| VolumeSource::HostPath(t.to_string()))
                }),
                None => Some(VolumeSource::Named),
            };
            match (name, source) {
                (Some(name), Some(source)) => {
                    if names.insert(name.clone()) {
                        volumes.push(Volume { name, source });
                    } else {
                        self.problem(
                            item.pos,
                            &f.child("name"),
                            format!("volume `{name}` is declared twice"),
                        );
                        ok = false;
                    }
                }
                _ => ok = false,
            }
        }
        (volumes, ok)
    }

    fn containers(&mut self, node: &Node, volumes: &[Volume]) -> Option<Vec<Container>> {
        let items = self.list(node, "spec.containers")?;
        if items.is_empty() {
            self.problem(
                node.pos,
                "spec.containers",
                "the list is empty: a workload runs at least one container",
            );
            return None;
        }
        let mut containers = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.container(item, &index("spec.containers", i), volumes) {
                Some(c) => {
                    if containers
                        .iter()
                        .any(|other: &Container| other.name == c.name)
                    {
                        self.problem(
                            item.pos,
                            &index("spec.containers", i),
                            format!("container name `{}` is used twice in this workload", c.name),
                        );
                        ok = false;
                    }
                    containers.push(c);
                }
                None => ok = false,
            }
        }
        ok.then_some(containers)
    }

    fn container(&mut self, node: &Node, path: &str, volumes: &[Volume]) -> Option<Container> {
        let f = self.fields(
            node,
            path,
            &[
                "name",
                "image",
                "command",
                "args",
                "env",
                "workingDir",
                "user",
                "resources",
                "devices",
                "mounts",
                "health",
                "readOnlyRootfs",
                "capabilities",
                "privileged",
            ],
        )?;
        let name = self
            .required(&f, "name", "every container needs a name")
            .and_then(|n| {
                self.parsed(n, &f.child("name"), "a name", |t| {
                    check_dns_label(t).map(|()| t.to_string())
                })
            });
        let image = self
            .required(
                &f,
                "image",
                "say which image to run, e.g. `image: registry.local:5000/app:1.0`",
            )
            .and_then(|n| self.parsed(n, &f.child("image"), "an image reference", ImageRef::parse));
        let command = self.optional(&f, "command", Vec::new(), |d, n, p| d.strings(n, p));
        let args = self.optional(&f, "args", Vec::new(), |d, n, p| d.strings(n, p));
        let env = self.optional(&f, "env", BTreeMap::new(), |d, n, p| {
            d.string_map(n, p, check_env_name, |_| Ok(()))
        });
        let working_dir = self.optional(&f, "workingDir", None, |d, n, p| {
            d.parsed(n, p, "an absolute path", |t| {
                check_absolute_path(t).map(|()| Some(t.to_string()))
            })
        });
        let user = self.optional(&f, "user", None, |d, n, p| {
            d.parsed(n, p, "a numeric user", parse_user).map(Some)
        });
        let resources = self.optional(&f, "resources", Resources::default(), |d, n, p| {
            d.resources(n, p)
        });
        let devices = self.optional(&f, "devices", Vec::new(), |d, n, p| {
            let items = d.strings(n, p)?;
            let mut ok = true;
            for (i, device) in items.iter().enumerate() {
                if let Err(message) = check_device(device) {
                    let pos = match &n.value {
                        Value::Seq(nodes) => nodes.get(i).map_or(n.pos, |x| x.pos),
                        _ => n.pos,
                    };
                    d.problem(pos, &index(p, i), message);
                    ok = false;
                }
            }
            ok.then_some(items)
        });
        let mounts = self.optional(&f, "mounts", Vec::new(), |d, n, p| d.mounts(n, p, volumes));
        let health = self.optional(&f, "health", None, |d, n, p| d.health(n, p).map(Some));
        let read_only_rootfs =
            self.optional(&f, "readOnlyRootfs", false, |d, n, p| d.boolean(n, p));
        let capabilities = self.optional(&f, "capabilities", Capabilities::default(), |d, n, p| {
            d.capabilities(n, p)
        });
        let privileged = self.optional(&f, "privileged", false, |d, n, p| d.boolean(n, p));
        Some(Container {
            name: name?,
            image: image?,
            command: command?,
            args: args?,
            env: env?,
            working_dir: working_dir?,
            user: user?,
            resources: resources?,
            devices: devices?,
            mounts: mounts?,
            health: health?,
            read_only_rootfs: read_only_rootfs?,
            capabilities: capabilities?,
            privileged: privileged?,
        })
    }

    /// Decodes field `name` with `decode` when present, or gives `default`.
    fn optional<T>(
        &mut self,
        f: &Fields<'_>,
        name: &str,
        default: T,
        decode: impl FnOnce(&mut Self, &Node, &str) -> Option<T>,
    ) -> Option<T> {
        match f.get(name) {
            Some(node) => decode(self, node, &f.child(name)),
            None => Some(default),
        }
    }

    fn resources(&mut self, node: &Node, path: &str) -> Option<Resources> {
        let f = self.fields(node, path, &["memory", "cpu", "pids"])?;
        let memory = self.optional(&f, "memory", None, |d, n, p| {
            d.parsed(n, p, "a memory size such as `64Mi`", |t| {
                let bytes = parse_bytes(t)?;
                if bytes < MIN_MEMORY {
                    return Err(format!(
                        "`{t}` is too little for a container: use at least 4Mi"
                    ));
                }
                Ok(Some(bytes))
            })
        });
        let cpu_millis = self.optional(&f, "cpu", None, |d, n, p| {
            d.parsed(n, p, "a CPU amount such as `0.5` or `500m`", |t| match parse_millicpu(t)? {
                0 => Err(format!("`{t}` would give no CPU at all: use at least `1m`, or leave `cpu` out for no limit")),
                m => Ok(Some(m)),
            })
        });
        let pids = self.optional(&f, "pids", None, |d, n, p| {
            match d.integer::<u32>(n, p, 4_194_304)? {
                0 => {
                    d.problem(
                        n.pos,
                        p,
                        "a pids limit of 0 would stop the container from starting: use at least 1",
                    );
                    None
                }
                v => Some(Some(v)),
            }
        });
        Some(Resources {
            memory: memory?,
            cpu_millis: cpu_millis?,
            pids: pids?,
        })
    }

    fn mounts(&mut self, node: &Node, path: &str, volumes: &[Volume]) -> Option<Vec<Mount>> {
        let items = self.list(node, path)?;
        let mut mounts: Vec<Mount> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_path = index(path, i);
            let Some(f) = self.fields(item, &item_path, &["volume", "path", "readOnly"]) else {
                ok = false;
                continue;
            };
            let volume = self.required(&f, "volume", "name one of the workload's `volumes`").and_then(|n| {
                self.parsed(n, &f.child("volume"), "a volume name", |t| {
                    if volumes.iter().any(|v| v.name == t) {
                        Ok(t.to_string())
                    } else {
                        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
                        if names.is_empty() {
                            return Err(format!("volume `{t}` is not declared: add `volumes: [{{ name: {t} }}]` under `spec`"));
                        }
                        let hint = suggest(t, &names).map(|s| format!("did you mean `{s}`? ")).unwrap_or_default();
                        Err(format!("volume `{t}` is not declared in `spec.volumes`: {hint}declared volumes are {}", list(&names)))
                    }
                })
            });
            let mount_path = self
                .required(&f, "path", "say where the volume appears in the container")
                .and_then(|n| {
                    self.parsed(n, &f.child("path"), "an absolute path", |t| {
                        check_absolute_path(t).map(|()| t.to_string())
                    })
                });
            let read_only = self.optional(&f, "readOnly", false, |d, n, p| d.boolean(n, p));
            match (volume, mount_path, read_only) {
                (Some(volume), Some(path), Some(read_only)) => {
                    if mounts.iter().any(|m| m.path == path) {
                        self.problem(
                            item.pos,
                            &item_path,
                            format!("`{path}` is mounted twice in this container"),
                        );
                        ok = false;
                    }
                    mounts.push(Mount {
                        volume,
                        path,
                        read_only,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(mounts)
    }

    fn health(&mut self, node: &Node, path: &str) -> Option<HealthCheck> {
        let f = self.fields(
            node,
            path,
            &[
                "exec",
                "http",
                "tcp",
                "interval",
                "timeout",
                "retries",
                "startPeriod",
            ],
        )?;
        let probe = self.probe(&f, path);
        let interval = self.optional(&f, "interval", Duration::from_secs(10), |d, n, p| {
            d.duration(n, p)
        });
        let timeout = self.optional(&f, "timeout", Duration::from_secs(2), |d, n, p| {
            d.duration(n, p)
        });
        let retries = self.optional(&f, "retries", 3, |d, n, p| d.integer(n, p, 1000));
        let start_period = self.optional(&f, "startPeriod", Duration::ZERO, |d, n, p| {
            d.duration(n, p)
        });
        let (interval, timeout) = (interval?, timeout?);
        let at = |field: &str| f.get(field).map_or(f.pos, |n| n.pos);
        if interval.is_zero() {
            self.problem(
                at("interval"),
                &f.child("interval"),
                "the interval must be longer than 0s",
            );
            return None;
        }
        if timeout.is_zero() || timeout > interval {
            self.problem(
                at("timeout"),
                &f.child("timeout"),
                format!(
                    "the timeout ({}) must be above 0s and at most the interval ({})",
                    format_duration(timeout),
                    format_duration(interval)
                ),
            );
            return None;
        }
        let retries = retries?;
        if retries == 0 {
            self.problem(
                at("retries"),
                &f.child("retries"),
                "retries must be at least 1",
            );
            return None;
        }
        Some(HealthCheck {
            probe: probe?,
            interval,
            timeout,
            retries,
            start_period: start_period?,
        })
    }

    /// The one probe of a health check: `exec`, `http` or `tcp`.
    fn probe(&mut self, f: &Fields<'_>, path: &str) -> Option<Probe> {
        let given: Vec<&str> = ["exec", "http", "tcp"]
            .into_iter()
            .filter(|k| f.get(k).is_some())
            .collect();
        let kind = match given.as_slice() {
            [kind] => *kind,
            [] => {
                self.problem(
                    f.pos,
                    path,
                    "a health check needs one of `exec`, `http` or `tcp`",
                );
                return None;
            }
            _ => {
                self.problem(
                    f.pos,
                    path,
                    format!(
                        "a health check has one probe, but {} are given: keep one",
                        list(&given)
                    ),
                );
                return None;
            }
        };
        let n = f.get(kind)?;
        let p = f.child(kind);
        match kind {
            "exec" => {
                let command = self.strings(n, &p)?;
                if command.is_empty() {
                    self.problem(
                        n.pos,
                        &p,
                        "the command is empty: give the program and its arguments",
                    );
                    return None;
                }
                Some(Probe::Exec(command))
            }
            "http" => {
                let h = self.fields(n, &p, &["port", "path"])?;
                let port = self
                    .required(&h, "port", "the port to query")
                    .and_then(|x| self.port(x, &h.child("port")));
                let http_path = self.optional(&h, "path", "/".to_string(), |d, x, xp| {
                    d.parsed(x, xp, "a path such as `/healthz`", |t| {
                        if t.starts_with('/') && !t.chars().any(char::is_whitespace) {
                            Ok(t.to_string())
                        } else {
                            Err(format!(
                                "`{t}` is not a URL path: start it with `/`, without spaces"
                            ))
                        }
                    })
                });
                Some(Probe::Http {
                    port: port?,
                    path: http_path?,
                })
            }
            _ => {
                let t = self.fields(n, &p, &["port"])?;
                let port = self
                    .required(&t, "port", "the port to connect to")
                    .and_then(|x| self.port(x, &t.child("port")))?;
                Some(Probe::Tcp { port })
            }
        }
    }

    fn port(&mut self, node: &Node, path: &str) -> Option<u16> {
        match self.integer::<u16>(node, path, 65_535)? {
            0 => {
                self.problem(node.pos, path, "port 0 is not a port: use 1 to 65535");
                None
            }
            port => Some(port),
        }
    }

    fn capabilities(&mut self, node: &Node, path: &str) -> Option<Capabilities> {
        let f = self.fields(node, path, &["add", "drop"])?;
        let one = |d: &mut Self, field: &str| -> Option<Vec<String>> {
            let Some(n) = f.get(field) else {
                return Some(Vec::new());
            };
            let p = f.child(field);
            let items = d.list(n, &p)?;
            let caps: Vec<Option<String>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    d.parsed(item, &index(&p, i), "a capability name", parse_capability)
                })
                .collect();
            caps.into_iter().collect()
        };
        let add = one(self, "add");
        let drop = one(self, "drop");
        Some(Capabilities {
            add: add?,
            drop: drop?,
        })
    }
}

fn default_placement() -> Placement {
    Placement {
        mode: PlacementMode::Replicas(1),
        node_selector: BTreeMap::new(),
        constraints: Vec::new(),
        spread: None,
        with: Vec::new(),
        not_with: Vec::new(),
        reschedule_after: RescheduleAfter::After(DEFAULT_RESCHEDULE_AFTER),
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_absolute_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "`{path}` is not an absolute path: start it with `/`"
        ));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("`{path}` contains `..`: write the path without it"));
    }
    if path.contains('\0') {
        return Err("the path contains a NUL character".into());
    }
    Ok(())
}

fn check_device(path: &str) -> Result<(), String> {
    check_absolute_path(path)?;
    if !path.starts_with("/dev/") || path.len() <= "/dev/".len() {
        return Err(format!(
            "`{path}` is not a device: devices are paths under `/dev/`, like `/dev/ttyUSB0`"
        ));
    }
    Ok(())
}

fn parse_user(text: &str) -> Result<User, String> {
    let bad = || {
        format!(
            "`{text}` is not a numeric user: use `UID` or `UID:GID`, like `1000` or `1000:1000`"
        )
    };
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (text, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok(User { uid, gid })
}

fn parse_capability(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if CAPABILITIES.contains(&bare) {
        Ok(format!("CAP_{bare}"))
    } else {
        let hint = suggest(bare, &CAPABILITIES)
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        Err(format!("`{text}` is not a Linux capability: {hint}use names like `NET_ADMIN` or `CAP_NET_ADMIN`, or `ALL`"))
    }
}
