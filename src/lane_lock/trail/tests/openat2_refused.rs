//! review 34: `openat2` refused with `EPERM` (a seccomp profile that predates the call, as
//! container runtimes' default profiles did, answers so rather than `ENOSYS`).

use super::*;

/// Installs, on this thread only (and so on every thread and child it starts after), a
/// seccomp filter answering `openat2` with `EPERM`. Whether it was installed.
fn refuse_openat2_on_this_thread() -> bool {
    const OPENAT2: u32 = 437;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        libc::sock_filter {
            code: ld,
            jt: 0,
            jf: 0,
            k: 4,
        },
        libc::sock_filter {
            code: jeq,
            jt: 0,
            jf: 3,
            k: AUDIT_ARCH_X86_64,
        },
        libc::sock_filter {
            code: ld,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: jeq,
            jt: 0,
            jf: 1,
            k: OPENAT2,
        },
        libc::sock_filter {
            code: ret,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: ret,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; `program` and `filter` outlive the second.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
            ) == 0
    }
}

/// With `openat2` refused by `EPERM`, an acquire on an ordinary bare origin either takes
/// the lane or refuses it by name leaving no lock ref behind: a lock written that the
/// writer does not believe is a lock nobody holds, and "a directory of its path is
/// missing" names no way out.
#[test]
fn openat2_refused_by_seccomp_leaves_no_lock_nobody_holds() {
    let o = origin();
    let client = o.client();
    let (url, lane) = (o.url.clone(), o.lane.clone());
    let outcome = std::thread::spawn(move || {
        if !refuse_openat2_on_this_thread() {
            return None;
        }
        Some(client.acquire(&url, &lane, "me", Path::new("/a")))
    })
    .join()
    .unwrap();
    let Some(outcome) = outcome else {
        eprintln!("skipped: no seccomp filter could be installed");
        return;
    };
    let locks = o.bare.join("refs/gstack/release-locks");
    let left = if locks.exists() {
        contents(&locks)
    } else {
        Vec::new()
    };
    assert!(
        matches!(outcome, Ok(Acquire::Acquired(_))) || left.is_empty(),
        "the acquire answered {outcome:?} yet left lock ref(s) nobody holds: {left:?}"
    );
    assert!(
        matches!(outcome, Ok(Acquire::Acquired(_))) || format!("{outcome:?}").contains("openat2"),
        "the refusal does not name openat2: {outcome:?}"
    );
}
