//! The hub's HTTP API, between the `shoal` CLI and `shoal serve`: JSON bodies under `/v1`,
//! every request with `Authorization: Bearer TOKEN`.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/apply` | [`ApplyRequest`] | [`ApplyResponse`] (also `shoal diff`, with `dry_run`) |
//! | `GET /v1/workloads` | | `Vec<`[`WorkloadInfo`]`>` |
//! | `GET /v1/workloads/{name}` | | [`WorkloadDetail`] |
//! | `DELETE /v1/workloads/{name}` | | [`Done`] |
//! | `GET /v1/nodes` | | `Vec<`[`NodeInfo`]`>` |
//! | `GET /v1/nodes/{name}` | | [`NodeDetail`] |
//! | `POST /v1/nodes` | [`NodeAddRequest`] | [`NodeEnrollment`] |
//! | `DELETE /v1/nodes/{name}` | | [`Done`] (credentials revoked, session closed) |
//! | `POST /v1/nodes/{name}/labels` | [`LabelRequest`] | [`NodeInfo`] |
//! | `POST /v1/nodes/{name}/cordon`, `/uncordon`, `/drain` | | [`NodeInfo`] |
//! | `GET /v1/logs?workload=W&node=N&container=C&tail=T&follow=true` | | the log bytes, streamed |
//! | `GET /v1/broker-config/mosquitto?port=P` | | [`MosquittoConfig`] |
//! | `GET /v1/keys[?kinds=all]` | | `Vec<`[`KeyInfo`]`>` (state keys; with `all`, release keys after them) |
//! | `POST /v1/keys/rotate` | [`RotateRequest`] | `Vec<`[`KeyInfo`]`>` |
//! | `GET /v1/tokens` | | `Vec<`[`ClaimInfo`]`>` (claim tokens, newest first) |
//! | `POST /v1/tokens` | [`ClaimCreateRequest`] | [`ClaimCreated`] |
//! | `DELETE /v1/tokens/{id}` | | [`Done`] (revoked: it enrolls nobody more) |
//! | `GET /v1/agent-releases` | | `Vec<`[`AgentReleaseInfo`]`>` |
//! | `POST /v1/agent-releases?version=V[&minimum=M]` | the binary | [`AgentReleaseAdded`] |
//! | `DELETE /v1/agent-releases/{version}?arch=A` | | [`Done`] |
//! | `GET /v1/agent-upgrades` | | [`AgentUpgradeStatus`] |
//! | `POST /v1/agent-upgrades` | [`AgentUpgradeRequest`] | [`Done`] |
//! | `DELETE /v1/agent-upgrades?selector=k=v` | | [`Done`] |
//! | `POST /v1/agent-upgrades/pause`, `/resume`, `/undo` | [`AgentUpgradeAction`] | [`Done`] |
//!
//! Three routes take no bearer token, for devices: `GET /v1/ca` (the hub's CA certificate,
//! PEM; public), `POST /v1/enroll` ([`EnrollRequest`] → [`EnrollResponse`]; the enrollment
//! token, for one node, or the claim token, for a batch, is the credential), and
//! `GET /v1/agent-binaries/{sha256}` (an agent release's binary, by HTTP Basic with the
//! node's name and MQTT password; `Range: bytes=N-` resumes a download).
//!
//! Errors come back with a 4xx/5xx status and an [`ApiError`] body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::endpoint::{ApiUrl, BrokerUrl};
use crate::manifest::names::check_dns_label;
use crate::manifest::Workload;
use crate::node::NodeFacts;
use crate::wire::{AgentUpdate, ContainerStatus, Event, NodeUsage};

/// Where `shoal serve` listens for the CLI unless told otherwise.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7440";
/// Where `shoal serve`'s embedded broker listens unless told otherwise: MQTT over TLS.
pub const DEFAULT_MQTT_ADDR: &str = "0.0.0.0:8883";
/// The same with `--insecure`: plain MQTT.
pub const DEFAULT_INSECURE_MQTT_ADDR: &str = "0.0.0.0:1883";
/// Largest request body the API reads (a folder of manifests).
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// What went wrong, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    /// One line per problem when there are several (manifest diagnostics: `file:line:col: ...`).
    #[serde(default)]
    pub details: Vec<String>,
}

/// A request that changed something succeeded; the message says what it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub message: String,
}

/// One manifest file as the CLI read it; the hub parses and validates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The path the user gave, used in diagnostics.
    pub name: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub files: Vec<ManifestFile>,
    /// Say what would change, store nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub dry_run: bool,
    /// One entry per workload in the request, in the order of the files.
    pub changes: Vec<WorkloadChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Created,
    Configured,
    Unchanged,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Created => "created",
            ChangeAction::Configured => "configured",
            ChangeAction::Unchanged => "unchanged",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadChange {
    pub workload: String,
    pub action: ChangeAction,
    /// The revision after the change (what it would be, for a dry run).
    pub revision: u64,
    /// What changed, one line per field: `+ path: value`, `- path: value`, `~ path: old -> new`.
    pub diff: Vec<String>,
}

/// A node as `shoal get nodes` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// Connected to the broker now (from its presence and last will).
    pub online: bool,
    /// `Ready`, `NotReady` (offline), `Unknown` (never connected), with
    /// `,SchedulingDisabled` when cordoned or drained.
    pub status: String,
    /// `yes`, `cordoned` or `drained`.
    pub schedulable: String,
    /// What placement matches against: the agent's own labels overlaid with the hub's.
    pub labels: BTreeMap<String, String>,
    /// As the agent last reported them; `None` before its first connection.
    pub facts: Option<NodeFacts>,
    pub created_ms: u64,
    /// When the hub last heard from it (presence or status).
    pub last_seen_ms: Option<u64>,
    pub offline_since_ms: Option<u64>,
    pub desired_generation: u64,
    pub observed_generation: u64,
    /// Workloads placed on it.
    pub workloads: Vec<String>,
    /// The agent upgrade it last reported on, and how far it got (`downloading`,
    /// `switching`, `failed`); `None` when its status names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_update: Option<AgentUpdate>,
}

/// `shoal describe node NAME`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeDetail {
    pub node: NodeInfo,
    /// Per workload, as the node last reported.
    pub instances: Vec<Instance>,
    pub usage: Option<NodeUsage>,
    /// Newest last.
    pub events: Vec<EventInfo>,
}

/// A workload as `shoal get workloads` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    pub name: String,
    pub revision: u64,
    /// `every` or `replicas: N`.
    pub mode: String,
    /// Nodes it should run on: the replica count, or the eligible nodes for `every`.
    pub wanted: usize,
    /// Nodes it is placed on.
    pub placed: usize,
    /// Nodes that report all its containers running at the current revision.
    pub ready: usize,
    pub nodes: Vec<String>,
    /// The scheduler's one-line summary, such as `1/2 placed: only 1 node matches`.
    pub summary: String,
    pub updated_ms: u64,
}

/// `shoal describe workload NAME`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadDetail {
    pub workload: WorkloadInfo,
    pub spec: Workload,
    /// Node -> why it was chosen or kept.
    pub placed_on: BTreeMap<String, String>,
    /// Node -> why it does not run the workload.
    pub not_placed: BTreeMap<String, String>,
    /// What each node reports for this workload.
    pub instances: Vec<Instance>,
    /// Newest last.
    pub events: Vec<EventInfo>,
}

/// One workload on one node, as that node reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub node: String,
    pub workload: String,
    /// The revision the node runs (0 when it runs none yet).
    pub revision: u64,
    pub containers: Vec<ContainerStatus>,
    /// When the node sent the status this comes from.
    pub reported_ms: u64,
}

/// One event from a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    pub node: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddRequest {
    pub name: String,
    /// Set only when the node is new.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How long the token works, in seconds ([`DEFAULT_TOKEN_TTL_S`] when absent).
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// How long an enrollment token works unless `shoal node add --ttl` says otherwise.
pub const DEFAULT_TOKEN_TTL_S: u64 = 24 * 60 * 60;
/// The longest an enrollment token may work.
pub const MAX_TOKEN_TTL_S: u64 = 30 * 24 * 60 * 60;

/// A one-time enrollment token: shown once, at `shoal node add`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEnrollment {
    pub name: String,
    /// `shoal1.NODE.SECRET.CA_FINGERPRINT`: who, the one-time secret, and the SHA-256 of the
    /// hub's CA certificate, which the device checks before it sends the secret.
    pub token: String,
    pub expires_ms: u64,
    /// The API URL devices enroll at (`--advertise-api`).
    pub hub: ApiUrl,
}

/// `POST /v1/enroll`.
///
/// `device` came after release 0.1.0 and is optional both ways: an older agent sends only
/// `token` (a per-node token, which needs nothing else), and an older hub ignores the field
/// it does not know. The agent sends it only with a claim token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub token: String,
    /// What the device says about itself, from which a claim token's name template makes
    /// its node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceIdentity>,
}

/// What a device enrolling with a claim token tells about itself (each item as it read it;
/// absent when it has none). The hub makes the node's name from these and the claim's name
/// template, and keeps names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// The name it proposes: `shoal-agent enroll --name`, else its host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `/etc/machine-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// The board's serial number (device tree, `/proc/cpuinfo` or DMI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The MAC address of its first network interface, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The longest any one [`DeviceIdentity`] item may be.
pub const MAX_IDENTITY_ITEM: usize = 128;

/// `POST /v1/tokens`: a claim token that enrolls up to `uses` devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCreateRequest {
    pub uses: u32,
    /// How long it works, in seconds ([`DEFAULT_TOKEN_TTL_S`] when absent).
    #[serde(default)]
    pub ttl_s: Option<u64>,
    /// Hub-side labels every node it enrolls gets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How each node is named ([`DEFAULT_NAME_TEMPLATE`] when absent).
    #[serde(default)]
    pub name_template: Option<String>,
}

/// The name template of a claim token unless `shoal token create --name-template` says
/// otherwise: the name the device proposes (its host name).
pub const DEFAULT_NAME_TEMPLATE: &str = "{name}";
/// The most devices one claim token may enroll.
pub const MAX_CLAIM_USES: u32 = 100_000;

/// A claim token as `shoal token list` shows it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimInfo {
    /// The token's id, its second part.
    pub id: String,
    /// How many devices it may enroll, and how many it did.
    pub uses: u32,
    pub used: u32,
    pub labels: BTreeMap<String, String>,
    pub name_template: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub revoked_ms: Option<u64>,
    /// `active`, `used-up`, `expired` or `revoked`.
    pub state: String,
    /// The nodes it enrolled, oldest first.
    pub nodes: Vec<String>,
    /// The API URL devices enroll at (`--advertise-api`).
    pub hub: ApiUrl,
    /// The SHA-256 of the hub's CA certificate, which the token pins.
    pub ca_fingerprint: String,
}

/// The answer to `POST /v1/tokens`: the token, shown only then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCreated {
    /// `shoalc1.ID.SECRET.CA_FINGERPRINT`.
    pub token: String,
    pub claim: ClaimInfo,
}

/// Everything a device needs to join: its identity and how to check the hub's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub node_name: String,
    /// The MQTT password (256 bits, fresh at every enrollment); the user and client id are
    /// the node name.
    pub password: String,
    /// The broker URL devices use (`mqtts://host:port`), a JSON string.
    pub broker: BrokerUrl,
    pub prefix: String,
    /// The hub's CA certificate (PEM): it signs the broker's and the API's certificates.
    pub ca_pem: String,
    /// The hub keys desired states are signed with (`ed25519:…`).
    pub signing_keys: Vec<String>,
    /// The hub keys agent releases are signed with (`ed25519:…`), for the agent to update
    /// itself; absent from hubs that have none (release 0.1.0), and ignored by agents that
    /// cannot update themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release_keys: Vec<String>,
}

/// One of the hub's signing keys (`shoal key list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    /// `state` (signs desired states) or `release` (signs agent releases). Added after 0.1.0,
    /// whose hubs list only state keys.
    #[serde(default = "state_kind")]
    pub kind: String,
    pub public: String,
    /// `active`, `next` or `retired`.
    pub state: String,
    pub created_ms: u64,
    pub changed_ms: u64,
    /// For a `next` key: enrolled nodes that have accepted a state announcing it.
    pub confirmed: Vec<String>,
    /// For a `next` key: enrolled nodes that have not yet.
    pub waiting: Vec<String>,
}

/// One agent release (`shoal agent-release list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReleaseInfo {
    pub version: String,
    /// `x86_64`, `aarch64` or `armv7`.
    pub arch: String,
    /// The binary's SHA-256, 64 hex digits.
    pub sha256: String,
    pub size: u64,
    /// The id of the release key that signed it.
    pub key: String,
    pub created_ms: u64,
    /// The lowest version a node that has proven this release may be asked to run again,
    /// signed with the release (`--minimum`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<String>,
}

/// `POST /v1/agent-upgrades` (`shoal agent upgrade --to V [-l SELECTOR]`) and, without
/// `version`, `DELETE /v1/agent-upgrades` (`--cancel`). The rollout's settings are texts as
/// typed (`2`, `10%`, `5m`), checked by the hub; absent: the hub's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUpgradeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Labels a node must all have; empty: every node.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Nodes updated first, alone: a count or a percentage (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// Nodes updating at once after the canaries (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<String>,
    /// Failed nodes that halt the rollout (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<String>,
    /// How long a node has to be done once given the version (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// Every node at once: no canary, no waves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immediate: bool,
}

/// `POST /v1/agent-upgrades/pause`, `/resume` and `/undo`: the upgrade of exactly this
/// selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUpgradeAction {
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

/// One agent upgrade, with how it rolls out and where its rollout stands. The fields after
/// `created_ms` came with rollouts; a hub from before sends none of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUpgradeInfo {
    pub selector: BTreeMap<String, String>,
    pub version: String,
    pub created_ms: u64,
    #[serde(default)]
    pub canary: String,
    #[serde(default)]
    pub max_unavailable: String,
    #[serde(default)]
    pub failure_threshold: String,
    #[serde(default)]
    pub progress_deadline: String,
    /// The version `undo` goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// `progressing`, `complete` or `halted`.
    #[serde(default)]
    pub state: String,
    /// Failed nodes when it halted.
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub changed_ms: u64,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub immediate: bool,
}

/// Where one node is with its agent upgrade (`shoal agent status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentNodeInfo {
    pub node: String,
    pub arch: String,
    /// The version its agent runs (as its presence says).
    pub running: String,
    /// The version the upgrade that picks it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The selector of the upgrade that picks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// `none`, `updated`, `blocked`, `queued` (not given it yet), `waiting`, `downloading`,
    /// `switching` or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `GET /v1/agent-upgrades`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUpgradeStatus {
    pub upgrades: Vec<AgentUpgradeInfo>,
    pub nodes: Vec<AgentNodeInfo>,
}

/// The answer to `POST /v1/agent-releases?version=V` (the binary as the body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReleaseAdded {
    pub release: AgentReleaseInfo,
    /// False when the same binary was already released under this version.
    pub new: bool,
}

/// `POST /v1/keys/rotate`: start a rotation, or with `finish` end it now (nodes that have
/// not taken the next key must enroll again).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateRequest {
    #[serde(default)]
    pub finish: bool,
    /// Rotate the release key instead (one step: see `docs/security.md`). Added after 0.1.0.
    #[serde(default)]
    pub release: bool,
}

fn state_kind() -> String {
    "state".to_string()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRequest {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// The files of a Mosquitto configuration for the enrolled nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MosquittoConfig {
    pub conf: String,
    pub passwd: String,
    pub acl: String,
    /// The TLS listener's certificate chain and key (PEM), issued by the hub's CA; empty with
    /// `insecure`.
    #[serde(default)]
    pub cert_pem: String,
    #[serde(default)]
    pub key_pem: String,
}

/// What an enrollment token pins: the lower-case hex SHA-256 of the hub's CA certificate in
/// DER (64 digits, no separators). The hub puts it in every token; `shoal-agent enroll`
/// computes it from the CA the hub serves and sends nothing before the two agree.
pub fn ca_fingerprint(cert_der: &[u8]) -> String {
    crate::hex::sha256_hex(cert_der)
}

/// The first part of every token: the format's version.
pub const TOKEN_PREFIX: &str = "shoal1";

/// An enrollment token (`shoal1.NODE.SECRET.CA`, from `shoal node add`) taken apart: the
/// node it is for, its one-time secret and the SHA-256 of the hub's CA certificate. Nothing is
/// checked against the hub's store here; the hub and `shoal-agent enroll` both parse with it.
#[derive(Debug, PartialEq, Eq)]
pub struct EnrollToken<'a> {
    pub node: &'a str,
    pub secret: &'a str,
    pub ca_fingerprint: &'a str,
}

impl<'a> EnrollToken<'a> {
    /// Splits a token into its parts, refusing anything that is not one (pure).
    pub fn parse(text: &'a str) -> Result<EnrollToken<'a>, String> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [prefix, node, secret, ca] = parts[..] else {
            return Err(format!(
            "not an enrollment token: expected {TOKEN_PREFIX}.NODE.SECRET.CA (4 parts separated by dots), got {} part(s)",
            parts.len()
        ));
        };
        if prefix != TOKEN_PREFIX {
            return Err(format!(
                "not an enrollment token: it starts with `{}` instead of `{TOKEN_PREFIX}`",
                prefix.chars().take(16).collect::<String>()
            ));
        }
        check_dns_label(node).map_err(|e| format!("the token's node name is invalid: {e}"))?;
        if secret.len() < 32
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "the token's secret is malformed: copy the whole token `shoal node add` printed"
                    .into(),
            );
        }
        if ca.len() != 64 || !ca.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the token's CA fingerprint is malformed: copy the whole token `shoal node add` printed".into());
        }
        Ok(EnrollToken {
            node,
            secret,
            ca_fingerprint: ca,
        })
    }

    /// Whether `cert_der` is the CA certificate this token pins (hex of either case).
    pub fn pins(&self, cert_der: &[u8]) -> bool {
        self.ca_fingerprint
            .eq_ignore_ascii_case(&ca_fingerprint(cert_der))
    }
}

/// The first part of every claim token: the format's version.
pub const CLAIM_TOKEN_PREFIX: &str = "shoalc1";

/// A claim token (`shoalc1.ID.SECRET.CA`, from `shoal token create`) taken apart: the claim's
/// id, its secret and the SHA-256 of the hub's CA certificate. Pure, like [`EnrollToken`].
#[derive(Debug, PartialEq, Eq)]
pub struct ClaimToken<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub ca_fingerprint: &'a str,
}

/// Either kind of token a device enrolls with.
#[derive(Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// For one named node (`shoal node add`), once.
    Node(EnrollToken<'a>),
    /// For a batch of devices (`shoal token create`), each its own node.
    Claim(ClaimToken<'a>),
}

impl<'a> Token<'a> {
    /// Tells the two kinds apart by their first part and takes the token apart (pure).
    pub fn parse(text: &'a str) -> Result<Token<'a>, String> {
        let text = text.trim();
        if text.split('.').next() == Some(CLAIM_TOKEN_PREFIX) {
            ClaimToken::parse(text).map(Token::Claim)
        } else {
            EnrollToken::parse(text).map(Token::Node)
        }
    }

    /// The SHA-256 of the hub's CA certificate the token pins, as written.
    pub fn ca_fingerprint(&self) -> &'a str {
        match self {
            Token::Node(token) => token.ca_fingerprint,
            Token::Claim(token) => token.ca_fingerprint,
        }
    }

    /// Whether `cert_der` is the CA certificate this token pins (hex of either case).
    pub fn pins(&self, cert_der: &[u8]) -> bool {
        self.ca_fingerprint()
            .eq_ignore_ascii_case(&ca_fingerprint(cert_der))
    }
}

impl<'a> ClaimToken<'a> {
    /// Splits a claim token into its parts, refusing anything that is not one (pure).
    pub fn parse(text: &'a str) -> Result<ClaimToken<'a>, String> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [prefix, id, secret, ca] = parts[..] else {
            return Err(format!(
                "not a claim token: expected {CLAIM_TOKEN_PREFIX}.ID.SECRET.CA (4 parts separated by dots), got {} part(s)",
                parts.len()
            ));
        };
        if prefix != CLAIM_TOKEN_PREFIX {
            return Err(format!(
                "not a claim token: it starts with `{}` instead of `{CLAIM_TOKEN_PREFIX}`",
                prefix.chars().take(16).collect::<String>()
            ));
        }
        check_claim_id(id)?;
        if secret.len() < 32
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "the claim token's secret is malformed: copy the whole token `shoal token create` printed"
                    .into(),
            );
        }
        if ca.len() != 64 || !ca.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the claim token's CA fingerprint is malformed: copy the whole token `shoal token create` printed".into());
        }
        Ok(ClaimToken {
            id,
            secret,
            ca_fingerprint: ca,
        })
    }
}

/// A claim's id: 4 to 32 lower-case letters and digits.
pub fn check_claim_id(id: &str) -> Result<(), String> {
    if (4..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a claim token id (4 to 32 lower-case letters and digits; `shoal token list` shows them)",
            id.chars().take(40).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_tokens_and_node_tokens_are_told_apart_by_their_first_part() {
        let ca = "ab".repeat(32);
        let secret = "A".repeat(43);
        let claim = format!("shoalc1.k3x9q2ab.{secret}.{ca}");
        assert_eq!(
            Token::parse(&claim),
            Ok(Token::Claim(ClaimToken {
                id: "k3x9q2ab",
                secret: &secret,
                ca_fingerprint: &ca
            }))
        );
        let node = format!("shoal1.gw-1.{secret}.{ca}");
        assert!(matches!(Token::parse(&node), Ok(Token::Node(_))));
        let rows = [
            (format!("shoalc1.k3x9q2ab.{secret}"), "4 parts"),
            (format!("shoalc1.K3X.{secret}.{ca}"), "not a claim token id"),
            (
                format!("shoalc1.k3x9q2ab.short.{ca}"),
                "secret is malformed",
            ),
            (format!("shoalc1.k3x9q2ab.{secret}.abc"), "CA fingerprint"),
            (format!("shoal9.gw-1.{secret}.{ca}"), "instead of `shoal1`"),
        ];
        for (token, expected) in rows {
            let error = Token::parse(&token).expect_err(&token);
            assert!(error.contains(expected), "{token}: {error}");
        }
    }

    /// What an agent of 0.1.0 sends still decodes (no `device`), and what today's agent sends
    /// with a per-node token is byte for byte what 0.1.0 sent, so an older hub reads it.
    #[test]
    fn enroll_requests_of_either_age_decode() {
        let old = r#"{"token":"shoal1.gw-1.s.c"}"#;
        let decoded: EnrollRequest = serde_json::from_str(old).expect("0.1.0's request");
        assert_eq!(decoded.device, None);
        assert_eq!(serde_json::to_string(&decoded).expect("encode"), old);
        let new = EnrollRequest {
            token: "shoalc1.id.s.c".into(),
            device: Some(DeviceIdentity {
                name: Some("pi".into()),
                mac: Some("dc:a6:32:00:00:01".into()),
                ..DeviceIdentity::default()
            }),
        };
        let text = serde_json::to_string(&new).expect("encode");
        assert_eq!(
            text,
            r#"{"token":"shoalc1.id.s.c","device":{"name":"pi","mac":"dc:a6:32:00:00:01"}}"#
        );
        assert_eq!(
            serde_json::from_str::<EnrollRequest>(&text).expect("decode"),
            new
        );
    }

    /// The JSON of 0.1.0, when `broker` and `hub` were plain strings: typing them changed
    /// no byte, and an answer whose url is not one is refused with the reason.
    #[test]
    fn enrollment_json_carries_the_urls_as_the_strings_they_were() {
        let answer = r#"{"node_name":"gw-1","password":"p","broker":"mqtts://[fd00::2]:8883","prefix":"shoal/v1","ca_pem":"PEM","signing_keys":["ed25519:00"]}"#;
        let decoded: EnrollResponse = serde_json::from_str(answer).expect("0.1.0's answer");
        assert_eq!(decoded.broker.to_string(), "mqtts://[fd00::2]:8883");
        assert_eq!(serde_json::to_string(&decoded).expect("encode"), answer);
        let enrollment =
            r#"{"name":"gw-1","token":"t","expires_ms":7,"hub":"https://hub.example:7440"}"#;
        let decoded: NodeEnrollment = serde_json::from_str(enrollment).expect("0.1.0's answer");
        assert_eq!(serde_json::to_string(&decoded).expect("encode"), enrollment);

        let bad = answer.replace("[fd00::2]:8883", "hub:+8883");
        let error = serde_json::from_str::<EnrollResponse>(&bad).expect_err("a bad port");
        assert!(
            error
                .to_string()
                .contains("`mqtts://hub:+8883` is not a broker url"),
            "{error}"
        );
    }

    #[test]
    fn a_token_pins_the_sha256_of_its_ca_certificate_in_either_case() {
        let der = b"not really a certificate, but bytes all the same";
        let pin = ca_fingerprint(der);
        assert_eq!(pin.len(), 64);
        assert_eq!(pin, crate::hex::sha256_hex(der));
        let secret = "A".repeat(43);
        for written in [pin.clone(), pin.to_ascii_uppercase()] {
            let text = format!("shoal1.gw-1.{secret}.{written}");
            let token = EnrollToken::parse(&text).expect("a valid token");
            assert!(token.pins(der), "{written}");
            assert!(!token.pins(b"another certificate"), "{written}");
        }
    }

    #[test]
    fn tokens_are_taken_apart_and_anything_else_is_refused_with_the_reason() {
        let ca = "ab".repeat(32);
        let secret = "A".repeat(43);
        let good = format!("shoal1.gw-1.{secret}.{ca}");
        assert_eq!(
            EnrollToken::parse(&good),
            Ok(EnrollToken {
                node: "gw-1",
                secret: &secret,
                ca_fingerprint: &ca
            })
        );
        let rows = [
            ("", "4 parts"),
            ("shoal1.gw-1", "4 parts"),
            (&format!("shoal2.gw-1.{secret}.{ca}"), "instead of `shoal1`"),
            (
                &format!("shoal1.GW_1.{secret}.{ca}"),
                "node name is invalid",
            ),
            (&format!("shoal1.gw-1.short.{ca}"), "secret is malformed"),
            (
                &format!("shoal1.gw-1.{secret}!.{ca}"),
                "secret is malformed",
            ),
            (
                &format!("shoal1.gw-1.{secret}.{}", &ca[..10]),
                "CA fingerprint",
            ),
            (&format!("shoal1.gw-1.{secret}.{ca}.extra"), "4 parts"),
        ];
        for (token, expected) in rows {
            let error = EnrollToken::parse(token).expect_err(token);
            assert!(error.contains(expected), "{token}: {error}");
        }
    }
}

/// `shoal rollout status W`: a workload's rollout and what each of its nodes was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutInfo {
    pub workload: String,
    /// The revision being rolled out.
    pub revision: u64,
    /// The revision healthy everywhere before it, where a rollback goes.
    pub stable: Option<u64>,
    /// `progressing`, `complete`, `halted` or `rolled-back`.
    pub state: String,
    /// The state in words, with its reason.
    pub reason: String,
    /// Failed nodes when it halted or rolled back.
    pub failed: u32,
    pub started_ms: u64,
    pub changed_ms: u64,
    /// The rollout settings in force: `canary`, `maxUnavailable`, `healthyFor`, `autoRollback`.
    /// A count (`1`) or a percentage (`10%`), as `max_unavailable`.
    pub canary: String,
    pub max_unavailable: String,
    pub healthy_for_ms: u64,
    pub auto_rollback: bool,
    pub nodes: Vec<RolloutNode>,
}

/// One node of a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutNode {
    pub node: String,
    /// The revision it was given.
    pub revision: u64,
    /// `updating`, `done`, or `failed: WHY`.
    pub outcome: String,
    /// When it was given the revision.
    pub since_ms: u64,
    /// Since when it reports the revision ready without a break.
    pub ready_since_ms: Option<u64>,
    /// When `outcome` last changed.
    pub outcome_ms: u64,
    pub online: bool,
}

/// One revision in `shoal rollout history W`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    pub revision: u64,
    pub created_ms: u64,
    /// How its rollout ended or stands (`progressing`, `complete`, `halted`, `rolled-back`);
    /// `None` for revisions from before rollouts, or replaced before the hub acted on them.
    pub state: Option<String>,
    pub failed: u32,
    /// Rolled out to every node at once (`shoal rollout undo`).
    pub immediate: bool,
    pub changed_ms: Option<u64>,
}
