//! The `revisions` table: every revision received, in arrival order, with its sync state
//! (DESIGN.md §3.5), its diagnostics when invalid, and who superseded it.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::model::diagnostic::Diagnostic;
use crate::model::status::RevisionState;
use crate::model::stored::{NewRevision, RevisionRecord};
use crate::model::time::Timestamp;

use super::{parse_column, parse_json, StoreError};

const COLUMNS: &str = "seq, source, id, message, author, received_at, state, state_since, \
     diagnostics, superseded_by, desired_hash, restores, rolled_back_to, identical_to";

fn from_row(row: &Row<'_>) -> rusqlite::Result<RawRevision> {
    Ok(RawRevision {
        seq: row.get(0)?,
        source: row.get(1)?,
        id: row.get(2)?,
        message: row.get(3)?,
        author: row.get(4)?,
        received_at: row.get(5)?,
        state: row.get(6)?,
        state_since: row.get(7)?,
        diagnostics: row.get(8)?,
        superseded_by: row.get(9)?,
        links: Links {
            desired_hash: row.get(10)?,
            restores: row.get(11)?,
            rolled_back_to: row.get(12)?,
            identical_to: row.get(13)?,
        },
    })
}

/// A row before its enum and JSON columns are checked.
struct RawRevision {
    seq: i64,
    source: String,
    id: String,
    message: Option<String>,
    author: Option<String>,
    received_at: i64,
    state: String,
    state_since: i64,
    diagnostics: String,
    superseded_by: Option<String>,
    links: Links,
}

/// What a revision is linked to: its desired state's fingerprint, and the revisions a
/// rollback ties it to (see `RevisionRecord`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    pub desired_hash: Option<String>,
    pub restores: Option<String>,
    pub rolled_back_to: Option<String>,
    pub identical_to: Option<String>,
}

impl RawRevision {
    fn into_record(self) -> Result<RevisionRecord, StoreError> {
        Ok(RevisionRecord {
            seq: self.seq,
            source: self.source,
            id: self.id,
            message: self.message,
            author: self.author,
            received_at: Timestamp(self.received_at),
            state: parse_column("revisions.state", self.state)?,
            state_since: Timestamp(self.state_since),
            diagnostics: parse_json("revisions.diagnostics", self.diagnostics)?,
            superseded_by: self.superseded_by,
            desired_hash: self.links.desired_hash,
            restores: self.links.restores,
            rolled_back_to: self.links.rolled_back_to,
            identical_to: self.links.identical_to,
        })
    }
}

/// Records a revision and returns it.
pub fn insert(
    conn: &Connection,
    rev: &NewRevision,
    state: RevisionState,
    diagnostics: &[Diagnostic],
    now: Timestamp,
) -> Result<RevisionRecord, StoreError> {
    insert_linked(conn, rev, state, diagnostics, &Links::default(), now)
}

/// Records a revision with its links (see `Links`) and returns it.
pub fn insert_linked(
    conn: &Connection,
    rev: &NewRevision,
    state: RevisionState,
    diagnostics: &[Diagnostic],
    links: &Links,
    now: Timestamp,
) -> Result<RevisionRecord, StoreError> {
    let diagnostics_json =
        serde_json::to_string(diagnostics).map_err(|e| StoreError::BadValue {
            column: "revisions.diagnostics",
            value: String::new(),
            source: Box::new(e),
        })?;
    conn.execute(
        "INSERT INTO revisions (source, id, message, author, received_at, state, state_since, diagnostics,
                               desired_hash, restores, rolled_back_to, identical_to)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5, ?7, ?8, ?9, ?10, ?11)",
        params![
            rev.source,
            rev.id,
            rev.message,
            rev.author,
            now.0,
            state.as_str(),
            diagnostics_json,
            links.desired_hash,
            links.restores,
            links.rolled_back_to,
            links.identical_to
        ],
    )?;
    get(conn, conn.last_insert_rowid())
}

pub fn get(conn: &Connection, seq: i64) -> Result<RevisionRecord, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM revisions WHERE seq = ?1");
    conn.query_row(&sql, [seq], from_row)?.into_record()
}

/// The most recently received revision.
pub fn latest(conn: &Connection) -> Result<Option<RevisionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM revisions ORDER BY seq DESC LIMIT 1");
    conn.query_row(&sql, [], from_row)
        .optional()?
        .map(RawRevision::into_record)
        .transpose()
}

/// Revisions still queued or applying, oldest first.
pub fn open(conn: &Connection) -> Result<Vec<RevisionRecord>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM revisions WHERE state IN ('queued', 'applying') ORDER BY seq"
    );
    collect(conn, &sql, [])
}

/// Revisions, newest first.
pub fn list(conn: &Connection, limit: u32) -> Result<Vec<RevisionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM revisions ORDER BY seq DESC LIMIT ?1");
    collect(conn, &sql, [limit])
}

fn collect(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RevisionRecord>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, from_row)?;
    rows.map(|r| {
        r.map_err(StoreError::from)
            .and_then(RawRevision::into_record)
    })
    .collect()
}

/// Moves a revision to `state`; `superseded_by` names the newer revision when superseding.
pub fn set_state(
    conn: &Connection,
    seq: i64,
    state: RevisionState,
    superseded_by: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE revisions SET state = ?2, state_since = ?3, superseded_by = COALESCE(?4, superseded_by) WHERE seq = ?1",
        params![seq, state.as_str(), now.0, superseded_by],
    )?;
    Ok(())
}

/// The most recent arrival of revision `id`.
pub fn find(conn: &Connection, id: &str) -> Result<Option<RevisionRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM revisions WHERE id = ?1 ORDER BY seq DESC LIMIT 1");
    conn.query_row(&sql, [id], from_row)
        .optional()?
        .map(RawRevision::into_record)
        .transpose()
}

/// The last good revision — the one whose desired state the store keeps to return to (see
/// `good_state`): what a failed one is rolled back to. Its latest arrival.
pub fn last_good(conn: &Connection) -> Result<Option<RevisionRecord>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM revisions WHERE id = (SELECT revision FROM good_mark WHERE id = 0)
         ORDER BY seq DESC LIMIT 1"
    );
    conn.query_row(&sql, [], from_row)
        .optional()?
        .map(RawRevision::into_record)
        .transpose()
}

/// Marks revision `seq` rolled back to `restored`.
pub fn set_rolled_back(
    conn: &Connection,
    seq: i64,
    restored: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE revisions SET state = 'rolled_back', state_since = ?2, rolled_back_to = ?3 WHERE seq = ?1",
        params![seq, now.0, restored],
    )?;
    Ok(())
}

/// The newest revision applied from the source after `seq` — neither a restore, nor
/// quarantined, nor invalid — when there is one.
pub fn applied_after(conn: &Connection, seq: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id FROM revisions WHERE seq > ?1 AND restores IS NULL
               AND state NOT IN ('quarantined', 'invalid') ORDER BY seq DESC LIMIT 1",
            [seq],
            |r| r.get(0),
        )
        .optional()?)
}
