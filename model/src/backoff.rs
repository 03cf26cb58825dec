//! How long a device waits before reconnecting to the broker: capped exponential backoff with
//! full jitter, so a fleet that lost its hub comes back spread over the window instead of in
//! one burst. Pure: the caller draws the random number (the agent from the OS, the fleet
//! simulator from each node's own generator), so both reconnect exactly alike.

use crate::quantity::millis;
use std::time::Duration;

/// The ceiling of the first delay.
pub const BASE: Duration = Duration::from_millis(500);
/// The largest delay.
pub const CAP: Duration = Duration::from_secs(30);
/// The smallest delay: even a lucky draw never retries in a tight loop.
pub const FLOOR: Duration = Duration::from_millis(50);

/// The delay before the next attempt after `failures` consecutive failed ones (0 after a
/// link that had been up): uniformly drawn from `FLOOR..=min(CAP, BASE * 2^failures)` with
/// the uniformly random `random`. Pure.
pub fn delay(failures: u32, random: u64) -> Duration {
    let ceiling = ceiling(failures);
    let floor = millis(FLOOR);
    let span = ceiling.saturating_sub(floor).saturating_add(1);
    Duration::from_millis(floor + random % span)
}

/// The largest delay after `failures` failed attempts, in ms.
fn ceiling(failures: u32) -> u64 {
    let doubled = millis(BASE).saturating_mul(1u64 << failures.min(32));
    doubled.clamp(millis(FLOOR), millis(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn check(failures: u32, random: u64, expected: Duration) {
        assert_eq!(
            delay(failures, random),
            expected,
            "failures {failures}, random {random}"
        );
    }

    #[test]
    fn the_ceiling_doubles_from_half_a_second_up_to_thirty_seconds() {
        let rows = [
            (0, 500),
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (5, 16_000),
            (6, 30_000),
            (7, 30_000),
            (40, 30_000),
            (u32::MAX, 30_000),
        ];
        for (failures, ceiling_ms) in rows {
            // The largest draw lands exactly on the ceiling, the smallest on the floor.
            let span = ceiling_ms - 50 + 1;
            check(failures, span - 1, ms(ceiling_ms));
            check(failures, 0, FLOOR);
            check(failures, span, FLOOR);
        }
    }
}
