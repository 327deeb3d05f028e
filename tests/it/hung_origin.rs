//! A local origin on a hung file system holds its own lanes, never the daemon: the
//! repository behind a lane's origin is learnt off the daemon's loop and tick, under the
//! local-access deadline.

use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::World;

/// A FUSE mount at `at` nobody serves (every look under it waits, as under a hard NFS
/// mount whose server is gone), `None` where this process may not mount; dropping the
/// returned server end aborts it, so every call waiting there fails at once.
fn hung_mount(at: &Path) -> Option<std::fs::File> {
    let server = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .ok()?;
    let target = std::ffi::CString::new(at.as_os_str().as_bytes()).unwrap();
    let data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0",
        server.as_raw_fd()
    );
    let data = std::ffi::CString::new(data).unwrap();
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let mounted = unsafe {
        nix::libc::mount(
            c"berth-hung".as_ptr(),
            target.as_ptr(),
            c"fuse".as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    (mounted == 0).then_some(server)
}

/// Two repos queued, one whose origin is on a hung mount: one `--once` run ends, lands
/// the healthy repo's record and leaves the other queued (its lane waits, named in the
/// log), instead of freezing as it weighs the hung origin's lane.
#[test]
fn a_daemon_with_an_origin_on_a_hung_mount_still_lands_another_repo() {
    let world = World::new();
    let mount = world.root.join("nfs");
    std::fs::create_dir(&mount).unwrap();
    let healthy = world.git_lane("widget", None);
    let stuck = world.git_lane("gadget", None);
    let feature = stuck.push_feature("feat/pr-2", "main");
    let Some(server) = hung_mount(&mount) else {
        return;
    };
    let hung_url = mount.join("gadget.git");
    world.run_git(
        &stuck.clone,
        &["remote", "set-url", "origin", hung_url.to_str().unwrap()],
    );
    let stuck_id = world
        .record(&stuck.clone, 2)
        .set("featureBranch", feature)
        .write();
    let healthy_id = healthy.queue(1, "main");

    let config = world.git_forge_config("max_lanes = 2\nremote_timeout_secs = 2\n");
    let mut daemon = world
        .daemon_std(&world.berth_state())
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = world.wait_for(Duration::from_secs(120), || {
        daemon.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = daemon.kill();
    }
    drop(server);
    let target = std::ffi::CString::new(mount.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    unsafe { nix::libc::umount2(target.as_ptr(), nix::libc::MNT_DETACH) };
    let log = daemon.wait_with_output().unwrap().stderr;
    let log = String::from_utf8_lossy(&log);
    assert!(
        ended,
        "the run never ended: it froze on the hung origin\n{log}"
    );
    assert_eq!(world.ledger(), [1], "{log}");
    assert_eq!(world.read_record(&healthy_id)["status"], "landed", "{log}");
    assert_eq!(world.read_record(&stuck_id)["status"], "queued", "{log}");
}
