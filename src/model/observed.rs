//! What the host looks like, as reported by the runtimes and the probes: the instances keel
//! owns (found by their ownership labels) and how their health checks have been doing.
//! Observations are facts; `reconcile::plan` decides what they mean.

use std::net::IpAddr;

use super::desired::DeploymentId;
use super::manifest::RuntimeKind;
use super::time::Timestamp;

/// Where an instance is in its runtime's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, never started (or start failed).
    Created,
    /// Running.
    Running,
    /// Ended: by itself, killed, or stopped.
    Exited { exit_code: i64, oom_killed: bool },
}

impl Phase {
    /// Whether it ended.
    pub fn exited(self) -> bool {
        match self {
            Phase::Exited { .. } => true,
            Phase::Created | Phase::Running => false,
        }
    }

    /// Whether it ended well: exit code 0, not killed for memory.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            Phase::Exited {
                exit_code: 0,
                oom_killed: false
            }
        )
    }

    /// Whether it ended badly: another exit code, or killed for memory.
    pub fn failed(self) -> bool {
        self.exited() && !self.succeeded()
    }

    /// How it ended, in words ("exited with code 1", "was killed: out of memory …").
    pub fn exit_reason(self) -> Option<String> {
        match self {
            Phase::Exited {
                exit_code,
                oom_killed: true,
            } => Some(format!("was killed: out of memory (exit code {exit_code})")),
            Phase::Exited {
                exit_code,
                oom_killed: false,
            } => Some(format!("exited with code {exit_code}")),
            Phase::Created | Phase::Running => None,
        }
    }

    /// Its exit code, once it ended.
    pub fn exit_code(self) -> Option<i64> {
        match self {
            Phase::Exited { exit_code, .. } => Some(exit_code),
            Phase::Created | Phase::Running => None,
        }
    }
}

/// One container or VM carrying keel's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedInstance {
    /// The runtime that listed it (and so the one that stops and removes it).
    pub runtime: RuntimeKind,
    /// The runtime's id (container id, VM name).
    pub runtime_id: String,
    pub deployment: DeploymentId,
    pub generation: u64,
    pub ordinal: u32,
    /// The cron job run it belongs to (`None` for workers and jobs).
    pub run: Option<u64>,
    /// The template hash it was created from (see `model::desired::template_hash`).
    pub template: String,
    pub phase: Phase,
    /// Where probes reach it.
    pub ip: Option<IpAddr>,
    pub started_at: Option<Timestamp>,
    /// It exited while its runtime was going away or restarting (the runtime stopped it, it
    /// did not die by itself). Only meaningful for an exited instance.
    pub interrupted: bool,
    /// The last lines it printed (a microVM's serial console), when the runtime keeps them:
    /// they go into the event of its death.
    pub last_output: Option<String>,
}

/// One runtime's listing, or why there is none. Unknown is not absent: a runtime that could
/// not be listed makes the planner hold every deployment on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeObservation {
    Listed(Vec<ObservedInstance>),
    /// It did not answer (a daemon restarting): it may hold instances; ask again soon.
    Unavailable {
        reason: String,
    },
    /// This host cannot run it (its binary is missing, no `/dev/kvm`): its deployments hold
    /// too, but nothing of it can exist here, and asking again changes nothing until the
    /// agent restarts with it enabled.
    Disabled {
        reason: String,
    },
}

/// Whether a runtime could be listed, as the controller last saw it (shown by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    pub available: bool,
    /// Why it could not be listed.
    pub reason: Option<String>,
    /// Since when it has been (un)available.
    pub since: Timestamp,
    /// When it was last listed (or tried).
    pub checked_at: Timestamp,
}

impl RuntimeState {
    /// The state after observing `observation` at `now`, from the previous one.
    pub fn after(
        previous: Option<&RuntimeState>,
        observation: &RuntimeObservation,
        now: Timestamp,
    ) -> Self {
        let (available, reason) = match observation {
            RuntimeObservation::Listed(_) => (true, None),
            RuntimeObservation::Unavailable { reason }
            | RuntimeObservation::Disabled { reason } => (false, Some(reason.clone())),
        };
        let since = previous
            .filter(|p| p.available == available)
            .map_or(now, |p| p.since);
        Self {
            available,
            reason,
            since,
            checked_at: now,
        }
    }
}

/// `text` with every occurrence of each secret value replaced by `[secret]` — longest first, so
/// that a value containing another is hidden whole. Empty values are ignored.
pub fn redact(text: &str, secrets: &[String]) -> String {
    // A multi-line secret (a key file) may be cut by the window of lines kept: each of its
    // lines is hidden too.
    let lines = secrets
        .iter()
        .filter(|s| s.contains('\n'))
        .flat_map(|s| s.lines())
        .map(str::trim)
        .filter(|l| l.len() >= 8);
    let mut values: Vec<&str> = secrets
        .iter()
        .map(|s| s.as_str())
        .chain(lines)
        .filter(|s| !s.is_empty())
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.into_iter().fold(text.to_owned(), |text, value| {
        text.replace(value, "[secret]")
    })
}

/// The recent history of one health check on one instance, folded by `reconcile::readiness`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckState {
    /// Failures in a row (0 after a success).
    pub consecutive_failures: u32,
    /// Since when every run has been a success (`None` after a failure or before any run).
    pub green_since: Option<Timestamp>,
    /// The last run's message (the error of a failure).
    pub last_message: Option<String>,
}

/// An image pull under way for one instance of a deployment: there is no container yet, so
/// the API shows it as an instance in state `building`, with this progress as its reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub image: String,
    pub ordinal: u32,
    pub generation: u64,
    /// Per layer id: bytes downloaded, bytes in all, and whether it is in place.
    layers: std::collections::BTreeMap<String, (u64, u64, bool)>,
}

impl PullProgress {
    pub fn new(image: &str, ordinal: u32, generation: u64) -> Self {
        Self {
            image: image.to_owned(),
            ordinal,
            generation,
            layers: std::collections::BTreeMap::new(),
        }
    }

    /// Folds one line of the daemon's pull stream: a layer `id` with its `status` and, while
    /// downloading, its `current` and `total` bytes. Lines about the image as a whole (no
    /// layer status) change nothing.
    pub fn record(
        &mut self,
        id: Option<&str>,
        status: &str,
        current: Option<i64>,
        total: Option<i64>,
    ) {
        let Some(id) = id else {
            return;
        };
        let known = [
            "Pulling fs layer",
            "Waiting",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
            "Pull complete",
            "Already exists",
        ];
        if !known.contains(&status) {
            return;
        }
        let layer = self.layers.entry(id.to_owned()).or_default();
        let bytes = |v: Option<i64>| v.and_then(|b| u64::try_from(b).ok());
        match status {
            "Downloading" => {
                layer.0 = bytes(current).unwrap_or(layer.0);
                layer.1 = bytes(total).unwrap_or(layer.1);
            }
            "Download complete" => layer.0 = layer.1,
            "Pull complete" | "Already exists" => {
                layer.0 = layer.1;
                layer.2 = true;
            }
            _ => {}
        }
    }

    /// `pulling <image>: 2/5 layers, 12.3 of 40.1 MB`.
    pub fn reason(&self) -> String {
        let done = self.layers.values().filter(|l| l.2).count();
        let (current, total) = self
            .layers
            .values()
            .fold((0u64, 0u64), |(c, t), l| (c + l.0, t + l.1));
        let mb = |b: u64| b as f64 / 1_000_000.0;
        match (self.layers.len(), total) {
            (0, _) => format!("pulling {}", self.image),
            (n, 0) => format!("pulling {}: {done}/{n} layers", self.image),
            (n, _) => format!(
                "pulling {}: {done}/{n} layers, {:.1} of {:.1} MB",
                self.image,
                mb(current),
                mb(total)
            ),
        }
    }
}

#[cfg(test)]
mod pull_tests {
    use super::PullProgress;

    #[test]
    fn pull_progress_counts_layers_and_bytes_from_the_daemons_stream() {
        let mut p = PullProgress::new("127.0.0.1:5000/app:1", 0, 1);
        assert_eq!(p.reason(), "pulling 127.0.0.1:5000/app:1");
        // (layer, status, current, total) as the daemon sends them
        type Line<'a> = (Option<&'a str>, &'a str, Option<i64>, Option<i64>);
        let lines: &[Line] = &[
            (Some("1"), "Pulling from app", None, None),
            (Some("a"), "Pulling fs layer", None, None),
            (Some("b"), "Already exists", None, None),
            (Some("a"), "Downloading", Some(1_500_000), Some(4_000_000)),
            (None, "Digest: sha256:00", None, None),
        ];
        for (id, status, current, total) in lines {
            p.record(*id, status, *current, *total);
        }
        assert_eq!(
            p.reason(),
            "pulling 127.0.0.1:5000/app:1: 1/2 layers, 1.5 of 4.0 MB"
        );
        p.record(Some("a"), "Download complete", None, None);
        p.record(Some("a"), "Pull complete", None, None);
        assert_eq!(
            p.reason(),
            "pulling 127.0.0.1:5000/app:1: 2/2 layers, 4.0 of 4.0 MB"
        );
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn every_secret_value_is_hidden_the_longest_first() {
        let secrets = vec![
            "hunter2".to_owned(),
            "hunter2-extra".to_owned(),
            String::new(),
        ];
        assert_eq!(
            redact("token=hunter2-extra pw=hunter2 again hunter2.", &secrets),
            "token=[secret] pw=[secret] again [secret]."
        );
        assert_eq!(redact("nothing here", &secrets), "nothing here");
        let key =
            vec!["-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----".to_owned()];
        assert_eq!(
            redact("tail: MIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----", &key),
            "tail: [secret]\n[secret]",
            "a key cut by the window is hidden line by line"
        );
    }
}
