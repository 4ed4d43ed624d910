//! The node-wide cap on the memory of client buffers (`--maxmemory-clients`, Redis's
//! `maxmemory-clients`): what every client connection holds is summed, and when the sum passes
//! the cap the connections holding the most are evicted until it is back under.
//!
//! What counts, per client connection ([`ClientBuffers`]): its read buffer (a huge value or
//! line partly received included), the requests parsed and not answered yet, the commands it
//! queued in `MULTI` (Redis's `multi-mem`), and the reply bytes of a large batch not written
//! yet. Replication links are not clients and are not
//! counted (a replica's incoming stream stops counting when it turns into one; a primary's
//! replicators never did), as Redis exempts its master and replica links.
//!
//! It is kept off the hot path: a connection's codec stores what its reading holds after each
//! read (plain atomic stores), and the node-wide total moves only when a connection's usage
//! leaves the [`STEP`] it is counted at ([`counted_at`]): a connection holding at most
//! [`UNCOUNTED`] bytes (a fresh read buffer and a small batch) counts nothing, any other counts
//! its usage rounded up to a [`STEP`], and is counted lower only once it holds a whole [`STEP`]
//! less (so that a connection going back and forth across a boundary does not move the total
//! at every read). The total is so never below what the connections hold by more than
//! [`UNCOUNTED`] each, and never above it by [`STEP`] × 2 or more each. It is checked as it
//! grows, by the connection that grew it, so a burst of huge requests cannot outrun a timer;
//! and the evictions are decided here only, one decision at a time ([`ClientMemory::enforce`]),
//! down to [`LOW_WATER`] of the cap, so that they are rare however fast clients grow.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use actix::WeakRecipient;
use slog::{warn, Logger};
use tokio::sync::Notify;

use crate::protocol::codec::ReadMeter;

/// A connection is counted in whole steps of this many bytes.
pub const STEP: usize = 64 * 1024;

/// What a connection may hold and count nothing: its fresh 8 KiB read buffer and a batch of
/// 4 KiB. Every connection has as much, and counting it would move the node-wide total at every
/// ordinary batch.
pub const UNCOUNTED: usize = 12 * 1024;

/// Evictions bring the total down to this share of the cap (in tenths), not just under it: the
/// next eviction waits until clients have grown by a tenth of the cap again.
pub const LOW_WATER: usize = 9;

/// What a connection holding `now` bytes is counted at, when it was counted at `before`:
/// nothing up to [`UNCOUNTED`]; else `now` rounded up to a [`STEP`], but not lowered until
/// that is a whole [`STEP`] below `before`.
pub fn counted_at(now: usize, before: usize) -> usize {
    if now <= UNCOUNTED {
        return 0;
    }
    let rounded = now.div_ceil(STEP).saturating_mul(STEP);
    match rounded > before || rounded + STEP < before {
        true => rounded,
        false => before,
    }
}

/// Tells a session it was evicted: it writes its client the error, if it can, and closes.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Evict;

/// The memory of all client connections' buffers, and the cap on it.
#[derive(Debug, Default)]
pub struct ClientMemory {
    /// `--maxmemory-clients` in bytes; 0: no cap.
    limit: AtomicUsize,
    /// What the counted connections hold, as last added.
    total: AtomicUsize,
    /// The most `total` reached since the node started (`INFO`'s `mem_clients_peak`).
    peak: AtomicUsize,
    /// How many connections were evicted since the node started (`INFO`'s `evicted_clients`).
    evicted: AtomicU64,
    /// The counted connections, by id. Its lock is taken when one opens or closes, and while
    /// evictions are decided (which it makes one at a time).
    clients: Mutex<BTreeMap<u64, Arc<ClientBuffers>>>,
}

/// What one client connection holds, as the cap counts it.
#[derive(Debug)]
pub struct ClientBuffers {
    /// The connection's id.
    id: u64,
    /// The node's count it adds to.
    memory: Arc<ClientMemory>,
    /// Bytes allocated for its read buffer.
    input: AtomicUsize,
    /// Bytes of the requests read and not answered yet.
    parsed: AtomicUsize,
    /// Bytes of replies waiting to be written.
    output: AtomicUsize,
    /// Bytes of the commands queued in `MULTI`.
    multi: AtomicUsize,
    /// What the node-wide total holds for it.
    counted: AtomicUsize,
    /// Set once it is no longer counted (evicted, or closed).
    gone: AtomicBool,
    /// Set when it is evicted: its codec drops what it sends from then on.
    evicted: AtomicBool,
    /// Its codec found it speaks RESP (its session may not know yet, in its first request).
    resp: AtomicBool,
    /// Held while its count in the total changes, so that a change and an eviction or a
    /// close never interleave.
    counting: Mutex<()>,
    /// Wakes a write of large replies that its client does not read, when it is evicted.
    stop_writing: Notify,
    /// Its session; weak, so the count never keeps a session alive.
    session: WeakRecipient<Evict>,
    /// Its session's log (with its peer), where its eviction is told.
    log: Logger,
}

impl ClientMemory {
    /// Cap the memory of all client buffers at `bytes` (0: no cap). Checked at the next growth.
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// The cap, in bytes (0: none).
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// What all client buffers hold now, as counted (`INFO`'s `mem_clients_normal`).
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// The most all client buffers held at once, as counted, since the node started.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// How many clients were evicted since the node started.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Count connection `id`, whose session `session` is told if it is evicted.
    pub fn join(
        self: &Arc<Self>,
        id: u64,
        session: WeakRecipient<Evict>,
        log: Logger,
    ) -> Arc<ClientBuffers> {
        let buffers = Arc::new(ClientBuffers {
            id,
            memory: self.clone(),
            input: AtomicUsize::new(0),
            parsed: AtomicUsize::new(0),
            output: AtomicUsize::new(0),
            multi: AtomicUsize::new(0),
            counted: AtomicUsize::new(0),
            gone: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            resp: AtomicBool::new(false),
            counting: Mutex::new(()),
            stop_writing: Notify::new(),
            session,
            log,
        });
        self.lock().insert(id, buffers.clone());
        buffers
    }

    /// Stop counting connection `id` (it closed, or became a replication stream).
    pub fn leave(&self, id: u64) {
        if let Some(buffers) = self.lock().remove(&id) {
            buffers.uncount();
        }
    }

    /// Evict the connections holding the most until the total is back down to [`LOW_WATER`]
    /// of the cap.
    pub fn enforce(&self) {
        let limit = self.limit();
        let clients = self.lock();
        let total = self.total();
        if limit == 0 || total <= limit {
            return;
        }
        let usage = clients
            .values()
            .map(|c| (c.id, c.counted.load(Ordering::Relaxed)));
        let low_water = limit / 10 * LOW_WATER;
        for id in victims(usage, total, low_water) {
            let Some(client) = clients.get(&id) else {
                continue;
            };
            let bytes = client.uncount();
            client.evicted.store(true, Ordering::Relaxed);
            client.stop_writing.notify_one();
            self.evicted.fetch_add(1, Ordering::Relaxed);
            warn!(client.log, "client evicted: node-wide client buffer memory over --maxmemory-clients";
                "bytes" => bytes, "total" => total, "maxmemory_clients" => limit);
            if let Some(session) = client.session.upgrade() {
                session.do_send(Evict);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<ClientBuffers>>> {
        // A panic while holding it cannot leave the map half-changed: use it as it is.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Which connections to evict, of `usage` (id and bytes), when all hold `total` bytes, to
/// bring them down to `target`: the largest first (the oldest first among equals), until the
/// rest hold `target` or less. Redis evicts in the same order: the fewest clients for the most
/// memory. A heap, not a sort: building it is linear, and only the few evicted are taken out.
pub fn victims(usage: impl Iterator<Item = (u64, usize)>, total: usize, target: usize) -> Vec<u64> {
    let mut largest: BinaryHeap<(usize, Reverse<u64>)> = usage
        .filter(|u| u.1 > 0)
        .map(|(id, bytes)| (bytes, Reverse(id)))
        .collect();
    let mut left = total;
    let mut chosen = Vec::new();
    while left > target {
        let Some((bytes, Reverse(id))) = largest.pop() else {
            break;
        };
        left = left.saturating_sub(bytes);
        chosen.push(id);
    }
    chosen
}

impl ClientBuffers {
    /// Bytes allocated for the connection's read buffer (`CLIENT LIST`'s `qbuf`).
    pub fn input(&self) -> usize {
        self.input.load(Ordering::Relaxed)
    }

    /// Bytes of requests read and not answered yet (`argv-mem`).
    pub fn parsed(&self) -> usize {
        self.parsed.load(Ordering::Relaxed)
    }

    /// Bytes of replies waiting to be written (`omem`).
    pub fn output(&self) -> usize {
        self.output.load(Ordering::Relaxed)
    }

    /// Bytes of the commands queued in `MULTI` (`multi-mem`).
    pub fn multi(&self) -> usize {
        self.multi.load(Ordering::Relaxed)
    }

    /// What the connection holds, all buffers together (`tot-mem`).
    pub fn usage(&self) -> usize {
        self.input() + self.parsed() + self.output() + self.multi()
    }

    /// Its session's transaction holds `bytes` of queued commands now.
    pub fn queuing(&self, bytes: usize) {
        // A plain load first: this runs after every batch, and seldom changes anything.
        if self.multi.load(Ordering::Relaxed) != bytes {
            self.multi.store(bytes, Ordering::Relaxed);
            self.settle();
        }
    }

    /// Whether its codec found it speaks RESP.
    pub fn speaks_resp(&self) -> bool {
        self.resp.load(Ordering::Relaxed)
    }

    /// A batch's replies of `bytes` are being written (0: they are written).
    pub fn writing(&self, bytes: usize) {
        self.output.store(bytes, Ordering::Relaxed);
        self.settle();
    }

    /// Whether the node caps client memory: only then can the connection be evicted.
    pub fn capped(&self) -> bool {
        self.memory.limit() != 0
    }

    /// Resolves once the connection is evicted, ending the batch it is answering.
    pub async fn until_evicted(&self) {
        self.stop_writing.notified().await;
    }

    /// Bring the node-wide total up to date with what the connection holds, if that left the
    /// [`STEP`] it is counted at ([`counted_at`]); after a growth, evict if the total is over
    /// the cap.
    fn settle(&self) {
        let now = self.usage();
        let before = self.counted.load(Ordering::Relaxed);
        if counted_at(now, before) == before {
            return;
        }
        let grew = {
            let _counting = self.counting.lock().unwrap_or_else(PoisonError::into_inner);
            if self.gone.load(Ordering::Relaxed) {
                return;
            }
            let before = self.counted.load(Ordering::Relaxed);
            let after = counted_at(now, before);
            self.counted.store(after, Ordering::Relaxed);
            let memory = &self.memory;
            if after >= before {
                let total = memory.total.fetch_add(after - before, Ordering::Relaxed);
                memory
                    .peak
                    .fetch_max(total + after - before, Ordering::Relaxed);
            } else {
                memory.total.fetch_sub(before - after, Ordering::Relaxed);
            }
            after > before
        };
        let limit = self.memory.limit();
        if grew && limit != 0 && self.memory.total() > limit {
            self.memory.enforce();
        }
    }

    /// Take the connection out of the total for good; answers what it held.
    fn uncount(&self) -> usize {
        let _counting = self.counting.lock().unwrap_or_else(PoisonError::into_inner);
        if self.gone.swap(true, Ordering::Relaxed) {
            return 0;
        }
        let bytes = self.counted.swap(0, Ordering::Relaxed);
        self.memory.total.fetch_sub(bytes, Ordering::Relaxed);
        bytes
    }
}

impl ReadMeter for ClientBuffers {
    fn reading(&self, buffered: usize, parsed: usize) {
        self.input.store(buffered, Ordering::Relaxed);
        self.parsed.store(parsed, Ordering::Relaxed);
        self.settle();
    }

    fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    fn speaks_resp(&self) {
        self.resp.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn the_largest_are_evicted_first_until_the_rest_fit() {
        let usage = [
            (1, 4 * MIB),
            (2, 16 * MIB),
            (3, MIB),
            (4, 9 * MIB),
            (5, 9 * MIB),
        ];
        let total = 39 * MIB;
        let of = |target| victims(usage.iter().copied(), total, target);
        // Over by 7 MiB: the largest alone brings it under.
        assert_eq!(of(32 * MIB), vec![2]);
        // Over by 19 MiB: the largest (16), then the older of the two 9s; the rest stay.
        assert_eq!(of(20 * MIB), vec![2, 4]);
        // Exactly at the target is under it.
        assert!(of(total).is_empty());
        // A target below every client's own usage evicts all of them.
        assert_eq!(of(0), vec![2, 4, 5, 1, 3]);
        // Connections that hold nothing are never chosen.
        assert!(victims([(1, 0)].into_iter(), MIB, 0).is_empty());
    }

    #[test]
    fn a_connection_is_counted_in_steps_above_a_fresh_buffer_and_lowered_a_step_late() {
        // A fresh buffer and a small batch count nothing; a byte more counts a whole step.
        assert_eq!(counted_at(UNCOUNTED, 0), 0);
        assert_eq!(counted_at(UNCOUNTED + 1, 0), STEP);
        assert_eq!(counted_at(STEP + 1, STEP), 2 * STEP);
        // Back a little under a step boundary: still counted as before.
        assert_eq!(counted_at(STEP - 1, 2 * STEP), 2 * STEP);
        // A whole step less: counted lower; back to a fresh buffer: nothing.
        assert_eq!(counted_at(STEP - 1, 3 * STEP), STEP);
        assert_eq!(counted_at(UNCOUNTED, 3 * STEP), 0);
    }

    /// Stands in for a session: it is told when it is evicted.
    struct Session;

    impl Actor for Session {
        type Context = Context<Self>;
    }

    impl Handler<Evict> for Session {
        type Result = ();

        fn handle(&mut self, _: Evict, _: &mut Context<Self>) {}
    }

    #[test]
    fn the_total_moves_in_steps_and_growth_past_the_cap_evicts_the_largest() {
        System::new().block_on(async {
            let session = Session.start();
            let memory = Arc::new(ClientMemory::default());
            memory.set_limit(12 * MIB);
            let log = Logger::root(slog::Discard, slog::o!());
            let join = |id| memory.join(id, session.downgrade().recipient(), log.clone());
            let (small, big, bigger) = (join(1), join(2), join(3));
            // A fresh buffer counts nothing; a partial request past it counts a whole step.
            small.reading(UNCOUNTED, 0);
            assert_eq!(memory.total(), 0);
            small.reading(STEP, 100);
            assert_eq!(memory.total(), 2 * STEP);
            big.reading(4 * MIB, 0);
            bigger.writing(7 * MIB);
            assert_eq!(memory.evicted(), 0, "at {} of 12 MiB", memory.total());
            // The growth that passes the cap evicts the largest, which is not the one growing,
            // down to a tenth under the cap.
            big.reading(5 * MIB, MIB);
            assert!(memory.evicted() == 1 && bigger.evicted() && !big.evicted());
            assert_eq!(memory.total(), 2 * STEP + 6 * MIB);
            assert_eq!(memory.peak(), 2 * STEP + 13 * MIB);
            // What an evicted connection does afterwards is no longer counted.
            bigger.writing(20 * MIB);
            assert_eq!(memory.total(), 2 * STEP + 6 * MIB);
            // A transaction's queue counts too.
            big.queuing(MIB);
            assert_eq!(memory.total(), 2 * STEP + 7 * MIB);
            // The next growth past the cap evicts down to 90 % of it: the queue's owner.
            small.reading(6 * MIB, 0);
            assert!(memory.evicted() == 2 && big.evicted() && !small.evicted());
            assert_eq!(memory.total(), 6 * MIB);
            // Closing takes a connection out of the total.
            memory.leave(2);
            assert_eq!(memory.total(), 6 * MIB);
            memory.leave(1);
            memory.leave(3);
            assert_eq!(memory.total(), 0);
        });
    }
}
