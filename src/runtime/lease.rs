//! The node lease: an agent holds its `node` name exclusively on a runtime, because everything
//! it creates is owned by that name and an agent removes owned instances it does not know.
//! Two agents with one name would remove each other's instances; the second one refuses to
//! start instead, naming the holder.
//!
//! A holder is a process: its host, pid and the pid's start time (so a reused pid is not
//! mistaken for it). A lease whose holder ran on this host and is gone is taken over; one held
//! by a live process, or by a process on another host (which this agent cannot check), is
//! refused. `decide` is the pure rule; adapters store the holder on the runtime (Docker: the
//! labels of a named volume, whose creation is atomic and keeps the first labels).

use std::collections::HashMap;

use crate::model::time::Timestamp;

/// Labels of a lease object.
const ID: &str = "keel.lease.holder";
const HOST: &str = "keel.lease.host";
const PID: &str = "keel.lease.pid";
const PID_STARTED: &str = "keel.lease.pid_started";
const SINCE: &str = "keel.lease.since";

/// One agent process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Unique per agent start.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// The process's start time (clock ticks since boot, `/proc/<pid>/stat` field 22).
    pub pid_started: u64,
    pub since: Timestamp,
}

impl Holder {
    /// This process.
    pub fn current(now: Timestamp) -> Self {
        let pid = std::process::id();
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            host: host_name(),
            pid,
            pid_started: process_started(pid).unwrap_or(0),
            since: now,
        }
    }

    /// How to name it in a message.
    pub fn describe(&self) -> String {
        format!(
            "the agent with pid {} on host {}, holding it since {}",
            self.pid,
            self.host,
            self.since.to_rfc3339()
        )
    }

    pub fn to_labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (ID.to_owned(), self.id.clone()),
            (HOST.to_owned(), self.host.clone()),
            (PID.to_owned(), self.pid.to_string()),
            (PID_STARTED.to_owned(), self.pid_started.to_string()),
            (SINCE.to_owned(), self.since.0.to_string()),
        ])
    }

    /// The holder recorded in `labels` (`None`: not a lease, or written by something else).
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        Some(Self {
            id: labels.get(ID)?.clone(),
            host: labels.get(HOST)?.clone(),
            pid: labels.get(PID)?.parse().ok()?,
            pid_started: labels.get(PID_STARTED)?.parse().ok()?,
            since: Timestamp(labels.get(SINCE)?.parse().ok()?),
        })
    }

    /// Whether this holder still runs, as far as this host can tell.
    pub fn liveness(&self) -> Liveness {
        if self.host != host_name() {
            return Liveness::Unknown;
        }
        match process_started(self.pid) {
            Some(started) if started == self.pid_started => Liveness::Alive,
            Some(_) | None => Liveness::Gone,
        }
    }
}

/// What can be said of a recorded holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// It ran on this host and no longer does.
    Gone,
    /// It runs on another host: nothing here can tell.
    Unknown,
}

/// What to do with a lease found on the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It is ours.
    Held,
    /// Its holder is gone: remove it and claim it again.
    TakeOver(Holder),
    /// Someone else may hold it: refuse to start.
    Refuse(Holder),
}

/// PURE: `found` is the holder recorded on the runtime after our claim (the first writer's),
/// `liveness` what this host can tell of it.
pub fn decide(found: Option<Holder>, me: &Holder, liveness: Liveness) -> Decision {
    match found {
        // An object without readable holder labels: claim it.
        None => Decision::TakeOver(me.clone()),
        Some(holder) if holder.id == me.id => Decision::Held,
        Some(holder) => match liveness {
            Liveness::Gone => Decision::TakeOver(holder),
            Liveness::Alive | Liveness::Unknown => Decision::Refuse(holder),
        },
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Field 22 of `/proc/<pid>/stat` (after the command name, which may hold spaces).
fn process_started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: &str) -> Holder {
        Holder {
            id: id.into(),
            host: "web-01".into(),
            pid: 4242,
            pid_started: 99,
            since: Timestamp(1_800_000_000_000),
        }
    }

    #[test]
    fn a_lease_is_kept_taken_over_or_refused() {
        let me = holder("me");
        let cases = [
            (
                "our_own",
                Some(holder("me")),
                Liveness::Alive,
                Decision::Held,
            ),
            (
                "held_by_a_live_agent",
                Some(holder("other")),
                Liveness::Alive,
                Decision::Refuse(holder("other")),
            ),
            (
                "held_from_another_host",
                Some(holder("other")),
                Liveness::Unknown,
                Decision::Refuse(holder("other")),
            ),
            (
                "held_by_a_dead_agent_of_this_host",
                Some(holder("other")),
                Liveness::Gone,
                Decision::TakeOver(holder("other")),
            ),
            (
                "unreadable",
                None,
                Liveness::Unknown,
                Decision::TakeOver(holder("me")),
            ),
        ];
        for (name, found, liveness, expected) in cases {
            assert_eq!(decide(found, &me, liveness), expected, "{name}");
        }
    }

    #[test]
    fn a_holder_survives_its_labels() {
        let h = holder("abc");
        assert_eq!(Holder::from_labels(&h.to_labels()), Some(h));
        assert_eq!(Holder::from_labels(&HashMap::new()), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not_it() {
        let me = Holder::current(Timestamp(0));
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = Holder {
            pid_started: me.pid_started + 1,
            ..me.clone()
        };
        assert_eq!(reused.liveness(), Liveness::Gone);
        let elsewhere = Holder {
            host: format!("{}-elsewhere", me.host),
            ..me
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
    }
}
