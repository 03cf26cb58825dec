//! The wall clock, read in one place. Pure decisions (the hub's `control` and `scheduler`, the
//! agent's `reconcile`) never call it: their shells read it and pass the time in as an
//! argument, which is what lets them be table-tested and replayed. Wall-clock time is for
//! records and display (when an event happened, how old a node is); what must not jump with
//! the device's clock (backoffs, timeouts) uses a monotonic clock instead.
//!
//! A function rather than a `Clock` trait object: the code that would take a clock as a
//! value is the pure code, and that takes the time itself.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock ms since the Unix epoch, from the system's clock.
pub fn wall_ms() -> u64 {
    since_epoch_ms(SystemTime::now())
}

/// Ms from the Unix epoch to `time`: 0 for a time before 1970 (a board that booted without a
/// clock may say so), `u64::MAX` beyond what 64 bits of ms hold.
fn since_epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_before_1970_read_as_zero_and_later_ones_as_ms_since_the_epoch() {
        let cases = [
            (UNIX_EPOCH, 0),
            (
                UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                1_700_000_000_123,
            ),
            (UNIX_EPOCH + Duration::from_nanos(1_999_999), 1),
            (UNIX_EPOCH - Duration::from_secs(1), 0),
        ];
        for (time, expected) in cases {
            assert_eq!(since_epoch_ms(time), expected, "{time:?}");
        }
    }

    #[test]
    fn the_wall_clock_reads_the_system_clock() {
        let before = since_epoch_ms(SystemTime::now());
        let read = wall_ms();
        assert!(read >= before && read <= since_epoch_ms(SystemTime::now()));
    }
}
