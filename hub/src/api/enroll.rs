//! Node identity over the API: `shoal node add` (a one-time token), the device's
//! `POST /v1/enroll`, `shoal node remove`, and the hub's signing keys (`shoal key`).
//!
//! An enrollment token is `shoal1.NODE.SECRET.CA`: the node it is for, 256 random bits (the
//! hub keeps only their SHA-256), and the SHA-256 of the hub's CA certificate. The device
//! fetches the CA, checks it against the token, and sends the secret only over TLS verified
//! with that CA. Enrolling gives the node a fresh 256-bit MQTT password (the hub keeps its
//! PBKDF2 hash), the broker URL, the CA and the hub's signing keys. Claim tokens, which
//! enroll a batch of devices, are `claims.rs`'s; `POST /v1/enroll` takes both.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Json;
use shoal_model::api::{
    Done, EnrollRequest, EnrollResponse, EnrollToken, KeyInfo, NodeAddRequest, NodeEnrollment,
    RotateRequest, Token, DEFAULT_TOKEN_TTL_S, MAX_TOKEN_TTL_S, TOKEN_PREFIX,
};
use shoal_model::clock::wall_ms;
use shoal_model::manifest::names::check_dns_label;
use shoal_model::topic::NodeId;
use shoal_model::wire::signing::SigningKey;

use super::{check_labels, Answer, Failure};
use crate::broker::password;
use crate::context::Hub;
use crate::control::{self, Fleet, Rotation};
use crate::store::{self, EnrollError, KeyState};

/// The SHA-256 of a token secret, as stored.
pub fn secret_hash(secret: &str) -> String {
    shoal_model::hex::sha256_hex(secret.as_bytes())
}

/// `POST /v1/nodes`: registers the node if it is new and issues its token.
pub async fn add_node(
    State(hub): State<Arc<Hub>>,
    Json(request): Json<NodeAddRequest>,
) -> Answer<NodeEnrollment> {
    check_dns_label(&request.name).map_err(|reason| {
        Failure::bad_request(format!(
            "`{}` cannot be a node name: {reason}",
            request.name
        ))
    })?;
    check_labels(&request.labels)?;
    let ttl_s = request.ttl_s.unwrap_or(DEFAULT_TOKEN_TTL_S);
    if !(1..=MAX_TOKEN_TTL_S).contains(&ttl_s) {
        return Err(Failure::bad_request(format!(
            "a token may work from 1 s to {} days, not {ttl_s} s",
            MAX_TOKEN_TTL_S / 86_400
        )));
    }
    let now = wall_ms();
    let expires_ms = now.saturating_add(ttl_s * 1000);
    let secret = password::generate();
    hub.store.issue_token(
        &request.name,
        &request.labels,
        &secret_hash(&secret),
        expires_ms,
        now,
    )?;
    tracing::info!(node = request.name, ttl_s, "enrollment token issued");
    hub.wake.changed();
    Ok(Json(NodeEnrollment {
        token: format!(
            "{TOKEN_PREFIX}.{}.{secret}.{}",
            request.name,
            hub.ca.fingerprint()
        ),
        name: request.name,
        expires_ms,
        hub: hub.advertised_api.clone(),
    }))
}

/// `GET /v1/ca`: the CA certificate, for devices to check against their token.
pub async fn ca(State(hub): State<Arc<Hub>>) -> String {
    hub.ca.cert_pem().to_string()
}

/// `POST /v1/enroll`: the token is the credential: a per-node token (`shoal node add`), or
/// a claim token (`shoal token create`) that enrolls one more device of a batch.
pub async fn enroll(
    State(hub): State<Arc<Hub>>,
    Json(request): Json<EnrollRequest>,
) -> Answer<EnrollResponse> {
    let token = Token::parse(&request.token).map_err(Failure::bad_request)?;
    if !token
        .ca_fingerprint()
        .eq_ignore_ascii_case(hub.ca.fingerprint())
    {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "this token was issued by another hub (its CA fingerprint is not this hub's)",
        ));
    }
    let (node, password) = match token {
        Token::Node(token) => (token.node.to_string(), enroll_node(&hub, &token).await?),
        Token::Claim(token) => super::claims::enroll(&hub, &token, request.device).await?,
    };
    // A device that enrolls again (wiped, replaced) takes over: the old credentials are gone,
    // so the old session goes too.
    if let Some(broker) = &hub.embedded {
        broker.disconnect(&node).await;
    }
    let keys = store::key_ring(&hub.store.signing_keys()?)?
        .map(|(_, announced)| announced)
        .unwrap_or_default();
    tracing::info!(node, "node enrolled");
    // Paced like a report: a batch of devices enrolling with one claim token is a herd.
    hub.wake.reported();
    Ok(Json(EnrollResponse {
        node_name: node,
        password,
        broker: hub.advertised.clone(),
        prefix: hub.topics.prefix().to_string(),
        ca_pem: hub.ca.cert_pem().to_string(),
        signing_keys: keys.iter().map(ToString::to_string).collect(),
        release_keys: hub
            .store
            .release_public_keys()?
            .iter()
            .map(ToString::to_string)
            .collect(),
    }))
}

/// Takes a per-node token; returns the node's new password.
async fn enroll_node(hub: &Hub, token: &EnrollToken<'_>) -> Result<String, Failure> {
    let node = token.node.to_string();
    let secret = secret_hash(token.secret);
    let password = password::generate();
    let hashed = password::hash(&password);
    let store = Arc::clone(&hub.store);
    let outcome = {
        let node = node.clone();
        tokio::task::spawn_blocking(move || store.enroll(&node, &secret, &hashed, wall_ms()))
            .await
            .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    match outcome {
        Ok(()) => Ok(password),
        Err(EnrollError::Store(error)) => Err(error.into()),
        Err(refused) => {
            tracing::warn!(node, "enrollment refused: {refused}");
            Err(Failure::new(StatusCode::FORBIDDEN, refused.to_string()))
        }
    }
}

/// `DELETE /v1/nodes/{name}`: revokes the node's credentials and closes its session at once;
/// its workloads are placed elsewhere and its retained desired state is cleared.
pub async fn remove_node(
    State(hub): State<Arc<Hub>>,
    UrlPath(name): UrlPath<String>,
) -> Answer<Done> {
    if !hub.store.remove_node(&name)? {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no node `{name}` (`shoal get nodes` lists them)"),
        ));
    }
    let mut message = format!("node `{name}` removed: its credentials no longer work");
    match &hub.embedded {
        Some(broker) => {
            if broker.disconnect(&name).await {
                message.push_str(" and its connection was closed");
            }
        }
        None => message.push_str(
            "; an external broker keeps its own copy of the passwords: run `shoal broker-config` again and reload the broker",
        ),
    }
    if let Ok(node) = NodeId::new(name.clone()) {
        // An empty retained message clears the retained desired state.
        let topic = hub.topics.desired(&node);
        if let Err(error) = hub
            .client
            .publish(topic, rumqttc::QoS::AtLeastOnce, true, Vec::new())
            .await
        {
            tracing::warn!(node = name, %error, "cannot clear the removed node's desired state");
        }
    }
    tracing::info!(node = name, "node removed");
    hub.wake.changed();
    Ok(Json(Done { message }))
}

/// `GET /v1/keys?kinds=`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct KeysQuery {
    /// `all`: release keys too (after the state keys). Absent: state keys only, as a 0.1.0
    /// hub answers, so a script written for one reads the same list.
    #[serde(default)]
    kinds: Option<String>,
}

/// `GET /v1/keys`.
pub async fn list_keys(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<KeysQuery>,
) -> Answer<Vec<KeyInfo>> {
    let all = match query.kinds.as_deref() {
        None | Some("state") => false,
        Some("all") => true,
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "kinds `{other}`: `all` or `state`"
            )))
        }
    };
    let mut keys = key_infos(&hub)?;
    if all {
        keys.extend(release_key_infos(&hub)?);
    }
    Ok(Json(keys))
}

/// `POST /v1/keys/rotate`.
pub async fn rotate(
    State(hub): State<Arc<Hub>>,
    Json(request): Json<RotateRequest>,
) -> Answer<Vec<KeyInfo>> {
    if request.release {
        return rotate_release(&hub, &request);
    }
    let keys = hub.store.signing_keys()?;
    let pending = keys.iter().find(|k| k.state == KeyState::Next);
    let now = wall_ms();
    match (request.finish, pending) {
        (true, None) => {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                "no rotation is under way: `shoal key rotate` starts one",
            ))
        }
        (true, Some(next)) => {
            hub.store.promote_next_key(now)?;
            tracing::warn!(key = next.id, "key rotation finished by hand");
        }
        (false, Some(next)) => {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                format!(
                    "a rotation to key {} is under way: it finishes when every node has the key (`shoal key list`), or now with `shoal key rotate --finish`",
                    next.id
                ),
            ))
        }
        (false, None) => {
            let (key, pkcs8) = SigningKey::generate()
                .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            hub.store
                .add_signing_key(key.public(), &pkcs8, KeyState::Next, now)?;
            tracing::info!(key = %key.public().id(), "key rotation started");
        }
    }
    hub.wake.changed();
    Ok(Json(key_infos(&hub)?))
}

/// A release-key rotation, in one step ([`store::Store::rotate_release_key`]): nothing
/// waits for the fleet, since the old key's bridge lets every node that trusts it take the
/// new one with its next target.
fn rotate_release(hub: &Hub, request: &RotateRequest) -> Answer<Vec<KeyInfo>> {
    if request.finish {
        return Err(Failure::bad_request(
            "a release-key rotation happens in one step: `shoal key rotate --release` alone",
        ));
    }
    let rotated = hub.store.rotate_release_key(wall_ms())?;
    tracing::warn!(
        retired = rotated.retired,
        active = rotated.active,
        releases = rotated.signed_again,
        "release key rotated: every release is signed again with the new key"
    );
    hub.wake.changed();
    let mut keys = key_infos(hub)?;
    keys.extend(release_key_infos(hub)?);
    Ok(Json(keys))
}

/// The release keys, newest first.
fn release_key_infos(hub: &Hub) -> Result<Vec<KeyInfo>, Failure> {
    Ok(hub
        .store
        .release_keys()?
        .into_iter()
        .map(|key| KeyInfo {
            id: key.id,
            kind: "release".to_string(),
            public: key.public.to_string(),
            state: key.state.as_str().to_string(),
            created_ms: key.created_ms,
            changed_ms: key.changed_ms,
            confirmed: Vec::new(),
            waiting: Vec::new(),
        })
        .collect())
}

/// Every key, newest first; the next key with the nodes that have it and those the rotation
/// waits for, by the rule the controller promotes it by.
fn key_infos(hub: &Hub) -> Result<Vec<KeyInfo>, Failure> {
    let fleet = Fleet::new(hub.store.snapshot()?, None);
    let (confirmed, waiting) = match control::rotation(&fleet) {
        Rotation::Idle => (Vec::new(), Vec::new()),
        Rotation::Waiting {
            confirmed, waiting, ..
        } => (confirmed, waiting),
        Rotation::Promote { confirmed, .. } => (confirmed, Vec::new()),
    };
    Ok(fleet
        .keys
        .into_iter()
        .map(|key| {
            let (confirmed, waiting) = if key.state == KeyState::Next {
                (confirmed.clone(), waiting.clone())
            } else {
                (Vec::new(), Vec::new())
            };
            KeyInfo {
                id: key.id,
                kind: "state".to_string(),
                public: key.public.to_string(),
                state: key.state.as_str().to_string(),
                created_ms: key.created_ms,
                changed_ms: key.changed_ms,
                confirmed,
                waiting,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_hash_of_a_secret_is_its_sha256() {
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
