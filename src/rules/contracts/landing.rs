//! `policies/landing.rhai`: whether a queued record may land now, what a landing's result
//! means, and how many lanes may land at once.
//!
//! ```rhai
//! fn admit(record, ctx)                   // -> #{decision: "go"|"wait"|"block", reason}
//! fn on_land_result(record, result, ctx)  // -> #{decision: "landed"|"blocked"|"drift_repair"|"requeue",
//!                                         //      reason, delay_secs?}
//! fn max_lanes(ctx)                       // -> int >= 1
//! ```
//! The core holds the facts a rule cannot overrule: a PR is `landed` exactly when the
//! landing command exited 0 **and** the forge proved the merge; `drift_repair` is only
//! possible after a failed land, and at most [`MAX_RULE_DRIFT_REPAIRS`] times per record.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AnswerError, Decided, decide, object, reason, string_field};
use crate::forge_state::PrState;
use crate::rules::set::RuleSet;
use crate::rules::spec::{Invalid, Requirement};

pub const FILE: &str = "policies/landing.rhai";

/// The most lanes a rule may open at once, whatever it returns.
pub const MAX_LANES_CAP: usize = 64;
/// Drift repairs (ship, then land again) the built-in verdict grants one record: one
/// repair that does not help means a human should look.
pub const DEFAULT_DRIFT_REPAIRS: u32 = 1;
/// The most drift repairs a rule may grant one record.
pub const MAX_RULE_DRIFT_REPAIRS: u32 = 3;
/// The longest a rule may defer a record.
pub const MAX_REQUEUE_DELAY_SECS: u64 = 7 * 24 * 3600;

pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        file: FILE,
        function: "admit",
        arity: 2,
        validate: Some(validate_admission),
    },
    Requirement {
        file: FILE,
        function: "on_land_result",
        arity: 3,
        validate: Some(validate_verdict),
    },
    Requirement {
        file: FILE,
        function: "max_lanes",
        arity: 1,
        validate: Some(validate_lanes),
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Go,
    Wait,
    Block,
}

impl Admit {
    pub fn as_str(self) -> &'static str {
        match self {
            Admit::Go => "go",
            Admit::Wait => "wait",
            Admit::Block => "block",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    pub decision: Admit,
    pub reason: String,
}

/// Asks `admit`. A failed or invalid answer waits (fails closed): the record stays queued
/// and is asked again next tick, so a broken freeze rule holds the queue instead of
/// opening it.
pub fn admit(set: &RuleSet, record: &Value, ctx: &Value) -> Decided<Admission> {
    decide(
        set,
        FILE,
        "admit",
        vec![record.clone(), ctx.clone()],
        parse_admission,
        |error, _| Admission {
            decision: Admit::Wait,
            reason: format!("waiting: the admit rule failed ({error})"),
        },
    )
}

fn parse_admission(_args: &[Value], result: &Value) -> Result<Admission, AnswerError> {
    object(result)?;
    let decision = match string_field(result, "decision")? {
        "go" => Admit::Go,
        "wait" => Admit::Wait,
        "block" => Admit::Block,
        other => {
            return Err(AnswerError::Decision {
                expected: "\"go\", \"wait\" or \"block\"",
                found: other.to_owned(),
            });
        }
    };
    Ok(Admission {
        decision,
        reason: reason(result, decision != Admit::Go)?,
    })
}

fn validate_admission(args: &[Value], result: &Value) -> Result<(), Invalid> {
    parse_admission(args, result).map(drop).map_err(Into::into)
}

/// What a rule sees of a finished land step.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LandFacts {
    /// The command exited 0.
    pub succeeded: bool,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// It failed and printed a drift signature.
    pub drift: bool,
    /// The forge proved the merge (only ever asked after an exit 0).
    pub merged: bool,
    /// The forge's state of the PR (`open`, `closed`, `merged`), when it was asked.
    pub forge_state: Option<PrState>,
    /// The core's one-line account, fit for `lastError`; it names the log.
    pub summary: String,
    pub log_path: String,
    /// Drift repairs this record has had.
    pub retries: u32,
    pub attempt: u32,
}

impl LandFacts {
    /// Whether one more drift repair keeps this record within `cap` repairs.
    fn repair_within(&self, cap: u32) -> bool {
        self.retries < cap
    }

    /// The facts a rule test hands `on_land_result` (its second argument): every field
    /// the core sends, so a misspelt one fails the test instead of reading as `false`.
    fn from_args(args: &[Value]) -> Result<LandFacts, AnswerError> {
        let facts = args.get(1).unwrap_or(&Value::Null);
        LandFacts::deserialize(facts).map_err(AnswerError::LandFacts)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandDecision {
    Landed,
    Blocked,
    DriftRepair,
    /// Back to `queued`, not to be picked before the delay passes (`None`: next tick).
    Requeue(Option<Duration>),
}

impl LandDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            LandDecision::Landed => "landed",
            LandDecision::Blocked => "blocked",
            LandDecision::DriftRepair => "drift_repair",
            LandDecision::Requeue(_) => "requeue",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LandVerdict {
    pub decision: LandDecision,
    pub reason: String,
}

/// Asks `on_land_result`; a failed or invalid answer takes the facts-only verdict of
/// DESIGN §3.6 ([`default_verdict`]), which lands only what the forge proved merged.
pub fn on_land_result(
    set: &RuleSet,
    record: &Value,
    facts: &LandFacts,
    ctx: &Value,
) -> Decided<LandVerdict> {
    let result = serde_json::to_value(facts).unwrap_or(Value::Null);
    decide(
        set,
        FILE,
        "on_land_result",
        vec![record.clone(), result, ctx.clone()],
        |_, answer| parse_verdict(facts, answer),
        |_, _| default_verdict(facts),
    )
}

/// Exit 0 and merged → landed; a drift signature with no repair yet → drift repair;
/// anything else → blocked with the core's summary.
pub fn default_verdict(facts: &LandFacts) -> LandVerdict {
    let decision = if facts.succeeded && facts.merged {
        LandDecision::Landed
    } else if facts.drift && facts.repair_within(DEFAULT_DRIFT_REPAIRS) {
        LandDecision::DriftRepair
    } else {
        LandDecision::Blocked
    };
    LandVerdict {
        decision,
        reason: facts.summary.clone(),
    }
}

fn parse_verdict(facts: &LandFacts, result: &Value) -> Result<LandVerdict, AnswerError> {
    let map = object(result)?;
    let proven = facts.succeeded && facts.merged;
    let decision = match string_field(result, "decision")? {
        "landed" if proven => LandDecision::Landed,
        "landed" => {
            return Err(AnswerError::LandedUnproven);
        }
        other if proven => return Err(AnswerError::ProvenNotLanded(other.to_owned())),
        "blocked" => LandDecision::Blocked,
        "drift_repair" if facts.succeeded => return Err(AnswerError::RepairAfterSuccess),
        "drift_repair" if !facts.repair_within(MAX_RULE_DRIFT_REPAIRS) => {
            return Err(AnswerError::RepairCapped {
                repairs: facts.retries,
            });
        }
        "drift_repair" => LandDecision::DriftRepair,
        "requeue" => LandDecision::Requeue(match map.get("delay_secs") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(secs) if (1..=MAX_REQUEUE_DELAY_SECS).contains(&secs) => {
                    Some(Duration::from_secs(secs))
                }
                _ => return Err(AnswerError::Delay { found: v.clone() }),
            },
        }),
        other => {
            return Err(AnswerError::Decision {
                expected: "\"landed\", \"blocked\", \"drift_repair\" or \"requeue\"",
                found: other.to_owned(),
            });
        }
    };
    Ok(LandVerdict {
        decision,
        reason: reason(result, decision != LandDecision::Landed)?,
    })
}

fn validate_verdict(args: &[Value], result: &Value) -> Result<(), Invalid> {
    parse_verdict(&LandFacts::from_args(args)?, result)
        .map(drop)
        .map_err(Into::into)
}

/// Asks `max_lanes` (the shipped rule answers the configured `max_lanes`). A failed or
/// invalid answer is 1 lane (fails closed).
pub fn max_lanes(set: &RuleSet, ctx: &Value) -> Decided<usize> {
    decide(
        set,
        FILE,
        "max_lanes",
        vec![ctx.clone()],
        parse_lanes,
        |_, _| 1,
    )
}

fn parse_lanes(_args: &[Value], result: &Value) -> Result<usize, AnswerError> {
    match result.as_u64() {
        Some(n) if n >= 1 && n <= MAX_LANES_CAP as u64 => Ok(n as usize),
        _ => Err(AnswerError::Lanes {
            found: result.clone(),
        }),
    }
}

fn validate_lanes(args: &[Value], result: &Value) -> Result<(), Invalid> {
    parse_lanes(args, result).map(drop).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(succeeded: bool, merged: bool, drift: bool, retries: u32) -> LandFacts {
        LandFacts {
            succeeded,
            exit_code: Some(if succeeded { 0 } else { 1 }),
            timed_out: false,
            drift,
            merged,
            forge_state: None,
            summary: "landing command exited with status 1 (log: /l)".into(),
            log_path: "/l".into(),
            retries,
            attempt: 1,
        }
    }

    /// The facts as a rule test passes them, read back the way the validator reads them.
    fn args(f: &LandFacts) -> LandFacts {
        LandFacts::from_args(&[json!({}), serde_json::to_value(f).unwrap(), json!({})]).unwrap()
    }

    /// A land result whose `retries` is misspelt must not read as zero repairs: that would
    /// switch the cap off.
    #[test]
    fn a_land_result_missing_a_field_fails_validation_instead_of_lifting_the_cap() {
        let mut facts =
            serde_json::to_value(facts(false, false, true, MAX_RULE_DRIFT_REPAIRS)).unwrap();
        let retries = facts.as_object_mut().unwrap().remove("retries").unwrap();
        facts["retrys"] = retries;
        let err = validate_verdict(
            &[json!({}), facts, json!({})],
            &json!({"decision": "drift_repair", "reason": "again"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("retries"), "{err}");
    }

    #[test]
    fn the_default_verdict_is_design_section_3() {
        let d = |f: LandFacts| default_verdict(&f).decision;
        assert_eq!(d(facts(true, true, false, 0)), LandDecision::Landed);
        assert_eq!(d(facts(true, false, false, 0)), LandDecision::Blocked);
        assert_eq!(d(facts(false, false, true, 0)), LandDecision::DriftRepair);
        assert_eq!(d(facts(false, false, true, 1)), LandDecision::Blocked);
        assert_eq!(d(facts(false, false, false, 0)), LandDecision::Blocked);
    }

    #[test]
    fn a_rule_cannot_overrule_the_merge_proof() {
        let merged = args(&facts(true, true, false, 0));
        let unmerged = args(&facts(true, false, false, 0));
        assert!(parse_verdict(&merged, &json!({"decision": "landed", "reason": ""})).is_ok());
        let err = parse_verdict(&merged, &json!({"decision": "requeue", "reason": "x"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only true decision"), "{err}");
        let err = parse_verdict(
            &unmerged,
            &json!({"decision": "landed", "reason": "trust me"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs an exit 0"), "{err}");
    }

    #[test]
    fn drift_repairs_and_delays_are_bounded() {
        let failed = args(&facts(false, false, true, MAX_RULE_DRIFT_REPAIRS));
        assert!(
            parse_verdict(
                &failed,
                &json!({"decision": "drift_repair", "reason": "again"})
            )
            .is_err()
        );
        let failed = args(&facts(false, false, true, 1));
        assert_eq!(
            parse_verdict(
                &failed,
                &json!({"decision": "drift_repair", "reason": "again"})
            )
            .unwrap()
            .decision,
            LandDecision::DriftRepair
        );
        let requeue = |delay: Value| {
            parse_verdict(
                &failed,
                &json!({"decision": "requeue", "reason": "flaky CI", "delay_secs": delay}),
            )
        };
        assert_eq!(
            requeue(json!(90)).unwrap().decision,
            LandDecision::Requeue(Some(Duration::from_secs(90)))
        );
        assert_eq!(
            requeue(Value::Null).unwrap().decision,
            LandDecision::Requeue(None)
        );
        for bad in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!("60"),
            json!(MAX_REQUEUE_DELAY_SECS + 1),
        ] {
            assert!(requeue(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn admissions_and_lanes_are_checked() {
        assert_eq!(
            parse_admission(&[], &json!({"decision": "wait", "reason": "freeze"}))
                .unwrap()
                .decision,
            Admit::Wait
        );
        assert!(parse_admission(&[], &json!({"decision": "wait", "reason": ""})).is_err());
        assert!(parse_admission(&[], &json!({"decision": "GO", "reason": ""})).is_err());
        assert!(parse_admission(&[], &json!("go")).is_err());
        assert_eq!(parse_lanes(&[], &json!(3)).unwrap(), 3);
        for bad in [json!(0), json!(-1), json!(65), json!(2.5), json!("2")] {
            assert!(parse_lanes(&[], &bad).is_err(), "{bad}");
        }
    }
}
