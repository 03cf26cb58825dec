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
    AgentNodeInfo, AgentUpgradeInfo, AgentUpgradeRequest, AgentUpgradeStatus, Done,
};
use shoal_model::clock::wall_ms;
use shoal_model::hex;
use shoal_model::release;

use super::{Answer, Failure};
use crate::context::Hub;
use crate::control::agent::{self, AgentFleet};
use crate::store::UpgradeError;

/// How much of a binary one read from the database takes.
const CHUNK: usize = 256 << 10;

fn selector_text(selector: &BTreeMap<String, String>) -> String {
    if selector.is_empty() {
        "every node".to_string()
    } else {
        let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("the nodes with {}", pairs.join(","))
    }
}

/// `POST /v1/agent-upgrades`: the nodes the selector picks should run `version`.
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
    hub.store
        .set_agent_upgrade(&request.selector, &version, wall_ms())
        .map_err(|e| match e {
            UpgradeError::NotReleased { .. } => Failure::new(StatusCode::NOT_FOUND, e.to_string()),
            UpgradeError::Store(e) => Failure::from(e),
        })?;
    let who = selector_text(&request.selector);
    tracing::info!(%version, selector = ?request.selector, "agent upgrade set");
    hub.wake.changed();
    Ok(Json(Done {
        message: format!(
            "{who} should run agent {version}: each downloads it, tries it on probation and keeps it if it proves itself (`shoal agent status` follows them)"
        ),
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

/// `GET /v1/agent-upgrades`: the upgrades, and where every node is.
pub async fn status(State(hub): State<Arc<Hub>>) -> Answer<AgentUpgradeStatus> {
    let fleet = AgentFleet {
        upgrades: hub.store.agent_upgrades()?,
        releases: hub.store.agent_releases()?,
        trust: None,
        source: None,
    };
    let statuses = hub.store.statuses()?;
    let mut nodes = Vec::new();
    for node in hub.store.nodes()? {
        let facts = node.effective_facts();
        let upgrade = agent::upgrade_for(&fleet.upgrades, &facts.labels);
        let reads_v3 = shoal_model::wire::version_for(node.wire_versions()).is_some_and(|v| v >= 3);
        let progress = agent::progress(
            &fleet,
            upgrade,
            &facts.agent_version,
            reads_v3,
            &facts.arch,
            statuses.get(&node.name),
        );
        nodes.push(AgentNodeInfo {
            node: node.name.clone(),
            arch: facts.arch.clone(),
            running: facts.agent_version.clone(),
            target: upgrade.map(|u| u.version.to_string()),
            state: progress.as_str().to_string(),
            detail: progress.detail(),
        });
    }
    Ok(Json(AgentUpgradeStatus {
        upgrades: fleet
            .upgrades
            .iter()
            .map(|u| AgentUpgradeInfo {
                selector: u.selector.clone(),
                version: u.version.to_string(),
                created_ms: u.created_ms,
            })
            .collect(),
        nodes,
    }))
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
