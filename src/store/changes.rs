//! The `changes` log (schema v5): the row id of every deployment written — its row or its
//! instances — in commit order, appended by triggers. A reader that remembers the last `seq` it
//! saw re-reads only what was written since; the writer trims what that reader has consumed.
//!
//! Invariant: `seq` has no holes (AUTOINCREMENT under one writer, rolled back with its
//! transaction), so a reader whose next row is not `seen + 1` knows it missed some and must
//! read everything again.

use rusqlite::{params, Connection};

use super::StoreError;

/// The newest `seq` (0 when the log is empty and never written).
pub fn latest(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
        [],
        |r| r.get(0),
    )?)
}

/// What was written after `seen`: the newest `seq`, and each deployment row id once, in the
/// order of its last write (a purged row before the new row of the same name), or `None` when
/// rows after `seen` were trimmed before this reader saw them.
pub fn since(conn: &Connection, seen: i64) -> Result<Option<(i64, Vec<String>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT MIN(seq), MAX(seq), deployment FROM changes WHERE seq > ?1
         GROUP BY deployment ORDER BY MAX(seq)",
    )?;
    let rows = stmt.query_map([seen], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let (mut first, mut newest, mut ids) = (i64::MAX, seen, Vec::new());
    for row in rows {
        let (min, max, id) = row?;
        first = first.min(min);
        newest = newest.max(max);
        ids.push(id);
    }
    let lost = match ids.is_empty() {
        true => latest(conn)? > seen,
        false => first != seen + 1,
    };
    Ok((!lost).then_some((newest, ids)))
}

/// Forgets the rows up to `consumed` (the reader has seen them).
pub fn trim(conn: &Connection, consumed: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM changes WHERE seq <= ?1")?
        .execute(params![consumed])?;
    Ok(())
}
