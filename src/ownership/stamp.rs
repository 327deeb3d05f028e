//! The owner stamp a daemon writes into `claimedBy` and into its lane locks' `ownerId`:
//! `<machine>:<pid>:<start>:<instance lock>`, where `<machine>` is [`machine`], `<start>`
//! the process start in clock ticks, and `<instance lock>` the absolute path of the
//! `daemon.lock` the daemon holds for its whole life ([`crate::instance`]), preceded by
//! `<dev>.<inode>.<euid>:`: which file that path named when the daemon locked it (a path
//! can be unlinked and made again, a free new file says nothing of the old one's holder),
//! and the user the daemon and its steps run as (not the file's owner: a root daemon keeps
//! a lock file another user made). Stamps written before the lock was named
//! (`<machine>:<pid>:<start>`), or before its file and user were
//! (`<machine>:<pid>:<start>:<instance lock>`), still parse, without them.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// A parsed owner stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub machine: &'a str,
    pub pid: u32,
    /// Clock ticks since boot; 0 when the writer could not read its own.
    pub start: u64,
    /// The instance lock its daemon holds; `None` in an older berth's stamp.
    pub daemon_lock: Option<&'a Path>,
    /// The file that lock named when it was taken, and the daemon's user; `None` in an
    /// older berth's stamp.
    pub lock_id: Option<LockId>,
}

/// Which file a daemon locked as its instance lock, and the user it runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockId {
    pub file: crate::instance::FileId,
    pub euid: u32,
}

impl LockId {
    fn parse(text: &str) -> Option<LockId> {
        let mut parts = text.split('.');
        let (Some(dev), Some(ino), Some(euid), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(LockId {
            file: crate::instance::FileId {
                dev: dev.parse().ok()?,
                ino: ino.parse().ok()?,
            },
            euid: euid.parse().ok()?,
        })
    }
}

impl std::fmt::Display for LockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.file.dev, self.file.ino, self.euid)
    }
}

impl<'a> Stamp<'a> {
    /// `None` for anything berth did not write (gstack's `<host>-<pid>-pr-<n>`, junk).
    pub fn parse(text: &'a str) -> Option<Stamp<'a>> {
        // The machine is a hostname and two ids, pid and start are digits: the first
        // ":/" starts the lock's absolute path, whatever that path contains.
        let (head, daemon_lock) = match text.find(":/") {
            Some(at) => (&text[..at], Some(Path::new(&text[at + 1..]))),
            None => (text, None),
        };
        // The start is digits; a last part with dots is the lock's file and user.
        let (head, lock_id) = match head.rsplit_once(':') {
            Some((rest, last)) if daemon_lock.is_some() && last.contains('.') => {
                (rest, Some(LockId::parse(last)?))
            }
            _ => (head, None),
        };
        let mut parts = head.rsplitn(3, ':');
        let (Some(start), Some(pid), Some(machine)) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Stamp {
            machine,
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
            daemon_lock,
            lock_id,
        })
    }
}

/// This process's owner stamp; it names the instance lock when this process holds one.
pub fn this_process() -> String {
    let pid = std::process::id();
    let start = crate::process_probe::start_ticks(pid).unwrap_or(0);
    let stamp = format!("{}:{pid}:{start}", machine());
    let Some((path, file)) = crate::instance::held_here() else {
        return stamp;
    };
    match path.to_str().filter(|lock| lock.starts_with('/')) {
        Some(lock) => {
            let id = LockId {
                file,
                euid: nix::unistd::geteuid().as_raw(),
            };
            format!("{stamp}:{id}:{lock}")
        }
        None => stamp,
    }
}

/// This machine as an owner stamp names it:
/// `<hostname>~<boot id, 8 hex>~<pid namespace>~<mount namespace>.<root dev>.<root inode>`.
/// Only a stamp with exactly this prefix is checked against `/proc` and the instance lock it
/// names; any other (another machine, an older boot, another pid namespace, gstack's owner
/// ids) is judged by age. The instance lock is named by its path, and a path is resolved by
/// the mount namespace and root directory of whoever opens it (systemd's `PrivateTmp=` and
/// `ProtectHome=`, a container sharing the host's pid namespace, a `chroot`): a process that
/// resolves paths otherwise would probe a file that is not the owner's, so it cannot judge.
pub fn machine() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| {
            id.trim()
                .replace('-', "")
                .chars()
                .take(8)
                .collect::<String>()
        })
        .unwrap_or_default();
    let root = std::fs::metadata("/")
        .map(|root| format!("{}.{}", root.dev(), root.ino()))
        .unwrap_or_default();
    format!(
        "{}~{boot}~{}~{}.{root}",
        host_name(),
        namespace("pid"),
        namespace("mnt")
    )
}

/// The inode of this process's namespace of `kind` (`/proc/self/ns/<kind>`), empty when it
/// cannot be read.
fn namespace(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .ok()
        .and_then(|link| {
            let link = link.to_string_lossy().into_owned();
            let inode = link
                .strip_prefix(kind)?
                .strip_prefix(":[")?
                .strip_suffix(']')?
                .to_owned();
            Some(inode)
        })
        .unwrap_or_default()
}

pub(super) fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_foreign_ids_do_not() {
        let old = Stamp::parse("host~0a1b2c3d~4026531836:42:7").unwrap();
        assert_eq!(
            (old.machine, old.pid, old.start, old.daemon_lock),
            ("host~0a1b2c3d~4026531836", 42, 7, None)
        );
        let new =
            Stamp::parse("host~0a1b2c3d~4026531836:42:7:/home/u:x/.berth/daemon.lock").unwrap();
        assert_eq!(
            (new.machine, new.pid, new.start),
            ("host~0a1b2c3d~4026531836", 42, 7)
        );
        assert_eq!(
            new.daemon_lock,
            Some(Path::new("/home/u:x/.berth/daemon.lock"))
        );
        assert_eq!(new.lock_id, None);
        let id =
            Stamp::parse("host~0a~40.2.3:42:7:2049.1234.0:/home/u:x/.berth/daemon.lock").unwrap();
        assert_eq!((id.machine, id.pid, id.start), ("host~0a~40.2.3", 42, 7));
        assert_eq!(
            id.lock_id.map(|id| id.to_string()).as_deref(),
            Some("2049.1234.0")
        );
        assert_eq!(
            id.daemon_lock,
            Some(Path::new("/home/u:x/.berth/daemon.lock"))
        );
        assert_eq!(Stamp::parse("host:42:7:1.2:/l/daemon.lock"), None);
        assert_eq!(Stamp::parse("gstack-host-12-pr-3"), None);
        assert_eq!(Stamp::parse("host:x:7"), None);
    }
}
