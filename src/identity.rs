//! Repo identity: the `origin` URL reduced to `host/owner/name`, so every clone of one
//! repository (over ssh, https or scp-like syntax) lands in the same lane.
//!
//! The URL is read in-process with libgit2: opening a repo's config this way runs nothing
//! (no hooks, no `core.fsmonitor`, no credential helper), unlike a `git` child process.

use std::path::Path;

/// Reduces a remote URL to its identity, or `None` when nothing usable is left.
///
/// `git@github.com:acme/repo.git`, `https://github.com/acme/repo.git` and
/// `ssh://git@github.com/acme/repo.git` all give `github.com/acme/repo`: the host is
/// lower-cased, port and credentials dropped, trailing `/` and `.git` stripped, nested
/// paths kept. A local remote (`file://` URL or a plain path) gives `path:<abs path>`.
pub fn normalize_remote_url(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    if let Some(rest) = url.strip_prefix("file://") {
        return local_identity(rest);
    }
    if url.starts_with('/') {
        return local_identity(url);
    }
    let (host, path) = match url.split_once("://") {
        Some((_scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            (host_of_authority(authority), path)
        }
        None => {
            // scp-like `[user@]host:path`; a colon after a slash is a local path instead.
            let (authority, path) = url.split_once(':')?;
            if authority.contains('/') {
                return None;
            }
            (strip_userinfo(authority), path)
        }
    };
    let host = host.to_ascii_lowercase();
    let path = trim_repo_path(path);
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{host}/{path}"))
}

fn local_identity(path: &str) -> Option<String> {
    let path = trim_repo_path(path);
    (!path.is_empty()).then(|| format!("path:/{path}"))
}

fn strip_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

fn host_of_authority(authority: &str) -> &str {
    let host = strip_userinfo(authority);
    if let Some(bracketed) = host.strip_prefix('[') {
        // IPv6 literal: `[::1]:22` keeps `::1`.
        return bracketed.split(']').next().unwrap_or("");
    }
    host.split(':').next().unwrap_or("")
}

fn trim_repo_path(path: &str) -> String {
    let mut path = path.trim_matches('/');
    while let Some(stripped) = path.strip_suffix(".git") {
        path = stripped.trim_end_matches('/');
    }
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot open the git repository at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "remote `origin` of {path} has URL `{url}`, which is not a repository URL berth understands"
    )]
    UnusableUrl { path: String, url: String },
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
/// has no origin.
pub fn repo_identity(repo: &Path) -> Result<String, IdentityError> {
    match origin_url(repo)? {
        Some(url) => normalize_remote_url(&url).ok_or_else(|| IdentityError::UnusableUrl {
            path: repo.display().to_string(),
            url,
        }),
        None => Ok(format!("path:{}", repo.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_form_normalises() {
        let cases = [
            ("git@github.com:acme/repo.git", "github.com/acme/repo"),
            ("https://github.com/acme/repo.git", "github.com/acme/repo"),
            ("ssh://git@github.com/acme/repo.git", "github.com/acme/repo"),
            ("https://github.com/acme/repo", "github.com/acme/repo"),
            ("https://github.com/acme/repo/", "github.com/acme/repo"),
            ("https://github.com/acme/repo.git/", "github.com/acme/repo"),
            ("HTTPS://GitHub.COM/Acme/Repo.git", "github.com/Acme/Repo"),
            (
                "https://user:token@github.com/acme/repo.git",
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
            ("git://127.0.0.1:9418/widget.git", "127.0.0.1/widget"),
            ("ssh://git@[::1]:22/acme/repo.git", "::1/acme/repo"),
            ("file:///srv/git/widget.git", "path:/srv/git/widget"),
            ("/srv/git/widget.git/", "path:/srv/git/widget"),
        ];
        for (url, want) in cases {
            assert_eq!(normalize_remote_url(url).as_deref(), Some(want), "{url}");
        }
        for junk in ["", "   ", "https://", "github.com", "./relative/path:x"] {
            assert_eq!(normalize_remote_url(junk), None, "{junk:?}");
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
        repo.remote("origin", "git@github.com:acme/widget.git")
            .unwrap();
        assert_eq!(repo_identity(&path).unwrap(), "github.com/acme/widget");
    }
}
