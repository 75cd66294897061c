//! PURE: health-check results → per-check state, and whether an instance passes the readiness
//! gate. Failures inside a check's `start_period` (counted from the instance's start) are
//! ignored; any counted failure resets the green clock.

use crate::model::manifest::{HealthCheck, DEFAULT_MIN_HEALTHY_TIME};
use crate::model::observed::CheckState;
use crate::model::time::Timestamp;
use crate::model::units::Duration;

/// Folds one probe result into a check's state.
pub fn record(
    state: &CheckState,
    check: &HealthCheck,
    started_at: Option<Timestamp>,
    ok: bool,
    at: Timestamp,
    message: &str,
) -> CheckState {
    if ok {
        return CheckState {
            consecutive_failures: 0,
            green_since: Some(state.green_since.unwrap_or(at)),
            last_message: Some(message.to_owned()),
        };
    }
    let grace = check.start_period.unwrap_or(Duration::from_millis(0));
    let in_grace = started_at.is_some_and(|s| at.0 < s.0.saturating_add(millis(grace)));
    if in_grace {
        return CheckState {
            last_message: Some(message.to_owned()),
            ..state.clone()
        };
    }
    CheckState {
        consecutive_failures: state.consecutive_failures.saturating_add(1),
        green_since: None,
        last_message: Some(message.to_owned()),
    }
}

/// The state a check resumes from when an agent starts again beside an instance whose check
/// it remembers green since `green_since`: still green since then — the first fresh result
/// decides whether it stays so — if that was seen of this very instance (at or after its start;
/// a replacement may carry the same name), else nothing known.
pub fn resume(green_since: Timestamp, started_at: Option<Timestamp>) -> CheckState {
    match started_at {
        Some(started) if green_since >= started => CheckState {
            consecutive_failures: 0,
            green_since: Some(green_since),
            last_message: None,
        },
        Some(_) | None => CheckState::default(),
    }
}

/// Whether a check is failing: `threshold` failures in a row (the point where a liveness check
/// fires its `on_failure`).
pub fn failing(state: &CheckState, check: &HealthCheck) -> bool {
    state.consecutive_failures >= check.threshold
}

/// Whether folding one result turned a check green, or not green, or failing, or not failing:
/// the changes a decision can depend on (the rest only wait for time to pass).
pub fn flipped(before: &CheckState, after: &CheckState, check: &HealthCheck) -> bool {
    before.green_since.is_some() != after.green_since.is_some()
        || failing(before, check) != failing(after, check)
}

/// How long every readiness check must have been green: the longest `min_healthy_time`.
pub fn needed(checks: &[HealthCheck]) -> Duration {
    checks
        .iter()
        .filter(|c| c.readiness)
        .map(|c| c.min_healthy_time.unwrap_or(DEFAULT_MIN_HEALTHY_TIME))
        .max()
        .unwrap_or(Duration::from_millis(0))
}

/// Whether a deployment gates on readiness at all.
pub fn has_readiness_checks(checks: &[HealthCheck]) -> bool {
    checks.iter().any(|c| c.readiness)
}

/// The gate for one running instance: every readiness check green for `needed`. On `Err`, the
/// check that holds it and how long it has been green.
pub fn gate(
    checks: &[HealthCheck],
    state_of: impl Fn(u32) -> Option<CheckState>,
    now: Timestamp,
) -> Result<(), Waiting> {
    let needed = needed(checks);
    for (index, check) in checks.iter().enumerate() {
        if !check.readiness {
            continue;
        }
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let green_for = state_of(index)
            .and_then(|s| s.green_since)
            .map_or(0, |since| {
                u64::try_from(now.0.saturating_sub(since.0)).unwrap_or(0)
            });
        if green_for < needed.as_millis() {
            return Err(Waiting {
                check: index,
                green_for: Duration::from_millis(green_for),
                needed,
            });
        }
    }
    Ok(())
}

/// Why an instance is not ready yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub check: u32,
    pub green_for: Duration,
    pub needed: Duration,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_flips_a_check_when_it_turns_green_ungreen_failing_or_not_failing() {
        let mut c = check(None);
        c.threshold = 2;
        let state = |failures: u32, green: bool| CheckState {
            consecutive_failures: failures,
            green_since: green.then_some(t(1)),
            last_message: None,
        };
        let cases = [
            ("unknown_to_green", state(0, false), state(0, true), true),
            ("green_stays_green", state(0, true), state(0, true), false),
            (
                "green_to_one_failure",
                state(0, true),
                state(1, false),
                true,
            ),
            (
                "one_failure_to_two_reaches_threshold",
                state(1, false),
                state(2, false),
                true,
            ),
            (
                "failing_stays_failing",
                state(2, false),
                state(3, false),
                false,
            ),
            (
                "below_threshold_stays_below",
                state(0, false),
                state(1, false),
                false,
            ),
            ("failing_to_green", state(3, false), state(0, true), true),
        ];
        for (name, before, after, flipped_expected) in cases {
            assert_eq!(flipped(&before, &after, &c), flipped_expected, "{name}");
        }
    }

    #[test]
    fn a_remembered_green_time_resumes_only_for_the_instance_it_was_seen_of() {
        let cases = [
            (
                "same_instance_keeps_its_green_time",
                t(10),
                Some(t(5)),
                Some(t(10)),
            ),
            ("green_from_its_very_start", t(5), Some(t(5)), Some(t(5))),
            (
                "a_replacement_started_later_starts_over",
                t(10),
                Some(t(30)),
                None,
            ),
            ("no_start_time_known_starts_over", t(10), None, None),
        ];
        for (name, green_since, started_at, expected) in cases {
            assert_eq!(
                resume(green_since, started_at).green_since,
                expected,
                "{name}"
            );
        }
        let resumed = resume(t(10), Some(t(5)));
        let after = record(&resumed, &check(None), Some(t(5)), true, t(40), "200");
        assert_eq!(
            after.green_since,
            Some(t(10)),
            "a green result keeps the clock"
        );
        let after = record(&resumed, &check(None), Some(t(5)), false, t(40), "refused");
        assert_eq!(after.green_since, None, "a failure resets it");
    }

    fn check(start_period: Option<u64>) -> HealthCheck {
        serde_json::from_value(serde_json::json!({
            "type": "tcp", "port": 80, "readiness": true,
            "start_period": start_period.map(|s| format!("{s}s")),
        }))
        .unwrap()
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp(secs * 1000)
    }

    #[test]
    fn successes_keep_the_first_green_instant_and_a_failure_resets_it() {
        let c = check(None);
        let s = record(&CheckState::default(), &c, Some(t(0)), true, t(1), "ok");
        let s = record(&s, &c, Some(t(0)), true, t(2), "ok");
        assert_eq!((s.green_since, s.consecutive_failures), (Some(t(1)), 0));
        let s = record(&s, &c, Some(t(0)), false, t(3), "refused");
        assert_eq!((s.green_since, s.consecutive_failures), (None, 1));
        let s = record(&s, &c, Some(t(0)), false, t(4), "refused");
        assert_eq!(s.consecutive_failures, 2);
        assert_eq!(s.last_message.as_deref(), Some("refused"));
    }

    #[test]
    fn failures_inside_the_start_period_do_not_count() {
        let c = check(Some(30));
        let s = record(
            &CheckState::default(),
            &c,
            Some(t(0)),
            false,
            t(10),
            "refused",
        );
        assert_eq!(s.consecutive_failures, 0);
        let s = record(&s, &c, Some(t(0)), false, t(31), "refused");
        assert_eq!(s.consecutive_failures, 1);
    }

    #[test]
    fn the_gate_reports_the_check_that_holds_it() {
        let checks = vec![check(None), check(None)];
        let states = |i: u32| {
            Some(CheckState {
                consecutive_failures: 0,
                green_since: Some(t(if i == 0 { 0 } else { 8 })),
                last_message: None,
            })
        };
        let waiting = gate(&checks, states, t(10)).unwrap_err();
        assert_eq!(
            (
                waiting.check,
                waiting.green_for.as_millis(),
                waiting.needed.as_millis()
            ),
            (1, 2000, 10_000)
        );
        assert!(gate(&checks, states, t(18)).is_ok());
    }
}
