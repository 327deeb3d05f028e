//! The claim check (DESIGN §3 step 6): whether the PR the forge describes is the one the
//! record names, open and queued, before anything runs in its name.

use super::{MarkerCheck, MarkerError, MarkerPrNumber, PrCheck, PrRef, PrState, QUEUE_LABEL};

/// Why a claim is refused (DESIGN §3 step 6). The message is written for an operator and ends
/// up in the record's `lastError`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaimRefusal {
    #[error("asked {seen_on} about PR #{expected} but it answered for PR #{got}")]
    WrongPr {
        expected: u64,
        got: u64,
        seen_on: &'static str,
    },
    #[error("PR #{pr} is {} on {seen_on}", state_phrase(*.state))]
    NotOpen {
        pr: u64,
        state: PrState,
        seen_on: &'static str,
    },
    /// The feature branch was deleted from origin unmerged: gstack's words first (its
    /// failed fetch, test 65), so the `lastError` names the missing branch.
    #[error("{}: PR #{pr} is {} on {seen_on}; its feature branch was deleted from origin unmerged", crate::gstack_text::remote_ref_missing(.branch), state_phrase(*.state))]
    BranchGone {
        pr: u64,
        /// The record's feature branch.
        branch: String,
        state: PrState,
        seen_on: &'static str,
    },
    #[error("PR #{pr} no longer carries the {QUEUE_LABEL} label")]
    Unlabelled { pr: u64 },
    #[error("PR #{pr} has no valid queue marker: {reason}")]
    NoMarker { pr: u64, reason: MarkerError },
    #[error("PR #{pr}'s queue marker names PR #{marker_pr}")]
    MarkerPr { pr: u64, marker_pr: String },
    #[error("PR #{pr}'s queue marker says feature branch {marker} but the record says {record}")]
    MarkerFeature {
        pr: u64,
        marker: String,
        record: String,
    },
    #[error("PR #{pr}'s queue marker says base branch {marker} but the record says {record}")]
    MarkerBase {
        pr: u64,
        marker: String,
        record: String,
    },
    #[error("PR #{pr} head branch is {actual} but the record says {record}")]
    Head {
        pr: u64,
        actual: String,
        record: String,
    },
    #[error("PR #{pr} base branch is {actual} but the record says {record}")]
    Base {
        pr: u64,
        actual: String,
        record: String,
    },
}

fn state_phrase(state: PrState) -> &'static str {
    match state {
        PrState::Open => "open",
        PrState::Closed => "closed",
        PrState::Merged => "already merged",
    }
}

/// DESIGN §3 step 6: may berth land this PR for this record? Checks, in order: the forge
/// answered for the right PR, its feature branch is not gone from origin unmerged, it is
/// still open, it carries the label, its marker is valid and
/// names this PR (when it names one), this feature branch and this base (when it names one),
/// and the PR's real head and base branches are the record's. The first failure wins.
pub fn verify_claim(check: &PrCheck, expected: &PrRef<'_>) -> Result<(), ClaimRefusal> {
    let pr = expected.number;
    if check.number != pr {
        return Err(ClaimRefusal::WrongPr {
            expected: pr,
            got: check.number,
            seen_on: check.seen_on,
        });
    }
    if check.state != PrState::Merged && check.head_on_origin == Some(false) {
        return Err(ClaimRefusal::BranchGone {
            pr,
            branch: expected.feature_branch.to_owned(),
            state: check.state,
            seen_on: check.seen_on,
        });
    }
    if check.state != PrState::Open {
        return Err(ClaimRefusal::NotOpen {
            pr,
            state: check.state,
            seen_on: check.seen_on,
        });
    }
    if !check.labelled {
        return Err(ClaimRefusal::Unlabelled { pr });
    }
    match &check.marker {
        MarkerCheck::NotApplicable => {}
        MarkerCheck::Invalid(reason) => {
            return Err(ClaimRefusal::NoMarker {
                pr,
                reason: reason.clone(),
            });
        }
        MarkerCheck::Valid(marker) => {
            match marker.pr_number() {
                MarkerPrNumber::Absent => {}
                MarkerPrNumber::Number(n) if n == pr => {}
                MarkerPrNumber::Number(n) => {
                    return Err(ClaimRefusal::MarkerPr {
                        pr,
                        marker_pr: n.to_string(),
                    });
                }
                MarkerPrNumber::Invalid(raw) => {
                    return Err(ClaimRefusal::MarkerPr { pr, marker_pr: raw });
                }
            }
            if marker.feature_branch() != expected.feature_branch {
                return Err(ClaimRefusal::MarkerFeature {
                    pr,
                    marker: marker.feature_branch().to_owned(),
                    record: expected.feature_branch.to_owned(),
                });
            }
            if let Some(base) = marker.base_branch()
                && base != expected.base_branch
            {
                return Err(ClaimRefusal::MarkerBase {
                    pr,
                    marker: base.to_owned(),
                    record: expected.base_branch.to_owned(),
                });
            }
        }
    }
    if check.head_branch != expected.feature_branch {
        return Err(ClaimRefusal::Head {
            pr,
            actual: check.head_branch.clone(),
            record: expected.feature_branch.to_owned(),
        });
    }
    if check.base_branch != expected.base_branch {
        return Err(ClaimRefusal::Base {
            pr,
            actual: check.base_branch.clone(),
            record: expected.base_branch.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::Marker;
    use serde_json::json;

    fn marker(feature: &str, base: Option<&str>, pr: serde_json::Value) -> Marker {
        let mut v = json!({
            "runId": "run-1",
            "featureBranch": feature,
            "prNumber": pr,
            "version": "1.0.0.0",
            "queuedAt": "2025-01-01T00:00:00.000Z",
        });
        if let (Some(base), Some(obj)) = (base, v.as_object_mut()) {
            obj.insert("baseBranch".into(), json!(base));
        }
        let serde_json::Value::Object(map) = v else {
            unreachable!("literal is an object")
        };
        Marker::from_object(map).expect("valid marker")
    }

    fn good() -> PrCheck {
        PrCheck {
            number: 42,
            state: PrState::Open,
            labelled: true,
            marker: MarkerCheck::Valid(marker("feat/y", Some("main"), json!(42))),
            head_branch: "feat/y".into(),
            base_branch: "main".into(),
            head_on_origin: None,
            seen_on: "GitHub",
        }
    }

    const EXPECTED: PrRef<'static> = PrRef {
        number: 42,
        feature_branch: "feat/y",
        base_branch: "main",
    };

    fn refusal(check: PrCheck) -> String {
        verify_claim(&check, &EXPECTED)
            .expect_err("must refuse")
            .to_string()
    }

    #[test]
    fn accepts_a_matching_pr() {
        assert_eq!(verify_claim(&good(), &EXPECTED), Ok(()));
        // Legacy markers without prNumber/baseBranch still pass.
        let legacy = PrCheck {
            marker: MarkerCheck::Valid(marker("feat/y", None, json!(null))),
            ..good()
        };
        assert_eq!(verify_claim(&legacy, &EXPECTED), Ok(()));
        // The git forge has no label or marker to check.
        let git = PrCheck {
            marker: MarkerCheck::NotApplicable,
            seen_on: "origin",
            ..good()
        };
        assert_eq!(verify_claim(&git, &EXPECTED), Ok(()));
    }

    #[test]
    fn refuses_each_mismatch_with_an_operator_message() {
        assert_eq!(
            refusal(PrCheck {
                state: PrState::Closed,
                ..good()
            }),
            "PR #42 is closed on GitHub"
        );
        assert_eq!(
            refusal(PrCheck {
                state: PrState::Merged,
                seen_on: "origin",
                ..good()
            }),
            "PR #42 is already merged on origin"
        );
        // Merged, then its branch deleted (the usual end of a PR): merged is what counts.
        assert_eq!(
            refusal(PrCheck {
                state: PrState::Merged,
                head_on_origin: Some(false),
                ..good()
            }),
            "PR #42 is already merged on GitHub"
        );
        for state in [PrState::Closed, PrState::Open] {
            assert_eq!(
                refusal(PrCheck {
                    state,
                    head_on_origin: Some(false),
                    seen_on: "origin",
                    ..good()
                }),
                format!(
                    "couldn't find remote ref feat/y: PR #42 is {state} on origin; its feature branch was deleted from origin unmerged"
                )
            );
        }
        assert_eq!(
            refusal(PrCheck {
                number: 41,
                ..good()
            }),
            "asked GitHub about PR #42 but it answered for PR #41"
        );
        assert_eq!(
            refusal(PrCheck {
                labelled: false,
                ..good()
            }),
            "PR #42 no longer carries the gstack-release-queued label"
        );
        assert_eq!(
            refusal(PrCheck {
                marker: MarkerCheck::Invalid(MarkerError::Missing),
                ..good()
            }),
            "PR #42 has no valid queue marker: the PR body has no `<!-- gstack-release-queued` marker"
        );
        assert_eq!(
            refusal(PrCheck {
                marker: MarkerCheck::Valid(marker("feat/y", Some("main"), json!(7))),
                ..good()
            }),
            "PR #42's queue marker names PR #7"
        );
        assert_eq!(
            refusal(PrCheck {
                marker: MarkerCheck::Valid(marker("feat/y", Some("main"), json!("42"))),
                ..good()
            }),
            "PR #42's queue marker names PR #\"42\""
        );
        assert_eq!(
            refusal(PrCheck {
                marker: MarkerCheck::Valid(marker("feat/x", Some("main"), json!(42))),
                ..good()
            }),
            "PR #42's queue marker says feature branch feat/x but the record says feat/y"
        );
        assert_eq!(
            refusal(PrCheck {
                marker: MarkerCheck::Valid(marker("feat/y", Some("develop"), json!(42))),
                ..good()
            }),
            "PR #42's queue marker says base branch develop but the record says main"
        );
        assert_eq!(
            refusal(PrCheck {
                head_branch: "feat/x".into(),
                ..good()
            }),
            "PR #42 head branch is feat/x but the record says feat/y"
        );
        assert_eq!(
            refusal(PrCheck {
                base_branch: "release".into(),
                ..good()
            }),
            "PR #42 base branch is release but the record says main"
        );
    }
}
