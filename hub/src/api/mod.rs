//! The hub's HTTP API for the `shoal` CLI (routes and bodies: `shoal_model::api`). Every
//! request needs the bearer token from the data directory. Handlers validate what they are
//! sent, change the store, and wake the controller; they never publish to MQTT themselves
//! (except RPC requests such as logs).

mod claims;
mod diff;
pub mod enroll;
pub mod metrics;
mod releases;
pub mod tls;
mod upgrades;
mod views;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shoal_model::api::{
    ApiError, ApplyRequest, ApplyResponse, ChangeAction, Done, LabelRequest, MosquittoConfig,
    NodeDetail, NodeInfo, RevisionInfo, RolloutInfo, WorkloadChange, WorkloadDetail, WorkloadInfo,
    MAX_REQUEST_BYTES,
};
use shoal_model::clock::wall_ms;
use shoal_model::manifest::names::{check_label_key, check_label_value};
use shoal_model::manifest::Loaded;
use shoal_model::wire::{self, RpcRequestBody, RpcResponseBody};

use crate::broker::{self, password};
use crate::context::Hub;
use crate::control::Unreadable;
use crate::rpc;
use crate::scheduler::Schedulable;
use crate::store::{RolloutError, StoreError};

/// How long a node has to answer the first part of an RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API on `listener` until the process stops.
pub async fn serve(listener: tokio::net::TcpListener, hub: Arc<Hub>) -> anyhow::Result<()> {
    axum::serve(listener, router(hub)).await?;
    Ok(())
}

/// Serves the API over HTTPS until the process stops.
pub async fn serve_tls(listener: tls::TlsListener, hub: Arc<Hub>) -> anyhow::Result<()> {
    axum::serve(listener, router(hub)).await?;
    Ok(())
}

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/apply", post(apply))
        .route("/v1/workloads", get(list_workloads))
        .route(
            "/v1/workloads/{name}",
            get(describe_workload).delete(delete_workload),
        )
        .route("/v1/nodes", get(list_nodes).post(enroll::add_node))
        .route(
            "/v1/nodes/{name}",
            get(describe_node).delete(enroll::remove_node),
        )
        .route("/v1/nodes/{name}/labels", post(label_node))
        .route("/v1/nodes/{name}/{action}", post(schedule_node))
        .route("/v1/rollouts/{name}", get(rollout_status))
        .route("/v1/rollouts/{name}/history", get(rollout_history))
        .route("/v1/rollouts/{name}/{action}", post(rollout_action))
        .route("/v1/logs", get(logs))
        .route("/v1/broker-config/mosquitto", get(mosquitto))
        .route("/v1/keys", get(enroll::list_keys))
        .route("/v1/keys/rotate", post(enroll::rotate))
        .route("/v1/tokens", get(claims::list).post(claims::create))
        .route("/v1/tokens/{id}", axum::routing::delete(claims::revoke))
        .route(
            "/v1/agent-releases",
            get(releases::list)
                .post(releases::add)
                .layer(DefaultBodyLimit::max(
                    usize::try_from(shoal_model::release::MAX_AGENT_BYTES).unwrap_or(usize::MAX),
                )),
        )
        .route(
            "/v1/agent-releases/{version}",
            axum::routing::delete(releases::remove),
        )
        .route(
            "/v1/agent-upgrades",
            get(upgrades::status)
                .post(upgrades::set)
                .delete(upgrades::cancel),
        )
        .route("/v1/agent-upgrades/pause", post(upgrades::pause))
        .route("/v1/agent-upgrades/resume", post(upgrades::resume))
        .route("/v1/agent-upgrades/undo", post(upgrades::undo))
        .route("/metrics", get(scrape))
        .layer(middleware::from_fn_with_state(Arc::clone(&hub), authorize))
        // For probes (a service manager, a load balancer), without the bearer token: they say
        // only whether the hub is up and ready.
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // For devices, without the bearer token: the CA is public, and the enrollment token
        // is the credential.
        .route("/v1/ca", get(enroll::ca))
        .route("/v1/enroll", post(enroll::enroll))
        // For nodes, by their own credentials (HTTP Basic): the binaries they update to.
        .route("/v1/agent-binaries/{sha256}", get(upgrades::download))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(middleware::from_fn_with_state(Arc::clone(&hub), timed))
        .with_state(hub)
}

/// Counts every request by its route's pattern (bounded, unlike paths) and status, with how
/// long it took (`shoal_api_request_duration_seconds`).
async fn timed(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    hub.counters
        .request(&route, response.status().as_u16(), start.elapsed());
    response
}

/// `GET /metrics`: Prometheus' text format (`api::metrics`).
async fn scrape(State(hub): State<Arc<Hub>>) -> Result<Response, Failure> {
    let nodes = views::nodes(&hub)?;
    let workloads = views::workloads(&hub)?;
    let statuses = hub.store.statuses()?;
    let rollouts = hub.store.rollouts()?;
    let counters = hub.counters.snapshot();
    let text = metrics::render(&metrics::Figures {
        nodes: &nodes,
        workloads: &workloads,
        statuses: &statuses,
        rollouts: &rollouts,
        counters: &counters,
        containers: hub.container_metrics,
        now_ms: wall_ms(),
    });
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// `GET /healthz`: the hub's API answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 once the hub can do its job: its database answers, it is connected and
/// subscribed to the broker, and its controller has decided at least once; 503 with what is
/// missing otherwise.
async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    let mut missing = Vec::new();
    if let Err(e) = hub.store.nodes() {
        missing.push(format!("the database does not answer: {e}"));
    }
    if !*hub.subscribed.borrow() {
        missing.push(format!("not connected to the broker at {}", hub.broker));
    }
    let decided = hub
        .decision
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some();
    if !decided {
        missing.push("the controller has not run its first pass".to_string());
    }
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join("; ")),
        )
            .into_response()
    }
}

/// An error answer: status and body.
#[derive(Debug)]
pub struct Failure(StatusCode, ApiError);

impl Failure {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Failure {
        Failure(
            status,
            ApiError {
                error: error.into(),
                details: Vec::new(),
            },
        )
    }

    pub(crate) fn bad_request(error: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        let status = match error {
            StoreError::NoNode(_) => StatusCode::NOT_FOUND,
            StoreError::NodeExists(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(status, error.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
    }
}

pub(crate) type Answer<T> = Result<Json<T>, Failure>;

async fn authorize(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !password::constant_time_eq(given.as_bytes(), hub.token.as_bytes()) {
        return Failure::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token: use the token in the hub's data directory (api-token), or set SHOAL_TOKEN",
        )
        .into_response();
    }
    next.run(request).await
}

// ---- workloads ----

async fn apply(
    State(hub): State<Arc<Hub>>,
    Json(request): Json<ApplyRequest>,
) -> Answer<ApplyResponse> {
    if request.files.is_empty() {
        return Err(Failure::bad_request("no manifest files were sent"));
    }
    let mut loaded = Loaded::default();
    for file in &request.files {
        loaded.add_text(Path::new(&file.name), &file.text);
    }
    if !loaded.is_ok() {
        let count = loaded.diagnostics.len();
        return Err(Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            ApiError {
                error: format!(
                    "{count} problem{} in the manifests; nothing was applied",
                    if count == 1 { "" } else { "s" }
                ),
                details: loaded.diagnostics.iter().map(|d| d.to_string()).collect(),
            },
        ));
    }
    let workloads: Vec<_> = loaded.workloads.into_iter().map(|w| w.workload).collect();
    let applied = hub.store.apply(&workloads, wall_ms(), request.dry_run)?;
    let mut changes = Vec::new();
    for (result, workload) in applied.iter().zip(&workloads) {
        let new = serde_json::to_value(workload).unwrap_or_default();
        let (action, diff) = match &result.previous {
            None => (
                ChangeAction::Created,
                diff::lines(&serde_json::Value::Object(Default::default()), &new),
            ),
            Some((revision, _)) if *revision == result.revision => {
                (ChangeAction::Unchanged, Vec::new())
            }
            Some((_, old)) => (
                ChangeAction::Configured,
                diff::lines(&serde_json::to_value(old).unwrap_or_default(), &new),
            ),
        };
        changes.push(WorkloadChange {
            workload: result.name.clone(),
            action,
            revision: result.revision,
            diff,
        });
    }
    if !request.dry_run && changes.iter().any(|c| c.action != ChangeAction::Unchanged) {
        tracing::info!(workloads = changes.len(), "applied");
        hub.wake.changed();
    }
    Ok(Json(ApplyResponse {
        dry_run: request.dry_run,
        changes,
    }))
}

async fn list_workloads(State(hub): State<Arc<Hub>>) -> Answer<Vec<WorkloadInfo>> {
    Ok(Json(views::workloads(&hub)?))
}

async fn describe_workload(
    State(hub): State<Arc<Hub>>,
    UrlPath(name): UrlPath<String>,
) -> Answer<WorkloadDetail> {
    match views::workload(&hub, &name)? {
        Some(detail) => Ok(Json(detail)),
        None => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no workload `{name}` (`shoal get workloads` lists them)"),
        )),
    }
}

async fn rollout_status(
    State(hub): State<Arc<Hub>>,
    UrlPath(name): UrlPath<String>,
) -> Answer<RolloutInfo> {
    match views::rollout(&hub, &name)? {
        Some(info) => Ok(Json(info)),
        None => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no workload `{name}` (`shoal get workloads` lists them)"),
        )),
    }
}

async fn rollout_history(
    State(hub): State<Arc<Hub>>,
    UrlPath(name): UrlPath<String>,
) -> Answer<Vec<RevisionInfo>> {
    if hub.store.workload(&name)?.is_none() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no workload `{name}` (`shoal get workloads` lists them)"),
        ));
    }
    let history = hub.store.rollout_history(&name)?;
    Ok(Json(
        history
            .into_iter()
            .map(|h| RevisionInfo {
                revision: h.revision,
                created_ms: h.created_ms,
                state: h.state,
                failed: h.failed,
                immediate: h.immediate,
                changed_ms: h.changed_ms,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct UndoQuery {
    to_revision: Option<u64>,
}

impl From<RolloutError> for Failure {
    fn from(error: RolloutError) -> Failure {
        let status = match &error {
            RolloutError::NoWorkload(_) => StatusCode::NOT_FOUND,
            RolloutError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::CONFLICT,
        };
        Failure::new(status, error.to_string())
    }
}

/// `POST /v1/rollouts/W/pause|resume|undo[?to_revision=N]`.
async fn rollout_action(
    State(hub): State<Arc<Hub>>,
    UrlPath((name, action)): UrlPath<(String, String)>,
    Query(query): Query<UndoQuery>,
) -> Answer<Done> {
    let now = wall_ms();
    let message = match action.as_str() {
        "pause" | "resume" => {
            let paused = action == "pause";
            let changed = hub.store.pause_rollout(&name, paused, now)?;
            match (paused, changed) {
                (true, true) => format!("rollout of workload `{name}` paused"),
                (true, false) => format!("rollout of workload `{name}` was paused already"),
                (false, true) => format!("rollout of workload `{name}` resumed"),
                (false, false) => format!("rollout of workload `{name}` was not paused"),
            }
        }
        "undo" => {
            let (revision, copied) = hub.store.undo_rollout(&name, query.to_revision, now)?;
            format!(
                "workload `{name}`: revision {revision} (the spec of revision {copied}) goes to every node at once"
            )
        }
        other => {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no rollout action `{other}`: use pause, resume or undo"),
            ))
        }
    };
    tracing::info!(workload = name, action, "{message}");
    hub.wake.changed();
    Ok(Json(Done { message }))
}

async fn delete_workload(
    State(hub): State<Arc<Hub>>,
    UrlPath(name): UrlPath<String>,
) -> Answer<Done> {
    if !hub.store.delete_workload(&name)? {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no workload `{name}` (`shoal get workloads` lists them)"),
        ));
    }
    tracing::info!(workload = name, "deleted");
    hub.wake.changed();
    Ok(Json(Done {
        message: format!("workload/{name} deleted; its nodes stop its containers"),
    }))
}

// ---- nodes ----

async fn list_nodes(State(hub): State<Arc<Hub>>) -> Answer<Vec<NodeInfo>> {
    Ok(Json(views::nodes(&hub)?))
}

async fn describe_node(
    State(hub): State<Arc<Hub>>,
    UrlPath(name): UrlPath<String>,
) -> Answer<NodeDetail> {
    Ok(Json(views::node(&hub, &name)?))
}

pub(crate) fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), Failure> {
    let problems: Vec<String> = labels
        .iter()
        .filter_map(|(key, value)| {
            check_label_key(key)
                .and_then(|()| check_label_value(value))
                .err()
                .map(|reason| format!("label `{key}={value}`: {reason}"))
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(Failure(
        StatusCode::BAD_REQUEST,
        ApiError {
            error: "invalid labels; nothing was changed".into(),
            details: problems,
        },
    ))
}

async fn label_node(
    State(hub): State<Arc<Hub>>,
    UrlPath(name): UrlPath<String>,
    Json(request): Json<LabelRequest>,
) -> Answer<NodeInfo> {
    check_labels(&request.set)?;
    hub.store.label_node(&name, &request.set, &request.remove)?;
    hub.wake.changed();
    Ok(Json(views::node(&hub, &name)?.node))
}

async fn schedule_node(
    State(hub): State<Arc<Hub>>,
    UrlPath((name, action)): UrlPath<(String, String)>,
) -> Answer<NodeInfo> {
    let schedulable = match action.as_str() {
        "cordon" => Schedulable::Cordoned,
        "uncordon" => Schedulable::Yes,
        "drain" => Schedulable::Drained,
        other => {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no node action `{other}`: use cordon, uncordon, drain or labels"),
            ))
        }
    };
    hub.store.set_schedulable(&name, schedulable)?;
    tracing::info!(node = name, action, "node scheduling changed");
    hub.wake.changed();
    Ok(Json(views::node(&hub, &name)?.node))
}

// ---- logs ----

#[derive(Debug, Deserialize)]
struct LogsQuery {
    workload: String,
    node: Option<String>,
    container: Option<String>,
    tail: Option<u32>,
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, Failure> {
    let workload = hub.store.workload(&query.workload)?.ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "no workload `{}` (`shoal get workloads` lists them)",
                query.workload
            ),
        )
    })?;
    let placed: Vec<String> = hub
        .store
        .placement()?
        .remove(&workload.workload.name)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let node = match (&query.node, placed.as_slice()) {
        (Some(node), _) if placed.contains(node) => node.clone(),
        (Some(node), _) => {
            return Err(Failure::bad_request(format!(
                "workload `{}` is not placed on node `{node}`; it runs on: {}",
                query.workload,
                list_or_none(&placed)
            )))
        }
        (None, [only]) => only.clone(),
        (None, []) => {
            return Err(Failure::bad_request(format!(
                "workload `{}` is not placed on any node (`shoal describe workload {}` says why)",
                query.workload, query.workload
            )))
        }
        (None, several) => {
            return Err(Failure::bad_request(format!(
                "workload `{}` runs on several nodes: pick one with --node ({})",
                query.workload,
                several.join(", ")
            )))
        }
    };
    let stored = hub.store.node(&node)?;
    if !stored.online {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node `{node}` is offline; its logs stay on the device (`shoal-agent logs {}` there)", query.workload),
        ));
    }
    let Some(version) = wire::version_for(stored.wire_versions()) else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Unreadable {
                node: node.clone(),
                announced: stored.wire_versions().to_vec(),
            }
            .to_string(),
        ));
    };
    let mut call = rpc::call(
        &hub.rpc,
        (version, &node),
        RpcRequestBody::Logs {
            workload: query.workload.clone(),
            container: query.container.clone(),
            tail: query.tail,
            follow: query.follow,
        },
    )
    .await?;
    // The first answer decides the status code.
    let first = tokio::time::timeout(RPC_TIMEOUT, call.answers.recv())
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("node `{node}` did not answer within {RPC_TIMEOUT:?}"),
            )
        })?;
    let first = match first {
        Some(RpcResponseBody::LogChunk { data, eof }) => (data, eof),
        Some(RpcResponseBody::Error { message }) => {
            return Err(Failure::bad_request(format!("node `{node}`: {message}")))
        }
        other => {
            return Err(Failure::new(
                StatusCode::BAD_GATEWAY,
                format!("node `{node}` answered a log request with {other:?}"),
            ))
        }
    };
    let stream =
        futures_util::stream::unfold((Some(first), Some(call)), |(first, call)| async move {
            if let Some((data, eof)) = first {
                let next_call = if eof { None } else { call };
                return Some((Ok::<_, std::io::Error>(data), (None, next_call)));
            }
            let mut call = call?;
            loop {
                match call.answers.recv().await? {
                    RpcResponseBody::LogChunk { data, eof } => {
                        let next = if eof { None } else { Some(call) };
                        return Some((Ok(data), (None, next)));
                    }
                    RpcResponseBody::Error { message } => {
                        return Some((
                            Ok(format!("\nerror: {message}\n").into_bytes()),
                            (None, None),
                        ));
                    }
                    _ => continue,
                }
            }
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(stream))
        .map_err(|e| Failure::from(anyhow::Error::from(e)))
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "no node".into()
    } else {
        items.join(", ")
    }
}

// ---- external broker ----

#[derive(Debug, Deserialize)]
struct MosquittoQuery {
    port: Option<u16>,
    dir: Option<String>,
    /// Plain MQTT instead of MQTT over TLS with a certificate from the hub's CA.
    #[serde(default)]
    insecure: bool,
}

async fn mosquitto(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<MosquittoQuery>,
) -> Answer<MosquittoConfig> {
    let dir = query.dir.unwrap_or_else(|| "/etc/mosquitto/shoal".into());
    if !dir.starts_with('/') {
        return Err(Failure::bad_request(format!(
            "dir `{dir}` must be an absolute path"
        )));
    }
    let mut nodes = Vec::new();
    for (name, hash) in hub.store.password_hashes()? {
        let id = shoal_model::topic::NodeId::new(name)
            .map_err(|e| Failure::from(anyhow::Error::from(e)))?;
        nodes.push((id, hash));
    }
    let default_port = if query.insecure { 1883 } else { 8883 };
    let files = broker::mosquitto::mosquitto_files(
        query.port.unwrap_or(default_port),
        hub.topics.prefix(),
        &password::hash(&hub.hub_password),
        &nodes,
        Path::new(&dir),
    );
    if query.insecure {
        return Ok(Json(MosquittoConfig {
            conf: files.conf,
            passwd: files.passwd,
            acl: files.acl,
            cert_pem: String::new(),
            key_pem: String::new(),
        }));
    }
    // Valid for loopback and the hosts the hub and its agents dial.
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for url in [&hub.broker, &hub.advertised] {
        let host = url.host().to_string();
        if !names.contains(&host) {
            names.push(host);
        }
    }
    let cert = hub
        .ca
        .issue_server(&names)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(MosquittoConfig {
        conf: broker::mosquitto::with_tls(&files.conf, Path::new(&dir)),
        passwd: files.passwd,
        acl: files.acl,
        cert_pem: cert.cert_chain_pem().to_string(),
        key_pem: cert.key_pem().to_string(),
    }))
}
