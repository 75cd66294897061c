//! One host for tests of the real binary: a namespace on the daemon, a manifest directory,
//! a secrets directory, and per-agent config, database, state and log files.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use super::binary::AgentProcess;
use super::docker::{ensure_image, Namespace, IMAGE};

/// One host: a namespace on the daemon, a manifest directory, and the agent's files.
pub struct Host {
    pub ns: Namespace,
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Self {
        ensure_image();
        let host = Self {
            ns: Namespace::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(host.repo()).unwrap();
        std::fs::create_dir(host.secrets()).unwrap();
        host
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn secrets(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    pub fn node(&self) -> String {
        format!("faults-{}", self.ns.0)
    }

    /// A `keel.toml` for an agent called `node`, with its own state below `name`.
    pub fn config(&self, name: &str, node: &str) -> PathBuf {
        self.config_with(name, node, "")
    }

    /// The same, with `extra` appended (tables such as `[[webhooks]]`). A worker counts toward
    /// its revision's success as soon as it runs (`stable_after = "0s"`), unless `extra` says
    /// otherwise: these tests wait for revisions, and are about other things than stability.
    pub fn config_with(&self, name: &str, node: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        let stable = match extra.contains("stable_after") {
            true => "",
            false => "stable_after = \"0s\"\n",
        };
        std::fs::write(
            &path,
            format!(
                "node = {node:?}\nstate_dir = {:?}\nsecrets_dir = {:?}\n{stable}{extra}",
                self.dir.path().join(format!("{name}-state")),
                self.secrets()
            ),
        )
        .unwrap();
        path
    }

    pub fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db"))
    }

    /// Starts the agent `name` (node `node`) on the manifest directory.
    pub fn start_as(&self, name: &str, node: &str, log_level: &str) -> AgentProcess {
        let repo = self.repo();
        self.start_on(
            name,
            repo.to_str().unwrap(),
            &self.config(name, node),
            log_level,
        )
    }

    /// Starts the agent `name` following `source` (a directory or a Git URL) with `config`.
    pub fn start_on(
        &self,
        name: &str,
        source: &str,
        config: &std::path::Path,
        log_level: &str,
    ) -> AgentProcess {
        let db = self.db(name);
        let args = ["--source", source, "--db", db.to_str().unwrap()];
        let log = self.dir.path().join(format!("{name}.log"));
        AgentProcess::start(&args, config, log, log_level)
    }

    pub fn start(&self) -> AgentProcess {
        self.start_as("agent", &self.node(), "info")
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.repo().join(file), text).unwrap();
    }

    pub fn deployment(&self, name: &str, extra: &str) -> String {
        format!(
            "  {name}:\n    name: {name}\n    namespace: {}\n    image: {IMAGE}\n{extra}",
            self.ns.0
        )
    }

    /// `(deployment, generation)` of every container of the namespace, sorted.
    pub fn containers(&self) -> Vec<(String, u64)> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                &format!("label=keel.namespace={}", self.ns.0),
                "--format",
                "{{.Label \"keel.name\"}} {{.Label \"keel.generation\"}}",
            ])
            .output()
            .unwrap();
        let mut list: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, generation) = l.split_once(' ')?;
                Some((name.to_owned(), generation.parse().ok()?))
            })
            .collect();
        list.sort();
        list
    }
}
