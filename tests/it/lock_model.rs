//! A model of the lane lock protocol, checked exhaustively with `stateright`: two daemons,
//! one lock ref, a discrete clock, and every interleaving of read, acquire, takeover,
//! heartbeat, release, pause and resume, with every write delayed (sent, then applied
//! whenever the model likes: across ticks and pauses, after the sender gave up). A landing
//! step is its own process: it runs on while its daemon is paused, and it ends, or is
//! killed by its guard at the lease deadline, or is cancelled when the daemon learns it
//! lost the lock.
//!
//! The property is the lane promise: at most one step of the lane runs at a time. It holds
//! when every write is a compare-and-swap where the ref is written and the step's guard
//! kills it at the lease deadline; the model checker finds the overlap when the expected
//! value is checked only by the client (then force-written), or when nothing outside the
//! daemon stops a paused daemon's step.

use stateright::{Checker, Model, Property};

const DAEMONS: usize = 2;
/// The lock's TTL in ticks; a lock written at `t` expires at `t + TTL`.
const TTL: u8 = 2;
/// The clock stops here: every behaviour within this many ticks is explored.
const HORIZON: u8 = 5;
/// Each write makes a new lock value (a new commit); at most this many per behaviour.
const MAX_WRITES: u8 = 7;

/// A lock ref's value: who wrote it, which write it was, and when it expires (taken
/// over only once the clock is past `expires`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Lock {
    owner: u8,
    write: u8,
    expires: u8,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Read the ref (the push negotiation's view) and decides from it.
    Saw(Option<Lock>),
    /// A write sent and not yet applied.
    Writing {
        kind: Write,
        expect: Option<Lock>,
        new: Option<Lock>,
    },
    Holding(Lock),
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Write {
    /// Create (the ref was absent) or take over (it was expired); the step starts on
    /// success.
    Acquire,
    /// Heartbeat: the lease moves with the lock.
    Refresh,
    /// Delete the ref.
    Release,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Daemon {
    phase: Phase,
    paused: bool,
    /// The landing step runs (a separate process group).
    step: bool,
    /// The guard's deadline: the step is killed when the clock reaches it.
    lease: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    clock: u8,
    writes: u8,
    lock: Option<Lock>,
    daemons: [Daemon; DAEMONS],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Tick,
    Read(usize),
    /// Send a create (the ref was absent) or a takeover (it was expired).
    Acquire(usize),
    Heartbeat(usize),
    /// The step ended on its own: the daemon releases.
    StepEnds(usize),
    Release(usize),
    /// The delayed write lands at the ref.
    Apply(usize),
    GuardKills(usize),
    Pause(usize),
    Resume(usize),
}

struct LockModel {
    /// The ref moves only if it still holds the expected value, checked where it is
    /// written (under the ref's lock, or by the git server); otherwise the client checks
    /// at read time and the write is forced.
    cas_at_writer: bool,
    /// The step's guard kills it at the lease deadline, with no help from the daemon.
    lease_guard: bool,
}

impl LockModel {
    fn new_lock(state: &State, owner: usize) -> Lock {
        Lock {
            owner: owner as u8,
            write: state.writes,
            expires: state.clock + TTL,
        }
    }
}

impl Model for LockModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let idle = Daemon {
            phase: Phase::Idle,
            paused: false,
            step: false,
            lease: 0,
        };
        vec![State {
            clock: 0,
            writes: 0,
            lock: None,
            daemons: [idle; DAEMONS],
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        // The guard acts before the clock passes its deadline.
        let guard_due = self.lease_guard
            && state
                .daemons
                .iter()
                .any(|d| d.step && state.clock >= d.lease);
        if state.clock < HORIZON && !guard_due {
            actions.push(Action::Tick);
        }
        for (i, d) in state.daemons.iter().enumerate() {
            if d.step {
                actions.push(Action::StepEnds(i));
                if self.lease_guard && state.clock >= d.lease {
                    actions.push(Action::GuardKills(i));
                }
            }
            if let Phase::Writing { .. } = d.phase {
                actions.push(Action::Apply(i));
            }
            if d.paused {
                actions.push(Action::Resume(i));
                continue;
            }
            actions.push(Action::Pause(i));
            match d.phase {
                Phase::Idle => actions.push(Action::Read(i)),
                Phase::Saw(seen) if seen.is_none_or(|l| state.clock > l.expires) => {
                    actions.push(Action::Acquire(i))
                }
                Phase::Holding(_) if d.step => actions.push(Action::Heartbeat(i)),
                Phase::Holding(_) => actions.push(Action::Release(i)),
                _ => {}
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Tick => s.clock += 1,
            Action::Read(i) => s.daemons[i].phase = Phase::Saw(s.lock),
            Action::Acquire(i) | Action::Heartbeat(i) => {
                if s.writes >= MAX_WRITES {
                    return None;
                }
                let (kind, expect) = match s.daemons[i].phase {
                    Phase::Saw(seen) => (Write::Acquire, seen),
                    Phase::Holding(held) => (Write::Refresh, Some(held)),
                    _ => return None,
                };
                let new = Some(LockModel::new_lock(&s, i));
                s.writes += 1;
                s.daemons[i].phase = Phase::Writing { kind, expect, new };
            }
            Action::Release(i) => {
                let Phase::Holding(held) = s.daemons[i].phase else {
                    return None;
                };
                s.daemons[i].phase = Phase::Writing {
                    kind: Write::Release,
                    expect: Some(held),
                    new: None,
                };
            }
            Action::StepEnds(i) | Action::GuardKills(i) => s.daemons[i].step = false,
            Action::Apply(i) => self.apply(&mut s, i),
            Action::Pause(i) => s.daemons[i].paused = true,
            Action::Resume(i) => s.daemons[i].paused = false,
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![Property::always(
            "at most one landing per lane",
            |_, s: &State| s.daemons.iter().filter(|d| d.step).count() <= 1,
        )]
    }
}

impl LockModel {
    /// The delayed write of daemon `i` reaches the ref; the daemon learns the outcome.
    fn apply(&self, s: &mut State, i: usize) {
        let Phase::Writing { kind, expect, new } = s.daemons[i].phase else {
            return;
        };
        let moved = !self.cas_at_writer || s.lock == expect;
        if moved {
            s.lock = new;
        }
        let clock = s.clock;
        let d = &mut s.daemons[i];
        match (kind, new) {
            (Write::Acquire, Some(lock)) if moved => {
                // A guard whose deadline has passed kills the step before it runs.
                d.step = !self.lease_guard || clock < lock.expires;
                d.lease = lock.expires;
                d.phase = Phase::Holding(lock);
            }
            (Write::Refresh, Some(lock)) if moved => {
                d.lease = lock.expires;
                d.phase = Phase::Holding(lock);
            }
            // Lost the lock: the daemon cancels its step and gives the lane up.
            (Write::Acquire | Write::Refresh, _) => {
                d.step = false;
                d.phase = Phase::Idle;
            }
            // Released, or refused because it was no longer ours.
            (Write::Release, _) => d.phase = Phase::Idle,
        }
    }
}

fn overlap_found(model: LockModel) -> bool {
    let checker = model.checker().spawn_bfs().join();
    checker.discovery("at most one landing per lane").is_some()
}

#[test]
fn model_one_landing_per_lane_holds_with_cas_at_the_writer_and_the_lease_guard() {
    let checker = LockModel {
        cas_at_writer: true,
        lease_guard: true,
    }
    .checker()
    .spawn_bfs()
    .join();
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 1000,
        "the model explored too little"
    );
}

#[test]
fn model_finds_two_landings_when_the_old_value_is_checked_only_by_the_client() {
    assert!(overlap_found(LockModel {
        cas_at_writer: false,
        lease_guard: true,
    }));
}

#[test]
fn model_finds_two_landings_when_nothing_stops_a_paused_daemons_step() {
    assert!(overlap_found(LockModel {
        cas_at_writer: true,
        lease_guard: false,
    }));
}
