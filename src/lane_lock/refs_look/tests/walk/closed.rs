//! Review 44: directories the look passes over as closed to berth (EACCES) though git or
//! libgit2 opens a FIFO in them, and a healthy wide directory the look cannot hold open.

use super::*;

/// Runs `body` on a thread of its own whose effective capabilities lack CAP_DAC_OVERRIDE
/// and CAP_DAC_READ_SEARCH: root as a hardened service (`CapabilityBoundingSet=` without
/// them, a container's `--cap-drop`) or root on a root-squashed NFS export meets file
/// permissions as any user does. Capabilities are per thread (a raw `capset`), so the
/// rest of the test binary keeps its own. A run that is not root runs `body` as it is.
fn without_dac_capabilities<T: Send>(body: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let ran = scope.spawn(|| {
            if nix::unistd::geteuid().is_root() {
                drop_dac_capabilities();
            }
            body()
        });
        ran.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A look at `git_dir` (`looked`) that met `fifo` in `dir`, a directory closed to its
/// listing: it refused, naming `dir`, or it found `fifo`. Else it did what `passed_over`
/// says.
fn refused_at_or_found(
    looked: Result<Vec<Blocking>, Refused>,
    git_dir: &Path,
    dir: &Path,
    fifo: &Path,
    passed_over: &str,
) {
    match looked {
        Err(Refused::Unreadable(path, _)) => assert_eq!(path, dir),
        Ok(found) => assert!(
            found.iter().any(|b| git_dir.join(&b.name) == fifo),
            "{passed_over} ({}); found {:?}",
            fifo.display(),
            found.iter().map(|b| &b.name).collect::<Vec<_>>()
        ),
        Err(other) => panic!("{other}"),
    }
}

fn drop_dac_capabilities() {
    use nix::libc;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3; pid 0: the calling thread.
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: a header and the two data words version 3 reads and writes.
    let got = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    assert_eq!(got, 0, "capget: {}", Errno::last());
    const CAP_DAC_OVERRIDE: u32 = 1;
    const CAP_DAC_READ_SEARCH: u32 = 2;
    data[0].effective &= !((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH));
    // SAFETY: as above; only this thread's effective set shrinks.
    let set = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    assert_eq!(set, 0, "capset: {}", Errno::last());
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether `path` opens without blocking (`O_NONBLOCK`, which a FIFO with no writer
/// allows) as a FIFO, in the calling thread: where git's and libgit2's blocking `open()`
/// of the same path would hang.
fn opens_as_fifo(path: &Path) -> nix::Result<bool> {
    let fd = openat(
        nix::fcntl::AT_FDCWD,
        path_cstring(path).as_c_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let stat = nix::sys::stat::fstat(&fd)?;
    Ok(stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFIFO.bits())
}

/// Review 44. The walk (b6e197a) passed over a directory whose open failed with
/// EACCES as one "where berth's own reads could open nothing either". But opening a
/// directory to list it takes read permission, and opening a name in it takes only search
/// permission: a fan-out directory `objects/ab` made search-only (mode 0111, by its owner,
/// any writer of `objects/`) cannot be listed by berth, yet libgit2 in berth's own process
/// opens the loose object `objects/ab/<38 hex>` by its path (packs first, then
/// `read_loose`'s blocking open()), and would hang on a FIFO there for good (the deadline
/// leaves the thread, and the origin with it, until the FIFO is opened for writing).
/// `refs/heads` made so hides `refs/heads/main` from the walk the same way, which libgit2
/// opens resolving `HEAD`. The look must name the FIFO or fail, naming the directory.
/// Runs as any user; as root, on a thread without the DAC capabilities.
#[test]
fn a_fifo_in_a_directory_berth_may_search_but_not_list_is_not_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    std::fs::create_dir_all(git_dir.join("refs/heads")).unwrap();
    let ab = git_dir.join("objects/ab");
    std::fs::create_dir_all(&ab).unwrap();
    let loose = ab.join("cdef0123456789abcdef0123456789abcdef01");
    fifo(&loose);
    set_mode(&ab, 0o111);
    let (listed, opened, looked) = without_dac_capabilities(|| {
        (
            open_dir(None, &path_cstring(&ab)).map(drop),
            opens_as_fifo(&loose),
            look(git_dir),
        )
    });
    set_mode(&ab, 0o755);
    assert_eq!(
        listed,
        Err(Errno::EACCES),
        "objects/ab is not closed to listing"
    );
    assert_eq!(
        opened,
        Ok(true),
        "the FIFO does not open by its path through the search-only directory"
    );
    refused_at_or_found(
        looked,
        git_dir,
        &ab,
        &loose,
        "the look passed over objects/ab (EACCES: search-only, not closed), and the FIFO in it that libgit2 opens by path",
    );
}

/// Review 44. Run as root, berth writes a local origin's lock ref with a `git update-ref`
/// child that takes the uid of `refs/`'s owner (`origin_owner::of`), and that git reads
/// `objects/pack` as that user: looking up the new value's object it opens every
/// `pack-*.idx` there with a blocking open() (a FIFO `.idx` beside a regular `.pack`
/// hangs `git update-ref` until its alarm kills it: every lock write fails, nothing
/// names why). A root berth without the DAC capabilities (a hardened unit, a container,
/// or root squashed to `nobody` by an NFS server, the default export) meets EACCES on
/// the owner's 0700 `objects/pack`: the walk (b6e197a) passed it over, and the FIFO
/// with it, though the process that opens it is not berth's. EACCES says the node is
/// closed to the looking process, not to the writer child that runs as another user: the
/// look must name the FIFO or fail. Root only (skips else).
#[test]
fn a_fifo_the_owners_writer_child_opens_in_a_directory_closed_to_berth_is_not_passed_over() {
    use std::os::unix::process::CommandExt as _;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the writer child takes another uid only under root");
        return;
    }
    const NOBODY: u32 = 65_534;
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o755);
    let git_dir = dir.path().join("theirs.git");
    git2::Repository::init_bare(&git_dir).unwrap();
    let pack = git_dir.join("objects/pack");
    let name = "pack-0123456789abcdef0123456789abcdef01234567";
    std::fs::write(pack.join(format!("{name}.pack")), "PACK").unwrap();
    let idx = pack.join(format!("{name}.idx"));
    fifo(&idx);
    let given = std::process::Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(git_dir.join("refs"))
        .arg(git_dir.join("objects"))
        .status()
        .unwrap();
    assert!(given.success(), "chown");
    set_mode(&pack, 0o700);

    let root = open_dir(None, &path_cstring(&git_dir)).unwrap();
    let writer = crate::lane_lock::origin_owner::of(&root).expect("no owner for the writer");
    assert_eq!(writer.uid(), NOBODY);
    // What the writer child, as the owner, reaches: the FIFO, by git's listing of the dir.
    let as_owner = std::process::Command::new("sh")
        .arg("-c")
        .arg("ls \"$1\" | grep -q '\\.idx$' && test -p \"$2\"")
        .arg("sh")
        .arg(&pack)
        .arg(&idx)
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .unwrap();
    assert!(as_owner.success(), "the owner does not see the FIFO");

    let lock_ref = "refs/gstack/release-locks/main";
    let (listed, looked) = without_dac_capabilities(|| {
        (
            open_dir(None, &path_cstring(&pack)).map(drop),
            look_before_write(&git_dir, lock_ref),
        )
    });
    assert_eq!(
        listed,
        Err(Errno::EACCES),
        "objects/pack is not closed to berth"
    );
    refused_at_or_found(
        looked,
        &git_dir,
        &pack,
        &idx,
        &format!(
            "the look before the write passed over objects/pack (EACCES, closed to berth but not to its writer child, uid {NOBODY}), and the FIFO in it git update-ref opens"
        ),
    );
}

/// Set in the re-run of [`a_wide_healthy_refs_dir_is_looked_at_within_a_services_descriptors`].
const WITHIN_1024_DESCRIPTORS: &str = "BERTH_TEST_LOOK_WITHIN_1024_DESCRIPTORS";

/// Review 44. The walk opened every subdirectory of a directory while listing it and held
/// each descriptor until that subdirectory's turn: a look held as many descriptors at once
/// as the widest directory has subdirectories. A healthy origin that mirrors pull requests
/// keeps `refs/pull/<n>/head` loose after each fetch (until a gc packs them); with 1100 of
/// them a single look needed 1100 descriptors at once. Under a service's 1024
/// (`LimitNOFILE=1024`, a container's `--ulimit nofile=1024`; berth raises its soft limit
/// only to the hard one), the walk ran out (EMFILE) on its own, and since b6e197a that
/// refused the look, holding the lane with "cannot look at refs/pull/<n> without
/// blocking: EMFILE" though nothing there blocks. A look's descriptors grow with depth
/// now, not width. Runs in a process of its own (the test binary again), whose limit it
/// lowers.
#[test]
fn a_wide_healthy_refs_dir_is_looked_at_within_a_services_descriptors() {
    if !in_a_process_of_its_own(
        "tests::walk::closed::a_wide_healthy_refs_dir_is_looked_at_within_a_services_descriptors",
        WITHIN_1024_DESCRIPTORS,
    ) {
        return;
    }
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_NOFILE, 1024, 1024).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    std::fs::write(git_dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::create_dir_all(git_dir.join("refs/heads")).unwrap();
    std::fs::write(git_dir.join("refs/heads/main"), format!("{:040}\n", 1)).unwrap();
    for n in 1..=1100 {
        let pull = git_dir.join(format!("refs/pull/{n}"));
        std::fs::create_dir_all(&pull).unwrap();
        std::fs::write(pull.join("head"), format!("{n:040}\n")).unwrap();
    }
    let open_before = crate::open_files::open_count();
    match look(git_dir) {
        Ok(found) => assert!(found.is_empty(), "{found:?}"),
        Err(refused) => panic!(
            "a look at a healthy origin with 1100 loose pull-request refs, {open_before:?} of 1024 descriptors open before it, was refused: {refused}"
        ),
    }
}
