//! Exponential backoff — `base` doubling per failed attempt, capped at `max` — shared by the
//! planner's retries and a source's failed reads.

use super::time::Timestamp;
use super::units::Duration;

/// The wait after `attempts` failed attempts (1 → base, 2 → 2·base, …, ≤ max).
pub fn delay(attempts: u32, base: Duration, max: Duration) -> Duration {
    let shift = attempts.saturating_sub(1).min(32);
    let millis = base.as_millis().saturating_mul(1u64 << shift);
    Duration::from_millis(millis.min(max.as_millis()))
}

/// `now + delay(attempts)`.
pub fn next_attempt(now: Timestamp, attempts: u32, base: Duration, max: Duration) -> Timestamp {
    now.plus(delay(attempts, base, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let waits: Vec<u64> = (1..=9)
            .map(|a| delay(a, base, max).as_millis() / 1000)
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay(u32::MAX, base, max), max);
    }
}
