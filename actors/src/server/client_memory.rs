//! The node-wide cap on the memory of client buffers (`--maxmemory-clients`, Redis's
//! `maxmemory-clients`): what every client connection holds is summed, and when the sum passes
//! the cap the connections holding the most are evicted until it is back under.
//!
//! What counts, per client connection ([`ClientBuffers`]): its read buffer (a huge value or
//! line partly received included), the requests parsed and not answered yet, and the reply
//! bytes of a large batch not written yet. Replication links are not clients and are not
//! counted (a replica's incoming stream stops counting when it turns into one; a primary's
//! replicators never did), as Redis exempts its master and replica links.
//!
//! It is kept off the hot path: a connection's codec stores what its reading holds after each
//! read (plain atomic stores), and the node-wide total moves only when one connection's usage
//! has changed by [`STEP`] or more since it was last counted. The total is so exact to within
//! [`STEP`] per connection. It is checked as it grows, by the connection that grew it, so a
//! burst of huge requests cannot outrun a timer; and the evictions are decided here only, one
//! decision at a time ([`ClientMemory::enforce`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use actix::WeakRecipient;
use slog::{warn, Logger};
use tokio::sync::Notify;

use crate::protocol::codec::ReadMeter;

/// A connection's usage is added to the node-wide total again once it has changed by this much
/// since it was last added.
pub const STEP: usize = 64 * 1024;

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

    /// Evict the connections holding the most until the total is back under the cap.
    pub fn enforce(&self) {
        let limit = self.limit();
        let clients = self.lock();
        let total = self.total();
        if limit == 0 || total <= limit {
            return;
        }
        let usage: Vec<(u64, usize)> = clients
            .values()
            .map(|c| (c.id, c.counted.load(Ordering::Relaxed)))
            .collect();
        for id in victims(&usage, total, limit) {
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

/// Which connections to evict, of `usage` (id and bytes), when all hold `total` bytes and the
/// cap is `limit`: the largest first (the oldest first among equals), until the rest hold
/// `limit` or less. Redis evicts in the same order: the fewest clients for the most memory.
pub fn victims(usage: &[(u64, usize)], total: usize, limit: usize) -> Vec<u64> {
    let mut largest: Vec<(u64, usize)> = usage.iter().copied().filter(|u| u.1 > 0).collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut left = total;
    let mut chosen = Vec::new();
    for (id, bytes) in largest {
        if left <= limit {
            break;
        }
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

    /// Whether its codec found it speaks RESP.
    pub fn speaks_resp(&self) -> bool {
        self.resp.load(Ordering::Relaxed)
    }

    /// A batch's replies of `bytes` are being written (0: they are written).
    pub fn writing(&self, bytes: usize) {
        self.output.store(bytes, Ordering::Relaxed);
        self.settle();
    }

    /// Resolves once the connection is evicted, ending a write its client does not read.
    pub async fn until_evicted(&self) {
        self.stop_writing.notified().await;
    }

    /// Bring the node-wide total up to date with what the connection holds, if it changed by
    /// a [`STEP`] or more; after a growth, evict if the total is over the cap.
    fn settle(&self) {
        let now = self.input() + self.parsed() + self.output();
        if now.abs_diff(self.counted.load(Ordering::Relaxed)) < STEP {
            return;
        }
        let grew = {
            let _counting = self.counting.lock().unwrap_or_else(PoisonError::into_inner);
            if self.gone.load(Ordering::Relaxed) {
                return;
            }
            let before = self.counted.swap(now, Ordering::Relaxed);
            match now >= before {
                true => self.memory.total.fetch_add(now - before, Ordering::Relaxed),
                false => self.memory.total.fetch_sub(before - now, Ordering::Relaxed),
            };
            now > before
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
        // Over by 7 MiB: the largest alone brings it under.
        assert_eq!(victims(&usage, total, 32 * MIB), vec![2]);
        // Over by 19 MiB: the largest (16), then the older of the two 9s; the rest stay.
        assert_eq!(victims(&usage, total, 20 * MIB), vec![2, 4]);
        // Exactly at the cap is under it.
        assert!(victims(&usage, total, total).is_empty());
        // A cap below every client's own usage evicts all of them but what fits.
        assert_eq!(victims(&usage, total, 0), vec![2, 4, 5, 1, 3]);
        // Connections that hold nothing are never chosen.
        assert!(victims(&[(1, 0)], MIB, 0).is_empty());
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
            // Below a step, nothing is added to the total.
            small.reading(STEP - 1, 0);
            assert_eq!(memory.total(), 0);
            small.reading(STEP, 100);
            assert_eq!(memory.total(), STEP + 100);
            big.reading(4 * MIB, 0);
            bigger.writing(7 * MIB);
            assert_eq!(memory.evicted(), 0, "at {} of 12 MiB", memory.total());
            // The growth that passes the cap evicts the largest, which is not the one growing.
            big.reading(5 * MIB, MIB);
            assert!(memory.evicted() == 1 && bigger.evicted() && !big.evicted());
            assert_eq!(memory.total(), STEP + 100 + 6 * MIB);
            // What an evicted connection does afterwards is no longer counted.
            bigger.writing(20 * MIB);
            assert_eq!(memory.total(), STEP + 100 + 6 * MIB);
            // Closing takes a connection out of the total.
            memory.leave(2);
            assert_eq!(memory.total(), STEP + 100);
            memory.leave(1);
            memory.leave(3);
            assert_eq!(memory.total(), 0);
        });
    }
}
