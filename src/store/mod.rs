//! The state store: the only module with SQL. SQLite (bundled) in WAL mode.
//!
//! - One writer: `Store` owns the read-write connection on its own thread; callers send it
//!   closures over a channel, so writes are serialized without locks in callers. Readers open
//!   their own read-only connections (`StoreReader`), which WAL lets run beside the writer.
//! - Durability: `synchronous=NORMAL` everywhere, outbox included. In WAL mode NORMAL never
//!   corrupts the database; a power cut may lose the last committed transactions, but a status
//!   change and its outbox rows live in one transaction, so they are lost (or kept) together —
//!   the outbox never promises a notification for a change that did not persist, and the
//!   reconciler re-derives lost status from what it observes. FULL would buy nothing the
//!   level-triggered design needs, at an fsync per commit.
//! - Opening refuses files that are not SQLite (before writing anything) and databases from a
//!   newer keel.
//! - Everything returned is a domain type from `model`, never a row.

mod apply;
mod changes;
mod deliveries;
mod deployments;
mod events;
mod good_state;
mod instances;
mod memory;
mod migrations;
mod outbox;
mod pass;
mod probes;
mod quarantine;
mod revisions;
mod rollback;
mod runs;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;

use rusqlite::{Connection, OpenFlags};

use crate::model::delivery::{Attempt, CommitStatus, Delivery, NewDelivery};
use crate::model::desired::{DeploymentId, DesiredState};
use crate::model::diagnostic::Diagnostic;
use crate::model::diff::Plan;
use crate::model::event::Event;
use crate::model::memory::{Failure, Memory};
use crate::model::plan::{DecidedOn, Outcome, RevisionMove};
use crate::model::stored::{
    NewRevision, OutboxRow, ProbeResult, RevisionRecord, StoredDeployment, StoredInstance,
    StoredState, StoredSummary,
};
use crate::model::time::Timestamp;

pub use apply::Applied;
pub use deliveries::Filter as DeliveryFilter;
pub use migrations::CURRENT_VERSION as SCHEMA_VERSION;
/// Results kept per (instance, check); older ones are deleted as new ones arrive.
pub use probes::RETAINED as PROBE_RESULTS_RETAINED;
pub use rollback::Retried;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} is not a keel database (not SQLite, or corrupt); it was left untouched")]
    NotADatabase {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path} was written by a newer keel (schema v{found}; this keel knows up to v{supported}); refusing to downgrade it")]
    TooNew {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("{path} has schema v{found}, older than this keel's v{supported}; start the agent once to migrate it")]
    TooOld {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored {column} {value:?} is not valid")]
    BadValue {
        column: &'static str,
        value: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no deployment {id} in the store")]
    UnknownDeployment { id: String },
    #[error("the store's writer thread has stopped")]
    WriterGone,
    #[error("cannot start the store's writer thread")]
    Spawn(#[source] std::io::Error),
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// What recording a pass did (see `Store::record_pass`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Deployments whose decision was stale: nothing written, no action to run.
    pub stale: Vec<DeploymentId>,
    /// Deployments whose rows were purged.
    pub purged: Vec<DeploymentId>,
    /// A failed revision was rolled back: the restore waits to be converged.
    pub rolled_back: bool,
}

/// The count of the store's writes that change what the API's views show (revisions, passes,
/// cleared runs — not probe results or delivery attempts), and a wake-up for whoever waits for
/// the next one (an API request held until its answer changes). Waiting costs nothing while
/// nothing is written.
#[derive(Debug, Default)]
pub struct Writes {
    count: std::sync::atomic::AtomicU64,
    signal: tokio::sync::Notify,
}

impl Writes {
    /// The count now.
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Returns once the count is no longer `seen`.
    pub async fn after(&self, seen: u64) {
        loop {
            // Registered before the check, so a write between the check and the wait wakes it.
            let notified = self.signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() != seen {
                return;
            }
            notified.await;
        }
    }

    fn bump(&self) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.signal.notify_waiters();
    }
}

/// What clearing a deployment's failed runs did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// No such deployment.
    Unknown,
    /// It is not a cron job: it has no runs.
    NotCronJob(crate::model::manifest::WorkloadKind),
    /// How many failed runs were cleared.
    Runs(usize),
}

/// The writer: owns the read-write connection on a dedicated thread.
pub struct Store {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
    /// Notified after every commit that may have queued notifications (the notifier waits on
    /// it: no polling delay between a change and its first delivery attempt).
    outbox_signal: Arc<tokio::sync::Notify>,
    /// Counts finished writes: a reader that saw the same count saw the same data (readers
    /// cache what they derive from the store under it, and wait on it for the next change).
    writes: Arc<Writes>,
    /// The `changes` row the controller has read up to; the writer trims the rows up to it.
    consumed: Arc<std::sync::atomic::AtomicI64>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`, and starts the writer.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        // Check the version before anything writes: switching to WAL rewrites the header.
        migrations::check_not_newer(migrations::version(&conn)?, &display(path))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        migrations::migrate(&mut conn, &display(path))?;
        let (jobs, queue) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("keel-store-writer".into())
            .spawn(move || {
                for job in queue {
                    job(&mut conn);
                }
            })
            .map_err(StoreError::Spawn)?;
        Ok(Self {
            jobs,
            path: path.to_owned(),
            outbox_signal: Arc::default(),
            writes: Arc::default(),
            consumed: Arc::default(),
        })
    }

    /// Tells the writer that the change log's reader has read it up to `seq`: those rows are
    /// trimmed with the next transaction.
    pub fn consumed_changes(&self, seq: i64) {
        self.consumed
            .fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
    }

    /// The count of finished writes, bumped after each one commits. Read it before reading
    /// the data a cache derives, so that the cache is never newer than its count says.
    pub fn writes(&self) -> Arc<Writes> {
        self.writes.clone()
    }

    /// Notified after each commit that may have queued notifications.
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_signal.clone()
    }

    /// Runs `f` in one transaction on the writer and wakes the notifier afterwards. These are
    /// the writes that change what the API's views show: each bumps `writes`.
    fn call_notifying<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let consumed = self.consumed.load(std::sync::atomic::Ordering::Relaxed);
        let result = self.call(move |conn| {
            let tx = conn.transaction()?;
            let result = f(&tx)?;
            changes::trim(&tx, consumed)?;
            tx.commit()?;
            Ok(result)
        })?;
        self.writes.bump();
        self.outbox_signal.notify_one();
        Ok(result)
    }

    /// Runs `f` on the writer thread and waits for its result.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            // The caller may have gone away; then nobody wants the answer.
            let _ = reply.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        answer.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Applies a valid revision and `plan`, its diff against this store (computed by the
    /// caller from a reader: the store decides nothing), in one transaction (see
    /// `apply::apply_revision`).
    pub fn apply_revision(
        &self,
        revision: NewRevision,
        desired: DesiredState,
        plan: Plan,
        now: Timestamp,
    ) -> Result<Applied, StoreError> {
        self.call_notifying(move |tx| apply::apply_revision(tx, &revision, &desired, plan, now))
    }

    /// An admin's retry of revision `sha`'s quarantined desired state (see `rollback::retry`).
    pub fn retry_revision(
        &self,
        sha: String,
        by: String,
        now: Timestamp,
    ) -> Result<Retried, StoreError> {
        self.call_notifying(move |tx| rollback::retry(tx, &sha, &by, now))
    }

    /// Records a revision whose desired state is quarantined (see `apply::record_quarantined`);
    /// `None` when it was recorded so already.
    pub fn record_quarantined(
        &self,
        revision: NewRevision,
        desired_hash: String,
        identical_to: String,
        now: Timestamp,
    ) -> Result<Option<RevisionRecord>, StoreError> {
        self.call_notifying(move |tx| {
            apply::record_quarantined(tx, &revision, &desired_hash, &identical_to, now)
        })
    }

    /// Records a revision rejected by validation; no deployment changes.
    pub fn record_invalid(
        &self,
        revision: NewRevision,
        diagnostics: Vec<Diagnostic>,
        now: Timestamp,
    ) -> Result<RevisionRecord, StoreError> {
        self.call_notifying(move |tx| apply::record_invalid(tx, &revision, &diagnostics, now))
    }

    /// Persists one reconciler pass (see `pass::record`) and, when given, the state of the open
    /// revision, in one transaction; `acting` are the deployments with actions to run whose
    /// outcome is not written, checked the same way. Says which decisions were stale (a
    /// revision changed their row during the pass: nothing of theirs was written, and their
    /// actions must not run; the revision's state was not settled from a picture that no longer
    /// holds) and which deployments were purged.
    pub fn record_pass(
        &self,
        outcomes: Vec<(DeploymentId, Outcome)>,
        revision: Option<RevisionMove>,
        purge: Vec<(DeploymentId, DecidedOn)>,
        acting: Vec<(DeploymentId, DecidedOn)>,
        now: Timestamp,
    ) -> Result<Recorded, StoreError> {
        self.call_notifying(move |tx| {
            let refs: Vec<_> = outcomes.iter().map(|(id, o)| (id, o)).collect();
            let mut stale = pass::record(tx, &refs, now)?;
            stale.extend(pass::stale(tx, &acting)?);
            let mut rolled_back = false;
            match (revision, stale.is_empty()) {
                (Some(RevisionMove::Settle { seq, state }), true) => {
                    pass::settle_revision(tx, seq, state, now)?
                }
                (Some(RevisionMove::RollBack { seq, restore }), true) => {
                    rolled_back = rollback::roll_back(tx, seq, &restore, now)?
                }
                // A stale pass settles nothing: the next decides on the new rows.
                (Some(RevisionMove::Settle { .. } | RevisionMove::RollBack { .. }), false)
                | (None, _) => {}
            }
            let purged = pass::purge(tx, &purge, now)?;
            Ok(Recorded {
                stale,
                purged,
                rolled_back,
            })
        })
    }

    /// Clears a cron job's failed runs (they no longer count against its namespace) and
    /// records who asked as an event.
    pub fn clear_runs(
        &self,
        id: DeploymentId,
        by: String,
        now: Timestamp,
    ) -> Result<Cleared, StoreError> {
        self.call_notifying(move |tx| {
            let Some(row) = deployments::get(tx, &id)? else {
                return Ok(Cleared::Unknown);
            };
            let kind = row.spec.kind;
            if kind != crate::model::manifest::WorkloadKind::CronJob {
                return Ok(Cleared::NotCronJob(kind));
            }
            let cleared = runs::clear(tx, &row.uuid, now)?;
            let event = Event {
                deployment: id.clone(),
                time: now,
                kind: crate::model::event::EventKind::RunsCleared,
                reason: "runs_cleared".to_owned(),
                message: format!("{cleared} failed run(s) cleared by {by}"),
                revision: Some(row.revision.clone()),
            };
            events::insert(tx, &row.uuid, &event)?;
            Ok(Cleared::Runs(cleared))
        })
    }

    /// Records the failure of a runtime action for the next pass, on the row the action was
    /// decided on only (a revision stored meanwhile makes it moot).
    pub fn record_failure(&self, on: DecidedOn, failure: Failure) -> Result<(), StoreError> {
        self.call(move |conn| memory::record_failure(conn, &on, &failure))
    }

    /// Records probe results (bounded retention per check).
    pub fn record_probes(
        &self,
        results: Vec<(DeploymentId, ProbeResult)>,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for (id, result) in &results {
                if let Some(row) = deployments::get(&tx, id)? {
                    probes::record(&tx, &row.uuid, result)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Fans notifications out into deliveries and the commit statuses they post (see
    /// `deliveries::distribute`), in one transaction.
    pub fn distribute(
        &self,
        notifications: Vec<String>,
        deliveries: Vec<NewDelivery>,
        statuses: Vec<CommitStatus>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            deliveries::distribute(&tx, &notifications, &deliveries, &statuses, now)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Records one attempt of a delivery.
    pub fn record_attempt(
        &self,
        id: String,
        attempt: Attempt,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.call(move |conn| deliveries::record_attempt(conn, &id, &attempt, now))
    }

    /// Disables an endpoint (410 Gone): records the attempt on `answered`, the delivery that
    /// got the 410, and dead-letters the endpoint's other pending deliveries.
    pub fn disable_endpoint(
        &self,
        endpoint: String,
        answered: String,
        reason: String,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            // The delivery that got the 410 was tried: it says so, like any other attempt.
            let gone = Attempt::Dead {
                status: Some(410),
                error: format!("endpoint disabled: {reason}"),
            };
            deliveries::record_attempt(&tx, &answered, &gone, now)?;
            deliveries::disable(&tx, &endpoint, &reason, now)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Forgets finished deliveries older than `before`; how many.
    pub fn prune_deliveries(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let pruned = deliveries::prune(&tx, before)?;
            tx.commit()?;
            Ok(pruned)
        })
    }

    /// A new read-only connection to the same database.
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        StoreReader::open(&self.path)
    }
}

/// A reader's page cache, in KiB (SQLite takes a negative `cache_size` as KiB).
const READER_CACHE_KIB: i64 = -512;

/// A read-only view of the store.
pub struct StoreReader {
    conn: Connection,
}

impl StoreReader {
    /// Opens an existing, current database read-only.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        // Readers are many (the API pools up to 16) and read the same pages the operating
        // system caches anyway: a small page cache each, rather than SQLite's 2 MiB default.
        conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
            .map_err(|source| StoreError::Open {
                path: display(path),
                source,
            })?;
        let found = migrations::version(&conn)?;
        migrations::check_not_newer(found, &display(path))?;
        if found < migrations::CURRENT_VERSION {
            return Err(StoreError::TooOld {
                path: display(path),
                found,
                supported: migrations::CURRENT_VERSION,
            });
        }
        Ok(Self { conn })
    }

    /// Opens `path` if it holds a keel database: `None` when the file does not exist or was
    /// never initialized (an empty state). Never creates anything.
    pub fn open_existing(path: &Path) -> Result<Option<Self>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        if migrations::version(&conn)? == 0 {
            return Ok(None);
        }
        Self::open(path).map(Some)
    }

    pub fn stored_state(&self) -> Result<StoredState, StoreError> {
        deployments::load_all(&self.conn)
    }

    /// The newest row of the change log (see `changes`).
    pub fn latest_change(&self) -> Result<i64, StoreError> {
        changes::latest(&self.conn)
    }

    /// The deployment row ids written after change `seen`, and the newest change; `None` when
    /// some were trimmed unread (read everything again).
    pub fn changes_since(&self, seen: i64) -> Result<Option<(i64, Vec<String>)>, StoreError> {
        changes::since(&self.conn, seen)
    }

    /// One deployment and its memory, by row id (`None` once it is purged).
    pub fn deployment_by_uuid(
        &self,
        uuid: &str,
    ) -> Result<Option<(StoredDeployment, Memory)>, StoreError> {
        let Some(row) = deployments::get_by_uuid(&self.conn, uuid)? else {
            return Ok(None);
        };
        Ok(memory::load_one(&self.conn, uuid)?.map(|m| (row, m)))
    }

    /// Every deployment without its spec, by (namespace, name): lists and counts read this,
    /// which parses no spec document.
    pub fn summaries(&self) -> Result<Vec<StoredSummary>, StoreError> {
        deployments::summaries(&self.conn, None)
    }

    /// Every deployment's summary and the addresses of its live instances, by (namespace,
    /// name): what the API's lists show (only those revision `of` last changed, when given).
    /// Two reads, no spec document parsed.
    pub fn listed(
        &self,
        of: Option<&str>,
    ) -> Result<Vec<(StoredSummary, Vec<String>)>, StoreError> {
        let mut addresses = instances::addresses(&self.conn, of)?;
        Ok(deployments::summaries(&self.conn, of)?
            .into_iter()
            .map(|s| {
                let ips = addresses.remove(&s.id).unwrap_or_default();
                (s, ips)
            })
            .collect())
    }

    /// The canonical document a deployment was stored with (`None` when it is not stored).
    pub fn canonical(&self, id: &DeploymentId) -> Result<Option<serde_json::Value>, StoreError> {
        deployments::canonical(&self.conn, id)
    }

    /// One deployment, by its (namespace, name) index: the cost does not grow with how many
    /// deployments exist.
    pub fn deployment(&self, id: &DeploymentId) -> Result<Option<StoredDeployment>, StoreError> {
        deployments::get(&self.conn, id)
    }

    /// A page of a deployment's runs, newest first, each with when it was cleared (`None`
    /// for an unknown deployment).
    #[allow(clippy::type_complexity)]
    pub fn runs_page(
        &self,
        id: &DeploymentId,
        limit: u32,
        before: Option<u64>,
    ) -> Result<Option<Vec<(crate::model::run::Run, Option<Timestamp>)>>, StoreError> {
        match deployments::get(&self.conn, id)? {
            Some(row) => Ok(Some(runs::page(&self.conn, &row.uuid, limit, before)?)),
            None => Ok(None),
        }
    }

    /// The cron jobs with a failed run nobody cleared and no newer run made good.
    pub fn failing_runs(&self) -> Result<std::collections::HashSet<DeploymentId>, StoreError> {
        runs::failing(&self.conn)
    }

    /// Revisions, newest first.
    pub fn revisions(&self, limit: u32) -> Result<Vec<RevisionRecord>, StoreError> {
        revisions::list(&self.conn, limit)
    }

    /// A deployment's events, newest first.
    pub fn events(&self, id: &DeploymentId, limit: u32) -> Result<Vec<Event>, StoreError> {
        events::list(&self.conn, id, limit)
    }

    /// Every deployment's reconciler memory.
    pub fn memories(&self) -> Result<std::collections::BTreeMap<DeploymentId, Memory>, StoreError> {
        memory::load_all(&self.conn)
    }

    /// The most recent revision still queued or applying.
    pub fn open_revision(&self) -> Result<Option<RevisionRecord>, StoreError> {
        Ok(revisions::open(&self.conn)?.pop())
    }

    /// The newest revision that succeeded.
    pub fn last_good_revision(&self) -> Result<Option<RevisionRecord>, StoreError> {
        revisions::last_good(&self.conn)
    }

    /// Rollbacks and quarantines: (revisions rolled back, revisions refused as quarantined,
    /// desired states quarantined now).
    pub fn rollback_counts(&self) -> Result<(u64, u64, u64), StoreError> {
        quarantine::counts(&self.conn)
    }

    /// The rolled-back revision whose desired state `desired_hash` is, while it is
    /// quarantined.
    pub fn quarantined(&self, desired_hash: &str) -> Result<Option<String>, StoreError> {
        quarantine::holding(&self.conn, desired_hash)
    }

    /// How many instances, of every deployment, are in each state.
    pub fn instance_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<crate::model::status::InstanceState, u64>, StoreError>
    {
        instances::count_by_state(&self.conn)
    }

    /// The instances of a deployment as last recorded.
    pub fn instances(&self, id: &DeploymentId) -> Result<Vec<StoredInstance>, StoreError> {
        self.rows_of(id, instances::list)
    }

    /// The newest health-check runs of a deployment, newest first.
    pub fn probe_results(
        &self,
        id: &DeploymentId,
        limit: u32,
    ) -> Result<Vec<ProbeResult>, StoreError> {
        self.rows_of(id, |conn, uuid| probes::recent(conn, uuid, limit))
    }

    /// A deployment's restart history, newest first: (time, generation, reason).
    pub fn restarts(
        &self,
        id: &DeploymentId,
        limit: u32,
    ) -> Result<Vec<(Timestamp, u64, String)>, StoreError> {
        self.rows_of(id, |conn, uuid| instances::restarts(conn, uuid, limit))
    }

    /// Rows kept per deployment (by its row id); none for a deployment the store does not know.
    fn rows_of<T>(
        &self,
        id: &DeploymentId,
        read: impl FnOnce(&Connection, &str) -> Result<Vec<T>, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match deployments::get(&self.conn, id)? {
            Some(row) => read(&self.conn, &row.uuid),
            None => Ok(Vec::new()),
        }
    }

    /// A page of a deployment's events, newest first, with their cursors.
    pub fn events_page(
        &self,
        id: &DeploymentId,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        events::page(&self.conn, id, limit, before)
    }

    /// The most recent arrival of revision `id`.
    pub fn revision(&self, id: &str) -> Result<Option<RevisionRecord>, StoreError> {
        revisions::find(&self.conn, id)
    }

    /// Notifications not yet delivered nor dead.
    pub fn outbox_depth(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Notifications not fanned out into deliveries yet, oldest first.
    pub fn undistributed(&self, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        deliveries::undistributed(&self.conn, limit)
    }

    /// The last commit status queued for `(sha, context)`: (state, description).
    pub fn commit_status(
        &self,
        sha: &str,
        context: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        deliveries::commit_status(&self.conn, sha, context)
    }

    /// The oldest pending delivery of `endpoint`.
    pub fn next_delivery(&self, endpoint: &str) -> Result<Option<Delivery>, StoreError> {
        deliveries::next_pending(&self.conn, endpoint)
    }

    /// Disabled endpoints: when, and why.
    pub fn disabled_endpoints(
        &self,
    ) -> Result<std::collections::BTreeMap<String, (Timestamp, String)>, StoreError> {
        deliveries::disabled(&self.conn)
    }

    /// Deliveries, newest first.
    pub fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        deliveries::list(&self.conn, filter)
    }

    /// Pending deliveries, and when the oldest of them was created.
    pub fn delivery_backlog(&self) -> Result<(u64, Option<Timestamp>), StoreError> {
        deliveries::backlog(&self.conn)
    }

    /// Every outbox row, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        outbox::list(&self.conn)
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Opens a connection, proves the file is SQLite before anything writes to it, then sets the
/// connection's own pragmas (none of which writes to the file; `Store::open` turns on WAL).
pub fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: display(path),
        source,
    };
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(open_err)?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|source| StoreError::NotADatabase {
        path: display(path),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    Ok(conn)
}

/// Parses a stored enum value, naming the column when the database holds garbage.
fn parse_column<T>(column: &'static str, value: String) -> Result<T, StoreError>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value.parse().map_err(|e: T::Err| StoreError::BadValue {
        column,
        value,
        source: Box::new(e),
    })
}

/// A JSON column's text.
fn to_json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::BadValue {
        column: "memory",
        value: String::new(),
        source: Box::new(e),
    })
}

/// Reads a JSON column, naming it when it does not parse.
fn parse_json<T: serde::de::DeserializeOwned>(
    column: &'static str,
    text: String,
) -> Result<T, StoreError> {
    serde_json::from_str(&text).map_err(|e| StoreError::BadValue {
        column,
        value: text.chars().take(80).collect(),
        source: Box::new(e),
    })
}
