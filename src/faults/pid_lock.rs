//! A lock file that a crashed process cannot wedge: the one that guards
//! `learned-patterns.json` and the investigator's pattern files.
//!
//! The lock is a file created exclusively, holding `{pid, host, createdAt, token}`, so any
//! process (berth, or gstack's tooling reading the same convention) can see who holds it.
//! A lock whose pid is gone (same host) or that is older than the stale limit is broken.
//! Breaking and releasing both happen under a kernel `flock` on a guard file, which dies
//! with its holder: two processes can never both judge the same lock stale and remove a
//! fresh one taken in between, and an owner never removes a lock that was not its own.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::atomic_file;

/// A holder that has kept the lock this long is presumed hung: updates take milliseconds.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30);
/// How long a caller waits for a live holder before giving up with an error.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
    token: String,
}

impl PidLock {
    /// Takes the lock at `path`, breaking a stale one, waiting up to `wait` for a live one.
    pub fn acquire(path: &Path, stale_after: Duration, wait: Duration) -> Result<PidLock, String> {
        let pid = std::process::id();
        let token = format!(
            "{pid}-{}-{}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let content = json!({
            "pid": pid,
            "host": crate::ownership::host_name(),
            "createdAt": crate::clock::now_iso(),
            "token": token,
        });
        let mut bytes = content.to_string().into_bytes();
        bytes.push(b'\n');
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match atomic_file::create_new(path, &bytes, 0o600) {
                Ok(()) => {
                    return Ok(PidLock {
                        path: path.to_owned(),
                        token,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create lock {}: {e}", path.display())),
            }
            let holder = match break_if_stale(path, stale_after) {
                Ok(Judged::Gone) => continue,
                Ok(Judged::Held(holder)) => holder,
                Err(e) => return Err(format!("lock {}: {e}", path.display())),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "lock {} is held by {holder}; gave up after {}s (it is broken automatically once its process dies or it is {}s old)",
                    path.display(),
                    wait.as_secs(),
                    stale_after.as_secs()
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }

    /// Takes the lock with the default limits.
    pub fn acquire_default(path: &Path) -> Result<PidLock, String> {
        PidLock::acquire(path, DEFAULT_STALE_AFTER, DEFAULT_WAIT)
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let result = with_guard(&self.path, || match fs::read_to_string(&self.path) {
            Ok(text) if holder_token(&text).as_deref() == Some(self.token.as_str()) => {
                fs::remove_file(&self.path)
            }
            Ok(_) => {
                tracing::warn!(lock = %self.path.display(), "our lock was broken as stale while we held it");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        });
        if let Err(e) = result {
            tracing::warn!(lock = %self.path.display(), "cannot release lock: {e}");
        }
    }
}

enum Judged {
    /// The lock is gone (released, or broken as stale just now): try again at once.
    Gone,
    /// Someone live holds it; the text says who.
    Held(String),
}

fn guard_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.guard"))
}

fn with_guard<T>(path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let _guard = atomic_file::lock_exclusive(&guard_path(path))?;
    f()
}

fn break_if_stale(path: &Path, stale_after: Duration) -> io::Result<Judged> {
    with_guard(path, || {
        let (text, modified) = match fs::read_to_string(path) {
            Ok(text) => (text, fs::metadata(path)?.modified()?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Judged::Gone),
            Err(e) => return Err(e),
        };
        let holder: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let pid = holder
            .get("pid")
            .and_then(Value::as_u64)
            .and_then(|p| i32::try_from(p).ok());
        let host = holder.get("host").and_then(Value::as_str);
        // The older of the stated creation time and the file's mtime: a `createdAt` in the
        // future (a fast clock, or a planted file) must not make the lock look fresh forever.
        let created = holder
            .get("createdAt")
            .and_then(Value::as_str)
            .and_then(crate::clock::parse_iso)
            .map(SystemTime::from)
            .map_or(modified, |stated| stated.min(modified));
        let age = SystemTime::now()
            .duration_since(created)
            .unwrap_or_default();
        let who = match pid {
            Some(pid) => format!("pid {pid} on {}", host.unwrap_or("an unknown host")),
            None => "an unreadable holder".to_owned(),
        };
        let same_host = host == Some(crate::ownership::host_name().as_str());
        let reason = if let (Some(pid), true) = (pid, same_host)
            && !process_alive(pid)
        {
            Some(format!("{who} is no longer running"))
        } else if age > stale_after {
            Some(format!(
                "{who} has held it for {}s, longer than the {}s limit",
                age.as_secs(),
                stale_after.as_secs()
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => {
                fs::remove_file(path)?;
                tracing::warn!(lock = %path.display(), "broke a stale lock: {reason}");
                Ok(Judged::Gone)
            }
            None => Ok(Judged::Held(format!(
                "{who} since {}",
                crate::clock::iso(created.into())
            ))),
        }
    })
}

fn holder_token(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("token")?.as_str().map(str::to_owned)
}

/// `kill(pid, 0)`: no such process means dead; a permission error means someone else's
/// live process.
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    fn plant(path: &Path, pid: u32, created: &str) {
        let text = json!({"pid": pid, "host": crate::ownership::host_name(), "createdAt": created, "token": "x"});
        fs::write(path, text.to_string()).unwrap();
    }

    #[test]
    fn dead_holder_and_old_holder_are_broken_live_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json.lock");
        plant(&path, dead_pid(), &crate::clock::now_iso());
        let lock =
            PidLock::acquire(&path, DEFAULT_STALE_AFTER, Duration::from_millis(200)).unwrap();
        let err =
            PidLock::acquire(&path, DEFAULT_STALE_AFTER, Duration::from_millis(50)).unwrap_err();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        assert!(!path.exists());

        plant(&path, std::process::id(), "2020-01-01T00:00:00.000Z");
        let lock =
            PidLock::acquire(&path, Duration::from_secs(5), Duration::from_millis(200)).unwrap();
        drop(lock);
        assert!(!path.exists());
    }

    #[test]
    fn a_future_dated_foreign_lock_ages_by_its_file_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json.lock");
        let text = json!({"pid": 1, "host": "other-host", "createdAt": "2099-01-01T00:00:00.000Z"});
        fs::write(&path, text.to_string()).unwrap();
        let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        let lock = PidLock::acquire(&path, Duration::from_secs(30), Duration::from_millis(200))
            .expect("a lock claiming to come from 2099 is still broken once its file is old");
        drop(lock);
    }

    #[test]
    fn a_broken_owner_does_not_remove_the_new_holders_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json.lock");
        let first = PidLock::acquire(&path, Duration::ZERO, Duration::from_millis(100)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // Stale limit zero: the second caller breaks the first's lock and takes it.
        let second = PidLock::acquire(&path, Duration::ZERO, Duration::from_millis(100)).unwrap();
        drop(first);
        assert!(
            path.exists(),
            "the first owner must not remove the second's lock"
        );
        drop(second);
        assert!(!path.exists());
    }
}
