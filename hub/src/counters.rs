//! What the hub counts as it runs, for `/metrics`: messages from the broker by channel, and
//! API requests by route and status with their latency. Counting is all this does: the
//! figures are rendered by `api::metrics`, from a [`Snapshot`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use shoal_model::topic::Channel;

/// Upper bounds of the API latency histogram's buckets, in seconds (Prometheus' defaults
/// from 5 ms, which is where a hub on a small machine starts).
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Counters shared by the hub's tasks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages from the broker, by channel: received, and dropped (undecodable, refused).
    received: [AtomicU64; CHANNELS],
    received_bytes: [AtomicU64; CHANNELS],
    dropped: [AtomicU64; CHANNELS],
    api: Mutex<BTreeMap<(String, u16), Latency>>,
}

const CHANNELS: usize = 5;

/// One route and status's requests: a histogram of their durations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// Per bucket of [`LATENCY_BUCKETS`], the requests at most that long (not cumulative).
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

/// What the counters held at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Per channel name: (messages, bytes, dropped).
    pub messages: BTreeMap<&'static str, (u64, u64, u64)>,
    /// Per (route, status).
    pub api: BTreeMap<(String, u16), Latency>,
}

fn index(channel: Channel) -> usize {
    match channel {
        Channel::Presence => 0,
        Channel::Status => 1,
        Channel::RpcResponse => 2,
        Channel::Desired => 3,
        Channel::RpcRequest => 4,
    }
}

const NAMES: [&str; CHANNELS] = [
    "presence",
    "status",
    "rpc-response",
    "desired",
    "rpc-request",
];

impl Counters {
    /// A message of `bytes` arrived on `channel`; `kept` is false when it was dropped.
    pub fn message(&self, channel: Channel, bytes: usize, kept: bool) {
        let i = index(channel);
        self.received[i].fetch_add(1, Ordering::Relaxed);
        self.received_bytes[i]
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
        if !kept {
            self.dropped[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An API request to `route` (the route's pattern, not the path: bounded) answered
    /// `status` after `took`.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut api = self.api.lock().unwrap_or_else(|p| p.into_inner());
        let latency = api.entry((route.to_string(), status)).or_default();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            latency.buckets[bucket] += 1;
        }
        latency.count += 1;
        latency.sum_seconds += seconds;
    }

    pub fn snapshot(&self) -> Snapshot {
        let messages = NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (
                    *name,
                    (
                        self.received[i].load(Ordering::Relaxed),
                        self.received_bytes[i].load(Ordering::Relaxed),
                        self.dropped[i].load(Ordering::Relaxed),
                    ),
                )
            })
            .collect();
        let api = self.api.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Snapshot { messages, api }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_in_the_first_bucket_that_holds_them_and_slow_ones_only_in_the_count() {
        let counters = Counters::default();
        counters.request("/v1/nodes", 200, Duration::from_millis(3));
        counters.request("/v1/nodes", 200, Duration::from_millis(30));
        counters.request("/v1/nodes", 200, Duration::from_secs(11));
        counters.message(Channel::Status, 100, true);
        counters.message(Channel::Status, 50, false);
        let snapshot = counters.snapshot();
        let latency = &snapshot.api[&("/v1/nodes".to_string(), 200)];
        assert_eq!(latency.buckets[0], 1);
        assert_eq!(latency.buckets[3], 1, "30 ms is at most 50 ms");
        assert_eq!(latency.buckets.iter().sum::<u64>(), 2);
        assert_eq!(latency.count, 3);
        assert_eq!(snapshot.messages["status"], (2, 150, 1));
        assert_eq!(snapshot.messages["presence"], (0, 0, 0));
    }
}
