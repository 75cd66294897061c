//! PURE: when a failed delivery is tried again. The schedule (default 5s, 30s, 2m, 10m, 30m,
//! 1h, then every 2h) is followed with ±20 % jitter, so that endpoints recovering together are
//! not hit in lockstep; a delivery older than `give_up_after` (default 24h) is dead. The jitter
//! is derived from the delivery's id and attempt — different across deliveries, the same for a
//! replay of one decision.

use sha2::{Digest, Sha256};

use crate::model::time::Timestamp;
use crate::model::units::Duration;

/// The retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The waits after the first failures, in order.
    pub schedule: Vec<Duration>,
    /// The wait after every later failure.
    pub every: Duration,
    /// No attempt later than this after the delivery was created.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: [5, 30, 120, 600, 1800, 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            every: Duration::from_secs(2 * 3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// When to try delivery `id` again after its `failures`-th failed attempt (1 for the first),
    /// or `None` when it is past `give_up_after` since `created`: dead-letter it.
    pub fn next_attempt(
        &self,
        id: &str,
        failures: u32,
        created: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let index = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
        let base = self.schedule.get(index).copied().unwrap_or(self.every);
        let wait = jittered(base, id, failures);
        let next = Timestamp(now.0.saturating_add(millis(wait)));
        let deadline = created.0.saturating_add(millis(self.give_up_after));
        (next.0 <= deadline).then_some(next)
    }
}

/// `base` ± 20 %, by a hash of (id, attempt).
fn jittered(base: Duration, id: &str, attempt: u32) -> Duration {
    let digest = Sha256::new()
        .chain_update(id.as_bytes())
        .chain_update(attempt.to_le_bytes())
        .finalize();
    // 0..=400 per mille, centred: -200..=+200.
    let spread = i64::from(u16::from_le_bytes([digest[0], digest[1]]) % 401) - 200;
    let base = i64::try_from(base.as_millis()).unwrap_or(i64::MAX);
    let wait = base.saturating_add(base.saturating_mul(spread) / 1000);
    Duration::from_millis(u64::try_from(wait.max(0)).unwrap_or(0))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn retries_follow_the_schedule_within_the_jitter_then_every_two_hours_then_give_up() {
        let policy = RetryPolicy::default();
        let created = Timestamp(0);
        let cases: [(u32, i64, i64); 8] = [
            (1, 0, 5_000),
            (2, 0, 30_000),
            (3, 0, 120_000),
            (4, 0, 600_000),
            (5, 0, 1_800_000),
            (6, 0, HOUR),
            (7, 0, 2 * HOUR),
            (12, 20 * HOUR, 2 * HOUR),
        ];
        for (failures, now, base) in cases {
            let next = policy
                .next_attempt("msg_1", failures, created, Timestamp(now))
                .unwrap();
            let wait = next.0 - now;
            assert!(
                wait >= base * 8 / 10 && wait <= base * 12 / 10,
                "failure {failures}: waited {wait} ms for {base}"
            );
        }
        assert_eq!(
            policy.next_attempt("msg_1", 13, created, Timestamp(23 * HOUR)),
            None,
            "past 24h: dead"
        );
    }

    #[test]
    fn the_jitter_spreads_deliveries_and_is_stable_for_one() {
        let policy = RetryPolicy::default();
        let at = |id: &str| policy.next_attempt(id, 3, Timestamp(0), Timestamp(0));
        assert_eq!(at("msg_a"), at("msg_a"));
        let distinct: std::collections::BTreeSet<_> =
            (0..20).map(|i| at(&format!("msg_{i}"))).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }
}
