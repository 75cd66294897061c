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

/// What a check's recorded history (oldest first: success, time) says of it, for an agent
/// that starts again beside instances it was probing: green since the first success after
/// the last failure, or failing that many times in a row. With `None`, nothing was recorded.
pub fn restore(history: &[(bool, Timestamp)]) -> Option<Restored> {
    let (_, last_at) = *history.last()?;
    let trailing_failures = history.iter().rev().take_while(|(ok, _)| !ok).count();
    let green_since = history
        .iter()
        .rev()
        .take_while(|(ok, _)| *ok)
        .last()
        .map(|(_, at)| *at);
    Some(Restored {
        state: CheckState {
            consecutive_failures: u32::try_from(trailing_failures).unwrap_or(u32::MAX),
            green_since,
            last_message: None,
        },
        last_at,
    })
}

/// A check's state as recorded before the agent started, and when it was last probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub state: CheckState,
    pub last_at: Timestamp,
}

impl Restored {
    /// The state the first fresh result of an instance started at `started_at` folds into:
    /// the recorded one when it was recorded of this very instance (probed after it started;
    /// a replacement may carry the same name), else nothing known.
    pub fn base_for(&self, started_at: Option<Timestamp>) -> CheckState {
        match started_at {
            Some(started) if self.last_at >= started => self.state.clone(),
            Some(_) | None => CheckState::default(),
        }
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
    fn a_restored_history_keeps_the_green_instant_of_its_trailing_successes() {
        // (name, (success, second) oldest first, (failures in a row, green since) expected)
        type Case = (&'static str, Vec<(bool, i64)>, Option<(u32, Option<i64>)>);
        let cases: [Case; 5] = [
            ("nothing_recorded_is_unknown", vec![], None),
            (
                "all_green_since_the_first",
                vec![(true, 1), (true, 2), (true, 3)],
                Some((0, Some(1))),
            ),
            (
                "green_since_the_last_failure",
                vec![(true, 1), (false, 2), (true, 3), (true, 4)],
                Some((0, Some(3))),
            ),
            (
                "trailing_failures_counted",
                vec![(true, 1), (false, 2), (false, 3)],
                Some((2, None)),
            ),
            (
                "one_failure_is_not_green",
                vec![(false, 5)],
                Some((1, None)),
            ),
        ];
        for (name, history, expected) in cases {
            let history: Vec<(bool, Timestamp)> =
                history.into_iter().map(|(ok, s)| (ok, t(s))).collect();
            let restored = restore(&history);
            let got = restored.as_ref().map(|r| {
                (
                    r.state.consecutive_failures,
                    r.state.green_since.map(|g| g.0 / 1000),
                )
            });
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_restored_state_applies_only_to_the_instance_it_was_recorded_of() {
        let restored = restore(&[(true, t(10)), (true, t(20))]).unwrap();
        assert_eq!(
            restored.base_for(Some(t(5))).green_since,
            Some(t(10)),
            "same instance"
        );
        assert_eq!(
            restored.base_for(Some(t(30))),
            CheckState::default(),
            "a replacement started after the last result shares only the name"
        );
        assert_eq!(restored.base_for(None), CheckState::default());
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
