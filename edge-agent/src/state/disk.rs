//! The data disk: whether it is full, and the agent's reserve on it.
//!
//! A full data disk must not silence the agent: the event saying the disk is full, the
//! statuses that carry it to the hub, a `delete` that frees space all need a few pages of
//! SQLite. So the agent keeps [`RESERVE_BYTES`] allocated in [`RESERVE_FILE`] while the disk
//! has room, and truncates it the moment free space drops below [`FULL_BELOW`]: the space
//! goes back to the filesystem for the agent's own next writes. It takes the reserve again
//! once [`SPACE_AGAIN_AT`] is free, so the disk does not flap between full and not.
//!
//! The file's size is the state, across restarts too: absent (never taken: a new data dir),
//! full size (held: the disk is not full), empty (given up: the disk is full). Only the two
//! transitions write (an `fallocate`, a truncation), never a sample: flash wear stays bounded
//! by what happened, and so do the two events per episode ([`Change`]).
//!
//! What this cannot do: a process that keeps writing to the same filesystem takes the freed
//! reserve too. The agent then still runs (nothing it needs to start reads more than what is
//! stored), its writes fail with a clear error, and the condition shows in `ps` from memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use shoal_model::quantity::format_bytes;
use shoal_model::wire::{Event, EventReason, Severity};

/// The reserve's file in the data dir.
pub const RESERVE_FILE: &str = "disk-reserve";
/// How much the reserve holds: more than SQLite's WAL grows to between two automatic
/// checkpoints (1000 pages of 4 KiB), so the agent's writes fit in it for a long while.
pub const RESERVE_BYTES: u64 = 8 << 20;
/// Below this much free space (for unprivileged writers), the disk is full.
pub const FULL_BELOW: u64 = 1 << 20;
/// The disk has space again once this much is free: the reserve can be taken back and
/// [`SPACE_AGAIN_AT`] - [`RESERVE_BYTES`] stay free, well above [`FULL_BELOW`].
pub const SPACE_AGAIN_AT: u64 = RESERVE_BYTES + (4 << 20);
/// Free space is sampled at most this often (monotonic ms).
pub const SAMPLE_EVERY_MS: u64 = 1000;

/// The reserve, as its file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// Never taken (a new data dir, or the disk was full when the agent first ran).
    Absent,
    /// Allocated: the disk is not full.
    Held,
    /// Given up because the disk filled: the disk is full.
    Released,
}

/// What to do with the reserve file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Keep,
    /// Truncate it (create it empty when absent): its space goes back to the filesystem.
    Release,
    /// Allocate it.
    Take,
}

/// A change of the disk's condition, to report once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Full,
    /// Reported only once the reserve is held again.
    SpaceAgain,
}

/// What the reserve and `free` bytes call for. Pure.
pub fn decide(reserve: Reserve, free: u64) -> (Step, Option<Change>) {
    match reserve {
        Reserve::Held | Reserve::Absent if free < FULL_BELOW => (Step::Release, Some(Change::Full)),
        Reserve::Absent if free >= SPACE_AGAIN_AT => (Step::Take, None),
        Reserve::Held | Reserve::Absent => (Step::Keep, None),
        Reserve::Released if free >= SPACE_AGAIN_AT => (Step::Take, Some(Change::SpaceAgain)),
        Reserve::Released => (Step::Keep, None),
    }
}

/// The event that reports `change`, with `free` bytes on the disk of `dir`. Events about the
/// condition have the reason [`EventReason::DiskBudgetExceeded`] (the wire has no better one,
/// and a new variant would make older hubs drop whole statuses): severity `Error` when the disk
/// filled, `Info` when it has space again; [`condition`] reads them back.
pub fn event(change: Change, free: u64, dir: &Path, at_ms: u64) -> Event {
    let (severity, message) = match change {
        Change::Full => (
            Severity::Error,
            format!(
                "the data disk is full ({} free on {}): running workloads keep running, but new \
                 images, desired states, records and logs may not be stored; free space, e.g. \
                 `shoal-agent images prune`",
                format_bytes(free),
                dir.display()
            ),
        ),
        Change::SpaceAgain => (
            Severity::Info,
            format!(
                "the data disk has space again ({} free on {})",
                format_bytes(free),
                dir.display()
            ),
        ),
    };
    Event {
        sequence: 0,
        at_ms,
        severity,
        workload: None,
        container: None,
        reason: EventReason::DiskBudgetExceeded,
        message,
    }
}

/// The event saying the disk is full, when the newest event about the disk's condition in
/// `events` (oldest first) is one. Pure.
pub fn condition(events: &[Event]) -> Option<&Event> {
    events
        .iter()
        .rev()
        .find(|e| {
            e.reason == EventReason::DiskBudgetExceeded
                && matches!(e.severity, Severity::Error | Severity::Info)
        })
        .filter(|e| e.severity == Severity::Error)
}

/// Free bytes on the filesystem of `dir`, as an unprivileged writer (a container) sees them.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The agent's watch over its data disk.
#[derive(Debug)]
pub struct DataDisk {
    dir: PathBuf,
    reserve: Reserve,
    /// Monotonic ms of the last sample.
    sampled_ms: Option<u64>,
    /// The event that reported the disk full, while it is.
    full_event: Option<Event>,
    /// Events of changes that could not be stored yet (the disk was too full even for them),
    /// oldest first; at most [`DEFERRED_MAX`].
    deferred: Vec<Event>,
}

/// Most change events kept for another try at storing them: one episode's two, twice.
const DEFERRED_MAX: usize = 4;

/// What a sample of the disk gives the caller to record.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sampled {
    /// Events that could not be stored before, for another try, oldest first.
    pub retry: Vec<Event>,
    /// The event of a change, to log and store.
    pub change: Option<Event>,
}

impl DataDisk {
    /// The watch over the disk of `dir`, with the reserve as its file says; nothing is
    /// written until the first [`DataDisk::watch`].
    pub fn new(dir: &Path) -> DataDisk {
        let path = dir.join(RESERVE_FILE);
        let reserve = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() >= RESERVE_BYTES => Reserve::Held,
            Ok(_) => Reserve::Released,
            Err(_) => Reserve::Absent,
        };
        DataDisk {
            dir: dir.to_owned(),
            reserve,
            sampled_ms: None,
            full_event: None,
            deferred: Vec::new(),
        }
    }

    /// Keeps an event that could not be stored, for the next sample to hand back.
    pub fn defer(&mut self, event: Event) {
        if self.deferred.len() >= DEFERRED_MAX {
            self.deferred.remove(0);
        }
        self.deferred.push(event);
    }

    /// Whether the disk is full (the reserve was given up).
    pub fn is_full(&self) -> bool {
        self.reserve == Reserve::Released
    }

    /// The event that reported the disk full, while it is (after a restart on a full disk:
    /// one made up on the first sample, as the disk's condition is not stored).
    pub fn full_event(&self) -> Option<&Event> {
        self.full_event.as_ref()
    }

    /// Samples the free space unless it was sampled less than [`SAMPLE_EVERY_MS`] ago, acts
    /// on it, and returns what to record: the event of a change, and deferred ones. `now_ms`
    /// is monotonic; `wall_ms` dates the event.
    pub fn watch(&mut self, now_ms: u64, wall_ms: u64) -> Sampled {
        let due = self
            .sampled_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= SAMPLE_EVERY_MS);
        if !due {
            return Sampled::default();
        }
        Sampled {
            change: self.sample(now_ms, wall_ms),
            retry: std::mem::take(&mut self.deferred),
        }
    }

    fn sample(&mut self, now_ms: u64, wall_ms: u64) -> Option<Event> {
        let first = self.sampled_ms.is_none();
        self.sampled_ms = Some(now_ms);
        let free = match free_bytes(&self.dir) {
            Ok(free) => free,
            Err(e) => {
                if first {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot tell the data disk's free space");
                }
                return None;
            }
        };
        let (step, mut change) = decide(self.reserve, free);
        let path = self.dir.join(RESERVE_FILE);
        match step {
            Step::Keep => {}
            Step::Release => {
                if let Err(e) = release(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot give up the disk reserve");
                }
                self.reserve = Reserve::Released;
            }
            Step::Take => match take(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), bytes = RESERVE_BYTES, "disk reserve taken");
                    self.reserve = Reserve::Held;
                }
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot take the disk reserve yet");
                    // Not held: the disk stays as it was (full, or without a reserve).
                    let _ = release_if_partial(&path, self.reserve);
                    change = None;
                }
            },
        }
        match change {
            Some(change) => {
                let event = event(change, free, &self.dir, wall_ms);
                self.full_event = (change == Change::Full).then(|| event.clone());
                Some(event)
            }
            None if first && self.is_full() => {
                // Restarted on a disk that was full: report it again, this agent's log and
                // status know nothing of the previous one's event.
                let event = event(Change::Full, free, &self.dir, wall_ms);
                self.full_event = Some(event.clone());
                Some(event)
            }
            None => None,
        }
    }
}

/// Gives the reserve's space back: truncates the file, creating it empty when absent (its
/// being there and empty says the disk is full, across restarts).
fn release(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    drop(file);
    Ok(())
}

/// After a failed [`take`], leaves the file as the reserve state says (a partial allocation
/// would hold space for nothing).
fn release_if_partial(path: &Path, reserve: Reserve) -> io::Result<()> {
    match reserve {
        Reserve::Released => release(path),
        Reserve::Absent => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Reserve::Held => Ok(()),
    }
}

/// Allocates the reserve (with `fallocate`, or by writing zeros where the filesystem cannot).
fn take(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => write_zeros(file),
        Err(e) => Err(e.into()),
    }
}

fn write_zeros(mut file: File) -> io::Result<()> {
    let chunk = vec![0u8; 64 * 1024];
    let mut left = RESERVE_BYTES;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    #[test]
    fn the_reserve_is_given_up_when_the_disk_fills_and_taken_back_once_there_is_room() {
        use Change::*;
        use Reserve::*;
        use Step::*;
        type Case = (Reserve, u64, (Step, Option<Change>));
        let cases: &[Case] = &[
            // Held: nothing happens until the disk is (almost) full.
            (Held, 100 * MI, (Keep, None)),
            (Held, FULL_BELOW, (Keep, None)),
            (Held, FULL_BELOW - 1, (Release, Some(Full))),
            (Held, 0, (Release, Some(Full))),
            // Released: full until the reserve and some room beyond it are free again.
            (Released, 0, (Keep, None)),
            (Released, RESERVE_BYTES, (Keep, None)),
            (Released, SPACE_AGAIN_AT - 1, (Keep, None)),
            (Released, SPACE_AGAIN_AT, (Take, Some(SpaceAgain))),
            // Absent (a new data dir): taken when there is room, without an event.
            (Absent, 100 * MI, (Take, None)),
            (Absent, SPACE_AGAIN_AT - 1, (Keep, None)),
            (Absent, 0, (Release, Some(Full))),
        ];
        for (reserve, free, expected) in cases {
            assert_eq!(
                decide(*reserve, *free),
                *expected,
                "{reserve:?} with {free} bytes free"
            );
        }
    }

    #[test]
    fn taking_the_reserve_back_leaves_the_disk_clearly_not_full() {
        // No flapping: right after the reserve is taken back, the disk is far from full.
        let (step, _) = decide(Reserve::Released, SPACE_AGAIN_AT);
        assert_eq!(step, Step::Take);
        assert_eq!(
            decide(Reserve::Held, SPACE_AGAIN_AT - RESERVE_BYTES),
            (Step::Keep, None)
        );
        const { assert!(SPACE_AGAIN_AT - RESERVE_BYTES >= 4 * FULL_BELOW) };
    }

    #[test]
    fn the_newest_condition_event_says_whether_the_disk_is_full() {
        let dir = Path::new("/var/lib/shoal");
        let full = event(Change::Full, 4096, dir, 1);
        let again = event(Change::SpaceAgain, 20 * MI, dir, 2);
        let gc_failed = Event {
            severity: Severity::Warning,
            message: "image garbage collection failed: ...".into(),
            ..full.clone()
        };
        let started = Event {
            reason: EventReason::Started,
            ..again.clone()
        };
        assert!(full
            .message
            .starts_with("the data disk is full (4Ki free on /var/lib/shoal)"));
        assert!(full.message.contains("`shoal-agent images prune`"));
        assert_eq!(condition(&[]), None);
        assert_eq!(condition(std::slice::from_ref(&full)), Some(&full));
        assert_eq!(
            condition(&[full.clone(), gc_failed.clone(), started.clone()]),
            Some(&full),
            "other events do not end the condition"
        );
        assert_eq!(condition(&[full.clone(), again.clone()]), None);
        assert_eq!(condition(&[again, full.clone()]), Some(&full));
        assert_eq!(condition(&[gc_failed]), None);
    }

    #[test]
    fn the_reserve_file_is_the_state_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut disk = DataDisk::new(dir.path());
        assert_eq!(disk.reserve, Reserve::Absent);
        assert_eq!(
            disk.watch(0, 0),
            Sampled::default(),
            "a roomy disk: no event"
        );
        let path = dir.path().join(RESERVE_FILE);
        assert_eq!(
            std::fs::metadata(&path).expect("reserve").len(),
            RESERVE_BYTES
        );
        assert_eq!(DataDisk::new(dir.path()).reserve, Reserve::Held);
        release(&path).expect("release");
        assert!(DataDisk::new(dir.path()).is_full());
        disk.defer(event(Change::Full, 0, dir.path(), 0));
        assert_eq!(
            disk.watch(10, 0),
            Sampled::default(),
            "sampled at most once a second"
        );
        assert_eq!(
            disk.watch(1000, 0).retry.len(),
            1,
            "deferred events come back"
        );
    }
}
