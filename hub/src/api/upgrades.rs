//! Agent upgrades over the API (`shoal agent upgrade|status`), and the download of agent
//! binaries by the nodes themselves.
//!
//! `GET /v1/agent-binaries/{sha256}` takes no bearer token: a node authenticates with HTTP
//! Basic, its name and its MQTT password (checked like the broker checks them), and may ask
//! for the rest of a binary from a byte on (`Range: bytes=N-`), so a download cut by a bad
//! link resumes instead of starting again. The body is streamed from the database in chunks.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use base64::Engine as _;
use shoal_model::api::{
    AgentNodeInfo, AgentUpgradeAction, AgentUpgradeInfo, AgentUpgradeRequest, AgentUpgradeStatus,
    Done,
};
use shoal_model::clock::wall_ms;
use shoal_model::hex;
use shoal_model::quantity::{format_duration, parse_duration, Amount};
use shoal_model::release;

use super::{Answer, Failure};
use crate::context::Hub;
use crate::control::agent::selector_text;
use crate::control::agent::{self, AgentFleet, AgentNode, AgentUpgrade, Strategy};
use crate::control::rollout::State as RolloutState;
use crate::store::{UpgradeError, UpgradeRequest};

/// How much of a binary one read from the database takes.
const CHUNK: usize = 256 << 10;

/// `POST /v1/agent-upgrades`: the nodes the selector picks should run `version`, rolled out
/// over them with the request's settings.
pub async fn set(
    State(hub): State<Arc<Hub>>,
    Json(request): Json<AgentUpgradeRequest>,
) -> Answer<Done> {
    let Some(text) = request.version.as_deref() else {
        return Err(Failure::bad_request(
            "say which version: `shoal agent upgrade --to VERSION`",
        ));
    };
    check_selector(&request.selector)?;
    let version = release::parse_version(text).map_err(|e| Failure::bad_request(e.to_string()))?;
    let strategy = strategy(&request)?;
    hub.store
        .set_agent_upgrade(
            &UpgradeRequest {
                selector: &request.selector,
                version: &version,
                strategy,
                immediate: request.immediate,
            },
            wall_ms(),
        )
        .map_err(upgrade_failure)?;
    let who = selector_text(&request.selector);
    tracing::info!(%version, selector = ?request.selector, "agent upgrade set");
    hub.wake.changed();
    let how = if request.immediate {
        "all at once".to_string()
    } else {
        format!(
            "{} canary node(s) first, then waves of {}; {} failed node(s) halt it",
            strategy.canary, strategy.max_unavailable, strategy.failure_threshold
        )
    };
    Ok(Json(Done {
        message: format!(
            "{who} should run agent {version}, {how}: each downloads it, tries it on probation and keeps it if it proves itself (`shoal rollout status --agent` follows them)"
        ),
    }))
}

/// The rollout settings of `request`, checked; absent ones are the defaults.
fn strategy(request: &AgentUpgradeRequest) -> Result<Strategy, Failure> {
    let defaults = Strategy::default();
    let amount = |field: &str, text: Option<&String>, default: Amount| match text {
        None => Ok(default),
        Some(text) => {
            Amount::parse(text).map_err(|e| Failure::bad_request(format!("{field}: {e}")))
        }
    };
    let progress_deadline_ms = match request.progress_deadline.as_deref() {
        None => defaults.progress_deadline_ms,
        Some(text) => {
            let deadline = parse_duration(text)
                .map_err(|e| Failure::bad_request(format!("progress deadline: {e}")))?;
            if deadline < MIN_DEADLINE || deadline > MAX_DEADLINE {
                return Err(Failure::bad_request(format!(
                    "progress deadline: `{text}` is out of range: from {} to {} (a node's new agent has {} to prove itself)",
                    format_duration(MIN_DEADLINE),
                    format_duration(MAX_DEADLINE),
                    format_duration(MIN_DEADLINE)
                )));
            }
            u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)
        }
    };
    Ok(Strategy {
        canary: amount("canary", request.canary.as_ref(), defaults.canary)?,
        max_unavailable: amount(
            "max unavailable",
            request.max_unavailable.as_ref(),
            defaults.max_unavailable,
        )?,
        failure_threshold: amount(
            "failure threshold",
            request.failure_threshold.as_ref(),
            defaults.failure_threshold,
        )?,
        progress_deadline_ms,
    })
}

/// The shortest progress deadline: the launcher's default probation (up within 120 s,
/// stable for 60 s), or a good update would fail.
const MIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);
/// The longest: a week.
const MAX_DEADLINE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

fn upgrade_failure(e: UpgradeError) -> Failure {
    match e {
        UpgradeError::NotReleased { .. } | UpgradeError::NoUpgrade(_) => {
            Failure::new(StatusCode::NOT_FOUND, e.to_string())
        }
        UpgradeError::NothingToUndo { .. } => Failure::new(StatusCode::CONFLICT, e.to_string()),
        UpgradeError::Store(e) => Failure::from(e),
    }
}

/// `POST /v1/agent-upgrades/pause`.
pub async fn pause(
    State(hub): State<Arc<Hub>>,
    Json(action): Json<AgentUpgradeAction>,
) -> Answer<Done> {
    pause_or_resume(&hub, &action, true)
}

/// `POST /v1/agent-upgrades/resume`.
pub async fn resume(
    State(hub): State<Arc<Hub>>,
    Json(action): Json<AgentUpgradeAction>,
) -> Answer<Done> {
    pause_or_resume(&hub, &action, false)
}

fn pause_or_resume(hub: &Hub, action: &AgentUpgradeAction, paused: bool) -> Answer<Done> {
    check_selector(&action.selector)?;
    let who = selector_text(&action.selector);
    let changed = hub
        .store
        .pause_agent_upgrade(&action.selector, paused, &who)
        .map_err(upgrade_failure)?;
    hub.wake.changed();
    let message = match (changed, paused) {
        (false, true) => format!("the agent upgrade for {who} was paused already"),
        (false, false) => format!("the agent upgrade for {who} was not paused"),
        (true, true) => format!(
            "the agent upgrade for {who} is paused: no node is given it until `shoal rollout resume --agent`; nodes updating finish"
        ),
        (true, false) => format!("the agent upgrade for {who} goes on"),
    };
    Ok(Json(Done { message }))
}

/// `POST /v1/agent-upgrades/undo`: back to the version its nodes ran, every node at once.
pub async fn undo(
    State(hub): State<Arc<Hub>>,
    Json(action): Json<AgentUpgradeAction>,
) -> Answer<Done> {
    check_selector(&action.selector)?;
    let who = selector_text(&action.selector);
    let back = hub
        .store
        .undo_agent_upgrade(&action.selector, &who, wall_ms())
        .map_err(upgrade_failure)?;
    tracing::info!(version = %back, selector = ?action.selector, "agent upgrade undone");
    hub.wake.changed();
    Ok(Json(Done {
        message: format!("{who} go back to agent {back}, every node at once"),
    }))
}

/// `?selector=k=v,k2=v2` of `DELETE /v1/agent-upgrades` (absent: the fleet-wide upgrade).
#[derive(Debug, serde::Deserialize)]
pub struct CancelQuery {
    selector: Option<String>,
}

/// `DELETE /v1/agent-upgrades[?selector=…]`: the upgrade of exactly that selector is
/// cancelled (nodes that switched already keep what they run).
pub async fn cancel(State(hub): State<Arc<Hub>>, Query(query): Query<CancelQuery>) -> Answer<Done> {
    let selector = match query.selector.as_deref().filter(|s| !s.is_empty()) {
        None => BTreeMap::new(),
        Some(text) => crate::cli::node::parse_label_set(text)
            .map_err(|e| Failure::bad_request(e.replace("--labels", "selector")))?,
    };
    check_selector(&selector)?;
    let who = selector_text(&selector);
    if !hub.store.cancel_agent_upgrade(&selector)? {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no agent upgrade for {who} (`shoal agent status` lists them)"),
        ));
    }
    hub.wake.changed();
    Ok(Json(Done {
        message: format!(
            "the agent upgrade for {who} is cancelled; nodes keep the agent they run now"
        ),
    }))
}

fn check_selector(selector: &BTreeMap<String, String>) -> Result<(), Failure> {
    for (key, value) in selector {
        shoal_model::manifest::names::check_label_key(key)
            .and_then(|()| shoal_model::manifest::names::check_label_value(value))
            .map_err(|e| Failure::bad_request(format!("selector: {e}")))?;
    }
    Ok(())
}

/// `GET /v1/agent-upgrades`: the upgrades with their rollouts, and where every node is.
pub async fn status(State(hub): State<Arc<Hub>>) -> Answer<AgentUpgradeStatus> {
    let fleet = AgentFleet {
        upgrades: hub.store.agent_upgrades()?,
        releases: hub.store.agent_releases()?,
        trust: None,
        source: None,
        assigned: hub.store.agent_assigned()?,
    };
    let statuses = hub.store.statuses()?;
    let mut nodes = Vec::new();
    for node in hub.store.nodes()? {
        let facts = node.effective_facts();
        let upgrade = agent::upgrade_for(&fleet.upgrades, &facts.labels);
        let view = AgentNode {
            name: &node.name,
            labels: &facts.labels,
            arch: &facts.arch,
            running: &facts.agent_version,
            reads_v3: shoal_model::wire::version_for(node.wire_versions()).is_some_and(|v| v >= 3),
            online: node.online,
            last_seen_ms: node.last_seen_ms,
            status: statuses.get(&node.name),
        };
        let progress = agent::progress(&fleet, upgrade, &view);
        nodes.push(AgentNodeInfo {
            node: node.name.clone(),
            arch: facts.arch.clone(),
            running: facts.agent_version.clone(),
            target: upgrade.map(|u| u.version.to_string()),
            selector: upgrade.map(|u| u.selector.clone()),
            state: progress.as_str().to_string(),
            detail: progress.detail(),
        });
    }
    Ok(Json(AgentUpgradeStatus {
        upgrades: fleet.upgrades.iter().map(info).collect(),
        nodes,
    }))
}

fn info(u: &AgentUpgrade) -> AgentUpgradeInfo {
    let (state, failed) = match u.rollout.state {
        RolloutState::Progressing => ("progressing", 0),
        RolloutState::Complete => ("complete", 0),
        RolloutState::Halted { failed } | RolloutState::RolledBack { failed, .. } => {
            ("halted", failed)
        }
    };
    AgentUpgradeInfo {
        selector: u.selector.clone(),
        version: u.version.to_string(),
        created_ms: u.created_ms,
        canary: u.strategy.canary.to_string(),
        max_unavailable: u.strategy.max_unavailable.to_string(),
        failure_threshold: u.strategy.failure_threshold.to_string(),
        progress_deadline: format_duration(std::time::Duration::from_millis(
            u.strategy.progress_deadline_ms,
        )),
        previous: u.previous.as_ref().map(ToString::to_string),
        state: state.to_string(),
        failed,
        changed_ms: u.rollout.changed_ms,
        paused: u.rollout.paused,
        immediate: u.rollout.immediate,
    }
}

/// `GET /v1/agent-binaries/{sha256}`, for nodes (see the module doc).
pub async fn download(
    State(hub): State<Arc<Hub>>,
    UrlPath(digest): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let node = authenticate(&hub, &headers).await?;
    let sha256: [u8; 32] = hex::decode(&digest)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Failure::bad_request("the binary's name is its sha256: 64 hex digits"))?;
    let from = match headers.get(header::RANGE) {
        None => 0,
        Some(range) => range
            .to_str()
            .ok()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "only `Range: bytes=N-` is served",
                )
            })?,
    };
    let store = Arc::clone(&hub.store);
    let first = tokio::task::spawn_blocking(move || store.agent_binary_range(&sha256, from, CHUNK))
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let Some((total, chunk)) = first else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no agent release has the binary {digest}"),
        ));
    };
    if from > total {
        return Err(Failure::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("the binary has {total} bytes; the range starts at {from}"),
        ));
    }
    tracing::info!(node, sha256 = digest, from, total, "agent binary download");
    let store = Arc::clone(&hub.store);
    let after = from + u64::try_from(chunk.len()).unwrap_or(0);
    let rest = futures_util::stream::unfold(after, move |at| {
        let store = Arc::clone(&store);
        async move {
            if at >= total {
                return None;
            }
            let read =
                tokio::task::spawn_blocking(move || store.agent_binary_range(&sha256, at, CHUNK))
                    .await;
            match read {
                Ok(Ok(Some((_, bytes)))) if !bytes.is_empty() => {
                    let next = at + u64::try_from(bytes.len()).unwrap_or(0);
                    Some((Ok::<_, std::io::Error>(bytes), next))
                }
                // Removed meanwhile, or unreadable: the body ends short, and the node's
                // length check sees it.
                _ => Some((
                    Err(std::io::Error::other("the binary cannot be read")),
                    total,
                )),
            }
        }
    });
    let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(chunk) });
    let body = futures_util::StreamExt::chain(first, rest);
    let length = total - from;
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT_RANGES, "bytes");
    response = if from > 0 {
        response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {from}-{}/{total}", total.saturating_sub(1)),
        )
    } else {
        response.status(StatusCode::OK)
    };
    response
        .body(Body::from_stream(body))
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The node of an `Authorization: Basic` header whose password is the node's.
async fn authenticate(hub: &Hub, headers: &HeaderMap) -> Result<String, Failure> {
    let denied = || {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            "agent binaries are for enrolled nodes: authenticate with the node's name and MQTT password",
        )
    };
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .and_then(|v| String::from_utf8(v).ok());
    let Some((node, password)) = credentials
        .as_deref()
        .and_then(|c| c.split_once(':'))
        .map(|(n, p)| (n.to_string(), p.to_string()))
    else {
        return Err(denied());
    };
    let store = Arc::clone(&hub.store);
    let name = node.clone();
    let verified = tokio::task::spawn_blocking(move || {
        shoal_model::topic::NodeId::new(&name).is_ok()
            && store
                .password_hash(&name)
                .ok()
                .flatten()
                .is_some_and(|hash| crate::broker::password::verify(&password, &hash))
    })
    .await
    .unwrap_or(false);
    if verified {
        Ok(node)
    } else {
        Err(denied())
    }
}
