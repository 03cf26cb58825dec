//! How long to wait before reconnecting to the broker. rumqttc's `EventLoop::poll` reconnects
//! at once after an error, with no delay at all; a broker that is down would see thousands of
//! attempts per second from every device. Capped exponential backoff with full jitter spreads
//! a fleet's reconnects after a broker restart instead of synchronising them.

use shoal_model::quantity::millis;
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

/// A random number for [`delay`], from the OS; the clock's nanoseconds if that fails.
pub fn random() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()))
    })
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

    #[test]
    fn every_draw_stays_between_the_floor_and_the_ceiling() {
        for failures in 0..12 {
            for _ in 0..200 {
                let d = delay(failures, random());
                assert!(d >= FLOOR && d <= CAP, "{d:?} after {failures} failures");
                assert!(d <= BASE * 2u32.pow(failures.min(6)).max(1), "{d:?}");
            }
        }
    }

    #[test]
    fn full_jitter_spreads_a_fleet_over_the_whole_window() {
        // 1000 devices retrying after their 6th failure land all over 0.05..30 s.
        let draws: Vec<Duration> = (0..1000).map(|_| delay(6, random())).collect();
        let early = draws
            .iter()
            .filter(|d| **d < Duration::from_secs(10))
            .count();
        let late = draws
            .iter()
            .filter(|d| **d > Duration::from_secs(20))
            .count();
        assert!(early > 200 && late > 200, "early {early}, late {late}");
    }

    #[test]
    fn random_numbers_differ() {
        assert_ne!(random(), random());
    }
}
