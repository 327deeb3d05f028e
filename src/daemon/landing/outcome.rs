//! What a landing ends with: [`End`], the conclusion a step reaches (the driver settles the
//! record by it), and [`LaneOutcome`], the one answer the main loop acts on.

use crate::gstack_text;
use crate::lane_lock::LaneKey;
use crate::record::Status;

/// Where a landing stopped, before its record is settled. Every step returns one as its
/// `Err` when the landing cannot go on; the run step always ends with one.
#[derive(Debug)]
pub(super) enum End {
    /// The record moved under us (an operator, another daemon): nothing to write.
    Skipped(String),
    /// Blocked: `lastError` is the reason.
    Block(String),
    /// Back to the queue for a transient reason (forge unreachable, lock error).
    Requeue(String),
    /// The lane lock is held by another owner: back to the queue, the lane skipped.
    LaneBusy(String),
    /// The landing policy asked for another try later (`berthNotBefore`, ISO time).
    Defer { reason: String, not_before: String },
    /// Stopped by a signal: the record is revived to `queued`.
    Interrupted,
    /// Exit 0 and the forge proved the merge.
    Landed { checked_at: String },
}

/// How a landing task ended: what the main loop acts on.
#[derive(Clone, Debug)]
pub struct LaneOutcome {
    /// The key its lane was held under from its start.
    pub key: LaneKey,
    pub id: String,
    pub kind: OutcomeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    Landed,
    Blocked(String),
    /// Put back in the queue for a transient reason (forge unreachable, lock error).
    Requeued(String),
    /// The lane lock is held by another owner: skip the lane this tick.
    LaneBusy(String),
    /// Stopped by a signal and put back in the queue.
    Interrupted,
    /// The record moved under us (an operator, another daemon); nothing was done.
    Skipped(String),
}

impl OutcomeKind {
    /// The metrics label: `landed`, `blocked`, `requeued`, `lane_busy`, `interrupted`,
    /// `skipped`.
    pub fn label(&self) -> &'static str {
        match self {
            OutcomeKind::Landed => "landed",
            OutcomeKind::Blocked(_) => "blocked",
            OutcomeKind::Requeued(_) => "requeued",
            OutcomeKind::LaneBusy(_) => "lane_busy",
            OutcomeKind::Interrupted => "interrupted",
            OutcomeKind::Skipped(_) => "skipped",
        }
    }

    /// gstack's `PR #<N>: <status>`, then why.
    pub(super) fn log(&self, id: &str, pr_number: u64) {
        let pr = |status: Status| gstack_text::pr_status(pr_number, status);
        match self {
            OutcomeKind::Landed => tracing::info!(record = %id, "{}", pr(Status::Landed)),
            OutcomeKind::Blocked(why) => {
                tracing::warn!(record = %id, "{}: {why}", pr(Status::Blocked))
            }
            // gstack logs why (e.g. the lock's answer) on its own line, then the status.
            OutcomeKind::Requeued(why) => {
                tracing::warn!(record = %id, "{why}");
                tracing::warn!(record = %id, "{}: back in the queue", pr(Status::Queued))
            }
            OutcomeKind::LaneBusy(why) => {
                tracing::info!(record = %id, "{why}");
                tracing::info!(record = %id, "{}: lane skipped", pr(Status::Queued))
            }
            OutcomeKind::Interrupted => {
                tracing::warn!(record = %id, "{}: interrupted; back in the queue", pr(Status::Queued))
            }
            OutcomeKind::Skipped(why) => tracing::info!(record = %id, "skipped: {why}"),
        }
    }
}

impl LaneOutcome {
    pub fn ended_blocked(&self) -> bool {
        matches!(self.kind, OutcomeKind::Blocked(_))
    }

    /// Whether the landing took its record in hand (claimed it and got to an outcome), as
    /// opposed to finding the lane busy or the record moved.
    pub fn took_the_record(&self) -> bool {
        !matches!(
            self.kind,
            OutcomeKind::LaneBusy(_) | OutcomeKind::Skipped(_)
        )
    }

    /// Whether the lane may take its next record in this same tick: yes after a verdict,
    /// no when the lane is locked elsewhere or the record went back for a transient reason
    /// (retrying at once would hammer the forge in a loop).
    pub fn lane_may_retry_this_tick(&self) -> bool {
        matches!(
            self.kind,
            OutcomeKind::Landed | OutcomeKind::Blocked(_) | OutcomeKind::Interrupted
        )
    }
}
