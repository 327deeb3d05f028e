//! What a landing holds of the daemon: the handles its steps use, and nothing of the
//! tick's (no gates, no tick memory, no configuration reload). The shutdown's last sweep
//! revives records through the same handles.

use std::sync::Arc;
use std::time::Duration;

use crate::forge::Forge;
use crate::lane_lock::LockClient;
use crate::runner::Runner;
use crate::telemetry::Telemetry;

use super::active::Active;
use super::policy::Policy;
use super::records::Records;
use super::releasing::Releasing;
use super::stop::{StopFlag, Tally};
use super::unsaved::Waiting;
use super::worktree::Places;

/// The handles one landing holds from claim to release; each is shared with the loop and
/// the other landings, and cheap to clone.
#[derive(Clone)]
pub struct Crew {
    /// The record writes: claim, the steps' moves, the verdict, a revival.
    pub records: Arc<Records>,
    /// The claim check and the merge proof (metered).
    pub forge: Arc<dyn Forge>,
    /// The lane lock on `origin` and its heartbeat.
    pub locks: Arc<LockClient>,
    /// The lane locks being released in the background, which the lane's next lock
    /// write waits for.
    pub releasing: Arc<Releasing>,
    /// The land and ship steps.
    pub runner: Arc<Runner>,
    /// The landing policy (`on_land_result`), and the settings a `requeue` delay needs.
    pub policy: Policy,
    /// Landings done, the lock held (its age for `/metrics`).
    pub telemetry: Arc<Telemetry>,
    /// This process's owner stamp, written as `claimedBy` and as the lock's `ownerId`.
    pub owner: Arc<str>,
    /// The records this process is landing right now.
    pub active: Arc<Active>,
    /// Verdicts the store could not write yet.
    pub unsaved: Arc<Waiting>,
    /// Queued records whose claim the store refused as too large: not lanes' heads.
    pub unclaimable: Arc<super::unclaimable::Unclaimable>,
    /// The signal that stopped the daemon, once one has.
    pub stop: Arc<StopFlag>,
    /// What the shutdown revived and released, for its summary lines.
    pub tally: Arc<Tally>,
    /// Where a landing runs: the checkouts and berth's scratch worktrees.
    pub places: Arc<Places>,
    /// How often a landing writes its record so no daemon takes it for stranded.
    pub touch_every: Duration,
}

impl Crew {
    /// Whether this process is landing `id` right now, or holds its unwritten verdict:
    /// either way the record is this daemon's, whatever its file says.
    pub fn holds(&self, id: &str) -> bool {
        self.active.holds(id) || self.unsaved.holds(id)
    }
}
