//! The lane locks of many origins at once, for the commands an operator runs (`status`,
//! `doctor`): each origin is listed on a thread of its own (at most [`MAX_PARALLEL`] at a
//! time), so one unreachable origin costs its own remote timeout, not everyone's; or none
//! is asked at all (`--offline`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{LockClient, LockError, LockListing};

/// Origins listed at the same time.
pub const MAX_PARALLEL: usize = 8;

/// How a command may reach origins.
pub struct Reach<'a> {
    /// Ask no origin (`--offline`): every listing is [`Listed::Skipped`].
    pub offline: bool,
    /// Bound on each connect and socket read/write (libgit2's, process-wide: the first
    /// lock client a process makes sets it).
    pub timeout: Duration,
    /// Called with (origins answered, origins asked) as each answers.
    pub progress: &'a (dyn Fn(usize, usize) + Sync),
}

impl Default for Reach<'_> {
    fn default() -> Self {
        Reach {
            offline: false,
            timeout: super::DEFAULT_REMOTE_TIMEOUT,
            progress: &|_, _| {},
        }
    }
}

/// One origin's lane locks, or why there are none to show.
#[derive(Debug)]
pub enum Listed {
    Locks(Vec<LockListing>),
    /// Shared: a client that cannot be made fails every origin with one error.
    Failed(Arc<LockError>),
    /// `--offline`: not asked.
    Skipped,
}

/// The listing of each distinct url in `urls`, through the client `make_client` gives
/// (made only when an origin is to be asked).
pub fn list_each<'u>(
    make_client: impl FnOnce(Duration) -> Result<LockClient, LockError>,
    urls: impl IntoIterator<Item = &'u str>,
    reach: &Reach<'_>,
) -> BTreeMap<&'u str, Listed> {
    let mut urls: Vec<&str> = urls.into_iter().collect();
    urls.sort_unstable();
    urls.dedup();
    let every = |listed: &dyn Fn() -> Listed| urls.iter().map(|url| (*url, listed())).collect();
    if reach.offline || urls.is_empty() {
        return every(&|| Listed::Skipped);
    }
    let client = match make_client(reach.timeout) {
        Ok(client) => client,
        Err(e) => {
            let e = Arc::new(e);
            return every(&|| Listed::Failed(Arc::clone(&e)));
        }
    };
    let client = &client;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let out = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..urls.len().min(MAX_PARALLEL) {
            scope.spawn(|| {
                while let Some(url) = urls.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let listed = match client.list(url) {
                        Ok(locks) => Listed::Locks(locks),
                        Err(e) => Listed::Failed(Arc::new(e)),
                    };
                    out.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(*url, listed);
                    (reach.progress)(done.fetch_add(1, Ordering::Relaxed) + 1, urls.len());
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
