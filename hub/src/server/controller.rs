//! The hub's one decision loop: on every change (apply, delete, label, cordon, presence) and
//! every few seconds (for `rescheduleAfter`), it runs the scheduler over the stored fleet,
//! stores the placement, and publishes a new desired state to each node whose list changed.
//!
//! Published desired states are stored before they are sent; after a restart the loop first
//! compares the stored generations with what the broker retains and republishes only what the
//! broker lost, so agents see no change and restart nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::QoS;
use shoal_model::topic::NodeId;
use shoal_model::wire::Envelope;

use crate::clock::wall_ms;
use crate::context::Hub;
use crate::desired;
use crate::scheduler::{self, NodeView};
use crate::store::{self, NodeDesired};

/// How often placement is recomputed with no change (offline nodes age past
/// `rescheduleAfter` without any message arriving).
const PERIOD: Duration = Duration::from_secs(5);
/// How long the broker has to deliver its retained desired states after the subscription.
const RETAINED_SETTLE: Duration = Duration::from_millis(700);

pub async fn run(hub: Arc<Hub>) {
    let mut subscribed = hub.subscribed.subscribe();
    // Wait for the first subscription so the retained desired states are known.
    let _ = subscribed.wait_for(|s| *s).await;
    tokio::time::sleep(RETAINED_SETTLE).await;
    if let Err(error) = republish_lost(&hub).await {
        tracing::error!("cannot compare desired states with the broker's: {error}");
    }
    loop {
        if let Err(error) = step(&hub).await {
            tracing::error!("placement failed: {error}");
        }
        tokio::select! {
            () = hub.wake.next_changed() => {}
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// Republishes each stored desired state the broker does not retain at its generation.
async fn republish_lost(hub: &Hub) -> anyhow::Result<()> {
    let retained = hub
        .retained
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (node, stored) in hub.store.node_desired()? {
        if retained.get(&node) == Some(&stored.generation) {
            continue;
        }
        tracing::info!(
            node,
            generation = stored.generation,
            "republishing a desired state the broker lost"
        );
        publish(hub, &node, stored.payload).await?;
    }
    Ok(())
}

/// One pass: schedule, store the placement, publish what changed.
pub async fn step(hub: &Hub) -> anyhow::Result<()> {
    let now = wall_ms();
    let workloads = hub.store.workloads()?;
    let nodes = hub.store.nodes()?;
    let current = hub.store.placement()?;
    let views: Vec<NodeView> = nodes
        .iter()
        .map(|n| NodeView {
            id: n.name.clone(),
            facts: n.effective_facts(),
            online: n.online,
            offline_since_ms: n.offline_since_ms,
            schedulable: n.schedulable,
        })
        .collect();
    let specs: Vec<_> = workloads.iter().map(|w| w.workload.clone()).collect();
    let decision = scheduler::schedule(&specs, &views, &current, now);
    if decision.placement != current {
        tracing::info!(placement = ?decision.placement, "placement changed");
        hub.store.set_placement(&decision.placement)?;
    }
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let lists = desired::per_node(&workloads, &decision.placement, &names);
    *hub.decision.lock().unwrap_or_else(|p| p.into_inner()) = Some(decision);
    let (key, announced) = store::key_ring(&hub.store.signing_keys()?)?
        .context("the hub has no active signing key")?;
    let announced_ids: Vec<String> = announced.iter().map(|k| k.id().to_string()).collect();
    let published = hub.store.node_desired()?;
    for (node, list) in lists {
        let Some((state, digest)) = desired::next(&node, list, &announced, published.get(&node))
        else {
            continue;
        };
        let mut envelope = Envelope::seal(&node, &state)?;
        key.sign(&mut envelope);
        let payload = envelope.encode(&hub.limits)?;
        hub.store.save_node_desired(
            &NodeDesired {
                node: node.clone(),
                generation: state.generation,
                digest,
                payload: payload.clone(),
                signing_keys: announced_ids.clone(),
            },
            now,
        )?;
        tracing::info!(
            node,
            generation = state.generation,
            workloads = state.workloads.len(),
            "publishing desired state"
        );
        publish(hub, &node, payload).await?;
    }
    if announced.len() > 1 && rotation_confirmed(hub, &announced_ids)? {
        hub.store.promote_next_key(now)?;
        tracing::info!(
            key = announced_ids[1],
            retired = announced_ids[0],
            "every enrolled node has the next signing key: it signs from now on"
        );
        hub.wake.changed();
    }
    Ok(())
}

/// Whether every enrolled node has accepted a desired state announcing all of `announced`
/// (the active key and the next one).
fn rotation_confirmed(hub: &Hub, announced: &[String]) -> anyhow::Result<bool> {
    let published = hub.store.node_desired()?;
    let statuses = hub.store.statuses()?;
    Ok(hub
        .store
        .nodes()?
        .iter()
        .filter(|n| n.enrolled)
        .all(|node| has_keys(&node.name, announced, &published, &statuses)))
}

/// Whether `node` has accepted (reported at least) a desired state announcing every key of
/// `ids`. Pure.
pub fn has_keys(
    node: &str,
    ids: &[String],
    published: &std::collections::BTreeMap<String, NodeDesired>,
    statuses: &std::collections::BTreeMap<String, shoal_model::wire::NodeStatus>,
) -> bool {
    published.get(node).is_some_and(|desired| {
        ids.iter().all(|id| desired.signing_keys.contains(id))
            && statuses
                .get(node)
                .is_some_and(|s| s.observed_generation >= desired.generation)
    })
}

async fn publish(hub: &Hub, node: &str, payload: Vec<u8>) -> anyhow::Result<()> {
    let topic = hub.topics.desired(&NodeId::new(node)?);
    hub.client
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .await?;
    Ok(())
}
