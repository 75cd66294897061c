//! The runs of a cron job: each due time of its schedule becomes a run — started, or skipped
//! and recorded — with its number (per deployment, from 1), when it was due, started and
//! finished, its exit code and its outcome. The planner produces run records; the store keeps
//! them (`keel runs`, `GET …/runs`); failed runs nobody has cleared, with no newer success,
//! count as a failure of their namespace (DESIGN.md §3.4).

use serde::{Deserialize, Serialize};

use super::time::Timestamp;

string_enum! {
    /// Where a run is, or how it ended.
    RunOutcome {
        /// Its instances run.
        Running = "running",
        /// Every instance exited 0.
        Completed = "completed",
        /// An instance exited otherwise, was killed, vanished, or could not be created; or
        /// the run was replaced by the next one.
        Failed = "failed",
        /// It never started: the previous run still ran (`concurrency: forbid`), its starting
        /// deadline passed, or the agent was down when it was due.
        Skipped = "skipped",
    }
}

impl RunOutcome {
    /// Whether the run is over (every outcome but `running`).
    pub fn is_finished(self) -> bool {
        match self {
            RunOutcome::Running => false,
            RunOutcome::Completed | RunOutcome::Failed | RunOutcome::Skipped => true,
        }
    }
}

/// The rule of DESIGN.md §3.4 for cron jobs: a failed run counts against its namespace until
/// a newer run completes or the failure is cleared. Given the newest failed run nobody cleared
/// and the newest completed run, whether a failure still counts; and a failed run `n` counts
/// when it is newer than `newest_completed`.
pub fn failure_counts(newest_uncleared_failed: Option<u64>, newest_completed: Option<u64>) -> bool {
    newest_uncleared_failed.is_some_and(|failed| failed > newest_completed.unwrap_or(0))
}

/// One run of a cron job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Its number, per deployment, from 1.
    pub run: u64,
    /// The generation of the deployment it ran (or would have run).
    pub generation: u64,
    /// The due time of its schedule.
    pub due_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// The first failing instance's exit code, or 0 when it completed.
    pub exit_code: Option<i64>,
    pub outcome: RunOutcome,
    /// Why it failed or was skipped, in words.
    pub reason: Option<String>,
    /// How many instances it started (the spec's `replicas` then): it completes when that
    /// many exited 0. Kept in the planner's memory only.
    #[serde(default)]
    pub instances: u32,
}

impl Run {
    /// How long it ran, once finished.
    pub fn duration_ms(&self) -> Option<i64> {
        match (self.started_at, self.finished_at) {
            (Some(start), Some(end)) => Some((end.0 - start.0).max(0)),
            (Some(_), None) | (None, Some(_)) | (None, None) => None,
        }
    }
}

/// The `data` of a `job.run_finished` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunFinished {
    pub namespace: String,
    pub name: String,
    /// The run's number (per deployment, from 1).
    pub run: u64,
    /// `completed`, `failed` or `skipped`.
    pub outcome: RunOutcome,
    /// The first failing instance's exit code, 0 when it completed; `null` when no instance
    /// exited (skipped, replaced, vanished).
    pub exit_code: Option<i64>,
    /// How long it ran, in milliseconds; `null` for a skipped run.
    pub duration_ms: Option<i64>,
    /// When it was due (RFC 3339, UTC).
    pub due_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
    pub generation: u64,
    /// The revision that last changed the deployment.
    pub revision: String,
}

#[cfg(test)]
mod tests {
    use super::failure_counts;

    #[test]
    fn a_failure_counts_until_a_newer_run_completes() {
        let cases = [
            ("no_failure", None, Some(3), false),
            ("never_completed", Some(2), None, true),
            ("failed_after_the_last_success", Some(5), Some(4), true),
            ("made_good_by_a_newer_success", Some(4), Some(5), false),
        ];
        for (name, failed, completed, counts) in cases {
            assert_eq!(failure_counts(failed, completed), counts, "{name}");
        }
    }
}
