//! Claim tokens over the API: `shoal token create|list|revoke`, and `POST /v1/enroll` with a
//! claim token (`shoalc1.ID.SECRET.CA`), which enrolls one more device of a batch as its own
//! node.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use shoal_model::api::{
    check_claim_id, ClaimCreateRequest, ClaimCreated, ClaimInfo, ClaimToken, DeviceIdentity, Done,
    CLAIM_TOKEN_PREFIX, DEFAULT_NAME_TEMPLATE, DEFAULT_TOKEN_TTL_S, MAX_CLAIM_USES,
    MAX_TOKEN_TTL_S,
};
use shoal_model::clock::wall_ms;

use super::enroll::secret_hash;
use super::{check_labels, Answer, Failure};
use crate::broker::password;
use crate::claim::NameTemplate;
use crate::context::Hub;
use crate::store::{ClaimError, StoredClaim};

/// Letters of a claim id: lower-case, no look-alikes (`0`/`o`, `1`/`l`).
const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A fresh claim id: 10 characters, 50 bits (the secret is the credential; the id only
/// names the token).
fn new_id() -> String {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes
        .iter()
        .map(|b| char::from(ID_ALPHABET[usize::from(*b) % ID_ALPHABET.len()]))
        .collect()
}

fn info(hub: &Hub, claim: StoredClaim, now_ms: u64) -> ClaimInfo {
    ClaimInfo {
        state: claim.state(now_ms).to_string(),
        id: claim.id,
        uses: claim.uses,
        used: claim.used,
        labels: claim.labels,
        name_template: claim.name_template,
        created_ms: claim.created_ms,
        expires_ms: claim.expires_ms,
        revoked_ms: claim.revoked_ms,
        nodes: claim.nodes,
        hub: hub.advertised_api.clone(),
        ca_fingerprint: hub.ca.fingerprint().to_string(),
    }
}

/// `POST /v1/tokens`.
pub async fn create(
    State(hub): State<Arc<Hub>>,
    Json(request): Json<ClaimCreateRequest>,
) -> Answer<ClaimCreated> {
    if !(1..=MAX_CLAIM_USES).contains(&request.uses) {
        return Err(Failure::bad_request(format!(
            "a claim token enrolls from 1 to {MAX_CLAIM_USES} devices, not {}",
            request.uses
        )));
    }
    check_labels(&request.labels)?;
    let ttl_s = request.ttl_s.unwrap_or(DEFAULT_TOKEN_TTL_S);
    if !(1..=MAX_TOKEN_TTL_S).contains(&ttl_s) {
        return Err(Failure::bad_request(format!(
            "a token may work from 1 s to {} days, not {ttl_s} s",
            MAX_TOKEN_TTL_S / 86_400
        )));
    }
    let template = NameTemplate::parse(
        request
            .name_template
            .as_deref()
            .unwrap_or(DEFAULT_NAME_TEMPLATE),
    )
    .map_err(Failure::bad_request)?
    .to_string();
    let now = wall_ms();
    let expires_ms = now.saturating_add(ttl_s * 1000);
    let id = new_id();
    let secret = password::generate();
    hub.store.create_claim(
        &id,
        &secret_hash(&secret),
        &request.labels,
        &template,
        request.uses,
        expires_ms,
        now,
    )?;
    tracing::info!(claim = id, uses = request.uses, ttl_s, "claim token issued");
    let claim = hub
        .store
        .claims()?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the claim token just stored cannot be read back",
            )
        })?;
    Ok(Json(ClaimCreated {
        token: format!(
            "{CLAIM_TOKEN_PREFIX}.{id}.{secret}.{}",
            hub.ca.fingerprint()
        ),
        claim: info(&hub, claim, now),
    }))
}

/// `GET /v1/tokens`.
pub async fn list(State(hub): State<Arc<Hub>>) -> Answer<Vec<ClaimInfo>> {
    let now = wall_ms();
    Ok(Json(
        hub.store
            .claims()?
            .into_iter()
            .map(|claim| info(&hub, claim, now))
            .collect(),
    ))
}

/// `DELETE /v1/tokens/{id}`.
pub async fn revoke(State(hub): State<Arc<Hub>>, UrlPath(id): UrlPath<String>) -> Answer<Done> {
    check_claim_id(&id).map_err(Failure::bad_request)?;
    let message = match hub.store.revoke_claim(&id, wall_ms())? {
        None => {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no claim token `{id}` (`shoal token list` shows them)"),
            ))
        }
        Some(false) => format!("claim token `{id}` was revoked already"),
        Some(true) => format!(
            "claim token `{id}` revoked: it enrolls no more devices; the nodes it enrolled keep working (`shoal node remove` removes one)"
        ),
    };
    tracing::info!(claim = id, "claim token revoked");
    Ok(Json(Done { message }))
}

/// Enrolls one device with a claim token; returns the node name it got and its password.
pub async fn enroll(
    hub: &Hub,
    token: &ClaimToken<'_>,
    device: Option<DeviceIdentity>,
) -> Result<(String, String), Failure> {
    let device = device.unwrap_or_default();
    let id = token.id.to_string();
    let secret = secret_hash(token.secret);
    let password = password::generate();
    let hashed = password::hash(&password);
    let store = Arc::clone(&hub.store);
    let outcome = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            store.enroll_claim(
                &id,
                &secret,
                |template| NameTemplate::parse(template)?.render(&device),
                &hashed,
                wall_ms(),
            )
        })
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    match outcome {
        Ok(node) => {
            tracing::info!(claim = id, node, "device enrolled with a claim token");
            Ok((node, password))
        }
        Err(ClaimError::Store(error)) => Err(error.into()),
        Err(refused) => {
            tracing::warn!(claim = id, "claim enrollment refused: {refused}");
            let status = match refused {
                ClaimError::Naming { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::FORBIDDEN,
            };
            Err(Failure::new(status, refused.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_ids_are_what_tokens_accept() {
        for _ in 0..100 {
            let id = new_id();
            assert_eq!(check_claim_id(&id), Ok(()), "{id}");
        }
        assert_ne!(new_id(), new_id());
    }
}
