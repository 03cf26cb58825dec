//! What the hub's tasks share: the store, the MQTT client, what wakes the controller, and the
//! last decision. Built once by `server::serve`; the API handlers, the MQTT client and the
//! controller each take it as an `Arc<Hub>`, so none of them depends on another.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shoal_model::endpoint::{ApiUrl, BrokerUrl};
use shoal_model::topic::Topics;
use shoal_model::wire::Limits;
use tokio::sync::{watch, Notify};

use crate::broker::EmbeddedBroker;
use crate::pki::Ca;
use crate::rpc::Rpc;
use crate::scheduler::Decision;
use crate::store::Store;

/// Everything the hub's tasks share.
#[derive(Debug)]
pub struct Hub {
    /// Shared with the embedded broker's authentication.
    pub store: Arc<Store>,
    pub topics: Topics,
    pub limits: Limits,
    pub client: rumqttc::AsyncClient,
    /// The broker as the hub connects to it.
    pub broker: BrokerUrl,
    /// The broker URL given to agents.
    pub advertised: BrokerUrl,
    /// Wakes the controller.
    pub wake: Wake,
    /// Whether the hub's client is connected and subscribed.
    pub subscribed: watch::Sender<bool>,
    /// Generation of the desired state the broker retains, per node.
    pub retained: Mutex<BTreeMap<String, u64>>,
    /// The scheduler's last decision, with its reasons.
    pub decision: Mutex<Option<Decision>>,
    pub rpc: Arc<Rpc>,
    pub token: String,
    pub hub_password: String,
    pub embedded: Option<EmbeddedBroker>,
    /// The hub's certificate authority: signs the server certificate, pinned by tokens.
    pub ca: Ca,
    /// The API URL devices enroll at.
    pub advertised_api: ApiUrl,
    /// Messages and requests counted for `/metrics`.
    pub counters: crate::counters::Counters,
    /// Whether `/metrics` has a series per container (memory, CPU, restarts, OOM kills), or
    /// only per node and workload (`shoal serve --no-container-metrics`: a fleet big enough
    /// for the series to cost the scraper).
    pub container_metrics: bool,
}

/// What wakes the controller. Both kinds coalesce: however many wake-ups arrive while a pass
/// runs, one more pass follows.
#[derive(Debug, Default)]
pub struct Wake {
    changed: Notify,
    reported: Notify,
}

impl Wake {
    /// An operator changed the store in a way a decision depends on (apply, delete, labels,
    /// cordon, a node added or removed, keys, upgrades): the next pass runs at once.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// A node reported (a status, a presence, its online state or facts changing, its
    /// enrollment): the next pass runs soon, paced by `controller::pace`, so a herd of nodes
    /// (a fleet coming online at once, thousands of statuses) costs a few passes, not one
    /// pass over the whole fleet per node.
    pub fn reported(&self) {
        self.reported.notify_one();
    }

    /// Waits for the next `changed`.
    pub async fn next_changed(&self) {
        self.changed.notified().await;
    }

    /// Waits for the next `reported`.
    pub async fn next_reported(&self) {
        self.reported.notified().await;
    }
}
