//! The `runs` table: a cron job's runs (`model::run::Run`), one row per (deployment, run),
//! written with the pass that started, finished or skipped them; the newest `KEPT` per
//! deployment stay. A failed run counts against its namespace until a newer run of the same
//! deployment completes or an operator clears it (`cleared_at`).

use std::collections::HashSet;

use rusqlite::{params, Connection, Row};

use crate::model::desired::DeploymentId;
use crate::model::run::{failure_counts, Run, RunOutcome};
use crate::model::time::Timestamp;

use super::{parse_column, StoreError};

/// Runs kept per deployment (older records are forgotten).
pub const KEPT: i64 = 1000;

/// Inserts or updates the runs of deployment `uuid`, then forgets its oldest beyond `KEPT`.
pub fn record(conn: &Connection, uuid: &str, runs: &[Run]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO runs (deployment, run, generation, due_at, started_at, finished_at, exit_code,
                           outcome, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (deployment, run) DO UPDATE SET
             started_at = excluded.started_at, finished_at = excluded.finished_at,
             exit_code = excluded.exit_code, outcome = excluded.outcome, reason = excluded.reason",
    )?;
    for run in runs {
        stmt.execute(params![
            uuid,
            number(run.run),
            number(run.generation),
            run.due_at.0,
            run.started_at.map(|t| t.0),
            run.finished_at.map(|t| t.0),
            run.exit_code,
            run.outcome.as_str(),
            run.reason,
        ])?;
    }
    if !runs.is_empty() {
        conn.execute(
            "DELETE FROM runs WHERE deployment = ?1 AND run <= (SELECT max(run) FROM runs WHERE deployment = ?1) - ?2",
            params![uuid, KEPT],
        )?;
    }
    Ok(())
}

fn number(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A page of a deployment's runs, newest first: at most `limit`, older than run `before`.
pub fn page(
    conn: &Connection,
    uuid: &str,
    limit: u32,
    before: Option<u64>,
) -> Result<Vec<(Run, Option<Timestamp>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT run, generation, due_at, started_at, finished_at, exit_code, outcome, reason, cleared_at
         FROM runs WHERE deployment = ?1 AND run < ?2 ORDER BY run DESC LIMIT ?3",
    )?;
    let before = before.map_or(i64::MAX, number);
    let rows = stmt.query_map(params![uuid, before, limit], from_row)?;
    rows.map(|row| {
        let (run, cleared_at) = row?;
        Ok((run.into_domain()?, cleared_at.map(Timestamp)))
    })
    .collect()
}

/// A row before its outcome is checked.
struct RawRun {
    run: i64,
    generation: i64,
    due_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    exit_code: Option<i64>,
    outcome: String,
    reason: Option<String>,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(RawRun, Option<i64>)> {
    Ok((
        RawRun {
            run: r.get(0)?,
            generation: r.get(1)?,
            due_at: r.get(2)?,
            started_at: r.get(3)?,
            finished_at: r.get(4)?,
            exit_code: r.get(5)?,
            outcome: r.get(6)?,
            reason: r.get(7)?,
        },
        r.get(8)?,
    ))
}

impl RawRun {
    fn into_domain(self) -> Result<Run, StoreError> {
        Ok(Run {
            run: run_number(self.run),
            generation: run_number(self.generation),
            due_at: Timestamp(self.due_at),
            started_at: self.started_at.map(Timestamp),
            finished_at: self.finished_at.map(Timestamp),
            exit_code: self.exit_code,
            outcome: parse_column::<RunOutcome>("runs.outcome", self.outcome)?,
            reason: self.reason,
            instances: 0,
        })
    }
}

/// The cron jobs whose failures still count (`model::run::failure_counts`), from each one's
/// newest uncleared failed run and newest completed run: two index lookups per cron job
/// (`runs_failed`, `runs_completed`), however many runs exist.
pub fn failing(conn: &Connection) -> Result<HashSet<DeploymentId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.namespace, d.name,
                (SELECT max(run) FROM runs WHERE deployment = d.uuid AND outcome = 'failed'
                                               AND cleared_at IS NULL),
                (SELECT max(run) FROM runs WHERE deployment = d.uuid AND outcome = 'completed')
         FROM deployments d WHERE d.kind = 'cronjob'",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            DeploymentId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            r.get::<_, Option<i64>>(2)?,
            r.get::<_, Option<i64>>(3)?,
        ))
    })?;
    let mut out = HashSet::new();
    for row in rows {
        let (id, failed, completed) = row?;
        if failure_counts(failed.map(run_number), completed.map(run_number)) {
            out.insert(id);
        }
    }
    Ok(out)
}

fn run_number(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Clears deployment `uuid`'s failed runs that still count (newer than its newest completed
/// run, not cleared yet): they no longer count against its namespace. How many were cleared.
pub fn clear(conn: &Connection, uuid: &str, now: Timestamp) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE runs SET cleared_at = ?2
         WHERE deployment = ?1 AND outcome = 'failed' AND cleared_at IS NULL
           AND run > coalesce((SELECT max(run) FROM runs WHERE deployment = ?1
                                                            AND outcome = 'completed'), 0)",
        params![uuid, now.0],
    )?)
}
