//! PURE: what becomes of a revision that failed at run time (DESIGN §9: rollback is a plan).
//! The whole revision is undone — as an invalid one is refused whole — by applying the last
//! good revision again, unless the operator turned rollback off, a deployment it changed opted
//! out, there is nothing good to return to, or the failing revision is itself a restore: a
//! rollback is never rolled back (if the last good revision fails now, the world changed; keel
//! stops there and says so, no ping-pong).
//!
//! Inputs: the failed revision, the last good one, the policy's mode, the first deployment the
//! failed revision changed that opted out. Output: a `Verdict`.

use crate::model::desired::DeploymentId;
use crate::model::stored::RevisionRecord;

/// Whether failed revisions are rolled back on this host (`[rollback] mode` in keel.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    On,
    Off,
}

/// What to do with a revision that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Record it `rolled_back`, quarantine its desired state, apply `restore` again.
    RollBack { restore: String },
    /// Record it `failed`; what runs stays as it is.
    Keep(Kept),
}

/// Why a failed revision is kept failed rather than rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// `[rollback] mode = "off"`.
    Disabled,
    /// A deployment it changed says `rollback: false`.
    OptedOut(DeploymentId),
    /// No revision ever succeeded here.
    NothingGood,
    /// It restores the last good revision itself.
    ARestore,
}

/// The verdict on `failed` (see the module doc).
pub fn verdict(
    failed: &RevisionRecord,
    last_good: Option<&RevisionRecord>,
    mode: Mode,
    opted_out: Option<&DeploymentId>,
) -> Verdict {
    if mode == Mode::Off {
        return Verdict::Keep(Kept::Disabled);
    }
    if failed.restores.is_some() {
        return Verdict::Keep(Kept::ARestore);
    }
    if let Some(id) = opted_out {
        return Verdict::Keep(Kept::OptedOut(id.clone()));
    }
    match last_good {
        Some(good) => Verdict::RollBack {
            restore: good.id.clone(),
        },
        None => Verdict::Keep(Kept::NothingGood),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status::RevisionState;
    use crate::model::time::Timestamp;

    fn revision(id: &str, state: RevisionState, restores: Option<&str>) -> RevisionRecord {
        RevisionRecord {
            seq: 1,
            source: "git".into(),
            id: id.into(),
            message: None,
            author: None,
            received_at: Timestamp(0),
            state,
            state_since: Timestamp(0),
            diagnostics: Vec::new(),
            superseded_by: None,
            desired_hash: Some(format!("hash-{id}")),
            restores: restores.map(str::to_owned),
            rolled_back_to: None,
            identical_to: None,
        }
    }

    #[test]
    fn a_failed_revision_is_rolled_back_unless_something_says_otherwise() {
        let bad = revision("bad", RevisionState::Applying, None);
        let good = revision("good", RevisionState::Succeeded, None);
        let restore = revision("good", RevisionState::Applying, Some("bad"));
        let web = DeploymentId::new("demo", "web");
        let back = Verdict::RollBack {
            restore: "good".into(),
        };
        let cases = [
            (
                "a_failed_revision_restores_the_last_good_one",
                &bad,
                Some(&good),
                Mode::On,
                None,
                back,
            ),
            (
                "off_keeps_the_failure",
                &bad,
                Some(&good),
                Mode::Off,
                None,
                Verdict::Keep(Kept::Disabled),
            ),
            (
                "a_deployment_that_opted_out_keeps_the_failure",
                &bad,
                Some(&good),
                Mode::On,
                Some(&web),
                Verdict::Keep(Kept::OptedOut(web.clone())),
            ),
            (
                "nothing_good_to_return_to",
                &bad,
                None,
                Mode::On,
                None,
                Verdict::Keep(Kept::NothingGood),
            ),
            (
                "a_failing_rollback_stops_without_ping_pong",
                &restore,
                Some(&good),
                Mode::On,
                None,
                Verdict::Keep(Kept::ARestore),
            ),
        ];
        for (name, failed, last_good, mode, opted_out, expected) in cases {
            assert_eq!(
                verdict(failed, last_good, mode, opted_out),
                expected,
                "{name}"
            );
        }
    }
}
