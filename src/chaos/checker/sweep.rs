//! The sweep that decides linearizability of one key's history, or of a window of it, in one
//! pass over time (the method and why it is exact are in the checker's module doc).

use std::collections::{HashMap, HashSet};

use super::spare::Spare;
use crate::chaos::history::{Call, Operation, Outcome};

/// The state id of an absent key.
const ABSENT: u32 = 0;
/// The state id of any value no later read shows: such values are interchangeable, so they
/// share one id (state ids 2 and up are the values reads show).
const UNREAD: u32 = 1;
/// The most operations with a known outcome that may be in flight at once: one bit each.
const MAX_IN_FLIGHT: usize = 128;

/// The part of a key's history a sweep checks: the operations with a known outcome that lie
/// inside `from..=to` must take effect in it, with the answers they had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The start: operations invoked before it are not checked; the state there is unknown.
    pub from: u64,
    /// The end: operations completing after it are not checked.
    pub to: u64,
}

impl Span {
    /// The whole history, from an absent key.
    pub const ALL: Span = Span {
        from: 0,
        to: u64::MAX,
    };
}

/// What the sweep found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations explains every answer.
    Linearizable,
    /// None does.
    Violated {
        /// When no explanation was left: the completion of the operation that had none.
        at: u64,
    },
    /// More than 128 operations with a known outcome were in flight at once.
    TooConcurrent,
}

/// What a known operation does to the register, and what it must hear.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// A PUT: the register holds this state after it.
    Put(u32),
    /// A GET that found this state.
    Get(u32),
    /// A DEL that found something (`true`) or nothing.
    Del(bool),
    /// An answer no register gives to this call (a reply that does not fit the request).
    Impossible,
}

/// Something that happens at an instant of the sweep. At equal times they come in this
/// order: operations touching at an instant overlap, so invocations come before completions,
/// and an operation whose bound is an instant may still take effect at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// An operation that may or may not take effect becomes possible: it would leave the
    /// register in this state, and may take effect until this bound (`u64::MAX`: any time).
    Offer(u32, u64),
    /// A known operation is invoked.
    Invoke(usize),
    /// A known operation completes: by now it must have taken effect.
    Complete(usize),
    /// The bound of some pending operations: after this instant they can no longer take
    /// effect.
    Expire,
}

/// One key's history (or a window of it) ready for a sweep.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What each known operation inside the span does and must hear.
    known: Vec<Action>,
    /// Every event, in the order the sweep takes them.
    events: Vec<(u64, Event)>,
    /// The states the register may be in at the start of the span.
    entry: Vec<u32>,
    /// How many state ids there are.
    states: u32,
    /// For each state id: how many known reads find it.
    reads: Vec<u32>,
    /// For each state id: how many `Offer`s of it there are.
    offers: Vec<u32>,
    /// For each state id: whether a known PUT inside the span leaves it.
    written: Vec<bool>,
}

/// Prepares the operations of one key (answered by the primary) for a sweep over `span`.
/// Inside the span, operations with a known outcome must take effect with their answers, and
/// PUTs and DELs with an unknown outcome may take effect at any instant from their invocation
/// to their bound (`completed`; `u64::MAX`: any time after), or never. Failed operations did
/// not happen; GETs with an unknown outcome change nothing.
///
/// A window (a span that does not cover the whole history) is checked without its past: it
/// may start absent or holding the value of any PUT acknowledged before it, or of unknown
/// outcome and bounded before it; PUTs and DELs of unknown outcome whose bound is not before
/// it may take effect in it (at its start, too, if sent before it), and so may PUTs and DELs
/// that straddle either end of it (answers unchecked; not after their completion, which
/// matters only for those straddling its start). Every linearization of the whole history,
/// cut to the window, is one of these; so a window that is not linearizable proves that the
/// whole history is not.
pub fn prepare(history: &[&Operation], span: Span) -> Prepared {
    // The latest instant an operation may take effect: its completion, or for one of unknown
    // outcome its bound.
    let completed = |op: &Operation| op.completed.max(op.invoked);
    let inside = |op: &Operation| {
        !matches!(op.outcome, Outcome::Failed | Outcome::Unknown)
            && op.invoked >= span.from
            && completed(op) <= span.to
    };
    let mut expiries = Vec::new();
    // Each value a read inside the span shows gets a state id of its own.
    let mut ids: HashMap<&str, u32> = HashMap::new();
    for op in history.iter().filter(|op| inside(op)) {
        if let (Call::Get, Outcome::Read(Some(value))) = (&op.call, &op.outcome) {
            let next = 2 + ids.len() as u32;
            ids.entry(value.as_str()).or_insert(next);
        }
    }
    let state_of = |value: &str| ids.get(value).copied().unwrap_or(UNREAD);
    let mut known = Vec::new();
    let mut events = Vec::new();
    let mut entry = vec![ABSENT];
    for &op in history {
        let effect = match &op.call {
            Call::Put(value) => Some(state_of(value)),
            Call::Del => Some(ABSENT),
            Call::Get => None,
        };
        if op.outcome == Outcome::Failed {
            continue;
        }
        // An acknowledged PUT before the window, or one of unknown outcome bounded before
        // it, may have left its value there. (One that may still take effect in the window
        // is offered below instead: taking effect at its start gives the same, and it cannot
        // take effect twice.)
        if let (Call::Put(value), Outcome::Written | Outcome::Unknown) = (&op.call, &op.outcome) {
            if completed(op) < span.from {
                entry.push(state_of(value));
            }
        }
        if inside(op) {
            let action = match (&op.call, &op.outcome) {
                (Call::Put(value), Outcome::Written) => Action::Put(state_of(value)),
                (Call::Get, Outcome::Read(None)) => Action::Get(ABSENT),
                (Call::Get, Outcome::Read(Some(value))) => Action::Get(state_of(value)),
                (Call::Del, Outcome::Deleted(found)) => Action::Del(*found),
                _ => Action::Impossible,
            };
            let index = known.len();
            known.push(action);
            events.push((op.invoked, Event::Invoke(index)));
            events.push((completed(op), Event::Complete(index)));
            continue;
        }
        // Outside the checked part, a PUT or DEL that could take effect inside the span,
        // until its bound (none, if that is not before the span's end: all alike there).
        let overlaps = completed(op) >= span.from && op.invoked <= span.to;
        if let Some(state) = effect.filter(|_| overlaps) {
            let bound = Some(completed(op)).filter(|&bound| bound < span.to);
            let offer = Event::Offer(state, bound.unwrap_or(u64::MAX));
            events.push((op.invoked.max(span.from), offer));
            expiries.extend(bound);
        }
    }
    expiries.sort_unstable();
    expiries.dedup();
    events.extend(expiries.into_iter().map(|at| (at, Event::Expire)));
    events.sort_unstable();
    entry.sort_unstable();
    entry.dedup();
    let states = 2 + ids.len();
    let mut reads = vec![0; states];
    let mut offers = vec![0; states];
    let mut written = vec![false; states];
    for (_, event) in &events {
        match *event {
            Event::Offer(state, _) => offers[state as usize] += 1,
            Event::Invoke(i) => match known[i] {
                Action::Put(state) => written[state as usize] = true,
                Action::Get(state) => reads[state as usize] += 1,
                Action::Del(_) | Action::Impossible => {}
            },
            Event::Complete(_) | Event::Expire => {}
        }
    }
    Prepared {
        known,
        events,
        entry,
        states: states as u32,
        reads,
        offers,
        written,
    }
}

/// One way the operations so far could have gone: which known operations in flight have
/// taken effect (bits by slot), the register's state, and what may still take effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    /// The in-flight known operations that have taken effect, by slot.
    done: u128,
    /// The register's state id.
    state: u32,
    /// What may still take effect.
    spare: Spare,
}

/// Runs the sweep over a prepared history.
pub fn run(prepared: &Prepared) -> Verdict {
    let mut sweep = Sweep {
        known: &prepared.known,
        frontier: prepared
            .entry
            .iter()
            .map(|&state| Node {
                done: 0,
                state,
                spare: Spare::default(),
            })
            .collect(),
        slots: vec![0; prepared.known.len()],
        free: (0..MAX_IN_FLIGHT as u8).rev().collect(),
        in_flight: Vec::new(),
        retired: vec![false; prepared.states as usize],
        reads: prepared.reads.clone(),
        offers: prepared.offers.clone(),
        needed: vec![false; prepared.states as usize],
        written: &prepared.written,
    };
    for &(at, event) in &prepared.events {
        match event {
            Event::Offer(offered, bound) => {
                let state = sweep.canonical(offered);
                for node in &mut sweep.frontier {
                    node.spare.add(state, bound, 1);
                }
                let left = &mut sweep.offers[offered as usize];
                *left -= 1;
                if *left == 0 && state >= 2 && !sweep.written[state as usize] {
                    sweep.needed[state as usize] = true;
                }
            }
            Event::Invoke(i) => {
                let Some(slot) = sweep.free.pop() else {
                    return Verdict::TooConcurrent;
                };
                sweep.slots[i] = slot;
                sweep.in_flight.push(i);
                if let Action::Get(seen) = prepared.known[i] {
                    for node in sweep.frontier.iter_mut().filter(|n| n.state == seen) {
                        node.done |= 1u128 << slot;
                    }
                }
            }
            Event::Complete(i) => {
                if !sweep.complete(i) {
                    return Verdict::Violated { at };
                }
            }
            Event::Expire => sweep.expire(at),
        }
    }
    Verdict::Linearizable
}

/// The sweep's working state.
struct Sweep<'a> {
    /// What each known operation does and must hear.
    known: &'a [Action],
    /// Every way things could have gone so far that no other way makes redundant.
    frontier: Vec<Node>,
    /// The slot (bit) of each known operation while in flight.
    slots: Vec<u8>,
    /// Slots not in use.
    free: Vec<u8>,
    /// The known operations invoked and not completed.
    in_flight: Vec<usize>,
    /// The value states whose last read has completed (now counted as `UNREAD`).
    retired: Vec<bool>,
    /// For each state id: how many known reads finding it are still to complete.
    reads: Vec<u32>,
    /// For each state id: how many of its `Offer`s are still to come.
    offers: Vec<u32>,
    /// For each state id: whether a known PUT inside the span leaves it.
    written: &'a [bool],
    /// The values a read still to complete shows, whose only sources left are pending
    /// operations (no known PUT writes them, and no more are offered): a way in which the
    /// register does not hold such a value and none is pending can never explain that read.
    needed: Vec<bool>,
}

impl Sweep<'_> {
    /// The state id `state` counts as now.
    fn canonical(&self, state: u32) -> u32 {
        if self.retired[state as usize] {
            UNREAD
        } else {
            state
        }
    }

    /// The state after `action` in `state`, if the register's answer is the one heard.
    fn apply(&self, action: Action, state: u32) -> Option<u32> {
        match action {
            Action::Put(after) => Some(self.canonical(after)),
            Action::Get(seen) => (seen == state).then_some(state),
            Action::Del(found) => (found == (state != ABSENT)).then_some(ABSENT),
            Action::Impossible => None,
        }
    }

    /// `node` with every GET in flight that finds its state taken effect: a way in which a
    /// GET has taken effect can do all one in which it has not (a GET changes nothing, and
    /// then need not find the register in this state later), and getting there needs nothing.
    /// So GETs take effect as soon as they can, and never have to be tried later.
    fn settled(&self, mut node: Node) -> Node {
        for &j in &self.in_flight {
            if matches!(self.known[j], Action::Get(seen) if seen == node.state) {
                node.done |= 1u128 << self.slots[j];
            }
        }
        node
    }

    /// Whether `node` lost the last source of a value a read it has not yet made still
    /// needs: `lost` is the value the register held before, or the pending operation used.
    fn doomed(&self, node: &Node, lost: u32) -> bool {
        if !self.needed[lost as usize] || node.state == lost || node.spare.has(lost) {
            return false;
        }
        let made = self.in_flight.iter().filter(|&&j| {
            matches!(self.known[j], Action::Get(seen) if seen == lost)
                && node.done & (1u128 << self.slots[j]) != 0
        });
        made.count() < self.reads[lost as usize] as usize
    }

    /// The ways `node` goes on by known operation `j` taking effect next, maybe right after
    /// one pending operation (one is enough: each overwrites the register, so only the last
    /// of several in a row matters; and before a PUT none matters). Ways that lost a value a
    /// read still needs are dropped.
    fn successors(&self, node: &Node, j: usize, mut found: impl FnMut(Node)) {
        let bit = 1u128 << self.slots[j];
        let action = self.known[j];
        if let Some(state) = self.apply(action, node.state) {
            let child = self.settled(Node {
                done: node.done | bit,
                state,
                spare: node.spare.clone(),
            });
            if !self.doomed(&child, node.state) {
                found(child);
            }
        }
        if matches!(action, Action::Put(_)) {
            return;
        }
        for before in node.spare.states() {
            if before == node.state {
                continue;
            }
            if let Some(state) = self.apply(action, before) {
                let child = self.settled(Node {
                    done: node.done | bit,
                    state,
                    spare: node.spare.without_one(before),
                });
                if !self.doomed(&child, node.state) && !self.doomed(&child, before) {
                    found(child);
                }
            }
        }
    }

    /// Known operation `i` completes: keep the ways in which it has taken effect, making it
    /// take effect now (after any of the others in flight) where it has not. Answers whether
    /// any way is left.
    fn complete(&mut self, i: usize) -> bool {
        let bit = 1u128 << self.slots[i];
        let mut next = Vec::new();
        let mut seen: HashSet<Node> = HashSet::new();
        let mut stack = Vec::new();
        for node in std::mem::take(&mut self.frontier) {
            if node.done & bit != 0 {
                next.push(node);
                continue;
            }
            stack.push(node);
            while let Some(node) = stack.pop() {
                for &j in &self.in_flight {
                    if node.done & (1u128 << self.slots[j]) != 0 {
                        continue;
                    }
                    self.successors(&node, j, |child| {
                        // Done once `i` has taken effect (itself, or a GET settled by `j`).
                        if child.done & bit != 0 {
                            next.push(child);
                        } else if seen.insert(child.clone()) {
                            stack.push(child);
                        }
                    });
                }
            }
        }
        for node in &mut next {
            node.done &= !bit;
        }
        self.free.push(self.slots[i]);
        self.in_flight.retain(|&j| j != i);
        if let Action::Get(state) = self.known[i] {
            self.reads[state as usize] -= 1;
        }
        // A value no read is left to find is now like any other such value.
        if let Some(state) = match self.known[i] {
            Action::Get(state) if state >= 2 && self.reads[state as usize] == 0 => Some(state),
            _ => None,
        } {
            self.retired[state as usize] = true;
            self.needed[state as usize] = false;
            for node in &mut next {
                if node.state == state {
                    node.state = UNREAD;
                }
                node.spare.relabel(state, UNREAD);
            }
        }
        self.frontier = prune(next, self.reads_in_flight());
        !self.frontier.is_empty()
    }

    /// The bits of the GETs in flight.
    fn reads_in_flight(&self) -> u128 {
        self.in_flight
            .iter()
            .filter(|&&j| matches!(self.known[j], Action::Get(_)))
            .fold(0, |mask, &j| mask | 1u128 << self.slots[j])
    }

    /// The bound of some pending operations is `at`: before they go, add the ways in which
    /// one of them takes effect now, last, after any of the known operations in flight (each
    /// maybe right after one pending operation, as in [`Sweep::successors`]). That is all an
    /// expiry needs: in a linearization whose every operation takes effect as late as its
    /// deadline and the next one allow, what takes effect at `at` is a run ending with an
    /// operation whose deadline is `at`, and a known one completing at `at` has been dealt
    /// with already (completions come first).
    fn expire(&mut self, at: u64) {
        // (Only a way with one left can end so; other ways are kept as they are.)
        let expiring = |node: &Node| {
            let mut states = node.spare.states();
            states.any(|s| node.spare.earliest(s).is_some_and(|bound| bound <= at))
        };
        if !self.frontier.iter().any(expiring) {
            return; // Nothing is bounded here in any way.
        }
        let mut seen: HashSet<Node> = self.frontier.iter().cloned().collect();
        let mut stack: Vec<Node> = self
            .frontier
            .iter()
            .filter(|n| expiring(n))
            .cloned()
            .collect();
        let mut last = Vec::new();
        while let Some(node) = stack.pop() {
            for s in node.spare.states() {
                if s == node.state || node.spare.earliest(s).is_none_or(|bound| bound > at) {
                    continue;
                }
                let child = self.settled(Node {
                    done: node.done,
                    state: s,
                    spare: node.spare.without_one(s),
                });
                if !self.doomed(&child, node.state) {
                    last.push(child);
                }
            }
            for &j in &self.in_flight {
                if node.done & (1u128 << self.slots[j]) == 0 {
                    self.successors(&node, j, |child| {
                        if expiring(&child) && seen.insert(child.clone()) {
                            stack.push(child);
                        }
                    });
                }
            }
        }
        let mut next = std::mem::take(&mut self.frontier);
        next.extend(last);
        let mut changed = false;
        for node in &mut next {
            changed |= node.spare.expire(at);
        }
        // Ways that differed only in what expired may be alike now.
        self.frontier = if changed {
            prune(next, self.reads_in_flight())
        } else {
            next
        };
    }
}

/// The nodes no other node makes redundant. Of two with the same state and the same PUTs
/// and DELs in flight taken effect, one makes the other redundant if it has at least as many
/// operations pending of every kind (a pending one may still take effect later, or never),
/// and every GET in flight (bits `reads`) that has taken effect in the other has in it too
/// (a GET changes nothing, and one that has taken effect need not find anything later).
fn prune(mut nodes: Vec<Node>, reads: u128) -> Vec<Node> {
    let group_of = |node: &Node| (node.done & !reads, node.state);
    let covers = |a: &Node, b: &Node| b.done & !a.done == 0 && a.spare.covers(&b.spare);
    nodes.sort_by_key(group_of);
    let mut kept: Vec<Node> = Vec::with_capacity(nodes.len());
    let mut group = 0;
    for node in nodes {
        if kept
            .get(group)
            .is_some_and(|first| group_of(first) != group_of(&node))
        {
            group = kept.len();
        }
        if kept[group..].iter().any(|k| covers(k, &node)) {
            continue;
        }
        let mut at = group;
        while at < kept.len() {
            if covers(&node, &kept[at]) {
                kept.swap_remove(at);
            } else {
                at += 1;
            }
        }
        kept.push(node);
    }
    kept
}
