//! The chaos run's driver: rounds of PRs queued on every lane while a seeded schedule
//! pauses (SIGSTOP/SIGCONT), kills (SIGKILL, restarted later) and restarts (SIGTERM) the
//! daemons and plants claims nobody works on. The seed fixes the driver's draws (which
//! fault, when, how long, which lane and queue, each landing's naps); which daemon a
//! fault hits can also depend on which daemons are landing at that moment, and the
//! daemons' own timing varies from run to run, so a seed replays the schedule, not every
//! interleaving.

#![allow(dead_code)] // the CI test and the bench use different parts

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::chaos_world::{ChaosWorld, LANES, LOCK_TTL_SECS, QUEUES, signal};
use crate::support::{dead_owner, stamp_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGSTOP a daemon for 0.3–2 lock TTLs, then SIGCONT.
    Pause,
    /// SIGKILL a daemon; start it again 0–1.5 s later.
    Kill,
    /// SIGTERM a daemon, wait for it, start it again at once.
    Restart,
    /// A record in `landing` claimed by a berth of this host whose process is gone.
    PlantStale,
    /// A record in `landing` claimed by another machine, untouched from now on.
    PlantForeign,
    /// A record in `landing` claimed by a live process of this host that is no berth
    /// (pid 1 with its real start time).
    PlantFakeLive,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Pause,
        Fault::Kill,
        Fault::Restart,
        Fault::PlantStale,
        Fault::PlantForeign,
        Fault::PlantFakeLive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Pause => "pause",
            Fault::Kill => "kill",
            Fault::Restart => "restart",
            Fault::PlantStale => "stale-claim",
            Fault::PlantForeign => "foreign-claim",
            Fault::PlantFakeLive => "fake-live-claim",
        }
    }

    /// How often a random draw picks it: pauses most (they are what outlives a lock),
    /// plants least (each adds a record).
    fn weight(self) -> u32 {
        match self {
            Fault::Pause => 4,
            Fault::Kill => 2,
            _ => 1,
        }
    }

    fn parse(name: &str) -> Fault {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("CHAOS_FAULTS: unknown fault {name:?}"))
    }
}

/// What a run does; every field has an environment knob ([`Knobs::from_env`]).
#[derive(Clone, Debug)]
pub struct Knobs {
    pub seed: u64,
    /// 2–4 `berth run --watch` daemons (`CHAOS_DAEMONS`).
    pub daemons: usize,
    /// Rounds of PRs (`CHAOS_ROUNDS`); each queues `prs_per_lane` on every lane.
    pub rounds: usize,
    pub prs_per_lane: usize,
    /// The run stops queueing and injecting after this (`CHAOS_SECS`).
    pub time_limit: Duration,
    /// The chance per driver step (every 100 ms) of injecting a fault (`CHAOS_FAULT_RATE`).
    pub fault_rate: f64,
    pub faults: Vec<Fault>,
    /// Queue 1 reaches the local origin through a symlink (on unless `CHAOS_ALIAS=0`).
    pub alias: bool,
    /// Keep the world's files (daemon logs, queues, origins) after the run and print where
    /// they are (`CHAOS_KEEP=1`).
    pub keep: bool,
}

impl Knobs {
    /// `defaults`, overridden by `CHAOS_SEED`, `CHAOS_DAEMONS`, `CHAOS_ROUNDS`,
    /// `CHAOS_PRS`, `CHAOS_SECS`, `CHAOS_FAULT_RATE`, `CHAOS_FAULTS` (comma-separated
    /// names, or `none`), `CHAOS_ALIAS` and `CHAOS_KEEP`.
    pub fn from_env(defaults: Knobs) -> Knobs {
        fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
            let text = std::env::var(name).ok()?;
            Some(
                text.parse()
                    .unwrap_or_else(|_| panic!("{name}={text:?} does not parse")),
            )
        }
        let faults = std::env::var("CHAOS_FAULTS")
            .ok()
            .map(|list| match list.as_str() {
                "none" => Vec::new(),
                list => list.split(',').map(|f| Fault::parse(f.trim())).collect(),
            });
        let knobs = Knobs {
            seed: var("CHAOS_SEED").unwrap_or(defaults.seed),
            daemons: var("CHAOS_DAEMONS").unwrap_or(defaults.daemons),
            rounds: var("CHAOS_ROUNDS").unwrap_or(defaults.rounds),
            prs_per_lane: var("CHAOS_PRS").unwrap_or(defaults.prs_per_lane),
            time_limit: var("CHAOS_SECS")
                .map(Duration::from_secs)
                .unwrap_or(defaults.time_limit),
            fault_rate: var("CHAOS_FAULT_RATE").unwrap_or(defaults.fault_rate),
            faults: faults.unwrap_or(defaults.faults),
            alias: var::<u8>("CHAOS_ALIAS").map_or(defaults.alias, |a| a == 1),
            keep: var::<u8>("CHAOS_KEEP").map_or(defaults.keep, |k| k == 1),
        };
        assert!(
            (2..=4).contains(&knobs.daemons),
            "CHAOS_DAEMONS must be 2–4"
        );
        knobs
    }

    /// A seed from the clock, for runs that do not name one.
    pub fn fresh_seed() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
}

/// What the driver did.
pub struct Driven {
    pub world: ChaosWorld,
    pub rounds: usize,
    pub faults: BTreeMap<Fault, u64>,
    /// Records still unsettled after the final heal (checked again by the checker).
    pub settled: bool,
}

/// How long the run waits, after the last fault, for every record to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(45);
const STEP: Duration = Duration::from_millis(100);

/// Runs the chaos: starts the daemons, queues the rounds, injects faults until every
/// round settled or the time limit passed, heals everything and waits for the queue to
/// settle, then stops the daemons.
pub fn drive(knobs: &Knobs) -> Driven {
    eprintln!(
        "chaos: seed {} (CHAOS_SEED={} replays the driver's choices), {} daemons, {} rounds x {} PRs per lane, faults {:?}",
        knobs.seed,
        knobs.seed,
        knobs.daemons,
        knobs.rounds,
        knobs.prs_per_lane,
        knobs.faults.iter().map(|f| f.name()).collect::<Vec<_>>()
    );
    let mut rng = fastrand::Rng::with_seed(knobs.seed);
    let mut world = ChaosWorld::new(knobs.daemons, knobs.alias);
    if knobs.keep {
        eprintln!(
            "chaos: the world (daemon logs: berth-d*.log) is kept at {}",
            world.world.keep().display()
        );
    }
    for i in 0..knobs.daemons {
        world.start(i);
    }
    // Every enabled kind once, in a seeded order, before the random draws.
    let mut first = knobs.faults.clone();
    rng.shuffle(&mut first);
    let mut driver = Driver {
        rng,
        first,
        knobs: knobs.clone(),
        faults: BTreeMap::new(),
    };
    let deadline = Instant::now() + knobs.time_limit;
    let mut rounds = 0;
    // Rounds go on past `knobs.rounds` until every enabled kind was injected once: a
    // queue that settles quickly must not end the run before a pause ever hit it.
    while (rounds < knobs.rounds || !driver.first.is_empty()) && Instant::now() < deadline {
        for lane in 0..LANES.len() {
            for _ in 0..knobs.prs_per_lane {
                let queue = driver.rng.usize(..QUEUES);
                let naps = driver.naps();
                world.queue_pr(lane, queue, naps);
            }
        }
        while !world.all_settled() && Instant::now() < deadline {
            driver.step(&mut world);
            std::thread::sleep(STEP);
        }
        rounds += 1;
    }
    world.heal();
    let settled = world.world.wait_for(SETTLE_LIMIT, || world.all_settled());
    world.stop_all();
    Driven {
        world,
        rounds,
        faults: driver.faults,
        settled,
    }
}

struct Driver {
    rng: fastrand::Rng,
    first: Vec<Fault>,
    knobs: Knobs,
    faults: BTreeMap<Fault, u64>,
}

impl Driver {
    /// Seconds the landing naps before its fetch and after its push: mostly short, one in
    /// eight long enough to outlive a lock whose daemon is paused.
    fn naps(&mut self) -> (f64, f64) {
        let before = if self.rng.u8(..8) == 0 {
            LOCK_TTL_SECS as f64 * (0.7 + self.rng.f64())
        } else {
            self.rng.f64() * 0.4
        };
        (before, self.rng.f64() * 0.3)
    }

    /// Ends pauses and downtimes that are due, then maybe injects one fault.
    fn step(&mut self, world: &mut ChaosWorld) {
        let now = Instant::now();
        for i in 0..world.daemons.len() {
            if world.daemons[i].paused_until.is_some_and(|t| t <= now) {
                world.resume(i);
            }
            if world.daemons[i].down_until.is_some_and(|t| t <= now) {
                world.start(i);
            }
        }
        if self.knobs.faults.is_empty() || self.rng.f64() >= self.knobs.fault_rate {
            return;
        }
        let fault = match self.first.last() {
            Some(&fault) => fault,
            None => self.draw(),
        };
        if self.inject(world, fault) {
            if self.first.last() == Some(&fault) {
                self.first.pop();
            }
            *self.faults.entry(fault).or_default() += 1;
        }
    }

    /// Injects `fault`; false when no daemon can take it now (it must leave one running).
    fn inject(&mut self, world: &mut ChaosWorld, fault: Fault) -> bool {
        match fault {
            Fault::Pause | Fault::Kill | Fault::Restart => {
                let Some(i) = self.victim(world, fault) else {
                    return false;
                };
                let d = &mut world.daemons[i];
                let child = d.child.as_mut().unwrap();
                match fault {
                    Fault::Pause => {
                        signal(child, Signal::SIGSTOP);
                        let ttls = 0.3 + 1.7 * self.rng.f64();
                        d.paused_until = Some(
                            Instant::now() + Duration::from_secs_f64(ttls * LOCK_TTL_SECS as f64),
                        );
                    }
                    Fault::Kill => {
                        signal(child, Signal::SIGKILL);
                        let _ = child.wait();
                        d.child = None;
                        d.down_until =
                            Some(Instant::now() + Duration::from_secs_f64(1.5 * self.rng.f64()));
                    }
                    _ => {
                        signal(child, Signal::SIGTERM);
                        wait_or_kill(child);
                        d.child = None;
                        world.start(i);
                    }
                }
                true
            }
            plant => {
                let lane = self.rng.usize(..LANES.len());
                let queue = self.rng.usize(..QUEUES);
                let owner = match plant {
                    Fault::PlantStale => dead_owner(),
                    Fault::PlantForeign => "elsewhere~0badf00d~4026531836:4242:1234".to_owned(),
                    _ => stamp_of(1),
                };
                let naps = self.naps();
                world.plant_pr(lane, queue, naps, Some(&owner));
                true
            }
        }
    }

    /// An enabled fault, drawn by [`Fault::weight`].
    fn draw(&mut self) -> Fault {
        let total: u32 = self.knobs.faults.iter().map(|f| f.weight()).sum();
        let mut pick = self.rng.u32(..total);
        for &fault in &self.knobs.faults {
            if pick < fault.weight() {
                return fault;
            }
            pick -= fault.weight();
        }
        unreachable!("the pick is below the total weight")
    }

    /// A running, unpaused daemon, chosen only while another one also runs unpaused. A
    /// pause picks, three times in four, a daemon whose landing step runs: the pause that
    /// outlives its lock while its step goes on is the one that tests the lease.
    fn victim(&mut self, world: &ChaosWorld, fault: Fault) -> Option<usize> {
        let healthy: Vec<usize> = (0..world.daemons.len())
            .filter(|&i| {
                world.daemons[i].child.is_some() && world.daemons[i].paused_until.is_none()
            })
            .collect();
        if healthy.len() < 2 {
            return None;
        }
        let prefer_busy = self.rng.u8(..4) != 0;
        let landing = world.landing_now(Duration::from_secs(10));
        let busy: Vec<usize> = healthy
            .iter()
            .copied()
            .filter(|&i| landing.contains(&world.daemons[i].name))
            .collect();
        let pool = if fault == Fault::Pause && !busy.is_empty() && prefer_busy {
            busy
        } else {
            healthy
        };
        Some(pool[self.rng.usize(..pool.len())])
    }
}

/// Waits up to 15 s for `child` to exit after a SIGTERM, then kills it.
fn wait_or_kill(child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
