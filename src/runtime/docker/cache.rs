//! The observation cache (the Kubernetes informer pattern): what the daemon last said about
//! each of keel's containers, so that a listing costs nothing when nothing happened.
//!
//! Inputs: a complete listing (`replace`), the ids the event stream or keel's own verbs name
//! (`mark`), each re-inspected on the next listing (`update`), and the stream breaking
//! (`invalidate`). Output: the containers to report, or the fact that a complete listing is
//! needed first (never synced, the stream broke since, or the resync period passed).
//!
//! Invariants: an id marked while a listing or an inspection is in flight stays marked, so
//! the next listing looks at it again — an event is never lost between a read and its
//! apply. The cache never answers after the stream broke: missed events would make it lie.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::time::Instant;

/// A container as last inspected: its labels and what inspecting it told.
pub(super) type Entry = (HashMap<String, String>, super::Inspection);

/// How often a complete listing replaces the cache even when the stream looked healthy.
pub(super) const RESYNC: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Default)]
pub(super) struct Cache {
    /// `None` until the first complete listing, and again once the stream broke.
    containers: Option<BTreeMap<String, Entry>>,
    listed_at: Option<Instant>,
    /// Ids named since they were last inspected.
    dirty: BTreeSet<String>,
    /// What each exited container printed last, read once per exit (by its finish time):
    /// re-inspections reuse it instead of reading its logs again. Survives a broken stream.
    evidence: BTreeMap<String, (Option<crate::model::time::Timestamp>, Option<String>)>,
}

impl Cache {
    /// Whether the next listing must be complete.
    pub(super) fn needs_listing(&self, now: Instant) -> bool {
        self.containers.is_none() || self.listed_at.is_none_or(|at| now >= at + RESYNC)
    }

    /// Starts a complete listing: what is marked from now on is looked at again afterwards.
    pub(super) fn begin_listing(&mut self) {
        self.dirty.clear();
    }

    /// A complete listing, taken at `at`.
    pub(super) fn replace(&mut self, containers: BTreeMap<String, Entry>, at: Instant) {
        self.evidence.retain(|id, _| containers.contains_key(id));
        self.containers = Some(containers);
        self.listed_at = Some(at);
    }

    /// The output kept of container `id`'s exit at `finished_at`, when it was read already.
    pub(super) fn evidence(
        &self,
        id: &str,
        finished_at: Option<crate::model::time::Timestamp>,
    ) -> Option<Option<String>> {
        self.evidence
            .get(id)
            .filter(|(at, _)| *at == finished_at)
            .map(|(_, output)| output.clone())
    }

    /// Keeps what container `id` printed before its exit at `finished_at`.
    pub(super) fn keep_evidence(
        &mut self,
        id: &str,
        finished_at: Option<crate::model::time::Timestamp>,
        output: Option<String>,
    ) {
        self.evidence.insert(id.to_owned(), (finished_at, output));
    }

    /// An event (or keel's own verb) touched `id`.
    pub(super) fn mark(&mut self, id: &str) {
        if !id.is_empty() {
            self.dirty.insert(id.to_owned());
        }
    }

    /// The ids to inspect before answering (unmarked: re-marked if the inspection fails).
    pub(super) fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// One re-inspection: the container as it is now, or `None` when it is gone (or not
    /// keel's).
    pub(super) fn update(&mut self, id: &str, entry: Option<Entry>) {
        if let Some(containers) = &mut self.containers {
            match entry {
                Some(entry) => containers.insert(id.to_owned(), entry),
                None => containers.remove(id),
            };
        }
    }

    /// The stream broke: events may be lost, so only a complete listing may answer next.
    pub(super) fn invalidate(&mut self) {
        self.containers = None;
    }

    pub(super) fn containers(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.containers.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::observed::Phase;

    fn entry(phase: Phase) -> Entry {
        let inspection = super::super::Inspection {
            phase,
            ip: None,
            started_at: None,
            finished_at: None,
            last_output: None,
        };
        (HashMap::new(), inspection)
    }

    fn ids(cache: &Cache) -> Vec<&str> {
        cache.containers().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn a_complete_listing_is_needed_first_after_a_break_and_after_the_resync_period() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        assert!(cache.needs_listing(t0), "never listed");
        cache.replace(BTreeMap::new(), t0);
        assert!(!cache.needs_listing(t0 + RESYNC / 2));
        assert!(cache.needs_listing(t0 + RESYNC), "the slow resync");
        cache.replace(BTreeMap::new(), t0 + RESYNC);
        cache.invalidate();
        assert!(cache.needs_listing(t0 + RESYNC), "the stream broke");
    }

    #[test]
    fn an_id_marked_during_a_listing_is_looked_at_again_after_it() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        cache.mark("before");
        cache.begin_listing();
        cache.mark("during");
        cache.replace(
            BTreeMap::from([("during".into(), entry(Phase::Running))]),
            t0,
        );
        assert_eq!(cache.take_dirty(), BTreeSet::from(["during".to_owned()]));
        assert!(cache.take_dirty().is_empty());
    }

    #[test]
    fn a_reinspection_updates_adds_or_forgets_one_container() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        cache.update("early", Some(entry(Phase::Running)));
        assert!(ids(&cache).is_empty(), "nothing is known before a listing");
        cache.replace(BTreeMap::from([("a".into(), entry(Phase::Running))]), t0);
        cache.update("b", Some(entry(Phase::Created)));
        cache.update(
            "a",
            Some(entry(Phase::Exited {
                exit_code: 1,
                oom_killed: false,
            })),
        );
        assert_eq!(ids(&cache), ["a", "b"]);
        let a = cache.containers().next().unwrap().1;
        assert!(matches!(a.1.phase, Phase::Exited { exit_code: 1, .. }));
        cache.update("b", None);
        assert_eq!(ids(&cache), ["a"]);
    }
}
