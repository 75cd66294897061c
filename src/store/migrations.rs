//! The schema, as an ordered list of migrations; `PRAGMA user_version` counts how many have
//! run. A database from a newer keel (a higher version than this list) is refused, never
//! downgraded. Each migration runs in its own transaction with its version bump. A migration
//! is SQL, optionally followed by a backfill written in Rust over domain types (for columns
//! derived by a pure `model` function).

use rusqlite::{params, Connection};

use crate::model::desired::template_hash;

use super::StoreError;

/// Fills in derived columns after a migration's SQL, in its transaction.
type Backfill = fn(&Connection) -> Result<(), StoreError>;

/// One schema step: its SQL, then an optional backfill in the same transaction.
struct Migration {
    sql: &'static str,
    backfill: Option<Backfill>,
}

/// Every migration, oldest first. Never edit one that has shipped: append a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        sql: V1,
        backfill: None,
    },
    Migration {
        sql: V2,
        backfill: Some(backfill_template_hashes),
    },
    Migration {
        sql: V3,
        backfill: None,
    },
    Migration {
        sql: V4,
        backfill: None,
    },
    Migration {
        sql: V5,
        backfill: None,
    },
    Migration {
        sql: V6,
        backfill: None,
    },
    Migration {
        sql: V7,
        backfill: None,
    },
    Migration {
        sql: V8,
        backfill: None,
    },
];

/// The schema version this keel writes.
pub const CURRENT_VERSION: u32 = MIGRATIONS.len() as u32;

const V1: &str = "
CREATE TABLE revisions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    source        TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    message       TEXT,
    author        TEXT,
    received_at   INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    state_since   INTEGER NOT NULL,
    diagnostics   TEXT    NOT NULL DEFAULT '[]',
    superseded_by TEXT
);
CREATE INDEX revisions_by_id ON revisions (id, seq);
CREATE INDEX revisions_open ON revisions (seq) WHERE state IN ('queued', 'applying');

CREATE TABLE deployments (
    uuid          TEXT    PRIMARY KEY,
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    runtime       TEXT    NOT NULL,
    spec          TEXT    NOT NULL,
    spec_hash     TEXT    NOT NULL,
    generation    INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    status_since  INTEGER NOT NULL,
    restart_count INTEGER NOT NULL DEFAULT 0,
    revision      TEXT    NOT NULL,
    in_revision   INTEGER NOT NULL,
    generation_since INTEGER NOT NULL,
        retry         TEXT,
    last_failure  TEXT,
    health        TEXT,
    ready         INTEGER NOT NULL DEFAULT 0,
    desired       INTEGER NOT NULL DEFAULT 0,
    waiting_on    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (namespace, name)
);

CREATE TABLE instances (
    deployment  TEXT    NOT NULL REFERENCES deployments (uuid) ON DELETE CASCADE,
    runtime_id  TEXT    NOT NULL,
    ordinal     INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    reason      TEXT,
    ip          TEXT,
    started_at  INTEGER,
    exit_code   INTEGER,
    oom_killed  INTEGER NOT NULL DEFAULT 0,
    stopping    INTEGER NOT NULL DEFAULT 0,
    counted     INTEGER NOT NULL DEFAULT 0,
    fired       TEXT    NOT NULL DEFAULT '[]',
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (deployment, runtime_id)
);

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT    NOT NULL REFERENCES deployments (uuid) ON DELETE CASCADE,
    time       INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    revision   TEXT
);
CREATE INDEX events_by_deployment ON events (deployment, seq);

CREATE TABLE probe_results (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment  TEXT    NOT NULL REFERENCES deployments (uuid) ON DELETE CASCADE,
    instance    TEXT    NOT NULL,
    check_index INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    latency_ms  INTEGER,
    message     TEXT    NOT NULL,
    time        INTEGER NOT NULL
);
CREATE INDEX probe_results_by_check ON probe_results (deployment, instance, check_index, seq);

CREATE TABLE restarts (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT    NOT NULL REFERENCES deployments (uuid) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    time       INTEGER NOT NULL,
    reason     TEXT    NOT NULL
);
CREATE INDEX restarts_by_deployment ON restarts (deployment, seq);

CREATE TABLE outbox (
    id              TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    target          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    dead_at         INTEGER,
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
";

/// The template hash (`model::desired::template_hash`) is stored with each deployment at apply
/// time, so a pass never recomputes it; `live` counts its present, not exited instances.
const V2: &str = "
ALTER TABLE deployments ADD COLUMN template_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN live INTEGER NOT NULL DEFAULT 0;
UPDATE deployments SET live = (
    SELECT count(*) FROM instances i WHERE i.deployment = deployments.uuid AND i.exit_code IS NULL
);
";

/// Deliveries: one row per (notification, endpoint), in the order the notifications were
/// written; endpoints the notifier disabled (410 Gone); commit statuses posted, per (sha,
/// context), so a status is posted only when it changes. An outbox row's `delivered_at` is
/// when it was fanned out into deliveries.
const V3: &str = "
CREATE TABLE deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    notification    TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    finished_at     INTEGER,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX deliveries_pending ON deliveries (endpoint, seq) WHERE state = 'pending';
CREATE INDEX deliveries_by_state ON deliveries (state, seq);

CREATE TABLE endpoints (
    endpoint    TEXT    PRIMARY KEY,
    disabled_at INTEGER NOT NULL,
    reason      TEXT    NOT NULL
);

CREATE TABLE commit_statuses (
    sha         TEXT    NOT NULL,
    context     TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (sha, context)
);

CREATE INDEX outbox_undistributed ON outbox (created_at) WHERE delivered_at IS NULL;
";

/// Purging: a deleted deployment's row goes once its last instance is gone, but its events
/// stay for a retention period, so they no longer hang off the row (no cascade) and carry the
/// deployment's name themselves; `purged` remembers when each row went.
const V4: &str = "
CREATE TABLE events_v4 (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT    NOT NULL,
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    time       INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    revision   TEXT
);
INSERT INTO events_v4 (seq, deployment, namespace, name, time, kind, reason, message, revision)
    SELECT e.seq, e.deployment, d.namespace, d.name, e.time, e.kind, e.reason, e.message, e.revision
    FROM events e JOIN deployments d ON d.uuid = e.deployment;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
CREATE INDEX events_by_deployment ON events (deployment, seq);
CREATE INDEX events_by_name ON events (namespace, name, seq);

CREATE TABLE purged (
    uuid      TEXT    PRIMARY KEY,
    purged_at INTEGER NOT NULL
);
CREATE INDEX purged_by_time ON purged (purged_at);
";

/// A change log: every write to a deployment's row or to its instances appends the row id,
/// whoever writes it, so that a reader that remembers the last `seq` it saw re-reads only the
/// deployments written since (the controller keeps its copy current this way). Triggers rather
/// than code in each write path, so that a new write path cannot forget it. Rows a reader has
/// consumed are trimmed by the writer (`Store::consumed`).
const V5: &str = "
CREATE TABLE IF NOT EXISTS changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS deployments_inserted AFTER INSERT ON deployments
    BEGIN INSERT INTO changes (deployment) VALUES (NEW.uuid); END;
CREATE TRIGGER IF NOT EXISTS deployments_updated AFTER UPDATE ON deployments
    BEGIN INSERT INTO changes (deployment) VALUES (NEW.uuid); END;
CREATE TRIGGER IF NOT EXISTS deployments_deleted AFTER DELETE ON deployments
    BEGIN INSERT INTO changes (deployment) VALUES (OLD.uuid); END;
CREATE TRIGGER IF NOT EXISTS instances_inserted AFTER INSERT ON instances
    BEGIN INSERT INTO changes (deployment) VALUES (NEW.deployment); END;
CREATE TRIGGER IF NOT EXISTS instances_updated AFTER UPDATE ON instances
    BEGIN INSERT INTO changes (deployment) VALUES (NEW.deployment); END;
CREATE TRIGGER IF NOT EXISTS instances_deleted AFTER DELETE ON instances
    BEGIN INSERT INTO changes (deployment) VALUES (OLD.deployment); END;
";

/// Cron jobs: the runs of each (kept per deployment; a failed run counts against its
/// namespace until a newer run completes or it is cleared); the schedule's memory and next due
/// time with the deployment. And each deployment's image as a column, so that lists show it
/// without reading spec documents.
const V6: &str = "
CREATE TABLE runs (
    deployment  TEXT    NOT NULL REFERENCES deployments (uuid) ON DELETE CASCADE,
    run         INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    exit_code   INTEGER,
    outcome     TEXT    NOT NULL,
    reason      TEXT,
    cleared_at  INTEGER,
    PRIMARY KEY (deployment, run)
);
CREATE INDEX runs_failed ON runs (deployment, run) WHERE outcome = 'failed' AND cleared_at IS NULL;
CREATE INDEX runs_completed ON runs (deployment, run) WHERE outcome = 'completed';
ALTER TABLE deployments ADD COLUMN cron TEXT;
ALTER TABLE deployments ADD COLUMN next_run_at INTEGER;
ALTER TABLE deployments ADD COLUMN image TEXT;
UPDATE deployments SET image = json_extract(spec, '$.spec.image');
";

/// Since when each instance's readiness checks have been green, so that an agent that starts
/// again does not call instances that still serve unready while their clocks start over.
const V7: &str = "
ALTER TABLE instances ADD COLUMN green TEXT NOT NULL DEFAULT '{}';
";

/// Rollback: each revision's desired-state fingerprint and what a rollback ties it to; the
/// desired state of the last good revision (kept in step as revisions succeed, so a failed one
/// can be undone whole, deleted deployments included); the quarantined desired states. A
/// database whose latest revision succeeded starts with that state as the last good one.
const V8: &str = "
ALTER TABLE revisions ADD COLUMN desired_hash TEXT;
ALTER TABLE revisions ADD COLUMN restores TEXT;
ALTER TABLE revisions ADD COLUMN rolled_back_to TEXT;
ALTER TABLE revisions ADD COLUMN identical_to TEXT;
CREATE INDEX revisions_succeeded ON revisions (seq) WHERE state = 'succeeded';
CREATE TABLE good_state (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    spec      TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE good_mark (
    id       INTEGER PRIMARY KEY CHECK (id = 0),
    revision TEXT    NOT NULL
);
CREATE TABLE quarantine (
    desired_hash TEXT    PRIMARY KEY,
    revision     TEXT    NOT NULL,
    since        INTEGER NOT NULL,
    lifted_at    INTEGER
);
CREATE TABLE quarantined_specs (
    desired_hash TEXT NOT NULL REFERENCES quarantine (desired_hash) ON DELETE CASCADE,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    spec         TEXT NOT NULL,
    spec_hash    TEXT NOT NULL,
    PRIMARY KEY (desired_hash, namespace, name)
);
INSERT INTO good_state (namespace, name, spec, spec_hash)
    SELECT namespace, name, spec, spec_hash FROM deployments
    WHERE in_revision = 1
      AND (SELECT state FROM revisions WHERE state <> 'invalid' ORDER BY seq DESC LIMIT 1) = 'succeeded';
INSERT INTO good_mark (id, revision)
    SELECT 0, id FROM revisions WHERE state <> 'invalid' ORDER BY seq DESC LIMIT 1;
DELETE FROM good_mark WHERE (SELECT state FROM revisions WHERE state <> 'invalid' ORDER BY seq DESC LIMIT 1) <> 'succeeded';
";

/// Reads only the columns V1 had: a backfill runs before the later migrations' columns exist.
fn backfill_template_hashes(conn: &Connection) -> Result<(), StoreError> {
    for (uuid, spec, mounted_configs) in super::deployments::specs(conn)? {
        conn.execute(
            "UPDATE deployments SET template_hash = ?2 WHERE uuid = ?1",
            params![uuid, template_hash(&spec, &mounted_configs)],
        )?;
    }
    Ok(())
}

/// The schema version recorded in the database.
pub fn version(conn: &Connection) -> Result<u32, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Brings the schema up to `CURRENT_VERSION`.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let found = version(conn)?;
    check_not_newer(found, path)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration.sql)?;
        if let Some(backfill) = migration.backfill {
            backfill(&tx)?;
        }
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Refuses a database written by a newer keel.
pub fn check_not_newer(found: u32, path: &str) -> Result<(), StoreError> {
    if found > CURRENT_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported: CURRENT_VERSION,
        });
    }
    Ok(())
}
