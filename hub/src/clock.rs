//! The hub's wall clock: read here, at the edges (handlers, the MQTT client, the controller
//! shell), and handed to pure decisions as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock ms since the Unix epoch (0 for a clock before 1970).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
