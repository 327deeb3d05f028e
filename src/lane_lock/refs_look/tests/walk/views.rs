//! Mounts over kept directories ([`super::settled`]), and one directory seen through two
//! mounts or through another mount namespace's root: a mount brings no inotify event on
//! the directory below it. Root only (each test says "skipped" otherwise).

use super::*;

/// A directory mounted over a kept fan-out directory (by root, in the daemon's mount
/// namespace) brings no event on the directory below it: the mount table's change drops
/// the kept listings, and a FIFO in what is mounted there is found. Root only (skips
/// else).
#[test]
fn a_filesystem_mounted_over_a_kept_directory_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path().join("origin.git");
    let ab = fan_out_dir(&git_dir);
    in_a_mount_namespace(|| {
        assert!(look(&git_dir).unwrap().is_empty());
        if !settled::keeps_on(&git_dir) {
            eprintln!("skipped: nothing is kept on this filesystem");
            return;
        }
        assert!(settled::kept(&ab), "the listing of objects/ab was not kept");
        mount(Path::new("tmpfs"), &ab, c"tmpfs", None);
        fifo(&ab.join("planted"));
        let names = look_then_unmount(&git_dir, &ab);
        assert_eq!(names, [PathBuf::from("objects/ab/planted")]);
    });
}

/// Review 50. One origin seen through two mounts (a bind mount of it, as a container or a
/// second remote spelling sees it), a filesystem mounted over `objects/ab` in the second
/// only. A look through the first keeps `objects/ab` (regular files) under the watch of
/// `objects`, which both views share (one inode, one watch): a look through the second
/// must list what is mounted there, where libgit2 reading that origin would open the
/// FIFO. Nothing in the mount table changes between the looks. Root only (skips else).
#[test]
fn a_directory_kept_through_one_mount_is_listed_through_another_with_a_mount_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.git");
    let second = dir.path().join("second.git");
    let ab = fan_out_dir(&first);
    std::fs::create_dir(&second).unwrap();
    in_a_mount_namespace(|| {
        // SAFETY: NUL-terminated paths that outlive the call.
        let bound = unsafe {
            nix::libc::mount(
                path_cstring(&first).as_ptr(),
                path_cstring(&second).as_ptr(),
                std::ptr::null(),
                nix::libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(bound, 0, "bind mount: {}", Errno::last());
        let over = second.join("objects/ab");
        mount(Path::new("tmpfs"), &over, c"tmpfs", None);
        fifo(&over.join("planted"));
        assert!(look(&first).unwrap().is_empty());
        if !settled::keeps_on(&first) {
            eprintln!("skipped: nothing is kept on this filesystem");
            unmount(&over);
            unmount(&second);
            return;
        }
        assert!(settled::kept(&ab), "the listing of objects/ab was not kept");
        let names = look_then_unmount(&second, &over);
        unmount(&second);
        assert_eq!(
            names,
            [PathBuf::from("objects/ab/planted")],
            "a FIFO in what is mounted over second.git/objects/ab was missed: the listing kept through first.git (same parent inode, same name) stood for it"
        );
    });
}

/// Review 51. The origin is reached through another mount namespace's root
/// (`/proc/<pid>/root/...`: a repository in a container, named from the host). Its
/// directories are that namespace's mounts, whose changes the walking thread's mount
/// table never shows (the poll on its own `mountinfo` sees nothing). A look keeps
/// `objects/ab` under (this namespace, the other namespace's mount of `objects`); then a
/// filesystem with a FIFO is mounted over `objects/ab` in the other namespace: the next
/// look through the same path stood on the kept listing, where a fresh listing (and
/// libgit2) sees the FIFO. Nothing reached through a mount the walking thread's
/// namespace does not list is kept now. Root only (skips else).
#[test]
fn a_directory_kept_through_another_namespaces_root_is_listed_after_a_mount_there() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path().join("origin.git");
    let ab = fan_out_dir(&git_dir);
    in_a_mount_namespace(|| {
        let (tid_tx, tid_rx) = mpsc::channel::<i32>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (end_tx, end_rx) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let ab = ab.clone();
            let other = scope.spawn(move || {
                unshare_mounts();
                tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
                if go_rx.recv().is_err() {
                    return;
                }
                mount(Path::new("tmpfs"), &ab, c"tmpfs", None);
                fifo(&ab.join("planted"));
                done_tx.send(()).unwrap();
                let _ = end_rx.recv();
                unmount(&ab);
            });
            let tid = tid_rx.recv().unwrap();
            let through =
                Path::new(&format!("/proc/{tid}/root")).join(git_dir.strip_prefix("/").unwrap());
            assert!(look(&through).unwrap().is_empty());
            if !settled::keeps_on(&git_dir) {
                eprintln!("skipped: nothing is kept on this filesystem");
                drop(go_tx);
                return;
            }
            assert!(
                !settled::kept(&through.join("objects/ab")),
                "a listing seen through another mount namespace was kept"
            );
            go_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            let found = look(&through);
            let shown = std::fs::read_dir(through.join("objects/ab"))
                .unwrap()
                .any(|e| e.unwrap().file_name() == "planted");
            end_tx.send(()).unwrap();
            other.join().unwrap();
            assert!(
                shown,
                "a listing through {through:?} does not show the FIFO"
            );
            let names: Vec<PathBuf> = found.unwrap().into_iter().map(|b| b.name).collect();
            assert_eq!(
                names,
                [PathBuf::from("objects/ab/planted")],
                "a FIFO in what the other namespace mounted over objects/ab was missed: the listing kept before the mount stood for it"
            );
        });
    });
}
