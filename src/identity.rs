//! Repo identity: the `origin` URL reduced the way gstack's release daemon reduces it, so a
//! berth and a gstack daemon on one remote compute the same record ids and lock refs.
//!
//! The rules (`../shared/gstack/release-daemon.md` §6.3), applied to the trimmed URL:
//! - scp-like (`[user@]host:path`, no `://`): lower-cased host, `/`, the path without its
//!   leading slashes (`git@github.com:acme/repo.git` → `github.com/acme/repo`);
//! - a WHATWG URL: `file:` URLs give `file:` + the normalised absolute path, still
//!   percent-encoded as the URL holds it (`file:///srv/git/widget.git` →
//!   `file:/srv/git/widget`); others give the lower-cased host (port and credentials
//!   dropped) + the path with repeated slashes collapsed; a URL without a host is kept raw;
//! - anything else (a plain path, a relative path) is kept as written
//!   (`/srv/git/widget.git` → `/srv/git/widget`);
//! - then, in every case, trailing `/`s and one trailing `.git` (any case) are removed.
//!
//! An empty result, or no `origin`, gives `path:<abs path>`. Whether berth will *use* an
//! identity (a relative origin, a percent-encoded path) is the identity gate's business
//! (`gates::gate_identity`), which says why it refuses.
//!
//! The URL is read in-process with libgit2: opening a repo's config this way runs nothing
//! (no hooks, no `core.fsmonitor`, no credential helper), unlike a `git` child process.

use std::path::Path;

/// JavaScript's `\s` (and what `String.prototype.trim` removes): gstack splits and trims
/// with it, so berth must agree on where a URL starts and ends.
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// JavaScript's `.` in a regex: any character but a line terminator.
fn is_js_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// Reduces a remote URL to its identity as gstack does, or `None` when nothing is left
/// (the caller then falls back to `path:<abs path>`, as gstack does).
///
/// `git@github.com:acme/repo.git`, `https://github.com/acme/repo.git` and
/// `ssh://git@github.com/acme/repo.git` all give `github.com/acme/repo`; `/srv/git/w.git`
/// gives `/srv/git/w`; `file:///srv/git/w.git` gives `file:/srv/git/w`.
pub fn normalize_remote_url(url: &str) -> Option<String> {
    let raw = url.trim_matches(is_js_space);
    if raw.is_empty() {
        return None;
    }
    let identity =
        if let Some((host, path)) = scp_like(raw) {
            strip_git_suffix(&format!(
                "{}/{}",
                host.to_lowercase(),
                path.trim_start_matches('/')
            ))
        } else {
            match url::Url::parse(raw) {
                Ok(parsed) if parsed.scheme() == "file" => {
                    strip_git_suffix(&format!("file:{}", resolve_posix(parsed.path())))
                }
                Ok(parsed) => match parsed.host_str() {
                    Some(host) if !host.is_empty() => strip_git_suffix(&collapse_slashes(
                        &format!("{}{}", host.to_lowercase(), parsed.path()),
                    )),
                    _ => strip_git_suffix(raw),
                },
                Err(_) => strip_git_suffix(raw),
            }
        };
    (!identity.is_empty()).then_some(identity)
}

/// `[user@]host:path` where the user has no `@`, `/` or space, the host no `:` or space,
/// the path at least one character and no line break, and the URL no `://`.
fn scp_like(raw: &str) -> Option<(&str, &str)> {
    if raw.contains("://") {
        return None;
    }
    let host_and_path = |rest: &'_ str| -> Option<(usize, usize)> {
        let colon = rest.find(|c: char| c == ':' || is_js_space(c))?;
        let path = &rest[colon..];
        let valid = colon > 0
            && path.starts_with(':')
            && path.len() > 1
            && !path.chars().any(is_js_line_terminator);
        valid.then_some((colon, rest.len()))
    };
    // With a user part first (the regex tries it first), then the whole text as the host.
    if let Some(at) = raw.find('@') {
        let user = &raw[..at];
        if !user.is_empty() && !user.chars().any(|c| c == '/' || is_js_space(c)) {
            let rest = &raw[at + 1..];
            if let Some((colon, _)) = host_and_path(rest) {
                return Some((&rest[..colon], &rest[colon + 1..]));
            }
        }
    }
    let (colon, _) = host_and_path(raw)?;
    Some((&raw[..colon], &raw[colon + 1..]))
}

/// Trailing `/`s, then one trailing `.git` in any case.
fn strip_git_suffix(text: &str) -> String {
    let text = text.trim_end_matches('/');
    let cut = text.len().saturating_sub(4);
    match text.get(cut..) {
        Some(tail) if tail.eq_ignore_ascii_case(".git") => text[..cut].to_owned(),
        _ => text.to_owned(),
    }
}

fn collapse_slashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Node's `path.resolve` of an absolute POSIX path: `.` and empty segments dropped, `..`
/// applied, no trailing slash (a URL's path always starts with `/`).
fn resolve_posix(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot open the git repository at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: git2::Error,
    },
}

/// The `origin` URL of a (gated) repo as configured, if it has one.
pub fn origin_url(repo: &Path) -> Result<Option<String>, IdentityError> {
    let repository = git2::Repository::open(repo).map_err(|source| IdentityError::Open {
        path: repo.display().to_string(),
        source,
    })?;
    // The literal configured URL, read as data: `Remote::url` would apply the repo's own
    // `url.<x>.insteadOf` rewrites, letting a planted config redirect berth's pushes.
    let config = repository
        .config()
        .and_then(|mut c| c.snapshot())
        .map_err(|source| IdentityError::Open {
            path: repo.display().to_string(),
            source,
        })?;
    let url = config.get_string("remote.origin.url").ok();
    Ok(url)
}

/// The identity of a (gated) repo: its normalised `origin`, or `path:<abs path>` when it
/// has no origin or the origin reduces to nothing (as gstack falls back).
pub fn repo_identity(repo: &Path) -> Result<String, IdentityError> {
    Ok(identity_of(repo, origin_url(repo)?.as_deref()))
}

/// [`repo_identity`] of the repo at `repo` whose `origin` URL, read once, is `origin_url`.
pub fn identity_of(repo: &Path, origin_url: Option<&str>) -> String {
    origin_url
        .and_then(normalize_remote_url)
        .unwrap_or_else(|| format!("path:{}", repo.display()))
}

/// The key under which berth serializes lanes of one repository however its `origin` is
/// spelled (gstack's lock ref is per spelling): a `github.com` identity lower-cased
/// (GitHub owner and repository names ignore case); a local identity (`/path`, `file:/path`)
/// as `local:<device>:<inode>` of the repository directory it names, so a symlink, a bind
/// mount or a `file://` spelling of one bare repo meet; anything else as it is. A local
/// identity whose directory cannot be found stays as it is.
pub fn alias_key(identity: &str) -> String {
    if identity
        .get(..11)
        .is_some_and(|host| host.eq_ignore_ascii_case("github.com/"))
    {
        return identity.to_lowercase();
    }
    local_repo_dir(identity)
        .and_then(|dir| std::fs::metadata(dir).ok())
        .map_or_else(
            || identity.to_owned(),
            |meta| {
                use std::os::unix::fs::MetadataExt;
                format!("local:{}:{}", meta.dev(), meta.ino())
            },
        )
}

/// The path a local identity (`/path`, `file:/path`) names, as written (no look at it);
/// `None` for any other identity, whose [`alias_key`] needs no syscall.
pub fn local_identity_path(identity: &str) -> Option<std::path::PathBuf> {
    if let Some(rest) = identity.strip_prefix("file:") {
        url::Url::parse(&format!("file://{rest}"))
            .ok()?
            .to_file_path()
            .ok()
    } else if identity.starts_with('/') {
        Some(std::path::PathBuf::from(identity))
    } else {
        None
    }
}

/// The directory a local identity names: the path as written, or with the `.git` the
/// identity dropped.
fn local_repo_dir(identity: &str) -> Option<std::path::PathBuf> {
    let path = local_identity_path(identity)?;
    let with_suffix = std::path::PathBuf::from(format!("{}.git", path.display()));
    [path, with_suffix].into_iter().find(|p| p.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every origin form, with the identity gstack's `normalizeRemoteIdentity` gives it.
    #[test]
    fn every_url_form_normalises_as_gstack_does() {
        let cases = [
            ("git@github.com:acme/repo.git", "github.com/acme/repo"),
            ("https://github.com/acme/repo.git", "github.com/acme/repo"),
            ("ssh://git@github.com/acme/repo.git", "github.com/acme/repo"),
            ("https://github.com/acme/repo", "github.com/acme/repo"),
            ("https://github.com/acme/repo/", "github.com/acme/repo"),
            ("https://github.com/acme/repo.git/", "github.com/acme/repo"),
            ("https://github.com/acme/repo.GIT", "github.com/acme/repo"),
            ("git@github.com:acme/repo.Git", "github.com/acme/repo"),
            ("HTTPS://GitHub.COM/Acme/Repo.git", "github.com/Acme/Repo"),
            ("ssh://git@GitHub.COM/acme/repo.git", "github.com/acme/repo"),
            (
                "https://user:token@github.com/acme/repo.git",
                "github.com/acme/repo",
            ),
            (
                "https://github.com//acme///repo.git",
                "github.com/acme/repo",
            ),
            (
                "https://github.com/acme/repo.git?ref=x#frag",
                "github.com/acme/repo",
            ),
            (
                "ssh://git@github.example.com:2222/acme/repo.git",
                "github.example.com/acme/repo",
            ),
            (
                "git@GHE.Corp.example:acme/repo.git",
                "ghe.corp.example/acme/repo",
            ),
            (
                "https://gitlab.example.com/group/sub/repo.git",
                "gitlab.example.com/group/sub/repo",
            ),
            (
                "git@gitlab.example.com:group/sub/repo.git",
                "gitlab.example.com/group/sub/repo",
            ),
            (
                "https://github.enterprise.test/org/repo",
                "github.enterprise.test/org/repo",
            ),
            ("git://127.0.0.1:9418/widget.git", "127.0.0.1/widget"),
            ("ssh://git@[::1]:22/acme/repo.git", "[::1]/acme/repo"),
            // Only one `.git` goes, after the trailing slashes.
            ("https://h.example/a/repo.git.git", "h.example/a/repo.git"),
            // Local remotes: the path as written, or `file:` + the URL's path.
            ("/srv/git/widget", "/srv/git/widget"),
            ("/srv/git/widget.git/", "/srv/git/widget"),
            ("/srv/git/Widget.GIT", "/srv/git/Widget"),
            ("file:///srv/git/widget.git", "file:/srv/git/widget"),
            ("file:///srv/git/widget.git/", "file:/srv/git/widget"),
            ("file:///srv//git/./x/../widget", "file:/srv/git/widget"),
            ("file://host/srv/git/widget", "file:/srv/git/widget"),
            ("file:///srv/git/my repo.git", "file:/srv/git/my%20repo"),
            // Forms gstack keeps that berth's identity gate then refuses.
            ("../widget.git", "../widget"),
            ("widget", "widget"),
            ("./relative/path:x", "./relative/path/x"),
            ("file:/srv/git/widget", "file/srv/git/widget"),
            ("https://", "https:"),
            (
                "  \u{FEFF}git@github.com:acme/repo.git\n",
                "github.com/acme/repo",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(normalize_remote_url(url).as_deref(), Some(want), "{url}");
        }
        for nothing in ["", "   ", ".git", "/", "///"] {
            assert_eq!(normalize_remote_url(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn scp_like_needs_a_host_a_colon_and_a_path() {
        assert_eq!(
            scp_like("git@github.com:acme/r"),
            Some(("github.com", "acme/r"))
        );
        // A user part with `/` is no user part: the whole text up to `:` is the host.
        assert_eq!(scp_like("a/b@h:p"), Some(("a/b@h", "p")));
        for not_scp in ["h:", ":p", "a b:c", "h:p\nq", "ssh://h:22/p", "/no/colon"] {
            assert_eq!(scp_like(not_scp), None, "{not_scp:?}");
        }
    }

    #[test]
    fn reads_origin_with_libgit2_and_falls_back_to_path() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let path = dir.path().canonicalize().unwrap();
        assert_eq!(
            repo_identity(&path).unwrap(),
            format!("path:{}", path.display())
        );
        repo.remote("origin", "/srv/git/widget.git").unwrap();
        assert_eq!(repo_identity(&path).unwrap(), "/srv/git/widget");
        repo.remote_set_url("origin", "git@github.com:acme/widget.git")
            .unwrap();
        assert_eq!(repo_identity(&path).unwrap(), "github.com/acme/widget");
        // An origin that reduces to nothing falls back to the path, as in gstack.
        repo.remote_set_url("origin", ".git").unwrap();
        assert_eq!(
            repo_identity(&path).unwrap(),
            format!("path:{}", path.display())
        );
    }

    #[test]
    fn aliases_of_one_repository_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("w.git");
        std::fs::create_dir(&bare).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let real = alias_key(&format!("{}/w", dir.path().display()));
        assert!(real.starts_with("local:"), "{real}");
        for alias in [
            format!("{}/w", link.display()),
            format!("{}/w.git", link.display()),
            format!("file:{}/w", link.display()),
        ] {
            assert_eq!(alias_key(&alias), real, "{alias}");
        }
        let other = dir.path().join("other.git");
        std::fs::create_dir(&other).unwrap();
        assert_ne!(alias_key(&format!("{}/other", dir.path().display())), real);
        assert_eq!(alias_key("/no/such/repo"), "/no/such/repo");
        assert_eq!(
            alias_key("github.com/Acme/Widget"),
            alias_key("github.com/acme/widget")
        );
        assert_eq!(
            alias_key("github.com/acme/widget"),
            "github.com/acme/widget"
        );
        // Other hosts may tell case apart: left alone.
        assert_eq!(
            alias_key("gitlab.example.com/G/R"),
            "gitlab.example.com/G/R"
        );
    }
}
