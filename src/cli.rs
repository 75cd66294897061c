//! The command line: `keel validate` and `keel schema` (more commands join as their layers
//! land). Parses arguments with clap, calls the library, prints for humans or as JSON, and maps
//! outcomes to exit codes. `anyhow` is allowed here.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::manifest::{self, Limits};
use crate::model::diagnostic::Diagnostic;
use crate::model::snapshot::SizeLimits;
use crate::source;

/// keel: a declarative GitOps agent for one host.
///
/// Point it at a Git repository or a directory of manifests; it validates every revision
/// against the manifest schema and converges Docker containers and Cloud Hypervisor microVMs
/// to match, reporting readiness-gated status.
#[derive(Debug, Parser)]
#[command(name = "keel", version, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info`, `keel=debug`.
    #[arg(long, global = true, default_value = "warn", value_name = "FILTER")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The directory to check (every .yaml, .yml and .json file below it).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Output format: `text` (one line per problem) or `json` (a list for CI tools).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Largest manifest file accepted, in bytes.
    #[arg(long, default_value_t = SizeLimits::default().max_file_bytes, value_name = "BYTES")]
    pub max_file_size: u64,
    /// Largest total size of a revision's manifests, in bytes.
    #[arg(long, default_value_t = SizeLimits::default().max_revision_bytes, value_name = "BYTES")]
    pub max_revision_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Installs the log subscriber (stderr, so command output stays clean).
pub fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Schema => {
            print!("{}", manifest::schema::manifest_schema_json());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let limits = Limits {
        size: SizeLimits {
            max_file_bytes: args.max_file_size,
            max_revision_bytes: args.max_revision_size,
        },
        ..Limits::default()
    };
    let entries = source::dir::read_entries(&args.dir, limits.size)
        .with_context(|| format!("cannot validate {}", args.dir.display()))?;
    let (diagnostics, summary, code) = match manifest::load(&entries, &limits) {
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
            let plural = if errors == 1 { "" } else { "s" };
            let summary = format!("{}: invalid — {errors} error{plural}", args.dir.display());
            (diagnostics, summary, ExitCode::from(1))
        }
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &diagnostics)?;
            writeln!(out)?;
        }
        Format::Text => print_text(&mut out, &diagnostics, &summary)?,
    }
    Ok(code)
}

fn print_text(
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
