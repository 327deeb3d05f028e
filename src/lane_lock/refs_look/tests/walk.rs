//! The walk's listings: what a kept listing ([`super::settled`]) saves, every way reviews
//! 42 and 43 found to change a directory's contents under an unchanged key (each now
//! listed afresh), and a directory the walk cannot open. The tests with mounts run as
//! root in a mount namespace of their own and say "skipped" otherwise.

use super::*;

/// Fan-out directories of regular files listed by a look are not listed again by the
/// next while no event came for them, and still cost their entries of the bound; a
/// directory made and removed beside them (a push's quarantine dir) leaves them kept;
/// whatever changes one is seen: a FIFO planted in it, a FIFO renamed over one of its
/// files, another directory (with a FIFO) renamed in its place.
#[test]
fn a_directory_listed_once_and_kept_hides_no_node_planted_after() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    let objects = git_dir.join("objects");
    let fans = ["ab", "cd", "ef", "gh"];
    for fan in fans {
        std::fs::create_dir_all(objects.join(fan)).unwrap();
        for n in 0..3 {
            std::fs::write(objects.join(fan).join(format!("{n:038}")), "x").unwrap();
        }
    }
    assert!(look(git_dir).unwrap().is_empty());
    // On ext4, xfs or tmpfs (a temp dir's usual filesystems) the listings are kept;
    // elsewhere none is, and the rest holds all the same.
    let keeps = settled::keeps_on(git_dir);
    let kept = || fans.map(|fan| settled::kept(&objects.join(fan)));
    assert_eq!(kept(), [keeps; 4]);
    let quarantine = objects.join("tmp_objdir-incoming-x");
    std::fs::create_dir(&quarantine).unwrap();
    std::fs::remove_dir(&quarantine).unwrap();
    assert!(look(git_dir).unwrap().is_empty());
    assert_eq!(kept(), [keeps; 4], "a sibling made and removed");

    // 4 fan-out dirs of 3 files: 16 entries, kept or listed.
    let walk_objects = |budget: usize| {
        let mut budget = budget;
        let opened = open_dir(None, &path_cstring(&objects)).unwrap();
        walk(
            git_dir,
            opened,
            Path::new("objects"),
            &mut budget,
            Refused::TooMany,
        )
    };
    assert!(matches!(walk_objects(15), Err(Refused::TooMany(_))));
    assert!(walk_objects(16).unwrap().is_empty());

    fifo(&objects.join("ab/planted"));
    let moved = git_dir.join("cd-away");
    std::fs::rename(objects.join("cd"), &moved).unwrap();
    std::fs::create_dir(objects.join("cd")).unwrap();
    fifo(&objects.join("cd/swapped"));
    let outside = git_dir.join("outside");
    fifo(&outside);
    let over = format!("{:038}", 1);
    std::fs::rename(&outside, objects.join("ef").join(&over)).unwrap();
    let mut names: Vec<_> = look(git_dir).unwrap().into_iter().map(|b| b.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            PathBuf::from("objects/ab/planted"),
            PathBuf::from("objects/cd/swapped"),
            Path::new("objects/ef").join(&over),
        ]
    );
    assert_eq!(kept(), [false, false, false, keeps]);
}

/// Runs `body` on a thread of its own in a private mount namespace (nothing mounted there
/// leaks to the host), its panic raised again here; `false` (said on stderr) unless root.
fn in_a_mount_namespace(body: impl FnOnce() + Send) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting needs root");
        return false;
    }
    std::thread::scope(|scope| {
        let ran = scope.spawn(|| {
            unshare_mounts();
            body();
        });
        if let Err(panic) = ran.join() {
            std::panic::resume_unwind(panic);
        }
    });
    true
}

/// Gives the calling thread a mount namespace of its own, every mount in it private (so
/// nothing mounted there leaks to the host). Root only.
fn unshare_mounts() {
    use nix::libc;
    // SAFETY: plain system calls; CLONE_NEWNS takes the calling thread alone.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
        let none = std::ptr::null();
        let private = libc::MS_REC | libc::MS_PRIVATE;
        assert_eq!(
            libc::mount(none, c"/".as_ptr(), none, private, none.cast()),
            0
        );
    }
}

/// `objects/ab` made under `git_dir`, holding three regular files (as loose objects): its
/// path.
fn fan_out_dir(git_dir: &Path) -> PathBuf {
    let ab = git_dir.join("objects/ab");
    std::fs::create_dir_all(&ab).unwrap();
    for n in 0..3 {
        std::fs::write(ab.join(format!("{n:038}")), "x").unwrap();
    }
    ab
}

fn mount(source: &Path, target: &Path, kind: &CStr, data: Option<&str>) {
    use nix::libc;
    let data = data.map(|d| CString::new(d).unwrap());
    let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
    // SAFETY: NUL-terminated strings that outlive the call.
    let mounted = unsafe {
        libc::mount(
            path_cstring(source).as_ptr(),
            path_cstring(target).as_ptr(),
            kind.as_ptr(),
            0,
            data_ptr.cast(),
        )
    };
    assert_eq!(
        mounted,
        0,
        "mount {source:?} on {target:?}: {}",
        Errno::last()
    );
}

fn unmount(target: &Path) {
    // SAFETY: a NUL-terminated path.
    let done = unsafe { nix::libc::umount2(path_cstring(target).as_ptr(), 0) };
    assert_eq!(done, 0, "umount {target:?}: {}", Errno::last());
}

/// What a look at `git_dir` found (their names), the look made while `mnt` is mounted and
/// `mnt` unmounted before anything is asserted of it.
fn look_then_unmount(git_dir: &Path, mnt: &Path) -> Vec<PathBuf> {
    let found = look(git_dir);
    unmount(mnt);
    found.unwrap().into_iter().map(|b| b.name).collect()
}

/// What `lstat` says of a directory: device, inode, change time.
fn dev_ino_ctime(path: &Path) -> (u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
}

/// Review 42. The origin sits on a filesystem (an ext4 image on a loop device) that is
/// unmounted, changed while unmounted (here a FIFO linked into a settled fan-out
/// directory with debugfs, as an offline edit or a restored image would), and mounted
/// again on the same device: the fan-out directory has the same device, inode and change
/// time as when its listing was kept, though it now holds a FIFO. A fresh listing (the
/// code on `main`) finds it; the kept listing is charged instead and the FIFO is missed,
/// so libgit2 would open it. settled.rs says "a mount over it ... is another device and
/// inode, listed anew" and "no writer can set it back": a filesystem mounted again on the
/// same device keeps both, with whatever the device now holds. Root only (skips else).
#[test]
fn a_settled_directory_changed_while_its_filesystem_was_unmounted_is_listed_again() {
    let Some(image) = LoopImage::new("mkfs.ext4", &["-q", "-F"], 8 << 20, &["debugfs"]) else {
        return;
    };
    let device = image.device.clone();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();

    in_a_mount_namespace(|| {
        mount(&device, &mnt, c"ext4", None);
        let git_dir = mnt.join("origin.git");
        let ab = fan_out_dir(&git_dir);
        assert!(look(&git_dir).unwrap().is_empty());
        assert!(settled::kept(&ab), "the listing of objects/ab was not kept");
        let before = dev_ino_ctime(&ab);
        unmount(&mnt);

        let mut debugfs = std::process::Command::new("debugfs")
            .args(["-w", "-f", "-"])
            .arg(&device)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            debugfs.stdin.as_mut().unwrap(),
            b"cd origin.git/objects/ab\nmknod planted p\n",
        )
        .unwrap();
        drop(debugfs.stdin.take());
        assert!(debugfs.wait().unwrap().success(), "debugfs");

        mount(&device, &mnt, c"ext4", None);
        let planted = ab.join("planted");
        let is_fifo = std::fs::symlink_metadata(&planted)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
        assert!(is_fifo, "debugfs planted no FIFO");
        assert_eq!(
            dev_ino_ctime(&ab),
            before,
            "not the same device, inode and ctime"
        );
        let names = look_then_unmount(&git_dir, &mnt);
        assert_eq!(
            names,
            [PathBuf::from("objects/ab/planted")],
            "a FIFO in objects/ab a fresh listing shows was missed: objects/ab has the device, inode and change time of a listing kept before its filesystem was unmounted and changed"
        );
    });
}

/// Review 42. The origin is an overlay mount (a container's view of a repository kept in
/// image layers, say): `objects/ab` is a merged directory, there in the upper and the
/// lower layer. A FIFO linked into the lower layer's `objects/ab` shows in the overlay's
/// listing of it, but the overlay gives the merged directory the upper layer's change
/// time, which does not move: a listing kept by change time would hide the FIFO. So no
/// listing on an overlay is kept, and the FIFO is found. Root only (skips else).
#[test]
fn a_fifo_added_below_a_settled_merged_overlay_directory_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    for name in ["upper/origin.git/objects/ab", "work", "mnt"] {
        std::fs::create_dir_all(at(name)).unwrap();
    }
    let lower_ab = fan_out_dir(&at("lower/origin.git"));
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        at("lower").display(),
        at("upper").display(),
        at("work").display()
    );
    in_a_mount_namespace(|| {
        mount(Path::new("overlay"), &at("mnt"), c"overlay", Some(&options));
        let git_dir = at("mnt/origin.git");
        let ab = git_dir.join("objects/ab");
        assert!(look(&git_dir).unwrap().is_empty());
        assert!(look(&git_dir).unwrap().is_empty());
        assert!(
            !settled::kept(&ab),
            "the listing of a merged overlay directory was kept"
        );
        let (_, _, ctime, ctime_nsec) = dev_ino_ctime(&ab);
        fifo(&lower_ab.join("planted"));
        let (_, _, ctime_after, ctime_nsec_after) = dev_ino_ctime(&ab);
        assert_eq!(
            (ctime, ctime_nsec),
            (ctime_after, ctime_nsec_after),
            "the merged directory's change time moved: this overlay would not hide the FIFO"
        );
        let shown = std::fs::read_dir(&ab)
            .unwrap()
            .any(|e| e.unwrap().file_name() == "planted");
        assert!(shown, "the overlay's listing does not show the FIFO");
        let names = look_then_unmount(&git_dir, &at("mnt"));
        assert_eq!(
            names,
            [PathBuf::from("objects/ab/planted")],
            "a FIFO the overlay's listing of objects/ab shows was missed: the merged directory's change time did not move"
        );
    });
}

/// Review 42. An objects dir one entry past its bound whose only subdirectory is a
/// settled fan-out directory: a fresh walk counts the dir's own entries first and runs
/// out in the fan-out directory, refusing with `objects/ab holds more than ...` whatever
/// order the listing gives. The kept listing was charged where `ab` was met in its
/// parent's listing, so the walk ran out on a later entry of `objects` and the refusal
/// named `objects`; it is charged at `ab`'s turn now, and names `objects/ab`.
#[test]
fn a_settled_directory_leaves_the_refusal_past_the_bound_naming_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    let objects = git_dir.join("objects");
    let ab = fan_out_dir(git_dir);
    // Regular files beside `ab` (as `objects/info/packs` might be), until `ab` is not
    // the last the listing gives.
    let mut n = 0;
    loop {
        std::fs::write(objects.join(format!("f{n}")), "x").unwrap();
        n += 1;
        let order: Vec<_> = std::fs::read_dir(&objects)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if n >= 4 && order.last().is_some_and(|last| last != "ab") {
            break;
        }
    }
    assert!(look(git_dir).unwrap().is_empty());
    assert!(settled::kept(&ab), "the listing of objects/ab was not kept");
    let in_objects = std::fs::read_dir(&objects).unwrap().count();
    // One short of every entry: objects' own, and ab's three.
    let mut budget = in_objects + 3 - 1;
    let opened = open_dir(None, &path_cstring(&objects)).unwrap();
    let walked = walk(
        git_dir,
        opened,
        Path::new("objects"),
        &mut budget,
        Refused::TooManyObjects,
    );
    match walked {
        Err(Refused::TooManyObjects(named)) => assert_eq!(
            named, ab,
            "the refusal past the bound names another directory than a fresh listing does"
        ),
        other => panic!("not refused past the bound: {other:?}"),
    }
}

/// A loop device attached to a sparse image of `size` bytes made by `mkfs` (with `args`),
/// detached when dropped; `None` (said on stderr) unless root with the tools.
struct LoopImage {
    device: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopImage {
    fn new(mkfs: &str, args: &[&str], size: u64, tools: &[&str]) -> Option<LoopImage> {
        let have = |tool: &str| {
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok()
        };
        if !nix::unistd::geteuid().is_root()
            || !std::iter::once(&mkfs)
                .chain(tools)
                .chain(&["losetup"])
                .all(|t| have(t))
        {
            eprintln!("skipped: needs root, {mkfs}, {tools:?} and losetup");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("origin.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(size)
            .unwrap();
        let made = std::process::Command::new(mkfs)
            .args(args)
            .arg(&image)
            .output()
            .unwrap();
        assert!(made.status.success(), "{mkfs}: {made:?}");
        let attached = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(attached.status.success(), "losetup: {attached:?}");
        let device = PathBuf::from(String::from_utf8(attached.stdout).unwrap().trim());
        Some(LoopImage { device, _dir: dir })
    }
}

impl Drop for LoopImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.device)
            .status();
    }
}

fn run(tool: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {out:?}");
}

/// Review 43. On btrfs, every subvolume's top directory is inode 256, a snapshot copies
/// its source's change time, and a deleted subvolume's device number (an anonymous
/// device, lowest free first) goes to the next subvolume made: so a directory with the
/// same mount, device, inode and change time as a kept listing can hold anything its
/// snapshot source held. Every step is open to a writer of `objects/` without root
/// (Linux lets the owner create, snapshot and `rmdir` an empty subvolume; the test uses
/// `btrfs subvolume sync` only to wait for the device number to come free, which `sync`
/// and a wait do too):
/// `objects/ab` made a subvolume holding loose objects, and a snapshot of it kept outside
/// the git dir; a file added to `objects/ab` and a FIFO to the snapshot in the same clock
/// tick (tried until both change times are equal); `objects/ab`'s listing kept by a look;
/// then `objects/ab` emptied and removed, and the snapshot snapshotted again as
/// `objects/ab`. It has the first one's key and change time and holds the FIFO: a kept
/// listing would hide it, and libgit2 would open it. So nothing on btrfs is kept, and
/// the FIFO is found. Root only for the loop mount (skips else).
#[test]
fn a_settled_subvolume_replaced_by_a_snapshot_with_its_device_number_is_listed_again() {
    let Some(image) = LoopImage::new("mkfs.btrfs", &["-q", "-f"], 256 << 20, &["btrfs"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    in_a_mount_namespace(|| {
        mount(&image.device, &mnt, c"btrfs", None);
        let git_dir = mnt.join("origin.git");
        let objects = git_dir.join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let ab = objects.join("ab");
        let stash = mnt.join("stash");
        run(
            "btrfs",
            &["subvolume".as_ref(), "create".as_ref(), ab.as_os_str()],
        );
        std::fs::write(ab.join(format!("{:038}", 0)), "x").unwrap();
        run(
            "btrfs",
            &[
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                ab.as_os_str(),
                stash.as_os_str(),
            ],
        );
        let ctime = |path: &Path| {
            let (_, _, secs, nsecs) = dev_ino_ctime(path);
            (secs, nsecs)
        };
        // Tried until both change times are equal; on a machine too loaded to get there,
        // the last try stands, and the FIFO must be found all the same.
        let mut same_tick = false;
        let mut planted = String::new();
        for n in 1..500 {
            let file = ab.join(format!("{n:038}"));
            planted = format!("p{n}");
            std::fs::write(&file, "x").unwrap();
            fifo(&stash.join(&planted));
            same_tick = ctime(&ab) == ctime(&stash);
            if same_tick || n == 499 {
                break;
            }
            std::fs::remove_file(&file).unwrap();
            std::fs::remove_file(stash.join(&planted)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(7));
        }

        assert!(look(&git_dir).unwrap().is_empty());
        assert!(
            !settled::kept(&ab),
            "the listing of a directory on btrfs was kept"
        );
        let before = dev_ino_ctime(&ab);

        for entry in std::fs::read_dir(&ab).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        std::fs::remove_dir(&ab).unwrap();
        run(
            "btrfs",
            &["subvolume".as_ref(), "sync".as_ref(), mnt.as_os_str()],
        );
        run(
            "btrfs",
            &[
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                stash.as_os_str(),
                ab.as_os_str(),
            ],
        );
        let after = dev_ino_ctime(&ab);
        let names = look_then_unmount(&git_dir, &mnt);
        // Another test's mount made meanwhile may take the device number: then the key
        // differs, and the FIFO must be found all the same.
        if same_tick && after != before {
            eprintln!("the snapshot took another device number: {after:?} against {before:?}");
        }
        assert_eq!(
            names,
            [Path::new("objects/ab").join(&planted)],
            "a FIFO in objects/ab a fresh listing shows was missed: the snapshot put there has the mount, device, inode and change time of the subvolume whose listing was kept"
        );
    });
}

/// Set in the re-run of [`a_directory_the_look_cannot_open_for_want_of_descriptors_fails_it`],
/// which uses up its own process's descriptors.
const OUT_OF_DESCRIPTORS: &str = "BERTH_TEST_LOOK_OUT_OF_DESCRIPTORS";

/// Review 43. A directory the look cannot open for a reason that says nothing of what it
/// holds (here the process is out of descriptors) was passed over, and a FIFO in it with
/// it: the look now fails, naming the directory and the reason, and the lane waits. Runs
/// in a process of its own (the test binary again), whose descriptors it may use up.
#[test]
fn a_directory_the_look_cannot_open_for_want_of_descriptors_fails_it() {
    if !in_a_process_of_its_own(
        "tests::walk::a_directory_the_look_cannot_open_for_want_of_descriptors_fails_it",
        OUT_OF_DESCRIPTORS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(objects.join("ab")).unwrap();
    fifo(&objects.join("ab/planted"));
    let opened = open_dir(None, &path_cstring(&objects)).unwrap();
    let mut held = Vec::new();
    let devnull = std::fs::File::open("/dev/null").unwrap();
    loop {
        match devnull.try_clone() {
            Ok(fd) => held.push(fd),
            Err(e) if e.raw_os_error() == Some(nix::libc::EMFILE) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut budget = MAX_OBJECTS_ENTRIES;
    let walked = walk(
        dir.path(),
        opened,
        Path::new("objects"),
        &mut budget,
        Refused::TooManyObjects,
    );
    drop(held);
    match walked {
        Err(Refused::Unreadable(path, Errno::EMFILE)) => assert_eq!(path, objects.join("ab")),
        other => panic!(
            "the look answered {other:?} where it could not open objects/ab, which holds a FIFO"
        ),
    }
}

/// Review 44: directories the walk passes over or cannot hold open.
mod closed;

/// Mounts over kept directories, and one directory seen through two mounts or from another
/// namespace: what a mount changes brings no inotify event.
mod views;
