//! The command line: `keel agent` (hands over to `app`), the offline checks `keel validate`,
//! `keel plan` and `keel schema`, the views of a running agent read from its API
//! (`deployments`, `deployment`, `events`, `logs`, `revisions`, `status`, `wait`,
//! `deliveries`, `version`; see `views`, printed by `render`), and `keel completion`. Parses
//! arguments with clap, calls the library, prints for humans or as JSON/YAML, and maps outcomes
//! to exit codes. Flags live on the commands that use them (`--api` only on the views).
//! `anyhow` is allowed here.

mod render;
mod views;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::manifest::{self, Limits, Loaded};
use crate::model::desired::DesiredState;
use crate::model::diagnostic::Diagnostic;
use crate::model::manifest::WorkloadKind;
use crate::model::stored::StoredState;
use crate::reconcile::diff::{diff, Action, Plan};
use crate::source;
use crate::store::StoreReader;

/// keel: a declarative GitOps agent for one host.
///
/// Point it at a Git repository or a directory of manifests; it validates every revision
/// against the manifest schema and converges Docker containers and Cloud Hypervisor microVMs
/// to match, reporting readiness-gated status.
#[derive(Debug, Parser)]
#[command(name = "keel", version = VERSION, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info`, `keel=debug`. Default: `info` for
    /// the agent, `warn` otherwise.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// `keel --version`: the release and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (build ",
    env!("KEEL_BUILD"),
    ")"
);

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: follow a Git repository or a directory, apply every valid revision to
    /// this host's containers, and serve the status API.
    ///
    /// Every flag can also be set in keel.toml (`--config`) or as KEEL_<FLAG> (e.g.
    /// KEEL_SOURCE); flags win over the environment, which wins over the file.
    ///
    /// Example: keel agent --source https://git.example.com/ops/deploy.git --branch main --path hosts/web-01
    Agent(AgentArgs),
    /// Check a directory of manifests and print every problem with its file, line and field.
    ///
    /// Exits 0 when the revision is valid (warnings allowed), 1 when it has errors. The same
    /// checks run in the agent before anything is applied, so a green `keel validate` in CI
    /// means the agent will accept the commit.
    ///
    /// Example: keel validate examples-repo/apps --format json
    Validate(ValidateArgs),
    /// Print the JSON Schema of the manifest format (the content of
    /// schemas/manifest.schema.json).
    ///
    /// Editors with a YAML language server pick it up from a first line such as
    /// `# yaml-language-server: $schema=../schemas/manifest.schema.json`.
    Schema,
    /// Show what applying a directory of manifests would change, without changing anything.
    ///
    /// Loads and validates DIR like `validate`, compares it with the agent's database and
    /// prints one line per deployment that would change, e.g.
    /// `+ create demo/web (docker, 2 replicas)`, `~ update demo/api: image, replicas`,
    /// `- delete demo/old`.
    ///
    /// Exit code: 0 when there is nothing to do, 2 when there are changes, 1 when the manifests
    /// are invalid (the diagnostics are printed). A missing database counts as empty and is not
    /// created.
    Plan(PlanArgs),
    /// List the agent's deployments: status, health, ready/desired instances, restarts.
    ///
    /// Every namespace unless `-n` names one. `-o wide` adds the runtime, image, revision and
    /// instance addresses; `-o name` prints NAMESPACE/NAME per line; `--watch` prints the
    /// list again at each change. Examples:
    /// `keel deployments --status crash_loop_back_off --status failed -n demo`,
    /// `keel deployments -o name | xargs -n1 keel events`.
    Deployments(views::DeploymentsArgs),
    /// Show one deployment (NAMESPACE/NAME, or NAME -n NAMESPACE) with its instances.
    ///
    /// Example: keel deployment demo/web --watch
    Deployment(views::DeploymentArgs),
    /// Show a deployment's events, oldest first; `--follow` keeps printing new ones.
    ///
    /// `-o json` prints one JSON array; with `--follow`, one JSON object per line (JSON Lines).
    Events(views::EventsArgs),
    /// Print what an instance prints: a container's stdout and stderr, a VM's serial console.
    ///
    /// One instance: `--instance` (a container id or its prefix, as `keel deployment` shows)
    /// or, by default, the newest generation's first. Examples:
    /// `keel logs demo/web --follow`, `keel logs demo/web --since 10m --tail 100`.
    Logs(views::LogsArgs),
    /// List a cron job's runs, newest first: outcome, when due and started, how long it took,
    /// exit code and why it failed or was skipped.
    ///
    /// Example: keel runs ops/backup --limit 50
    Runs(views::RunsArgs),
    /// Clear a cron job's failed runs, so that they no longer count against its namespace.
    ///
    /// An operator's act: KEEL_TOKEN must be one of the agent's admin_tokens (keel.toml,
    /// [api]); the agent records it as an event. A newer run that completes clears them too.
    ///
    /// Example: KEEL_TOKEN="$(cat /etc/keel/admin-token)" keel clear-runs ops/backup
    ClearRuns(views::ClearRunsArgs),
    /// Apply a rolled-back revision's desired state again, lifting its quarantine.
    ///
    /// A revision that failed at run time is rolled back and its desired state quarantined:
    /// keel does not apply it again, under any commit, until it changes. When the cause was
    /// outside the repository (a registry outage, a full disk, now mended), an operator may
    /// retry it as it is. SHA names the rolled-back revision, or a commit quarantined as its
    /// twin. KEEL_TOKEN must be one of the agent's admin_tokens (keel.toml, [api]). If it fails
    /// again, it is rolled back again.
    ///
    /// Example: KEEL_TOKEN="$(cat /etc/keel/admin-token)" keel retry 4e1f0c9a2b7d
    Retry(views::RetryArgs),
    /// List the revisions the agent received, newest first, with their sync state.
    Revisions(views::ListArgs),
    /// Show the source, the latest revision and every namespace's status (`-n`: one).
    Status(views::StatusArgs),
    /// Wait until a revision has converged: exit 0 when it succeeded, 1 when it failed, was
    /// invalid or superseded, or on timeout. Run it in CI after a push.
    ///
    /// Example: keel wait "$(git rev-parse HEAD)" --timeout 10m
    Wait(views::WaitArgs),
    /// List webhook and commit-status deliveries, newest first: state, attempts, last error.
    ///
    /// Example: keel deliveries --state dead
    Deliveries(views::DeliveriesArgs),
    /// Print this program's version and build and, unless `--client`, the agent's.
    Version(views::VersionArgs),
    /// Print a shell completion script.
    ///
    /// Examples: `keel completion bash > /etc/bash_completion.d/keel`,
    /// `keel completion zsh > "${fpath[1]}/_keel"`,
    /// `keel completion fish > ~/.config/fish/completions/keel.fish`.
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The directory of manifests.
    #[arg(long, default_value = ".")]
    pub source: PathBuf,
    /// The agent's SQLite database.
    #[arg(long, default_value = "keel-state/keel.db")]
    pub db: PathBuf,
    /// Output format: `text` or `json` (`{"items": [...], "counts": {...}}`).
    #[arg(long, short = 'o', visible_alias = "output", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What loading depends on: the agent's keel.toml (its `[manifests]` limits and
/// `[cloud_hypervisor]` boot defaults), and bounds on what one revision may make keel read.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// The agent's keel.toml: check against its `[manifests]` limits and its
    /// `[cloud_hypervisor]` kernel/initramfs/cmdline/firmware, which VM deployments without
    /// their own boot files use. Without it, keel's defaults and no boot defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Largest manifest file accepted, in bytes [default: 1048576, or keel.toml's].
    #[arg(long, value_name = "BYTES")]
    pub max_file_size: Option<u64>,
    /// Largest total size of a revision's manifests, in bytes [default: 67108864, or
    /// keel.toml's].
    #[arg(long, value_name = "BYTES")]
    pub max_revision_size: Option<u64>,
    /// Most YAML nodes one document may hold, as written [default: 2000000, or keel.toml's].
    #[arg(long, value_name = "NODES")]
    pub max_document_nodes: Option<u64>,
    /// Most nodes aliases may add to one document when expanded (alias bombs stop here)
    /// [default: 100000, or keel.toml's].
    #[arg(long, value_name = "NODES")]
    pub max_alias_nodes: Option<u64>,
    /// A dotenv file of variables (`NAME=value` lines) for `$VAR` / `${VAR}` in names, images,
    /// commands and plain environment values, as the agent's `[variables] files`; repeatable,
    /// a later file winning, and over keel.toml's. Without it (and without `[variables]` in
    /// --config), `$` is taken literally.
    #[arg(long = "vars", value_name = "FILE")]
    pub vars: Vec<PathBuf>,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        let mut limits = match &self.config {
            Some(path) => crate::config::AgentConfig::from_file(path)?.manifest_limits()?,
            None => Limits::default(),
        };
        if !self.vars.is_empty() {
            let from_files = crate::config::read_variables(&self.vars, &[])?;
            limits
                .variables
                .get_or_insert_with(Default::default)
                .extend(from_files);
        }
        let set = |flag: Option<u64>, value: &mut u64| *value = flag.unwrap_or(*value);
        set(self.max_file_size, &mut limits.size.max_file_bytes);
        set(self.max_revision_size, &mut limits.size.max_revision_bytes);
        set(self.max_document_nodes, &mut limits.yaml.max_document_nodes);
        set(self.max_alias_nodes, &mut limits.yaml.max_alias_nodes);
        Ok(limits)
    }
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The directory to check (every .yaml, .yml and .json file below it).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Output format: `text` (one line per problem) or `json` (a list for CI tools).
    #[arg(long, short = 'o', visible_alias = "output", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Installs the log subscriber (stderr, so command output stays clean; colours only when
/// stderr is a terminal, so a redirected log holds no escape codes, and never with NO_COLOR).
pub fn init_tracing(filter: Option<&str>, default: &str, json: bool) {
    use std::io::IsTerminal;
    let directives = log_directives(filter.unwrap_or(default));
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives(default)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !crate::config::no_color_from_env())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The verbosity a bare level asks for: more verbose than `warn` applies to keel only.
/// Third-party libraries log request and response bodies at `debug` and `trace` (the Docker
/// client logs every container's environment, secrets included), so they stay at `warn` unless
/// named: `--log debug` is `warn,keel=debug`; `--log debug,bollard=debug` opts bollard in.
fn log_directives(filter: &str) -> String {
    const VERBOSE: [&str; 3] = ["info", "debug", "trace"];
    let directives: Vec<String> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .flat_map(|d| {
            let level = d.to_ascii_lowercase();
            if VERBOSE.contains(&level.as_str()) {
                vec!["warn".to_owned(), format!("keel={level}")]
            } else {
                vec![d.to_owned()]
            }
        })
        .collect();
    directives.join(",")
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { log, command } = cli;
    // The agent sets up logging itself, once its configuration says which format.
    if !matches!(command, Command::Agent(_)) {
        init_tracing(log.as_deref(), "warn", false);
    }
    match command {
        Command::Agent(args) => agent(args, log.as_deref()),
        Command::Validate(args) => validate(&args),
        Command::Schema => {
            print!("{}", manifest::schema::manifest_schema_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => plan(&args),
        Command::Deployments(args) => views::deployments(&args),
        Command::Deployment(args) => views::deployment(&args),
        Command::Events(args) => views::events(&args),
        Command::Logs(args) => views::logs(&args),
        Command::Runs(args) => views::runs(&args),
        Command::ClearRuns(args) => views::clear_runs(&args),
        Command::Retry(args) => views::retry(&args),
        Command::Revisions(args) => views::revisions(&args),
        Command::Status(args) => views::status(&args),
        Command::Wait(args) => views::wait(&args),
        Command::Deliveries(args) => views::deliveries(&args),
        Command::Version(args) => views::version(&args),
        Command::Completion(args) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(args.shell, &mut command, "keel", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads and loads a directory: the state, or every diagnostic.
fn load_dir(dir: &Path, limits: &Limits) -> anyhow::Result<Result<Loaded, Vec<Diagnostic>>> {
    let entries = source::dir::read_entries(dir, limits.size)
        .with_context(|| format!("cannot read manifests from {}", dir.display()))?;
    Ok(manifest::load(&entries, limits))
}

fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let loaded = match load_dir(&args.source, &args.limits.limits()?)? {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            let summary = format!(
                "{}: invalid — {errors} error{}; nothing planned",
                args.source.display(),
                plural(errors)
            );
            print_diagnostics(&mut std::io::stdout().lock(), &diagnostics, &summary)?;
            return Ok(ExitCode::from(1));
        }
    };
    let stored = match StoreReader::open_existing(&args.db)? {
        Some(reader) => reader.stored_state()?,
        None => StoredState::default(),
    };
    let plan = diff(&loaded.state, &stored);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let doc = serde_json::json!({ "items": plan.items, "counts": plan.counts() });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        Format::Text => print_plan(&mut out, &plan, &loaded.state)?,
    }
    Ok(if plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_plan(out: &mut impl Write, plan: &Plan, desired: &DesiredState) -> std::io::Result<()> {
    for item in &plan.items {
        match &item.action {
            Action::Create => {
                let what = desired.deployments.get(&item.id).map(|d| {
                    let job = match d.spec.kind {
                        WorkloadKind::Job => "job, ".to_owned(),
                        WorkloadKind::CronJob => format!(
                            "cronjob {}, ",
                            d.spec.schedule.as_deref().unwrap_or_default()
                        ),
                        WorkloadKind::Worker => String::new(),
                    };
                    let n = d.spec.replicas;
                    format!(
                        " ({}, {job}{n} replica{})",
                        d.spec.runtime,
                        if n == 1 { "" } else { "s" }
                    )
                });
                writeln!(out, "+ create {}{}", item.id, what.unwrap_or_default())?;
            }
            Action::Update { changed } => {
                writeln!(out, "~ update {}: {}", item.id, changed.join(", "))?
            }
            Action::Delete => writeln!(out, "- delete {}", item.id)?,
            Action::Unchanged => {}
        }
    }
    let c = plan.counts();
    if plan.has_changes() {
        writeln!(
            out,
            "Plan: {} to create, {} to update, {} to delete, {} unchanged.",
            c.create, c.update, c.delete, c.unchanged
        )
    } else {
        writeln!(out, "No changes: {} deployments up to date.", c.unchanged)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let (diagnostics, summary, code) = match load_dir(&args.dir, &args.limits.limits()?)? {
        Ok(loaded) => {
            let s = &loaded.state;
            let summary = format!(
                "{}: valid — {} deployments, {} configs, {} namespaces",
                args.dir.display(),
                s.deployments.len(),
                s.configs.len(),
                s.namespaces.len()
            );
            (loaded.warnings, summary, ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            let summary = format!(
                "{}: invalid — {errors} error{}",
                args.dir.display(),
                plural(errors)
            );
            (diagnostics, summary, ExitCode::from(1))
        }
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &diagnostics)?;
            writeln!(out)?;
        }
        Format::Text => print_diagnostics(&mut out, &diagnostics, &summary)?,
    }
    Ok(code)
}

fn print_diagnostics(
    out: &mut impl Write,
    diagnostics: &[Diagnostic],
    summary: &str,
) -> std::io::Result<()> {
    for d in diagnostics {
        writeln!(out, "{d}")?;
    }
    match diagnostics.iter().filter(|d| !d.is_error()).count() {
        0 => writeln!(out, "{summary}"),
        1 => writeln!(out, "{summary}, 1 warning"),
        n => writeln!(out, "{summary}, {n} warnings"),
    }
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// A directory of manifests, or a Git URL (https://, ssh://, git://, file://).
    #[arg(long)]
    pub source: Option<String>,
    /// Follow this branch (default: the remote's default branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// Follow this tag instead.
    #[arg(long)]
    pub tag: Option<String>,
    /// Pin this commit (new commits are ignored).
    #[arg(long)]
    pub commit: Option<String>,
    /// Only manifests below this directory of the source, e.g. `apps`.
    #[arg(long)]
    pub path: Option<String>,
    /// The SQLite database (default: keel-state/keel.db, created).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Where the status API listens (default 127.0.0.1:7878).
    #[arg(long)]
    pub listen: Option<String>,
    /// The agent's configuration file (see docs/keel.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log format: human (default) or json.
    #[arg(long)]
    pub log_format: Option<String>,
}

fn agent(args: AgentArgs, log: Option<&str>) -> anyhow::Result<ExitCode> {
    let flags = crate::config::Flags {
        config: args.config,
        source: args.source,
        branch: args.branch,
        tag: args.tag,
        commit: args.commit,
        path: args.path,
        db: args.db,
        listen: args.listen,
        log_format: args.log_format,
    };
    let settings = match crate::config::AgentSettings::resolve(flags, crate::config::env_flags()) {
        Ok(settings) => settings,
        Err(problems) => {
            eprintln!(
                "error: the agent configuration has {} problem(s):",
                problems.len()
            );
            for problem in problems {
                eprintln!("  - {problem}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    init_tracing(log, "info", settings.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::app::run(settings, crate::app::signals()))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn verbose_levels_apply_to_keel_and_third_parties_are_opted_in_by_name() {
        let cases = [
            ("trace", "warn,keel=trace"),
            ("debug", "warn,keel=debug"),
            ("INFO", "warn,keel=info"),
            ("warn", "warn"),
            ("error", "error"),
            ("debug,bollard=debug", "warn,keel=debug,bollard=debug"),
            ("keel::reconcile=trace", "keel::reconcile=trace"),
            (" debug , hyper=info ", "warn,keel=debug,hyper=info"),
        ];
        for (given, expected) in cases {
            assert_eq!(log_directives(given), expected, "{given}");
        }
    }
}
