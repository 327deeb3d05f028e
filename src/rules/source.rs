//! Which rule files make up a set, and their exact text: the embedded defaults, overridden
//! file by file by a rules root laid out like the repository (`rules/`, `policies/`).
//!
//! A test file (`x.tests.json`) belongs to the rule file beside it (`x.rhai`) and to the
//! same layer: when a root overrides `policies/landing.rhai` without its own
//! `policies/landing.tests.json`, the shipped tests (written for the shipped policy) are
//! dropped rather than run against the operator's policy.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use globset::{GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use super::embedded;
use super::error::{LoadError, LoadFailure};

/// The directories of a rules root that hold rule files.
pub const RULE_DIRS: [&str; 2] = ["rules", "policies"];
/// The files berth reads from them.
const PATTERNS: [&str; 4] = [
    "rules/**/*.rhai",
    "policies/**/*.rhai",
    "rules/**/*.tests.json",
    "policies/**/*.tests.json",
];
const RULE_SUFFIX: &str = ".rhai";
const TESTS_SUFFIX: &str = ".tests.json";
/// A rule file is a page or two of script; anything bigger is a mistake.
const MAX_FILE_BYTES: u64 = 256 * 1024;
const MAX_FILES: usize = 256;
const MAX_DEPTH: usize = 8;

/// One file of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative to the rules root, `/`-separated: `policies/landing.rhai`.
    pub name: String,
    pub text: String,
    /// Read from the rules root rather than embedded.
    pub overridden: bool,
}

/// The files of one rule set and the hash that identifies it.
#[derive(Clone, Debug)]
pub struct SourceSet {
    root: Option<PathBuf>,
    files: BTreeMap<String, SourceFile>,
    hash: String,
}

impl SourceSet {
    /// The embedded defaults, overridden by the files under `root` if one is given.
    pub fn load(root: Option<&Path>) -> Result<SourceSet, LoadFailure> {
        let mut files: BTreeMap<String, SourceFile> = embedded::FILES
            .iter()
            .map(|(name, text)| {
                (
                    (*name).to_owned(),
                    SourceFile {
                        name: (*name).to_owned(),
                        text: (*text).to_owned(),
                        overridden: false,
                    },
                )
            })
            .collect();
        if let Some(root) = root {
            let found = read_root(root).map_err(LoadFailure::single)?;
            for file in found.values() {
                if let Some(stem) = file.name.strip_suffix(RULE_SUFFIX)
                    && !found.contains_key(&format!("{stem}{TESTS_SUFFIX}"))
                {
                    files.remove(&format!("{stem}{TESTS_SUFFIX}"));
                }
            }
            files.extend(found);
        }
        let hash = hash_of(files.values());
        Ok(SourceSet {
            root: root.map(Path::to_owned),
            files,
            hash,
        })
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// sha256 (hex) over every file's name and contents, in name order.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn files(&self) -> impl Iterator<Item = &SourceFile> {
        self.files.values()
    }

    /// The `.rhai` files.
    pub fn rule_files(&self) -> impl Iterator<Item = &SourceFile> {
        self.files
            .values()
            .filter(|f| f.name.ends_with(RULE_SUFFIX))
    }

    /// The `.tests.json` files, each with the name of the rule file it tests.
    pub fn test_files(&self) -> impl Iterator<Item = (&SourceFile, String)> {
        self.files.values().filter_map(|f| {
            f.name
                .strip_suffix(TESTS_SUFFIX)
                .map(|stem| (f, format!("{stem}{RULE_SUFFIX}")))
        })
    }
}

fn hash_of<'a>(files: impl Iterator<Item = &'a SourceFile>) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.name.as_bytes());
        hasher.update([0]);
        hasher.update(file.text.len().to_string().as_bytes());
        hasher.update([0]);
        hasher.update(file.text.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Built once per process (see [`super::spec::matcher`]).
fn patterns() -> &'static GlobSet {
    static PATTERNS_SET: LazyLock<GlobSet> = LazyLock::new(build_patterns);
    &PATTERNS_SET
}

fn build_patterns() -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for pattern in PATTERNS {
        if let Some(matcher) = super::spec::matcher(pattern) {
            builder.add(matcher.glob().clone());
        }
    }
    // The patterns are constants that parse; an empty set would only mean "no overrides".
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}

/// Every rule and test file under `root/rules` and `root/policies`. Hidden files and
/// directories (editors' swap and temp files) are skipped.
fn read_root(root: &Path) -> Result<BTreeMap<String, SourceFile>, LoadError> {
    let meta = fs::metadata(root).map_err(|source| LoadError::Io {
        path: root.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(LoadError::Refused {
            path: root.to_owned(),
            reason: "the rules root must be a directory holding rules/ and policies/".into(),
        });
    }
    let globs = patterns();
    let mut found = BTreeMap::new();
    for dir in RULE_DIRS {
        let path = root.join(dir);
        if path.is_dir() {
            walk(&path, dir, 0, globs, &mut found)?;
        }
    }
    Ok(found)
}

fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    globs: &GlobSet,
    found: &mut BTreeMap<String, SourceFile>,
) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    if depth > MAX_DEPTH {
        return Err(LoadError::Refused {
            path: dir.to_owned(),
            reason: format!("rule directories nest deeper than {MAX_DEPTH} levels"),
        });
    }
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let rel_name = format!("{rel}/{name}");
        let meta = fs::metadata(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(&path, &rel_name, depth + 1, globs, found)?;
        } else if meta.is_file() && globs.is_match(&rel_name) {
            if found.len() >= MAX_FILES {
                return Err(LoadError::Refused {
                    path,
                    reason: format!("more than {MAX_FILES} rule files"),
                });
            }
            let text = read_capped(&path)?;
            found.insert(
                rel_name.clone(),
                SourceFile {
                    name: rel_name,
                    text,
                    overridden: true,
                },
            );
        }
    }
    Ok(())
}

/// A rule file's text. Symlinked rule files are fine (dotfile managers make them); a
/// FIFO or device swapped in is refused at once, and the read is bounded.
fn read_capped(path: &Path) -> Result<String, LoadError> {
    crate::hostile_file::read_regular_following(path, MAX_FILE_BYTES)
        .and_then(crate::hostile_file::utf8)
        .map_err(|e| match e {
            crate::hostile_file::ReadError::Io(source) => LoadError::Io {
                path: path.to_owned(),
                source,
            },
            refused => LoadError::Refused {
                path: path.to_owned(),
                reason: refused.to_string(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, text: &str) {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn a_root_overrides_file_by_file_and_takes_its_tests_along() {
        let embedded = SourceSet::load(None).unwrap();
        assert!(embedded.rule_files().all(|f| !f.overridden));
        assert!(
            embedded
                .test_files()
                .any(|(_, rule)| rule == "policies/landing.rhai")
        );

        let root = tempfile::tempdir().unwrap();
        write(root.path(), "policies/landing.rhai", "fn admit(r, c) { 1 }");
        write(root.path(), "rules/detectors/a.rhai", "fn detect(s) { [] }");
        write(root.path(), "rules/.landing.rhai.swp", "junk");
        write(root.path(), "rules/notes.txt", "ignored");
        write(root.path(), "target/x.rhai", "not under a rule dir");
        let set = SourceSet::load(Some(root.path())).unwrap();
        let names: Vec<&str> = set.files().map(|f| f.name.as_str()).collect();
        let overridden: Vec<&str> = set
            .files()
            .filter(|f| f.overridden)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            overridden,
            ["policies/landing.rhai", "rules/detectors/a.rhai"]
        );
        assert!(names.contains(&"rules/discovery.rhai"));
        assert!(names.contains(&"rules/discovery.tests.json"));
        // The shipped tests were written for the shipped landing policy: dropped with it.
        assert!(!names.contains(&"policies/landing.tests.json"));
        assert!(
            names
                .iter()
                .all(|n| n.ends_with(".rhai") || n.ends_with(".tests.json"))
        );
        assert_ne!(set.hash(), embedded.hash());
        assert_eq!(set.hash().len(), 64);

        // Same files, same hash; one byte changed, another hash.
        assert_eq!(
            SourceSet::load(Some(root.path())).unwrap().hash(),
            set.hash()
        );
        write(root.path(), "policies/landing.rhai", "fn admit(r, c) { 2 }");
        assert_ne!(
            SourceSet::load(Some(root.path())).unwrap().hash(),
            set.hash()
        );
    }

    #[test]
    fn unusable_roots_and_files_are_refused_with_their_path() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("nope");
        let err = SourceSet::load(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        write(root.path(), "policies/landing.rhai", "\u{0}");
        fs::write(root.path().join("policies/landing.rhai"), [0xff, 0xfe]).unwrap();
        let err = SourceSet::load(Some(root.path())).unwrap_err().to_string();
        assert!(err.contains("landing.rhai: not UTF-8"), "{err}");
    }
}
