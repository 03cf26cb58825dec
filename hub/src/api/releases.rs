//! Agent releases over the API (`shoal agent-release add|list|rm`): the hub checks that a
//! binary is a static agent for a known architecture (`shoal_model::release::inspect`),
//! signs what it is with its release key and stores both in one transaction.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use shoal_model::api::{AgentReleaseAdded, AgentReleaseInfo, Done};
use shoal_model::clock::wall_ms;
use shoal_model::elf::Arch;
use shoal_model::hex;
use shoal_model::release::{self, AgentRelease};
use shoal_model::wire::signing::KEY_ID_BYTES;

use super::{Answer, Failure};
use crate::context::Hub;
use crate::store::{ReleaseAdded, ReleaseError, StoredRelease};

/// `?version=V` of `POST /v1/agent-releases`.
#[derive(Debug, Deserialize)]
pub struct AddQuery {
    version: String,
    /// The release's minimum (`--minimum M`), signed with it.
    minimum: Option<String>,
}

/// `?arch=A` of `DELETE /v1/agent-releases/{version}`.
#[derive(Debug, Deserialize)]
pub struct RemoveQuery {
    arch: Option<String>,
}

fn info(stored: &StoredRelease) -> AgentReleaseInfo {
    let key = stored
        .signature
        .get(..KEY_ID_BYTES)
        .map(hex::encode)
        .unwrap_or_default();
    AgentReleaseInfo {
        version: stored.release.version.to_string(),
        arch: stored.release.arch.as_str().to_string(),
        sha256: hex::encode(&stored.release.sha256),
        size: stored.release.size,
        key,
        created_ms: stored.created_ms,
        minimum: stored.release.minimum.as_ref().map(ToString::to_string),
    }
}

/// `POST /v1/agent-releases?version=V`, the binary as the body.
pub async fn add(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<AddQuery>,
    body: Bytes,
) -> Answer<AgentReleaseAdded> {
    let version =
        release::parse_version(&query.version).map_err(|e| Failure::bad_request(e.to_string()))?;
    let minimum = query
        .minimum
        .as_deref()
        .map(release::parse_version)
        .transpose()
        .map_err(|e| Failure::bad_request(format!("--minimum: {e}")))?;
    let release = AgentRelease::of(version, &body)
        .and_then(|r| r.with_minimum(minimum))
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    // The version given must be the one the binary reports itself as, or a node that took
    // it would see itself still behind and fetch it again.
    release::check_marked(&body, &release.version)
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    let now = wall_ms();
    let added = hub
        .store
        .add_agent_release(&release, &body, now)
        .map_err(|e| match e {
            ReleaseError::Conflict { .. } | ReleaseError::MinimumConflict { .. } => {
                Failure::new(StatusCode::CONFLICT, e.to_string())
            }
            ReleaseError::Store(e) => Failure::from(e),
        })?;
    let stored = hub
        .store
        .agent_releases()?
        .into_iter()
        .find(|s| s.release.version == release.version && s.release.arch == release.arch)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the release just stored cannot be read back",
            )
        })?;
    tracing::info!(
        version = %release.version,
        arch = release.arch.as_str(),
        sha256 = hex::encode(&release.sha256),
        size = release.size,
        minimum = ?release.minimum.as_ref().map(ToString::to_string),
        new = added == ReleaseAdded::New,
        "agent release added"
    );
    Ok(Json(AgentReleaseAdded {
        release: info(&stored),
        new: added == ReleaseAdded::New,
    }))
}

/// `GET /v1/agent-releases`.
pub async fn list(State(hub): State<Arc<Hub>>) -> Answer<Vec<AgentReleaseInfo>> {
    Ok(Json(hub.store.agent_releases()?.iter().map(info).collect()))
}

/// `DELETE /v1/agent-releases/{version}[?arch=A]`.
pub async fn remove(
    State(hub): State<Arc<Hub>>,
    UrlPath(version): UrlPath<String>,
    Query(query): Query<RemoveQuery>,
) -> Answer<Done> {
    let version =
        release::parse_version(&version).map_err(|e| Failure::bad_request(e.to_string()))?;
    let arch = query
        .arch
        .as_deref()
        .map(Arch::parse)
        .transpose()
        .map_err(Failure::bad_request)?;
    let which = match arch {
        Some(arch) => format!("agent {version} for {}", arch.as_str()),
        None => format!("agent {version}"),
    };
    match hub.store.remove_agent_release(&version, arch)? {
        0 => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no release of {which} (`shoal agent-release list` shows them)"),
        )),
        n => {
            tracing::info!(%version, removed = n, "agent release removed");
            Ok(Json(Done {
                message: format!(
                    "{which} removed ({n} release{})",
                    if n == 1 { "" } else { "s" }
                ),
            }))
        }
    }
}
