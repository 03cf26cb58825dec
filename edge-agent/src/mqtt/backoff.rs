//! How long the agent waits before reconnecting to the broker. rumqttc's `EventLoop::poll`
//! reconnects at once after an error, with no delay at all; a broker that is down would see
//! thousands of attempts per second from every device. The delay is the model's
//! ([`shoal_model::backoff`], shared with the fleet simulator), drawn with the OS's randomness.

pub use shoal_model::backoff::delay;

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
    use shoal_model::backoff::{BASE, CAP, FLOOR};
    use std::time::Duration;

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
