//! The land commands under `examples/`, run by a real daemon.

use crate::support::World;

#[test]
fn the_git_example_lands_in_the_scratch_worktree_fenced_by_the_lock() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    // The base is checked out in the clone, as in a developer's checkout.
    world.run_git(
        &lane.clone,
        &["checkout", "-q", "-B", "main", "origin/main"],
    );
    let id = lane.queue(1, "main");
    world.run_git(&lane.clone, &["checkout", "-q", "main"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/land-git.sh");
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [\"{}\", \"{{branch}}\", \"{{base}}\", \"{{lock_ref}}\", \"{{lock_sha}}\"]\n",
        script.display()
    ));
    let bin_dir = assert_cmd::cargo::cargo_bin("berth")
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = world
        .berth_daemon()
        .env("PATH", path)
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let record = world.read_record(&id);
    assert_eq!(
        record["status"],
        "landed",
        "{record:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lane.merged("feat/pr-1", "main"));
    // It landed in berth's scratch worktree: the developer's checkout is still on main.
    assert_eq!(
        world.run_git(&lane.clone, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
}
