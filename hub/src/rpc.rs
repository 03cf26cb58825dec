//! Requests to one agent over `rpc/req`, answered on `rpc/resp`: the same requests the agent's
//! local socket takes (logs, status, diagnostics, exec), matched to answers by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rumqttc::{AsyncClient, QoS};
use shoal_model::clock::wall_ms;
use shoal_model::topic::{NodeId, Topics};
use shoal_model::wire::{self, Limits, RpcRequest, RpcRequestBody, RpcResponse, RpcResponseBody};
use tokio::sync::mpsc;

/// RPC to agents: the requests in flight and the client that sends them.
#[derive(Debug)]
pub struct Rpc {
    pub pending: Pending,
    client: AsyncClient,
    topics: Topics,
    limits: Limits,
}

impl Rpc {
    pub fn new(client: AsyncClient, topics: Topics, limits: Limits) -> Rpc {
        Rpc {
            pending: Pending::default(),
            client,
            topics,
            limits,
        }
    }
}

/// Answers buffered per request before the agent's further answers are dropped.
const BUFFERED: usize = 256;

/// The requests in flight, by id.
#[derive(Debug)]
pub struct Pending {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (String, mpsc::Sender<RpcResponseBody>)>>,
}

impl Default for Pending {
    /// Ids start from the clock so that a late answer to a request of a previous hub process
    /// cannot be taken for an answer to a new one.
    fn default() -> Self {
        Pending {
            next: AtomicU64::new(wall_ms().saturating_mul(1000)),
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl Pending {
    fn register(&self, node: &str) -> (u64, mpsc::Receiver<RpcResponseBody>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(BUFFERED);
        self.lock().insert(id, (node.to_string(), sender));
        (id, receiver)
    }

    /// Hands an answer to whoever waits for it; answers from another node than the one asked,
    /// or for no request in flight, are dropped.
    pub fn deliver(&self, node: &str, response: RpcResponse) {
        let mut waiting = self.lock();
        let Some((asked, sender)) = waiting.get(&response.id) else {
            tracing::debug!(node, id = response.id, "answer to no request in flight");
            return;
        };
        if asked != node {
            tracing::warn!(
                node,
                asked,
                id = response.id,
                "answer from a node that was not asked"
            );
            return;
        }
        if sender.try_send(response.body).is_err() {
            waiting.remove(&response.id);
        }
    }

    pub fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (String, mpsc::Sender<RpcResponseBody>)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request in flight; dropping it forgets the request and, for a followed log, tells the
/// agent to stop.
#[derive(Debug)]
pub struct Call {
    pub id: u64,
    pub node: String,
    pub answers: mpsc::Receiver<RpcResponseBody>,
    rpc: Arc<Rpc>,
    /// The wire version the node reads (`wire::version_for` its announced versions).
    version: u8,
    cancel_on_drop: bool,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.rpc.pending.forget(self.id);
        if self.cancel_on_drop {
            let rpc = Arc::clone(&self.rpc);
            let (node, id, version) = (self.node.clone(), self.id, self.version);
            tokio::spawn(async move {
                let _ = send(
                    &rpc,
                    (version, &node),
                    id.wrapping_add(1 << 62),
                    RpcRequestBody::Cancel { id },
                )
                .await;
            });
        }
    }
}

/// Sends `body` to `node`, in wire `version` (the newest the node reads); its answers arrive
/// on the returned call.
pub async fn call(
    rpc: &Arc<Rpc>,
    (version, node): (u8, &str),
    body: RpcRequestBody,
) -> anyhow::Result<Call> {
    let cancel_on_drop = matches!(body, RpcRequestBody::Logs { follow: true, .. });
    let (id, answers) = rpc.pending.register(node);
    let call = Call {
        id,
        node: node.to_string(),
        answers,
        rpc: Arc::clone(rpc),
        version,
        cancel_on_drop,
    };
    send(rpc, (version, node), id, body).await?;
    Ok(call)
}

async fn send(
    rpc: &Rpc,
    (version, node): (u8, &str),
    id: u64,
    body: RpcRequestBody,
) -> anyhow::Result<()> {
    let node_id = NodeId::new(node)?;
    let payload = wire::encode_in(version, node, &RpcRequest { id, body }, &rpc.limits)?;
    rpc.client
        .publish(
            rpc.topics.rpc_req(&node_id),
            QoS::AtLeastOnce,
            false,
            payload,
        )
        .await?;
    Ok(())
}
