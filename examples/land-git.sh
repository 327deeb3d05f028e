#!/bin/sh
# A land command for `forge = "git"`: merge the feature branch into the base in berth's
# scratch worktree and push it, fenced by the lane lock. In the config:
#
#   forge = "git"
#   land_command = ["/path/to/land-git.sh", "{branch}", "{base}", "{lock_ref}", "{lock_sha}"]
#
# berth runs it in a worktree of the repo with a detached HEAD. The base branch may be
# checked out in the repo itself, so `git checkout -B <base>` would fail ("already used
# by worktree"): merge on the detached HEAD and push HEAD to the base instead.
set -eu
branch=$1 base=$2 lock_ref=$3 lock_sha=$4
git fetch -q origin "+refs/heads/$base:refs/remotes/origin/$base" \
    "+refs/heads/$branch:refs/remotes/origin/$branch"
git checkout -q --detach "origin/$base"
git merge -q --no-ff -m "Merge $branch into $base" "origin/$branch"
# Push only while this landing still holds the lane lock (exit 1: lost it; 2: cannot tell).
berth lock check "$lock_ref" --sha "$lock_sha"
git push -q origin "HEAD:refs/heads/$base"
