//! What a forge says about a PR, as types: its state (`PrState`), which forge said it
//! (`ForgeKind`), and the record's `lastGithubState` (`GithubState`). A leaf module, so
//! the record, the forges and the rules contracts can all name these without importing
//! each other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A PR's lifecycle state. Rules see it in lower case (`open`, `closed`, `merged`);
/// GitHub and gstack's records spell it in capitals ([`PrState::gstack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

impl PrState {
    /// The state as GitHub and gstack's `lastGithubState` spell it.
    pub fn gstack(self) -> &'static str {
        match self {
            PrState::Open => "OPEN",
            PrState::Closed => "CLOSED",
            PrState::Merged => "MERGED",
        }
    }

    /// The state GitHub spelled `text`, if it is one.
    pub fn from_gstack(text: &str) -> Option<PrState> {
        [PrState::Open, PrState::Closed, PrState::Merged]
            .into_iter()
            .find(|state| state.gstack() == text)
    }
}

impl fmt::Display for PrState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Merged => "merged",
        })
    }
}

/// Which forge answers: GitHub through `gh`, or plain git on `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    GitHub,
    Git,
}

impl ForgeKind {
    /// `"gh"` or `"git"`, for logs, status and rules.
    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "gh",
            ForgeKind::Git => "git",
        }
    }

    /// Who a landing's summary says reported the state (gstack's wording).
    pub fn reporter(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "GitHub",
            ForgeKind::Git => "origin",
        }
    }
}

/// A record's `lastGithubState`: a PR state, or whatever else a writer left there
/// (gstack writes `unknown` when `gh` failed), kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum GithubState {
    Pr(PrState),
    Other(String),
}

impl From<String> for GithubState {
    fn from(text: String) -> GithubState {
        PrState::from_gstack(&text).map_or(GithubState::Other(text), GithubState::Pr)
    }
}

impl From<GithubState> for String {
    fn from(state: GithubState) -> String {
        match state {
            GithubState::Pr(state) => state.gstack().to_owned(),
            GithubState::Other(text) => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_state_reads_and_writes_as_gstack_spells_it() {
        for text in [
            "\"MERGED\"",
            "\"OPEN\"",
            "\"CLOSED\"",
            "\"unknown\"",
            "\"merged\"",
        ] {
            let state: GithubState = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&state).unwrap(), text);
        }
        let merged: GithubState = serde_json::from_str("\"MERGED\"").unwrap();
        assert_eq!(merged, GithubState::Pr(PrState::Merged));
        let lower: GithubState = serde_json::from_str("\"merged\"").unwrap();
        assert_eq!(lower, GithubState::Other("merged".into()));
    }
}
