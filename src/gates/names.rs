//! The branch and identity gates: names berth passes to git and puts in lock refs.

use std::path::{Component, Path};

use super::{Gate, GateError, refuse};

/// DESIGN §5 branch gate: `[A-Za-z0-9._/-]+`, not starting with `-`, and a valid git
/// branch name (no `..`, `//`, `.lock` component, trailing `/` or `.`, leading `.`). The
/// reasons are gstack's (`featureBranch "<b>" contains characters outside the safe subset
/// …`, `… is not a valid git branch name`), then berth's detail.
pub fn gate_branch(gate: Gate, name: &str) -> Result<(), GateError> {
    let field = gate.field();
    if name.is_empty() {
        return Err(refuse(
            gate,
            name,
            format!("{field} is empty or not a string"),
        ));
    }
    let quoted = serde_json::Value::from(name).to_string();
    let unsafe_char = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')));
    if unsafe_char.is_some() || name.starts_with('-') {
        let detail = match unsafe_char {
            Some(bad) => format!("character {bad:?} is not allowed"),
            None => "it starts with `-`".to_owned(),
        };
        return Err(refuse(
            gate,
            name,
            format!(
                "{field} {quoted} contains characters outside the safe subset [A-Za-z0-9._/-] (or starts with -): {detail}"
            ),
        ));
    }
    let invalid = |detail: &str| {
        Err(refuse(
            gate,
            name,
            format!("{field} {quoted} is not a valid git branch name: {detail}"),
        ))
    };
    if name.contains("..") || name.contains("//") {
        return invalid("it contains `..` or `//`");
    }
    if name.ends_with('/') || name.ends_with('.') {
        return invalid("it ends with `/` or `.`");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return invalid("a path component starts with `.` or ends with `.lock`");
    }
    if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        return invalid("git refuses it as a ref name");
    }
    Ok(())
}

/// DESIGN §5 identity gate. berth computes identities as gstack does (see
/// [`crate::identity`]) and uses one only if it names one repository whatever the
/// directory it is read from:
/// - `host/path[/more]` of safe characters (GitHub's `host/owner/name`, nested groups, a
///   self-hosted `host/repo`); `gh --repo` needs exactly `host/owner/name`, which the gh
///   forge checks;
/// - a local remote: `/abs/path`, `file:/abs/path` (gstack's forms) or `path:/abs/path`
///   (no origin), absolute and without `.`/`..` components; a `file:` identity must not
///   hold a `%`: it is the URL's percent-encoding (`my%20repo`), not the directory's name.
///
/// A relative origin (`../widget.git`, `widget`) is refused: it would name a different
/// repository from every checkout.
pub fn gate_identity(identity: &str) -> Result<(), GateError> {
    let local = identity
        .strip_prefix("path:")
        .or_else(|| identity.strip_prefix("file:"))
        .or_else(|| identity.starts_with('/').then_some(identity));
    if let Some(path) = local {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!("repoIdentity {identity} is a local path that is not absolute"),
            ));
        }
        if p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            || path.split('/').any(|s| s == "." || s == "..")
        {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!("repoIdentity {identity} is a local path with `.` or `..` components"),
            ));
        }
        if identity.starts_with("file:") && path.contains('%') {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!(
                    "repoIdentity {identity} holds percent-encoding from a file:// origin URL, so it does not name the directory; set origin to the plain path instead"
                ),
            ));
        }
        if path.chars().any(char::is_control) {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!("repoIdentity {identity:?} holds control characters"),
            ));
        }
        return Ok(());
    }
    let segments: Vec<&str> = identity.split('/').collect();
    if segments.len() < 2 || matches!(segments[0], "." | "..") {
        return Err(refuse(
            Gate::RepoIdentity,
            identity,
            format!(
                "repoIdentity {identity} comes from a relative origin (expected host/owner/name, an absolute path or a file:// URL); a relative origin names a different repository from every checkout"
            ),
        ));
    }
    for segment in &segments {
        let safe = !segment.is_empty()
            && !segment.starts_with('-')
            && *segment != "."
            && *segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !safe {
            return Err(refuse(
                Gate::RepoIdentity,
                identity,
                format!(
                    "repoIdentity {identity} has segment {segment:?}, which is not of safe characters [A-Za-z0-9._-]"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_from_the_design_are_refused() {
        for bad in [
            "evil:refs/heads/main",
            "evil+force",
            "evil^",
            "evil~1",
            "--upload-pack=bad",
            "foo/../main",
            "a//b",
            "a.lock",
            "a/b.lock/c",
            "trailing/",
            "x@{1}",
            "tab\there",
            "nul\0",
            "",
            ".hidden",
            "a/.b",
            "-x",
            "dot.",
            "space here",
        ] {
            assert!(
                gate_branch(Gate::FeatureBranch, bad).is_err(),
                "{bad:?} passed"
            );
        }
        for good in ["main", "feat/x", "release/2.x", "user_a/fix-1.2", "v1.0.0"] {
            assert_eq!(gate_branch(Gate::BaseBranch, good), Ok(()), "{good}");
        }
    }

    #[test]
    fn identities() {
        for good in [
            "github.com/acme/widget",
            "gitlab.example.com/group/sub/repo",
            "path:/home/u/code/w",
            "/srv/git/widget",
            "file:/srv/git/widget",
            "/srv/git/my repo",
        ] {
            assert_eq!(gate_identity(good), Ok(()), "{good}");
        }
        for bad in [
            "github.com",
            "github.com/acme/../x",
            "github.com/-acme/x",
            "github.com/ac me/x",
            "github.com//x",
            "path:relative",
            "path:/a/../b",
            "github.com/acme/w;rm",
            "/srv/git/../x",
            "file:/srv/git/my%20repo",
            "../widget",
            "./relative/path/x",
            "widget",
            "https:",
            "github.com/acme/my%20repo",
        ] {
            assert!(gate_identity(bad).is_err(), "{bad:?} passed");
        }
        let why = |id: &str| gate_identity(id).unwrap_err().to_string();
        assert!(why("../widget").contains("relative origin"));
        assert!(why("file:/srv/git/my%20repo").contains("percent-encoding"));
        assert!(why("../widget").starts_with("repoIdentity rejected: "));
    }
}
