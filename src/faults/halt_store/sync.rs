//! One tick's filing of a run's faults: new ones emitted once, cleared ones resolved once,
//! the run's registry updated with what was written.

use std::collections::HashSet;

use super::super::halt::HaltEvent;
use super::super::registry::{self, ActiveFault, Registry};
use super::dirs::Sub;
use super::held::Kind;
use super::run_lock::run_lock_name;
use super::unchanged::Look;
use super::{HaltStore, HaltStoreError, SyncReport, io_problem};
use crate::private_dir::PrivateDir;

impl HaltStore {
    /// One tick for one run's state file (`source`; the queue dir for queue faults): files
    /// the first event of every detector id not already raised, resolves every raised
    /// detector id not among `events`, and records the new raised set. A halt id that
    /// another entry (of this registry, or of another state file's registry with the same
    /// run id) still holds is neither filed again nor resolved. Only what was written is
    /// recorded, so a failed write is retried on the next tick.
    pub fn sync_run(&self, run_id: &str, source: &str, events: &[HaltEvent]) -> SyncReport {
        let mut report = SyncReport::default();
        let active = match self.ensure(Sub::Active) {
            Ok(dir) => dir,
            Err(problem) => {
                report.problem(problem);
                return report;
            }
        };
        let name = registry::name(run_id, source);
        let path = active.join(&name);
        if events.is_empty() && matches!(active.entry(&name), Ok(None)) {
            // Nothing raised, nothing to clear: no lock file made for a run with no fault.
            return report;
        }
        let look = Look::now(&active, &name);
        if look.unchanged_for(&active, &name, events) {
            // Nothing new, nothing cleared: the registry is the one last read.
            return report;
        }
        let lock_name = run_lock_name(run_id);
        let lock_path = active.join(&lock_name);
        let _guard = match self.lock_run_once(&active, &lock_name) {
            Ok(guard) => guard,
            Err(problem) => {
                report.problem(problem);
                return report;
            }
        };
        let (mut registry, loaded_clean) = match registry::load(&active, &name, run_id, source) {
            Ok((registry, warning)) => {
                let clean = warning.is_none();
                report.problems.extend(warning);
                (registry, clean)
            }
            Err(problem) => {
                report.problems.push(problem.to_string());
                return report;
            }
        };
        let changed =
            self.file_and_resolve(&active, (run_id, &name), events, &mut registry, &mut report);
        if !changed && loaded_clean {
            // Remembered with the detector ids the pass added in memory only (of faults the
            // registry records already): a registry cut to one id per fault is then a stat
            // on the next pass with the same detections, not a read of up to 8 MiB.
            look.remember(&active, &name, registry.active.keys());
        }
        if report.withheld > 0
            && let Err(problem) = self.file_cap_event()
        {
            report.problem(problem);
        }
        if changed && !self.swept.swap(true, std::sync::atomic::Ordering::Relaxed) {
            super::sweep::remove_gone_runs(&active);
        }
        if changed && registry.active.is_empty() {
            // Nothing raised: the registry goes, and the run's lock file with it once no
            // other registry of the run is left, so runs that come and go leave nothing.
            super::unchanged::forget(&active, &name);
            if let Err(e) = active.remove_if_there(&name) {
                report
                    .problems
                    .push(io_problem("remove", &path)(e).to_string());
            } else if !registry::others_exist(&active, run_id, &name)
                && let Err(e) = active.remove_if_there(&lock_name)
            {
                report
                    .problems
                    .push(io_problem("remove", &lock_path)(e).to_string());
            }
        } else if changed {
            registry.updated_at = crate::clock::now_iso();
            match registry::save(&active, &name, &registry) {
                Ok(0) => {}
                // Not a problem: nothing is filed or resolved twice; only the next pass
                // writes the registry again.
                Ok(left_out) => tracing::warn!(
                    file = %path.display(),
                    "registry over the {} bytes berth reads back: {left_out} detector ids whose fault another holds are left out, found again next pass",
                    super::super::json_file::MAX_JSON_BYTES
                ),
                Err(e) => report
                    .problems
                    .push(io_problem("write", &path)(e).to_string()),
            }
        }
        report
    }

    /// Files the new detector ids among `events` and resolves the cleared ones of
    /// `registry` (`run_id`'s registry `name` in `active`), updating it with what was
    /// written; whether it changed. The run's other registries are read only when a fault is raised or
    /// cleared, and asked only about those faults: a pass over runs that changed nothing
    /// then reads nothing, where reading for each run is quadratic in the runs.
    fn file_and_resolve(
        &self,
        active: &PrivateDir,
        (run_id, name): (&str, &str),
        events: &[HaltEvent],
        registry: &mut Registry,
        report: &mut SyncReport,
    ) -> bool {
        let mut current: HashSet<&str> = HashSet::new();
        // The fault ids the registry holds, kept up to date as new ones go in: one lookup a
        // new detector, not a walk of a registry that may hold ~100,000 entries.
        let mut held_here = fault_ids(registry);
        // A detector id of a fault the registry records already is no change: it is put
        // in memory (so a clear of the recorded id this pass keeps the fault raised) and
        // written only with a change. A registry cut to one id per fault ([`registry::save`])
        // would otherwise find the ids it left out new again every pass and be rewritten.
        let (joining, mut new): (Vec<&HaltEvent>, Vec<&HaltEvent>) = events
            .iter()
            .filter(|e| {
                current.insert(&e.detector_id) && !registry.active.contains_key(&e.detector_id)
            })
            .partition(|e| held_here.contains(&e.fault_id));
        for event in joining {
            record(registry, event);
        }
        report
            .new_detectors
            .extend(new.iter().map(|e| e.detector_id.clone()));
        let cleared: Vec<(String, String)> = registry
            .active
            .iter()
            .filter(|(id, _)| !current.contains(id.as_str()))
            .map(|(id, a)| (id.clone(), a.fault_id.clone()))
            .collect();
        if new.is_empty() && cleared.is_empty() {
            return false;
        }
        let asked: HashSet<&str> = new
            .iter()
            .map(|e| e.fault_id.as_str())
            .chain(cleared.iter().map(|(_, fault_id)| fault_id.as_str()))
            .collect();
        let elsewhere = {
            let mut reads = self.elsewhere.lock().unwrap_or_else(|e| e.into_inner());
            registry::raised_elsewhere(&mut reads, active, (run_id, name), &asked)
        };
        // The cleared faults first: those resolved free their room for the new ones. Those
        // kept raised (another registry of the run is unreadable) keep theirs: moved out, a
        // fault of theirs detected again would be recorded nowhere berth reads, filed as new
        // and its acknowledged event pending again.
        let mut changed =
            self.resolve_cleared(run_id, cleared, &current, &elsewhere, registry, report);
        if !fits_with(registry, &new) {
            // Filed but not recorded, a fault would be "new" again next pass and filed again
            // (an ack undone): none is filed until the registry can hold it, said once a pass.
            report.problems.push(format!(
                "{} new faults of run {} not filed: its registry {name} would be over the {} bytes berth reads back",
                new.len(),
                registry::said_cut(run_id),
                super::super::json_file::MAX_JSON_BYTES
            ));
            new.clear();
        }
        // A filing held for another run's file at its name is said once a pass per fault
        // (two detectors, or many state files of the run, can hold one fault id).
        for event in new {
            let held = elsewhere.contains(&event.fault_id) || held_here.contains(&event.fault_id);
            if !held {
                let Some(emitted) = counted(report, self, (Kind::Filing, run_id), self.emit(event))
                else {
                    continue;
                };
                report.emitted.push((event.fault_id.clone(), emitted));
            }
            held_here.insert(event.fault_id.clone());
            record(registry, event);
            changed = true;
        }
        changed
    }

    /// Resolves the `cleared` entries (detector id, fault id) of `registry` whose fault no
    /// detector still raises (`current`) here or in another registry of the run
    /// (`elsewhere`), and takes out those whose fault another still holds. Whether the
    /// registry changed. An entry whose fault another registry of the run may hold (one is
    /// unreadable) is kept raised, as is one whose resolve failed, to be tried next pass.
    fn resolve_cleared(
        &self,
        run_id: &str,
        cleared: Vec<(String, String)>,
        current: &HashSet<&str>,
        elsewhere: &registry::Elsewhere,
        registry: &mut Registry,
        report: &mut SyncReport,
    ) -> bool {
        let mut changed = false;
        let mut kept_raised = false;
        // Two detectors (one fault found in two source files) can hold one fault id: it is
        // said once a look.
        let mut said: HashSet<String> = HashSet::new();
        // The fault ids a detector still raised holds, counted once a sync (clearing only
        // removes detectors no longer raised, so it never changes): a cleared fault is one
        // lookup, not a walk of the registry per cleared fault.
        let still_held: HashSet<String> = registry
            .active
            .iter()
            .filter(|(id, _)| current.contains(id.as_str()))
            .map(|(_, a)| a.fault_id.clone())
            .collect();
        let mut resolved: HashSet<String> = report.resolved.iter().cloned().collect();
        // Once a cap holds a marker back, it holds every later one of this pass (the census
        // only grows within a store): those are counted, not tried one by one.
        let mut capped = false;
        for (detector_id, fault_id) in cleared {
            let held = elsewhere.contains(&fault_id) || still_held.contains(&fault_id);
            if !held && !elsewhere.unread().is_empty() {
                // Another registry of the run may hold it: it stays raised (and in this
                // registry) until they can be read.
                kept_raised = true;
                if said.insert(fault_id.clone()) {
                    // Cut: a planted registry's fault id may be megabytes, said every pass.
                    report.problems.push(format!(
                        "{} not resolved: {} registries of the run are unreadable",
                        registry::said_cut(&fault_id),
                        elsewhere.unread().len()
                    ));
                }
                continue;
            }
            if !held && !resolved.contains(&fault_id) {
                if capped {
                    report.withheld += 1;
                    continue;
                }
                let withheld_before = report.withheld;
                if counted(
                    report,
                    self,
                    (Kind::Clear, run_id),
                    self.resolve(run_id, &fault_id),
                )
                .is_none()
                {
                    capped = report.withheld > withheld_before;
                    continue;
                }
                resolved.insert(fault_id.clone());
                report.resolved.push(fault_id);
            }
            registry.active.remove(&detector_id);
            changed = true;
        }
        if kept_raised {
            // Each once a pass, however many faults or looks it keeps raised.
            let mut reads = self.elsewhere.lock().unwrap_or_else(|e| e.into_inner());
            report
                .problems
                .extend(reads.unsaid(elsewhere).into_iter().map(|unread| {
                    format!("a registry of the run is unreadable, its faults stay raised: {unread}")
                }));
        }
        changed
    }
}

/// The fault ids `registry` holds.
fn fault_ids(registry: &Registry) -> HashSet<String> {
    registry
        .active
        .values()
        .map(|a| a.fault_id.clone())
        .collect()
}

/// Whether `registry` with `new`'s detector ids recorded (and a fresh `updatedAt`) is one
/// [`registry::save`] writes. The entries are put in and taken out again: no copy of a
/// registry that may hold 8 MiB.
fn fits_with(registry: &mut Registry, new: &[&HaltEvent]) -> bool {
    if new.is_empty() {
        return true;
    }
    let updated_at = std::mem::replace(&mut registry.updated_at, crate::clock::now_iso());
    for event in new {
        record(registry, event);
    }
    let fits = registry::fits(registry);
    for event in new {
        registry.active.remove(&event.detector_id);
    }
    registry.updated_at = updated_at;
    fits
}

/// `event`'s detector id in `registry`, raised as its fault.
fn record(registry: &mut Registry, event: &HaltEvent) {
    registry.active.insert(
        event.detector_id.clone(),
        ActiveFault {
            fault_id: event.fault_id.clone(),
            first_detected_at: event.timestamp.clone(),
        },
    );
}

/// What a write of the halt dir gave; a withheld write or a problem is counted in `report`
/// instead, and the fault left as it was: a new one out of the registry, so the next pass
/// files it, a cleared one raised in it, so the next pass clears it. A `write` held for
/// another run's file at its name is said once a pass ([`Held::note`](super::held::Held::note)).
fn counted<T>(
    report: &mut SyncReport,
    store: &HaltStore,
    write: (Kind, &str),
    result: Result<T, HaltStoreError>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(ref taken @ HaltStoreError::Taken { ref path, .. }) => {
            let line = taken.to_string();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if store.pass().note(write, &name, &line) {
                report.problems.push(line);
            } else {
                report.said_before += 1;
            }
            None
        }
        Err(HaltStoreError::Withheld { .. }) => {
            report.withheld += 1;
            None
        }
        Err(problem) => {
            report.problem(problem);
            None
        }
    }
}
