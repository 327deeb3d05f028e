//! The queue page on the daemon's endpoint (`--metrics-addr`): what lands now, what waits
//! and why, and when it may land, server-rendered with no external assets. It reads the
//! same facts as `berth status --json` ([`crate::queue_report`]) and `berth explain`, and
//! serves those documents too (`/api/queue`, `/api/pr/...`). Of the daemon it knows only
//! [`PageSources`]: the queue, the berth dir, the halt dir, the allowed roots and the
//! policy's published order.

mod api_queue;
mod escape;
mod eta;
mod facts;
mod lanes;
mod layout;
mod log_tail;
mod pr;
mod queue;
mod routes;

pub use facts::PageSources;
pub use routes::routes;
