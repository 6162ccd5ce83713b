//! The live stream's events (`GET /api/v1/stream`) and [`Published`], what one writer
//! transaction will publish: the domain shells collect into it during the transaction and
//! the writer broadcasts it only after the commit, so a listener never sees a change that
//! was rolled back.
//!
//! [`Feed`] is what the writer publishes into: it stamps each event with the next sequence
//! number of this boot, keeps the last `api.stream_replay` of them for clients that
//! reconnect (`Last-Event-ID`), and broadcasts them to the open streams.
//!
//! A leaf: it imports nothing else of the crate, so every domain's shell can publish.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// One change on the live stream (`GET /api/v1/stream`): SSE event name = `kind`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamEvent {
    /// alarm | incident | notification | flood
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: i64,
    pub change: String,
    pub data: Value,
}

impl StreamEvent {
    /// Every kind of event the stream carries.
    pub const KINDS: [&'static str; 6] = ["alarm", "incident", "notification", "flood", "command", "coverage"];

    /// The kind named `name`, if the stream carries it (events read back from the database).
    pub fn kind_named(name: &str) -> Option<&'static str> {
        Self::KINDS.into_iter().find(|k| *k == name)
    }
}

/// The stream events of the transaction under way, in the order they happened, and whether
/// it queued a notification (the deliverer is woken after the commit).
#[derive(Debug, Default)]
pub struct Published {
    events: Vec<StreamEvent>,
    wake: bool,
}

impl Published {
    pub fn push(&mut self, kind: &'static str, id: i64, change: impl Into<String>, data: Value) {
        self.events.push(StreamEvent {
            kind,
            id,
            change: change.into(),
            data,
        });
    }

    /// What the transaction has collected so far.
    pub fn events(&self) -> &[StreamEvent] {
        &self.events
    }

    /// A notification was queued: the deliverer has work once this commits.
    pub fn wake_deliverer(&mut self) {
        self.wake = true;
    }

    /// The committed transaction's events, and whether to wake the deliverer; empties it.
    pub fn take(&mut self) -> (Vec<StreamEvent>, bool) {
        (std::mem::take(&mut self.events), std::mem::take(&mut self.wake))
    }

    /// The transaction rolled back: nothing it collected happened.
    pub fn clear(&mut self) {
        self.events.clear();
        self.wake = false;
    }
}

/// A published event with its place on the stream: SSE `id: <boot>-<seq>`.
#[derive(Debug)]
pub struct Stamped {
    pub seq: u64,
    pub event: StreamEvent,
}

/// A position on the stream, as a client names it (`<boot>-<seq>`, both decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub boot: i64,
    pub seq: u64,
}

impl Position {
    /// Parses `<boot>-<seq>`; None for anything else (signs, spaces, empty parts).
    pub fn parse(s: &str) -> Option<Position> {
        let (boot, seq) = s.split_once('-')?;
        let digits = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(boot) || !digits(seq) {
            return None;
        }
        Some(Position {
            boot: boot.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.boot, self.seq)
    }
}

/// Why a client asking to resume cannot be given every event it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The id names another run of the hub: sequence numbers restarted.
    OtherBoot,
    /// Events after it have already left the replay ring.
    TooOld,
    /// The id is past the last published event.
    Future,
    /// Not an id this hub gives out.
    Malformed,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::OtherBoot => "other_boot",
            ResetReason::TooOld => "too_old",
            ResetReason::Future => "future",
            ResetReason::Malformed => "malformed",
        }
    }
}

/// Where a new stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Now: no replay.
    Fresh,
    /// After this position: the events since, if the ring still holds them all.
    After(Position),
    /// The client sent something that is not an id of ours.
    Malformed,
}

/// What a new stream starts with.
#[derive(Debug)]
pub struct Subscription {
    /// The last sequence number published when it subscribed.
    pub last: u64,
    /// The events it missed, oldest first (Ok), or why it must re-read its lists instead.
    pub replay: Result<Vec<Arc<Stamped>>, ResetReason>,
    /// Every event published after `last`.
    pub rx: broadcast::Receiver<Arc<Stamped>>,
}

struct Ring {
    last: u64,
    events: VecDeque<Arc<Stamped>>,
}

/// The live stream's publisher: sequence numbers, the replay ring and the broadcast.
pub struct Feed {
    boot: i64,
    capacity: usize,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Stamped>>,
}

/// The boot stamps of this process's feeds so far: two hubs started in one process (tests)
/// within a millisecond still get different boots.
static LAST_BOOT: AtomicI64 = AtomicI64::new(0);

impl Feed {
    /// A feed replaying up to `replay` events, whose open streams may fall `channel` events
    /// behind before they are told they lagged. Its boot is the wall-clock start in ms (not
    /// the hub's decision clock, which tests hold still): an id from an earlier run never
    /// names a position in this one.
    pub fn new(replay: usize, channel: usize) -> Feed {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let prev = LAST_BOOT.fetch_max(now, Ordering::Relaxed);
        let boot = if prev >= now {
            LAST_BOOT.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            now
        };
        let (tx, _) = broadcast::channel(channel.max(1));
        Feed {
            boot,
            capacity: replay,
            ring: Mutex::new(Ring {
                last: 0,
                events: VecDeque::with_capacity(replay.min(1024)),
            }),
            tx,
        }
    }

    pub fn boot(&self) -> i64 {
        self.boot
    }

    /// The last sequence number published (0: none yet).
    pub fn last(&self) -> u64 {
        self.lock().last
    }

    /// Stamps and publishes a committed transaction's events, in order.
    pub fn publish(&self, events: impl IntoIterator<Item = StreamEvent>) {
        let mut ring = self.lock();
        for event in events {
            ring.last += 1;
            let stamped = Arc::new(Stamped { seq: ring.last, event });
            if self.capacity > 0 {
                if ring.events.len() == self.capacity {
                    ring.events.pop_front();
                }
                ring.events.push_back(stamped.clone());
            }
            // Sent under the lock, so a subscriber's replay and its receiver meet exactly.
            // Nobody listening is fine.
            let _ = self.tx.send(stamped);
        }
    }

    /// Opens a stream that starts where the client says it left off.
    pub fn subscribe(&self, after: Resume) -> Subscription {
        let ring = self.lock();
        let rx = self.tx.subscribe();
        let replay = match after {
            Resume::Fresh => Ok(Vec::new()),
            Resume::Malformed => Err(ResetReason::Malformed),
            Resume::After(p) if p.boot != self.boot => Err(ResetReason::OtherBoot),
            Resume::After(p) if p.seq > ring.last => Err(ResetReason::Future),
            Resume::After(p) if p.seq == ring.last => Ok(Vec::new()),
            Resume::After(p) => match ring.events.front() {
                // The ring holds consecutive numbers ending at `last`.
                Some(first) if first.seq <= p.seq + 1 => Ok(ring
                    .events
                    .iter()
                    .skip(usize::try_from(p.seq + 1 - first.seq).unwrap_or(usize::MAX))
                    .cloned()
                    .collect()),
                _ => Err(ResetReason::TooOld),
            },
        };
        Subscription {
            last: ring.last,
            replay,
            rx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // The ring is consistent after every statement; a panic elsewhere leaves it usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("boot", &self.boot)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64) -> StreamEvent {
        StreamEvent {
            kind: "alarm",
            id,
            change: "raised".into(),
            data: Value::Null,
        }
    }

    fn seqs(s: &Subscription) -> Vec<u64> {
        s.replay.as_ref().expect("replayable").iter().map(|e| e.seq).collect()
    }

    #[test]
    fn positions_parse_strictly() {
        assert_eq!(Position::parse("17-4"), Some(Position { boot: 17, seq: 4 }));
        for bad in [
            "",
            "-",
            "17",
            "17-",
            "-4",
            "17--4",
            "+17-4",
            "17-+4",
            "17-4-5",
            " 17-4",
            "a-1",
            "1-99999999999999999999999",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
        let p = Position { boot: 5, seq: 9 };
        assert_eq!(Position::parse(&p.to_string()), Some(p));
    }

    #[test]
    fn replays_exactly_what_follows_while_the_ring_holds_it() {
        let feed = Feed::new(3, 16);
        let b = feed.boot();
        feed.publish((1..=5).map(ev));
        let at = |seq| Resume::After(Position { boot: b, seq });
        assert_eq!(seqs(&feed.subscribe(at(2))), vec![3, 4, 5]);
        assert_eq!(seqs(&feed.subscribe(at(4))), vec![5]);
        assert_eq!(seqs(&feed.subscribe(at(5))), Vec::<u64>::new());
        assert_eq!(feed.subscribe(at(1)).replay.unwrap_err(), ResetReason::TooOld);
        assert_eq!(feed.subscribe(at(0)).replay.unwrap_err(), ResetReason::TooOld);
        assert_eq!(feed.subscribe(at(6)).replay.unwrap_err(), ResetReason::Future);
        let other = Resume::After(Position { boot: b + 1, seq: 5 });
        assert_eq!(feed.subscribe(other).replay.unwrap_err(), ResetReason::OtherBoot);
        assert_eq!(
            feed.subscribe(Resume::Malformed).replay.unwrap_err(),
            ResetReason::Malformed
        );
        assert_eq!(feed.subscribe(Resume::Fresh).last, 5);
    }

    #[test]
    fn a_subscriber_gets_the_rest_live_without_gap_or_repeat() {
        let feed = Feed::new(10, 16);
        feed.publish((1..=3).map(ev));
        let mut sub = feed.subscribe(Resume::After(Position {
            boot: feed.boot(),
            seq: 1,
        }));
        feed.publish((4..=5).map(ev));
        let mut got = seqs(&sub);
        while let Ok(e) = sub.rx.try_recv() {
            got.push(e.seq);
        }
        assert_eq!(got, vec![2, 3, 4, 5]);
    }

    #[test]
    fn without_a_ring_only_the_current_position_resumes() {
        let feed = Feed::new(0, 16);
        feed.publish((1..=2).map(ev));
        let at = |seq| Resume::After(Position { boot: feed.boot(), seq });
        assert!(feed.subscribe(at(2)).replay.is_ok());
        assert_eq!(feed.subscribe(at(1)).replay.unwrap_err(), ResetReason::TooOld);
    }

    #[test]
    fn feeds_of_one_process_have_different_boots() {
        let a = Feed::new(1, 1);
        let b = Feed::new(1, 1);
        assert_ne!(a.boot(), b.boot());
    }
}
