//! Review 4: what one landing leaves in a kept scratch worktree's admin dir reaches the next.

use std::fs;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::World;

/// Landing 1's step rewrites its worktree's `commondir` (in `.git/worktrees/<name>/`, which
/// `reset` never looks at) to a repo of its own: same objects (alternates) and refs
/// (symlinked), but its own config and hooks. The worktree still passes every "proven
/// clean" check, is kept, and landing 2 runs its git commands with landing 1's config and
/// hooks. A fresh worktree would have none of it.
#[test]
fn review4_a_rewritten_commondir_redirects_the_next_landings_git() {
    let world = World::new();
    let root = world.root.display().to_string();
    let trace = world.root.join("trace");
    let plant = format!(
        "gd=$(git rev-parse --absolute-git-dir); \
         common=$(git rev-parse --path-format=absolute --git-common-dir); \
         evil={root}/evil; mkdir -p $evil/objects/info $evil/hooks; \
         cp $common/config $evil/config; cp $common/HEAD $evil/HEAD; \
         ln -s $common/refs $evil/refs; ln -s $common/packed-refs $evil/packed-refs; \
         echo $common/objects > $evil/objects/info/alternates; \
         git config -f $evil/config evil.marker planted; \
         printf '#!/bin/sh\\necho hooked >> {root}/hooked\\n' > $evil/hooks/post-checkout; \
         chmod +x $evil/hooks/post-checkout; \
         echo $evil > $gd/commondir"
    );
    let script = format!(
        "echo \"$3 $(pwd -P) $(git config --get evil.marker || echo none) \
           $(git status --porcelain --ignored | wc -l)\" >> {trace}; \
         {land} \"$1\" \"$2\" {ledger} \"$3\" || exit 1; \
         if [ \"$3\" = 1 ]; then {plant}; fi",
        trace = trace.display(),
        land = world.land_script().display(),
        ledger = world.root.join("ledger").display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 3600\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let lane = world.git_lane("widget", None);
    let ids = [lane.queue(1, "main"), lane.queue(2, "main")];
    let mut daemon = world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[],
    );
    let landed = world.wait_for(Duration::from_secs(60), || {
        ids.iter().all(|id| world.read_record(id)["status"] == "landed")
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    let lines = fs::read_to_string(&trace).unwrap_or_default();
    let hooked = fs::read_to_string(world.root.join("hooked")).unwrap_or_default();
    assert!(landed, "not both landed: {lines}\n{log}");
    assert!(
        !lines.contains("planted") && hooked.is_empty(),
        "landing 2 ran with landing 1's planted config/hooks (kept worktree's commondir \
         redirected):\ntrace:\n{lines}hook runs: {hooked:?}"
    );
}
