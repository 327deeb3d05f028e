#!/bin/sh
# A land command for `forge = "gh"`, in the shape of gstack's /land-and-deploy: land exactly
# PR #N, only if its head is the branch the record names, fenced by the lane lock, then
# deploy. In the config:
#
#   forge = "gh"
#   land_command = ["/path/to/land-gh.sh", "{pr}", "{branch}", "{base}", "{lock_ref}", "{lock_sha}"]
#
# berth runs it in a worktree of the repo, detached at origin/<branch>, and after it exits 0
# asks GitHub whether the PR merged: an exit 0 without a merge is a blocked record.
# Set BERTH_DEPLOY to a command to run after the merge (e.g. "make deploy").
set -eu
pr=$1 branch=$2 base=$3 lock_ref=$4 lock_sha=$5

# OWNER/NAME (and the host, for GitHub Enterprise) from origin's configured URL:
# git@host:o/n.git, ssh://git@host/o/n.git, https://host/o/n(.git).
url=$(git config --get remote.origin.url)
path=$(printf '%s\n' "$url" | sed -E 's#^[a-z+]+://([^@/]*@)?[^/]+/##; s#^[^@:/]*@?[^:/]+:##; s#\.git$##; s#/$##')
host=$(printf '%s\n' "$url" | sed -E 's#^[a-z+]+://([^@/]*@)?([^/:]+).*#\2#; s#^([^@:/]*@)?([^:/]+):.*#\2#')
case $path in
*/*/* | */ | /* | "") echo "land-gh: cannot tell OWNER/NAME from origin $url" >&2; exit 2 ;;
esac
[ "$host" = github.com ] || export GH_HOST="$host"

# Hard targeting: the PR's head and base are the record's, and its head commit is the one
# on origin that berth checked out. A mismatch fails without landing.
git fetch -q origin "+refs/heads/$branch:refs/remotes/origin/$branch"
head=$(git rev-parse "refs/remotes/origin/$branch")
# (Branch names hold no spaces, so one line of four words carries the four fields.)
facts=$(gh pr view "$pr" --repo "$path" --json headRefName,baseRefName,headRefOid,state \
    --jq '"\(.headRefName) \(.baseRefName) \(.headRefOid) \(.state)"')
# shellcheck disable=SC2086 # split on purpose
set -- $facts
pr_head=${1:-} pr_base=${2:-} pr_oid=${3:-} pr_state=${4:-}
fail() { echo "land-gh: PR #$pr: $*; not landing" >&2; exit 1; }
[ "$pr_head" = "$branch" ] || fail "its head is $pr_head, not $branch"
[ "$pr_base" = "$base" ] || fail "its base is $pr_base, not $base"
[ "$pr_state" = OPEN ] || fail "it is $pr_state, not OPEN"
[ "$pr_oid" = "$head" ] || fail "its head commit is $pr_oid, origin/$branch is $head"

# Merge only while this landing still holds the lane lock (exit 1: lost it; 2: cannot
# tell), and only that head commit: GitHub refuses if the branch moved since.
berth lock check "$lock_ref" --sha "$lock_sha"
gh pr merge "$pr" --repo "$path" --merge --match-head-commit "$head"

if [ -n "${BERTH_DEPLOY:-}" ]; then
    sh -c "$BERTH_DEPLOY"
fi
