//! The chaos run's world: 2–4 real `berth run --watch` daemons over shared origins (a
//! local-path bare repo and one served by `git daemon`), landing with a script that merges
//! and pushes and logs every landing, while the driver ([`crate::chaos_faults`]) pauses,
//! kills and restarts daemons and plants claims. [`crate::chaos_check`] judges the result.
//!
//! Daemon `i` reads queue `i % 2`: with three or four daemons two of them share a queue,
//! and the two queues share the origins (each through its own clones), so lanes are
//! contended both inside one queue and across queues.

#![allow(dead_code)] // the CI test and the bench use different parts

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::World;

/// The lane lock's TTL and heartbeat in the run: short, so pauses outlive locks.
pub const LOCK_TTL_SECS: u64 = 3;
pub const HEARTBEAT_SECS: u64 = 1;

/// The repos (name, served by `git daemon`?) and the bases landed in each.
const REPOS: [(&str, bool); 2] = [("alpha", false), ("beta", true)];
pub const LANES: [(&str, &str); 3] = [("alpha", "main"), ("alpha", "release"), ("beta", "main")];
pub const QUEUES: usize = 2;

/// The landing step. Every line it appends is one `write` under `PIPE_BUF` on an
/// `O_APPEND` descriptor, so lines of concurrent landings never interleave. An `flock` on
/// a per-lane witness file, held by the step and every child it starts, is taken without
/// waiting: failing to get it means another step of the lane still runs (`collide`).
const LAND_SCRIPT: &str = r#"#!/bin/sh
base=$1 pr=$2 branch=$3 dir=$4
log="$dir/landings.log"
url=$(git remote get-url origin) || exit 90
key=$(printf '%s' "$url" | tr -c 'A-Za-z0-9' '_')
read -r repo < "$dir/lanes/$key" || exit 91
lane="$repo@$base"
start=$(date +%s%N)
printf 'begin %s %s %s %s %s\n' "$lane" "$pr" "$CHAOS_DAEMON" "$start" "$$" >> "$log"
exec 9>> "$dir/witness-$(printf '%s' "$lane" | tr -c 'A-Za-z0-9' '_')"
if ! flock -n 9; then
  printf 'collide %s %s %s %s\n' "$lane" "$pr" "$CHAOS_DAEMON" "$(date +%s%N)" >> "$log"
fi
before=0 after=0
read -r before after < "$dir/naps/$pr"
sleep "$before"
pushed=0
if git fetch -q "$url" "refs/heads/$base" && onto=$(git rev-parse FETCH_HEAD) &&
   git fetch -q "$url" "refs/heads/$branch" && feature=$(git rev-parse FETCH_HEAD) &&
   git checkout -q --detach "$onto" &&
   git merge -q --no-ff -m "land $branch" "$feature" &&
   git push -q "$url" "HEAD:refs/heads/$base"; then
  pushed=1
fi
sleep "$after"
printf 'end %s %s %s %s %s %s\n' "$lane" "$pr" "$CHAOS_DAEMON" "$start" "$(date +%s%N)" "$pushed" >> "$log"
[ "$pushed" = 1 ]
"#;

/// One origin: the bare repo, the URL each queue's clones use for it.
pub struct Origin {
    pub name: &'static str,
    pub bare: PathBuf,
    /// Indexed by queue.
    pub urls: Vec<String>,
    /// A clone outside `$HOME/code` that pushes the feature branches.
    producer: PathBuf,
}

/// A PR the run queued (or planted): where, and the feature commit that must end on its
/// base exactly once.
#[derive(Clone, Debug)]
pub struct Pr {
    pub number: u64,
    pub lane: usize,
    pub queue: usize,
    pub id: String,
    pub feature_sha: String,
    pub queued_at: chrono::DateTime<chrono::Utc>,
    /// The owner stamp of a planted claim.
    pub planted: Option<String>,
}

pub struct Daemon {
    pub name: String,
    pub queue: usize,
    pub child: Option<Child>,
    /// Stopped (SIGSTOP) until then.
    pub paused_until: Option<Instant>,
    /// Killed, to be started again then.
    pub down_until: Option<Instant>,
}

pub struct ChaosWorld {
    pub world: World,
    pub origins: Vec<Origin>,
    pub queues: Vec<PathBuf>,
    /// `clones[queue][repo]`.
    clones: Vec<Vec<PathBuf>>,
    pub dir: PathBuf,
    config: PathBuf,
    pub daemons: Vec<Daemon>,
    pub prs: Vec<Pr>,
    next_pr: u64,
    _git_daemon: berth::git_daemon::GitDaemon,
}

impl ChaosWorld {
    /// The origins, clones, queues and landing script; daemons not started yet. With
    /// `alias`, queue 1 reaches `alpha` through a symlink (one repo, two paths).
    pub fn new(daemons: usize, alias: bool) -> ChaosWorld {
        let world = World::new();
        let git_daemon = world.git_daemon();
        let dir = world.root.join("chaos");
        for sub in ["lanes", "naps"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let queues: Vec<PathBuf> = (0..QUEUES)
            .map(|q| match q {
                0 => world.queue.clone(),
                q => {
                    let path = world.queue.with_file_name(format!("release-queue-{q}"));
                    fs::create_dir_all(&path).unwrap();
                    path
                }
            })
            .collect();
        let origins: Vec<Origin> = REPOS
            .iter()
            .map(|&(name, served)| {
                let bare = world.bare_remote(name);
                let mut urls = Vec::new();
                for q in 0..QUEUES {
                    let url = if served {
                        git_daemon.url_for(&format!("{name}.git"))
                    } else if alias && q == 1 {
                        let link = bare.with_file_name(format!("{name}-alias.git"));
                        std::os::unix::fs::symlink(&bare, &link).unwrap();
                        link.to_str().unwrap().to_owned()
                    } else {
                        bare.to_str().unwrap().to_owned()
                    };
                    let key: String = url
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    fs::write(dir.join("lanes").join(key), format!("{name}\n")).unwrap();
                    urls.push(url);
                }
                let producer = world.clone_into(&world.root.join("producers"), name, &urls[0]);
                world.run_git(
                    &producer,
                    &["push", "-q", "origin", "main:refs/heads/release"],
                );
                Origin {
                    name,
                    bare,
                    urls,
                    producer,
                }
            })
            .collect();
        let clones = (0..QUEUES)
            .map(|q| {
                origins
                    .iter()
                    .map(|o| world.clone_into(&world.code, &format!("q{q}-{}", o.name), &o.urls[q]))
                    .collect()
            })
            .collect();
        let script = dir.join("land.sh");
        fs::write(&script, LAND_SCRIPT).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        let config = world.config(&format!(
            "forge = \"git\"\n\
             land_command = [\"{}\", \"{{base}}\", \"{{pr}}\", \"{{branch}}\", \"{}\"]\n\
             lock_ttl_secs = {LOCK_TTL_SECS}\nheartbeat_secs = {HEARTBEAT_SECS}\n\
             poll_secs = 1\nmax_lanes = {}\nland_timeout_secs = 60\nremote_timeout_secs = 10\n",
            script.display(),
            dir.display(),
            LANES.len()
        ));
        let daemons = (0..daemons)
            .map(|i| Daemon {
                name: format!("d{i}"),
                queue: i % QUEUES,
                child: None,
                paused_until: None,
                down_until: None,
            })
            .collect();
        ChaosWorld {
            world,
            origins,
            queues,
            clones,
            dir,
            config,
            daemons,
            prs: Vec::new(),
            next_pr: 1,
            _git_daemon: git_daemon,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("landings.log")
    }

    /// The daemons with a landing step that began in the last `within` and has not
    /// ended (a killed step never ends; `within` forgets it).
    pub fn landing_now(&self, within: Duration) -> Vec<String> {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let since =
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64 - within.as_nanos() as u64;
        let mut running: Vec<(&str, &str)> = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            match f[0] {
                "begin" if f[4].parse::<u64>().is_ok_and(|t| t >= since) => {
                    running.push((f[4], f[3]))
                }
                "end" => running.retain(|(start, _)| *start != f[4]),
                _ => {}
            }
        }
        running.into_iter().map(|(_, d)| d.to_owned()).collect()
    }

    pub fn berth_dir(&self, daemon: usize) -> PathBuf {
        self.world
            .root
            .join(format!("berth-{}", self.daemons[daemon].name))
    }

    pub fn start(&mut self, i: usize) {
        let berth_dir = self.berth_dir(i);
        let d = &self.daemons[i];
        let child = self.world.spawn_berth(
            &["run", "--watch", "--config", self.config.to_str().unwrap()],
            &berth_dir,
            &[
                ("BERTH_QUEUE_DIR", &self.queues[d.queue]),
                ("CHAOS_DAEMON", Path::new(&d.name)),
            ],
        );
        let d = &mut self.daemons[i];
        d.child = Some(child);
        d.down_until = None;
        d.paused_until = None;
    }

    /// Pushes a feature branch for a new PR of `lane` and writes its naps (seconds before
    /// the fetch and after the push) for the landing script.
    fn new_pr(&mut self, lane: usize, naps: (f64, f64)) -> (u64, String, String) {
        let number = self.next_pr;
        self.next_pr += 1;
        let (repo, base) = LANES[lane];
        let origin = self.origins.iter().find(|o| o.name == repo).unwrap();
        let branch = format!("feat/{repo}-{base}-{number}");
        let w = &self.world;
        let producer = &origin.producer;
        w.run_git(producer, &["fetch", "-q", "origin", base]);
        w.run_git(producer, &["checkout", "-q", "-B", &branch, "FETCH_HEAD"]);
        let file = format!("pr-{number}.txt");
        fs::write(producer.join(&file), format!("{number}\n")).unwrap();
        w.run_git(producer, &["add", &file]);
        w.run_git(producer, &["commit", "-q", "-m", &branch]);
        w.run_git(producer, &["push", "-q", "origin", &branch]);
        let sha = w.run_git(producer, &["rev-parse", "HEAD"]);
        fs::write(
            self.dir.join("naps").join(number.to_string()),
            format!("{:.2} {:.2}\n", naps.0, naps.1),
        )
        .unwrap();
        (number, branch, sha)
    }

    /// Queues a new PR of `lane` in `queue`, as a producer would.
    pub fn queue_pr(&mut self, lane: usize, queue: usize, naps: (f64, f64)) -> u64 {
        self.plant_pr(lane, queue, naps, None)
    }

    /// A new PR of `lane` in `queue`; with `claim = Some(owner)` written straight into
    /// `landing` as if `owner` had claimed it and then stopped touching it.
    pub fn plant_pr(
        &mut self,
        lane: usize,
        queue: usize,
        naps: (f64, f64),
        claim: Option<&str>,
    ) -> u64 {
        let (number, branch, sha) = self.new_pr(lane, naps);
        let repo_index = REPOS.iter().position(|r| r.0 == LANES[lane].0).unwrap();
        let clone = &self.clones[queue][repo_index];
        let now = chrono::Utc::now();
        let mut record = self
            .world
            .record(clone, number)
            .set("featureBranch", branch.as_str())
            .set("baseBranch", LANES[lane].1)
            .set("queuedAt", berth::clock::iso(now));
        if let Some(owner) = claim {
            record = record
                .set("status", "landing")
                .set("claimedBy", owner)
                .set("lastUpdatedAt", berth::clock::iso(now));
        }
        let id = record.write_to(&self.queues[queue]);
        self.prs.push(Pr {
            number,
            lane,
            queue,
            id,
            feature_sha: sha,
            queued_at: now,
            planted: claim.map(str::to_owned),
        });
        number
    }

    /// The status of PR `pr`'s record, if its file reads as a record.
    pub fn status(&self, pr: &Pr) -> Option<serde_json::Value> {
        let text =
            fs::read_to_string(self.queues[pr.queue].join(format!("{}.json", pr.id))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether every PR's record is settled (landed, blocked or abandoned).
    pub fn all_settled(&self) -> bool {
        self.prs.iter().all(|pr| {
            self.status(pr).is_some_and(|r| {
                matches!(
                    r["status"].as_str(),
                    Some("landed" | "blocked" | "abandoned")
                )
            })
        })
    }

    /// Every paused daemon continued, every killed one started again.
    pub fn heal(&mut self) {
        for i in 0..self.daemons.len() {
            if self.daemons[i].paused_until.is_some() {
                self.resume(i);
            }
            if self.daemons[i].child.is_none() {
                self.start(i);
            }
        }
    }

    pub fn resume(&mut self, i: usize) {
        if let Some(child) = &self.daemons[i].child {
            signal(child, nix::sys::signal::Signal::SIGCONT);
        }
        self.daemons[i].paused_until = None;
    }

    /// Stops every daemon with SIGTERM (SIGKILL after 15 s) and waits for it.
    pub fn stop_all(&mut self) {
        self.heal();
        for d in &mut self.daemons {
            if let Some(mut child) = d.child.take() {
                signal(&child, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(15);
                while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The merge commits on `lane`'s base in its bare origin, as their second parents.
    pub fn merged_features(&self, lane: usize) -> Vec<String> {
        let (repo, base) = LANES[lane];
        let origin = self.origins.iter().find(|o| o.name == repo).unwrap();
        let out = self.world.run_git(
            &self.world.root,
            &[
                "--git-dir",
                origin.bare.to_str().unwrap(),
                "log",
                "--merges",
                "--format=%P",
                &format!("refs/heads/{base}"),
            ],
        );
        out.lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .collect()
    }
}

impl Drop for ChaosWorld {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            if let Some(mut child) = d.child.take() {
                signal(&child, nix::sys::signal::Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

/// The lane's name as the landing script logs it (`<repo>@<base>`).
pub fn lane_name(lane: usize) -> String {
    format!("{}@{}", LANES[lane].0, LANES[lane].1)
}
