//! Effectful: the controller's copy of what the store holds for every deployment — its row and
//! its reconciler memory — kept current by re-reading only the deployments written since the
//! last pass (the store's change log), so that a pass reads in proportion to what changed, not
//! to how many deployments exist.
//!
//! Inputs: a store reader. Outputs: the state `decide` takes, and how many rows a refresh read.
//! Invariants: after `refresh` the copy equals a full read made at that moment's change `seq`
//! or later (a row written during the refresh is read again by the next one); it reads
//! everything again at its first refresh, when the log lost rows it had not read, and once per
//! resync period (the safety net, as for the runtimes' caches).

use std::collections::BTreeMap;

use crate::model::desired::DeploymentId;
use crate::model::memory::Memory;
use crate::model::stored::StoredState;
use crate::model::time::Timestamp;
use crate::model::units::Duration;
use crate::store::{StoreError, StoreReader};

/// See the module doc.
#[derive(Debug)]
pub struct Mirror {
    stored: StoredState,
    memory: BTreeMap<DeploymentId, Memory>,
    by_uuid: BTreeMap<String, DeploymentId>,
    /// The last change read; `None` before the first full read.
    seen: Option<i64>,
    full_at: Timestamp,
    /// Rows read by refreshes, for tests and benchmarks.
    rows_read: u64,
}

impl Default for Mirror {
    fn default() -> Self {
        Self {
            stored: StoredState::default(),
            memory: BTreeMap::new(),
            by_uuid: BTreeMap::new(),
            seen: None,
            full_at: Timestamp(0),
            rows_read: 0,
        }
    }
}

impl Mirror {
    pub fn stored(&self) -> &StoredState {
        &self.stored
    }

    pub fn memory(&self) -> &BTreeMap<DeploymentId, Memory> {
        &self.memory
    }

    /// The last change read (the store may trim the log up to it).
    pub fn seen(&self) -> Option<i64> {
        self.seen
    }

    /// Deployment rows read since the mirror was made.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Brings the copy up to date: the deployments written since the last refresh, or all of
    /// them (see the module doc).
    pub fn refresh(
        &mut self,
        reader: &StoreReader,
        now: Timestamp,
        resync: Duration,
    ) -> Result<(), StoreError> {
        let due = now.0 >= self.full_at.plus(resync).0;
        let changed = match self.seen {
            Some(seen) if !due => reader.changes_since(seen)?,
            Some(_) | None => None,
        };
        match changed {
            Some((newest, uuids)) => self.reread(reader, newest, &uuids),
            None => self.read_all(reader, now),
        }
    }

    fn read_all(&mut self, reader: &StoreReader, now: Timestamp) -> Result<(), StoreError> {
        // The log position first: whatever is written after it is read again next time.
        let seen = reader.latest_change()?;
        self.stored = reader.stored_state()?;
        self.memory = reader.memories()?;
        self.by_uuid = self
            .stored
            .deployments
            .values()
            .map(|d| (d.uuid.clone(), d.id.clone()))
            .collect();
        self.rows_read += self.stored.deployments.len() as u64;
        self.seen = Some(seen);
        self.full_at = now;
        Ok(())
    }

    fn reread(
        &mut self,
        reader: &StoreReader,
        newest: i64,
        uuids: &[String],
    ) -> Result<(), StoreError> {
        for uuid in uuids {
            self.rows_read += 1;
            match reader.deployment_by_uuid(uuid)? {
                Some((row, memory)) => {
                    self.by_uuid.insert(uuid.clone(), row.id.clone());
                    self.memory.insert(row.id.clone(), memory);
                    self.stored.deployments.insert(row.id.clone(), row);
                }
                None => {
                    // A purged row's name may already belong to a new row (a revert after the
                    // purge, read first in this refresh): only the row with this id goes.
                    if let Some(id) = self.by_uuid.remove(uuid) {
                        let same_row = self
                            .stored
                            .deployments
                            .get(&id)
                            .is_some_and(|d| d.uuid == *uuid);
                        if same_row {
                            self.stored.deployments.remove(&id);
                            self.memory.remove(&id);
                        }
                    }
                }
            }
        }
        self.seen = Some(newest);
        Ok(())
    }
}
