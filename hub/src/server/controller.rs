//! The shell around the hub's decisions ([`crate::control`]): one loop that, on every change,
//! report and tick, reads the fleet from the store in one transaction, decides, signs the new
//! desired states, stores the plan in one transaction, and publishes through [`Publish`].
//!
//! Published desired states are stored before they are sent, so what the broker gets is never
//! newer than what the hub remembers. The first pass after the hub starts also compares the
//! stored generations with what the broker retains, and republishes only what it lost.
//!
//! Wake-ups: an operator's change to the store (apply, delete, labels, cordon, keys) runs a
//! pass at once; what nodes do (a status, a presence, going online or offline, enrolling) runs
//! one no sooner than [`REPORTED_SPACING`] after the previous pass started, and no sooner
//! than [`REPORTED_SHARE`] times that pass's duration, so a herd of statuses or of nodes
//! coming online costs a few passes and the steady stream of a large fleet's heartbeats at
//! most a tenth of a core; and every
//! [`PERIOD`] one runs anyway (offline nodes age past `rescheduleAfter` with no message).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use shoal_model::clock::wall_ms;
use shoal_model::endpoint::ApiUrl;
use shoal_model::topic::NodeId;
use shoal_model::wire::{Envelope, Limits};
use tokio::time::Instant;

use crate::context::{Hub, Wake};
use crate::control::{self, Fleet, Plan};
use crate::store::{self, NodeDesired, PlanWrite, Store};

/// How often a pass runs with no wake-up.
pub const PERIOD: Duration = Duration::from_secs(5);
/// The least time from one pass to the next when only reports woke the controller.
pub const REPORTED_SPACING: Duration = Duration::from_millis(250);
/// When only reports woke the controller, the next pass starts no sooner than this many times
/// the previous pass's duration after it started: passes woken by reports take at most that
/// share of the time.
pub const REPORTED_SHARE: u32 = 10;
/// How long the broker has to deliver its retained desired states after the subscription.
const RETAINED_SETTLE: Duration = Duration::from_millis(700);

/// Where desired states go: the broker, retained, in production ([`super::mqtt::Publisher`]).
pub trait Publish: Send + Sync {
    /// Publishes `payload` as `node`'s retained desired state.
    fn desired(
        &self,
        node: &NodeId,
        payload: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Runs passes forever.
pub async fn run<P: Publish + 'static>(hub: Arc<Hub>, publisher: P) {
    let mut subscribed = hub.subscribed.subscribe();
    // Wait for the first subscription so the retained desired states are known.
    let _ = subscribed.wait_for(|s| *s).await;
    tokio::time::sleep(RETAINED_SETTLE).await;
    let mut retained = Some(
        hub.retained
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    );
    loop {
        let started = Instant::now();
        let mut gate = None;
        let source = Some(hub.advertised_api.clone());
        match pass(
            &hub.store,
            &hub.limits,
            source,
            &publisher,
            retained.clone(),
        )
        .await
        {
            Ok(plan) => {
                retained = None;
                gate = plan.wake_ms.map(|at| {
                    started + Duration::from_millis(at.saturating_sub(wall_ms()).saturating_add(1))
                });
                *hub.decision.lock().unwrap_or_else(|p| p.into_inner()) = Some(plan.placement);
            }
            Err(error) => {
                tracing::error!("controller pass failed: {error:#}");
                // What was stored may not have reached the broker: the next pass compares.
                retained = Some(
                    hub.retained
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                );
            }
        }
        pace(&hub.wake, started, gate).await;
    }
}

/// Waits until the next pass is due, after a pass that started at `started` and just ended;
/// at the latest at `gate`, when the plan said a rollout gate opens or a deadline passes.
pub async fn pace(wake: &Wake, started: Instant, gate: Option<Instant>) {
    let took = started.elapsed();
    let period = Instant::now() + PERIOD;
    let until = gate.map_or(period, |gate| gate.min(period));
    tokio::select! {
        () = wake.next_changed() => {}
        () = tokio::time::sleep_until(until) => {}
        () = wake.next_reported() => {
            // Reports coalesce; a change cuts the wait short.
            let due = started + REPORTED_SPACING.max(took * REPORTED_SHARE);
            tokio::select! {
                () = wake.next_changed() => {}
                () = tokio::time::sleep_until(due) => {}
            }
        }
    }
}

/// One pass: snapshot, decide, sign, store, publish. `source`: the hub's API as nodes reach
/// it (where they download agent binaries). `retained`: what the broker retains per node, for
/// the first pass after the hub starts. Returns the plan, with its reasons.
pub async fn pass<P: Publish>(
    store: &Arc<Store>,
    limits: &Limits,
    source: Option<ApiUrl>,
    publisher: &P,
    retained: Option<BTreeMap<String, u64>>,
) -> anyhow::Result<Plan> {
    let prepared = {
        let store = Arc::clone(store);
        let limits = *limits;
        tokio::task::spawn_blocking(move || prepare(&store, &limits, source, retained, wall_ms()))
            .await
            .context("the controller's pass panicked")??
    };
    let Prepared {
        plan,
        saved,
        republish,
    } = prepared;
    for (node, payload) in saved {
        publisher.desired(&NodeId::new(&node)?, payload).await?;
    }
    for (node, payload) in republish {
        publisher.desired(&NodeId::new(&node)?, payload).await?;
    }
    Ok(plan)
}

/// What a pass publishes, once decided and stored.
struct Prepared {
    plan: Plan,
    /// New desired states, stored: node and payload.
    saved: Vec<(String, Vec<u8>)>,
    /// Stored desired states the broker lost: node and payload.
    republish: Vec<(String, Vec<u8>)>,
}

/// The blocking part of a pass: everything but publishing.
fn prepare(
    store: &Store,
    limits: &Limits,
    source: Option<ApiUrl>,
    retained: Option<BTreeMap<String, u64>>,
    now_ms: u64,
) -> anyhow::Result<Prepared> {
    let mut fleet = Fleet::new(store.snapshot()?, retained);
    fleet.agent.source = source;
    let plan = control::decide(&fleet, now_ms);
    if plan.is_settled() {
        return Ok(Prepared {
            plan,
            saved: Vec::new(),
            republish: Vec::new(),
        });
    }
    let signed = sign(&fleet, &plan, limits)?;
    let written = store.save_plan(
        PlanWrite {
            placement: (&fleet.placement, &plan.placement.placement),
            desired: &signed,
            promote: plan.promote(),
            assigned: (&fleet.assigned, &plan.assigned),
            rollouts: (&fleet.rollouts, &plan.rollouts),
            agent_assigned: (&fleet.agent.assigned, &plan.agent_assigned),
            agent_upgrades: (&fleet.agent.upgrades, &plan.agent_upgrades),
        },
        now_ms,
    )?;
    log(&plan, &written);
    let saved = signed
        .into_iter()
        .filter(|d| written.contains(&d.node))
        .map(|d| (d.node, d.payload))
        .collect();
    let republish = if plan.republish.is_empty() {
        Vec::new()
    } else {
        let mut stored = store.node_desired()?;
        plan.republish
            .iter()
            .filter_map(|r| {
                tracing::info!(
                    node = r.node,
                    generation = r.generation,
                    "republishing: {r}"
                );
                stored
                    .remove(&r.node)
                    .filter(|d| d.generation == r.generation)
                    .map(|d| (d.node, d.payload))
            })
            .collect()
    };
    Ok(Prepared {
        plan,
        saved,
        republish,
    })
}

/// Seals and signs the plan's new desired states with its signer.
fn sign(fleet: &Fleet, plan: &Plan, limits: &Limits) -> anyhow::Result<Vec<NodeDesired>> {
    if plan.desired.is_empty() {
        return Ok(Vec::new());
    }
    let signer = plan
        .keys
        .signer
        .as_deref()
        .and_then(|id| fleet.keys.iter().find(|k| k.id == id))
        .context("the hub has no active signing key")?;
    let key = store::signing_key(signer)?;
    let ids: Vec<String> = plan
        .keys
        .announced
        .iter()
        .map(|k| k.id().to_string())
        .collect();
    plan.desired
        .iter()
        .map(|d| {
            let node = &d.state.node_id;
            let mut envelope = Envelope::seal_in(d.wire_version, node, &d.state)?;
            key.sign(&mut envelope);
            Ok(NodeDesired {
                node: node.clone(),
                generation: d.state.generation,
                digest: d.digest.clone(),
                payload: envelope.encode(limits)?,
                signing_keys: ids.clone(),
            })
        })
        .collect()
}

/// What an operator reads of a stored plan.
fn log(plan: &Plan, written: &BTreeSet<String>) {
    if plan.placement_changed {
        tracing::info!(placement = ?plan.placement.placement, "placement changed");
    }
    for unreadable in &plan.unreadable {
        tracing::error!(node = unreadable.node, "{unreadable}");
    }
    for desired in plan
        .desired
        .iter()
        .filter(|d| written.contains(&d.state.node_id))
    {
        tracing::info!(
            node = desired.state.node_id,
            generation = desired.state.generation,
            workloads = desired.state.workloads.len(),
            "publishing desired state: {}",
            desired.reason
        );
    }
    if plan.promote().is_some() {
        tracing::info!("{}", plan.keys.rotation);
    }
}

#[cfg(test)]
mod tests;
