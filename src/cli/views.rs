//! The CLI's views of a running agent, read from its API: deployments, one deployment, events,
//! logs, revisions, the overall status, deliveries, versions, and `wait` — the primitive a CI
//! job runs after a push. Each view prints in the output `-o` picks (`render`); tables are
//! built from the API's typed DTOs (`api::dto`), so a status or field this CLI does not know
//! fails loudly instead of printing a blank cell, while `json`/`yaml` print the API's document
//! as it was sent.
//!
//! `--watch` and `--follow` ask the API to hold each request until its answer changes
//! (`If-None-Match` + `wait`, see `api::held`), so a watching terminal costs the agent nothing
//! while nothing changes; Ctrl-C ends them with exit code 0. The API's address comes from
//! `--api` or `KEEL_API` (read by clap), its token from `KEEL_TOKEN` (read by `config`).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::render::{age, optional, paint, render, short, table_maybe_wide, Output, Style, View};
use crate::api::client::{self, Reply};
use crate::api::dto::{
    ClearedRuns, DeliveryPage, DeploymentDetail, DeploymentSummary, EventDto, EventPage,
    NamespaceDto, RevisionDetail, RevisionDto, RunPage, SourceDto, VersionDto,
};
use crate::model::status::RevisionState;

/// How long the API holds a watching request before answering "unchanged" (below its cap).
const HOLD: Duration = Duration::from_secs(25);

/// Where the agent's API is.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The agent's API (its token, when it needs one, from KEEL_TOKEN).
    #[arg(
        long,
        env = "KEEL_API",
        default_value = "http://127.0.0.1:7878",
        value_name = "URL"
    )]
    pub api: String,
}

/// One deployment: `NAMESPACE/NAME`, or `NAME` with `-n NAMESPACE`.
#[derive(Debug, Args)]
pub struct Target {
    /// NAMESPACE/NAME (or NAME with -n NAMESPACE)
    pub deployment: String,
    /// The namespace, when DEPLOYMENT is a bare name.
    #[arg(long, short, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

impl Target {
    /// The API path of this deployment, and of `rest` below it (`/events`, `/runs?limit=5`).
    pub fn path(&self, rest: &str) -> anyhow::Result<String> {
        let (namespace, name) = self.id()?;
        Ok(format!(
            "/v1/deployments/{}/{}{rest}",
            crate::api::percent_encode(namespace),
            crate::api::percent_encode(name)
        ))
    }

    /// (namespace, name).
    pub fn id(&self) -> anyhow::Result<(&str, &str)> {
        match (self.deployment.split_once('/'), self.namespace.as_deref()) {
            (Some((ns, name)), given) if !ns.is_empty() && !name.is_empty() => match given {
                Some(other) if other != ns => {
                    bail!("{} is in namespace {ns}, not {other}", self.deployment)
                }
                Some(_) | None => Ok((ns, name)),
            },
            (None, Some(ns)) if !self.deployment.is_empty() && !ns.is_empty() => {
                Ok((ns, &self.deployment))
            }
            (Some(_), _) | (None, _) => bail!(
                "{:?} is not NAMESPACE/NAME (or give NAME with -n NAMESPACE)",
                self.deployment
            ),
        }
    }
}

/// Which namespaces a list shows: every one (the default) or the one `-n` names.
#[derive(Debug, Args)]
pub struct Namespaces {
    /// Only this namespace.
    #[arg(long, short, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Every namespace (the default; kubectl users type it by habit).
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Only deployments in this status (repeat for several).
    #[arg(long)]
    pub status: Vec<String>,
    #[command(flatten)]
    pub namespaces: Namespaces,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    /// Print the list again each time it changes, until Ctrl-C.
    #[arg(long, short)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct DeploymentArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub target: Target,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
    /// Print it again each time it changes, until Ctrl-C.
    #[arg(long, short)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub target: Target,
    /// Keep printing new events as they happen, until Ctrl-C (`-o json`: one JSON object per
    /// line, JSON Lines).
    #[arg(long, short)]
    pub follow: bool,
    /// How many of the latest events to show first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// How to print them: `json` is one JSON array (JSON Lines with --follow).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub target: Target,
    /// The instance: a container id (or its prefix); default the newest generation's first.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// Keep printing what it prints, until it ends or Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
    /// Only output since then: a duration back from now (`10m`, `2h`) or an RFC 3339 time
    /// (containers; a VM's serial console has no times).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub namespaces: Namespaces,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Only deliveries in this state: pending, delivered or dead.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this endpoint (`webhook:<url>` or `forge`).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// How many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub target: Target,
    /// How many of the latest runs.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Only runs older than this run number (to page back).
    #[arg(long, value_name = "RUN")]
    pub before: Option<u64>,
    /// How to print them.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ClearRunsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The rolled-back revision (commit SHA or content hash), or a quarantined twin of it.
    pub revision: String,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The revision (commit SHA or content hash) to wait for.
    pub revision: String,
    /// Give up after this long (exit 1), e.g. 90s, 10m.
    #[arg(long, default_value = "10m")]
    pub timeout: crate::model::units::Duration,
    /// How often to ask.
    #[arg(long, default_value = "1s")]
    pub interval: crate::model::units::Duration,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Only this program's version; do not ask the agent.
    #[arg(long)]
    pub client: bool,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// Runs an async view on a small runtime of its own.
fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Writes what a view rendered to stdout. A reader that went away (`| head`) ends the output
/// quietly, as it does for other Unix tools.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Runs a view that goes on until Ctrl-C, which ends it with exit code 0.
fn until_interrupted(
    f: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    block_on(async {
        tokio::select! {
            done = f => done,
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    })
}

/// `GET path` (holding `held`, the ETag of the copy this client has): a 200 or 304, or the
/// API's problem as an error with its detail.
async fn request(api: &ApiArgs, path: &str, held: Option<&str>) -> anyhow::Result<Reply> {
    let token = crate::config::api_token_from_env();
    let reply = client::get_unless(&api.api, path, token.as_deref(), held).await?;
    match reply.status {
        200 | 304 => Ok(reply),
        _ => Err(problem(path, &reply)),
    }
}

/// An answer other than 200/304 as an error: its status and the problem's detail.
fn problem(path: &str, reply: &Reply) -> anyhow::Error {
    let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let detail = body["detail"].as_str().unwrap_or(reply.body.trim());
    anyhow::anyhow!("{path}: {} — {detail}", reply.status)
}

/// A 200's JSON, and the same decoded as the API's typed DTO.
fn decode<T: DeserializeOwned>(path: &str, body: &str) -> anyhow::Result<(Value, T)> {
    let raw: Value = serde_json::from_str(body)
        .with_context(|| format!("{path}: not JSON ({})", body.trim()))?;
    let typed = T::deserialize(&raw)
        .with_context(|| format!("{path}: the API answered a shape this keel does not know"))?;
    Ok((raw, typed))
}

/// GETs `path`: its JSON as the API sent it and decoded as the API's typed DTO.
async fn fetch<T: DeserializeOwned>(api: &ApiArgs, path: &str) -> anyhow::Result<(Value, T)> {
    let reply = request(api, path, None).await?;
    decode(path, &reply.body)
}

/// The answer to `path` (which asks the API to hold it) once it differs from the copy tagged
/// `etag`, whose tag then replaces `etag`. An agent that does not hold requests (one too old:
/// it answers at once, `304` or without a new tag) is asked at most once a second, never in a
/// busy loop. While the agent cannot be reached (a restart), it is asked again with a growing
/// pause, said once on stderr; the API's own refusals (404, 401) end the watch.
async fn next_change(
    api: &ApiArgs,
    path: &str,
    etag: &mut Option<String>,
) -> anyhow::Result<Reply> {
    let mut pause = Duration::from_secs(1);
    let mut said = false;
    loop {
        let asked = tokio::time::Instant::now();
        let answered =
            tokio::time::timeout(HOLD + ANSWER_GRACE, request(api, path, etag.as_deref()));
        let reply = match answered.await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) if !unreachable(&error) => return Err(error),
            Ok(Err(error)) => {
                if !said {
                    eprintln!("keel: {error:#}; trying again");
                    said = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(_) => continue,
        };
        if said {
            eprintln!("keel: the agent answers again");
        }
        let fresh = reply.status == 200 && reply.etag.is_some() && reply.etag != *etag;
        if !fresh {
            tokio::time::sleep_until(asked + Duration::from_secs(1)).await;
        }
        if reply.status == 200 {
            etag.clone_from(&reply.etag);
            return Ok(reply);
        }
        said = false;
    }
}

/// How long past `HOLD` an answer may take before the request is made again.
const ANSWER_GRACE: Duration = Duration::from_secs(15);

/// Whether an error means the agent could not be reached (not that it refused).
fn unreachable(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<client::ClientError>()
        .is_some_and(|e| {
            matches!(
                e,
                client::ClientError::Connect { .. }
                    | client::ClientError::Malformed(_)
                    | client::ClientError::Cut(_)
            )
        })
}

/// A reply's JSON and, when it links a next page, every following page's items after it.
async fn all_pages(api: &ApiArgs, path: &str, first: Reply) -> anyhow::Result<Value> {
    let (mut document, _) = decode::<Value>(path, &first.body)?;
    let mut next = first.next;
    while let Some(page) = next.take() {
        let reply = request(api, &page, None).await?;
        let (more, _) = decode::<Value>(&page, &reply.body)?;
        if let (Value::Array(items), Value::Array(more)) = (&mut document, more) {
            items.extend(more);
        }
        next = reply.next;
    }
    Ok(document)
}

/// Prints a view once, or (`watch`) again each time the API's answer to `path` changes. The
/// answer is decoded as the API's typed DTO `T`, and `view` pairs it with the JSON as sent.
fn show<T: DeserializeOwned, V: View>(
    api: &ApiArgs,
    path: &str,
    output: Output,
    watch: bool,
    view: impl Fn(Value, T) -> V,
) -> anyhow::Result<ExitCode> {
    let build = |raw: Value| -> anyhow::Result<V> {
        let typed = T::deserialize(&raw)
            .with_context(|| format!("{path}: the API answered a shape this keel does not know"))?;
        Ok(view(raw, typed))
    };
    let style = Style::for_stdout();
    if !watch {
        let view = block_on(async {
            let reply = request(api, path, None).await?;
            build(all_pages(api, path, reply).await?)
        })?;
        emit(&render(&view, output, style, false))?;
        return Ok(ExitCode::SUCCESS);
    }
    let separator = if path.contains('?') { '&' } else { '?' };
    let held_path = format!("{path}{separator}wait={}s", HOLD.as_secs());
    until_interrupted(async {
        let mut etag: Option<String> = None;
        let mut last: Option<String> = None;
        loop {
            let reply = next_change(api, &held_path, &mut etag).await?;
            let view = build(all_pages(api, path, reply).await?)?;
            let text = render(&view, output, style, true);
            // A new tag can carry what is already shown (a change elsewhere in the list).
            if last.as_deref() == Some(text.as_str()) {
                continue;
            }
            let shown = match output {
                Output::Table | Output::Wide if style.redraws() => format!("\x1b[H\x1b[2J{text}"),
                Output::Table | Output::Wide if last.is_some() => format!("\n{text}"),
                Output::Table | Output::Wide | Output::Json | Output::Yaml | Output::Name => {
                    text.clone()
                }
            };
            emit(&shown)?;
            last = Some(text);
        }
    })
}

/// `GET /v1/deployments`.
struct DeploymentList {
    raw: Value,
    list: Vec<DeploymentSummary>,
}

impl View for DeploymentList {
    fn document(&self) -> &Value {
        &self.raw
    }

    fn names(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|d| format!("{}/{}", d.namespace, d.name))
            .collect()
    }

    fn text(&self, style: Style, wide: bool) -> String {
        let rows = self.list.iter().map(|d| {
            let cells = vec![
                d.namespace.clone(),
                d.name.clone(),
                d.kind.clone(),
                paint(style, d.status),
                optional(d.health.map(|h| paint(style, h))),
                format!("{}/{}", d.ready, d.desired),
                d.restart_count.to_string(),
                age(&d.created_at),
            ];
            let extra = vec![
                d.runtime.clone(),
                optional(d.image.clone()),
                short(&d.revision, 12),
                optional(Some(d.ips.join(",")).filter(|ips| !ips.is_empty())),
            ];
            (cells, extra)
        });
        table_maybe_wide(
            wide,
            &[
                "NAMESPACE",
                "NAME",
                "KIND",
                "STATUS",
                "HEALTH",
                "READY",
                "RESTARTS",
                "AGE",
            ],
            &["RUNTIME", "IMAGE", "REVISION", "IPS"],
            rows.collect(),
        )
    }
}

pub fn deployments(args: &DeploymentsArgs) -> anyhow::Result<ExitCode> {
    let mut query: Vec<String> = args
        .status
        .iter()
        .map(|s| format!("status={}", crate::api::percent_encode(s)))
        .collect();
    query.extend(
        args.namespaces
            .namespace
            .iter()
            .map(|n| format!("namespace={}", crate::api::percent_encode(n))),
    );
    if args.watch {
        // One page holds what a watch compares (the API's largest page).
        query.push("limit=5000".to_owned());
    }
    let path = format!(
        "/v1/deployments{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    show(&args.api, &path, args.output, args.watch, |raw, list| {
        DeploymentList { raw, list }
    })
}

/// `GET /v1/deployments/{namespace}/{name}`.
struct OneDeployment {
    raw: Value,
    detail: DeploymentDetail,
}

impl View for OneDeployment {
    fn document(&self) -> &Value {
        &self.raw
    }

    fn names(&self) -> Vec<String> {
        let s = &self.detail.summary;
        vec![format!("{}/{}", s.namespace, s.name)]
    }

    fn text(&self, style: Style, wide: bool) -> String {
        let d = &self.detail;
        let s = &d.summary;
        let mut out = format!(
            "Deployment:  {}/{} ({}, {})\n",
            s.namespace, s.name, s.kind, s.runtime
        );
        out += &format!("Image:       {}\n", optional(s.image.clone()));
        out += &format!(
            "Status:      {} since {}\n",
            paint(style, s.status),
            d.status_since
        );
        out += &format!(
            "Health:      {} ({}/{} ready)\n",
            optional(s.health.map(|h| paint(style, h))),
            s.ready,
            s.desired
        );
        out += &format!("Restarts:    {}\n", s.restart_count);
        if let Some(next) = &s.next_run_at {
            out += &format!("Next run:    {next}\n");
        }
        out += &format!("Generation:  {} (revision {})\n", s.generation, s.revision);
        if wide {
            out += &format!("Spec hash:   {}\n", d.spec_hash);
        }
        if let Some(waiting_on) = &d.waiting_on {
            out += &format!("Waiting on:  {waiting_on}\n");
        }
        out.push('\n');
        let rows = d.instances.iter().map(|i| {
            let id = match wide {
                true => i.id.clone(),
                false => short(&i.id, 12),
            };
            let cells = vec![
                optional(Some(id).filter(|id| !id.is_empty())),
                i.state.to_string(),
                optional(i.ip.clone()),
                i.started_at.as_deref().map_or_else(|| "-".to_owned(), age),
                optional(i.reason.clone()),
            ];
            let extra = vec![
                i.generation.to_string(),
                i.ordinal.to_string(),
                optional(i.exit_code.map(|c| c.to_string())),
            ];
            (cells, extra)
        });
        out + &table_maybe_wide(
            wide,
            &["INSTANCE", "STATE", "IP", "AGE", "REASON"],
            &["GENERATION", "ORDINAL", "EXIT"],
            rows.collect(),
        )
    }
}

pub fn deployment(args: &DeploymentArgs) -> anyhow::Result<ExitCode> {
    let path = args.target.path("")?;
    show(&args.api, &path, args.output, args.watch, |raw, detail| {
        OneDeployment { raw, detail }
    })
}

pub fn logs(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let (namespace, name) = args.target.id()?;
    let mut query = vec![format!("follow={}", args.follow)];
    if let Some(instance) = &args.instance {
        query.push(format!("instance={}", crate::api::percent_encode(instance)));
    }
    if let Some(since) = &args.since {
        query.push(format!("since={}", crate::api::percent_encode(since)));
    }
    if let Some(tail) = args.tail {
        query.push(format!("tail={tail}"));
    }
    let path = args.target.path(&format!("/logs?{}", query.join("&")))?;
    until_interrupted(async {
        let token = crate::config::api_token_from_env();
        let mut out = std::io::stdout();
        let refused = client::stream(&args.api.api, &path, token.as_deref(), |bytes| {
            out.write_all(bytes)?;
            out.flush()
        })
        .await?;
        match refused {
            None => Ok(ExitCode::SUCCESS),
            Some(reply) => Err(problem(&format!("{namespace}/{name}"), &reply)),
        }
    })
}

/// Events, oldest first, each with its JSON as the API sent it.
struct Events {
    raw: Value,
    events: Vec<EventDto>,
}

impl Events {
    /// The events of a page, oldest first.
    fn from_page(path: &str, body: &str) -> anyhow::Result<Self> {
        let (raw, page) = decode::<EventPage>(path, body)?;
        let sent = raw["events"].as_array().cloned().unwrap_or_default();
        let (mut raw, mut events): (Vec<Value>, Vec<EventDto>) =
            sent.into_iter().zip(page.events).unzip();
        raw.reverse();
        events.reverse();
        Ok(Self {
            raw: Value::Array(raw),
            events,
        })
    }

    /// Every event newer than `after`, oldest first: `first` (an answer of `base`, newest
    /// first) and, when all of it is newer, the older pages until `after` is reached — so
    /// that however many happened between two answers, none is lost.
    async fn after(api: &ApiArgs, base: &str, first: Reply, after: i64) -> anyhow::Result<Self> {
        let (mut raw, mut events) = (Vec::new(), Vec::new());
        let mut body = first.body;
        let mut path = base.to_owned();
        loop {
            let (page_raw, page) = decode::<EventPage>(&path, &body)?;
            let reached = page.events.iter().any(|e| e.id <= after);
            let sent = page_raw["events"].as_array().cloned().unwrap_or_default();
            for (r, e) in sent.into_iter().zip(page.events) {
                if e.id > after {
                    raw.push(r);
                    events.push(e);
                }
            }
            match (reached, page.next_before) {
                (false, Some(before)) => {
                    path = format!("{}?limit=500&before={before}", base_of(base));
                    body = request(api, &path, None).await?.body;
                }
                (true, _) | (false, None) => break,
            }
        }
        raw.reverse();
        events.reverse();
        Ok(Self {
            raw: Value::Array(raw),
            events,
        })
    }

    /// Every event as its own document (JSON Lines, YAML documents, one line each).
    fn print_streamed(&self, output: Output, style: Style) -> anyhow::Result<()> {
        let items = self.raw.as_array().cloned().unwrap_or_default();
        let mut text = String::new();
        for (raw, event) in items.into_iter().zip(&self.events) {
            text += &match output {
                Output::Json => format!("{raw}\n"),
                Output::Yaml => super::render::yaml_text(&raw),
                Output::Table | Output::Wide | Output::Name => {
                    let one = Events {
                        raw: Value::Array(vec![raw.clone()]),
                        events: vec![event.clone()],
                    };
                    render(&one, output, style, true)
                }
            };
        }
        emit(&text)
    }
}

impl View for Events {
    fn document(&self) -> &Value {
        &self.raw
    }

    fn names(&self) -> Vec<String> {
        self.events.iter().map(|e| e.id.to_string()).collect()
    }

    /// One line per event, fixed columns (a followed stream cannot be re-aligned).
    fn text(&self, _style: Style, wide: bool) -> String {
        self.events
            .iter()
            .map(|e| match wide {
                false => format!("{}  {:<22} {}\n", e.time, e.kind, e.message),
                true => format!(
                    "{}  {:<22} {:<28} {:<12} {}\n",
                    e.time,
                    e.kind,
                    e.reason,
                    short(e.revision.as_deref().unwrap_or("-"), 12),
                    e.message
                ),
            })
            .collect()
    }
}

pub fn events(args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let base = args.target.path("/events")?;
    let style = Style::for_stdout();
    let first = format!("{base}?limit={}", args.limit.clamp(1, 500));
    if !args.follow {
        let events = block_on(async {
            let reply = request(&args.api, &first, None).await?;
            Events::from_page(&first, &reply.body)
        })?;
        emit(&render(&events, args.output, style, false))?;
        return Ok(ExitCode::SUCCESS);
    }
    let held = format!("{base}?limit=500&wait={}s", HOLD.as_secs());
    until_interrupted(async {
        let reply = request(&args.api, &first, None).await?;
        let events = Events::from_page(&first, &reply.body)?;
        events.print_streamed(args.output, style)?;
        let mut last = events.events.last().map_or(0, |e| e.id);
        let mut etag = None;
        loop {
            let reply = next_change(&args.api, &held, &mut etag).await?;
            let fresh = Events::after(&args.api, &held, reply, last).await?;
            last = fresh.events.last().map_or(last, |e| e.id);
            fresh.print_streamed(args.output, style)?;
        }
    })
}

/// A path without its query.
fn base_of(path: &str) -> &str {
    path.split_once('?').map_or(path, |(base, _)| base)
}

/// `GET /v1/revisions`.
struct Revisions {
    raw: Value,
    list: Vec<RevisionDto>,
}

impl View for Revisions {
    fn document(&self) -> &Value {
        &self.raw
    }

    fn names(&self) -> Vec<String> {
        self.list.iter().map(|r| r.id.clone()).collect()
    }

    fn text(&self, style: Style, wide: bool) -> String {
        let rows = self.list.iter().map(|r| {
            let message = r.message.as_deref().unwrap_or("-").lines().next();
            let cells = vec![
                match wide {
                    true => r.id.clone(),
                    false => short(&r.id, 12),
                },
                paint(style, r.state),
                age(&r.received_at),
                short(message.unwrap_or_default(), 50),
            ];
            let extra = vec![
                optional(r.author.clone()),
                r.diagnostics.len().to_string(),
                optional(r.superseded_by.as_deref().map(|s| short(s, 12))),
            ];
            (cells, extra)
        });
        table_maybe_wide(
            wide,
            &["REVISION", "STATE", "AGE", "MESSAGE"],
            &["AUTHOR", "PROBLEMS", "SUPERSEDED BY"],
            rows.collect(),
        )
    }
}

pub fn revisions(args: &ListArgs) -> anyhow::Result<ExitCode> {
    show(
        &args.api,
        "/v1/revisions",
        args.output,
        false,
        |raw, list| Revisions { raw, list },
    )
}

/// The source, the latest revision and the namespaces (`-n`: one of them).
struct Status {
    raw: Value,
    source: SourceDto,
    revision: Option<RevisionDto>,
    namespaces: Vec<NamespaceDto>,
}

impl View for Status {
    fn document(&self) -> &Value {
        &self.raw
    }

    fn names(&self) -> Vec<String> {
        self.namespaces.iter().map(|n| n.name.clone()).collect()
    }

    fn text(&self, style: Style, wide: bool) -> String {
        let mut out = format!("Source:    {}\n", optional(self.source.source.clone()));
        if let Some(error) = &self.source.last_error {
            out += &format!("           last error: {error}\n");
        }
        out += &match &self.revision {
            Some(r) => format!("Revision:  {} {}\n", r.id, paint(style, r.state)),
            None => "Revision:  none yet\n".to_owned(),
        };
        out.push('\n');
        let rows = self.namespaces.iter().map(|n| {
            let by_status: Vec<String> = n
                .by_status
                .iter()
                .map(|(status, count)| format!("{status}={count}"))
                .collect();
            (
                vec![
                    n.name.clone(),
                    paint(style, n.status),
                    n.deployments.to_string(),
                ],
                vec![by_status.join(",")],
            )
        });
        out + &table_maybe_wide(
            wide,
            &["NAMESPACE", "STATUS", "DEPLOYMENTS"],
            &["BY STATUS"],
            rows.collect(),
        )
    }
}

pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let api = &args.api;
    let ((raw_source, source), (raw_revisions, revisions), (raw_namespaces, namespaces)) =
        block_on(async {
            Ok((
                fetch::<SourceDto>(api, "/v1/source").await?,
                fetch::<Vec<RevisionDto>>(api, "/v1/revisions?limit=1").await?,
                fetch::<Vec<NamespaceDto>>(api, "/v1/namespaces").await?,
            ))
        })?;
    let only = args.namespaces.namespace.as_deref();
    let keep = |name: &str| only.is_none_or(|n| n == name);
    let raw_namespaces: Vec<Value> = raw_namespaces
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| keep(n["name"].as_str().unwrap_or_default()))
        .collect();
    let view = Status {
        raw: serde_json::json!({"source": raw_source, "revision": raw_revisions.get(0), "namespaces": raw_namespaces}),
        source,
        revision: revisions.into_iter().next(),
        namespaces: namespaces.into_iter().filter(|n| keep(&n.name)).collect(),
    };
    emit(&render(&view, args.output, Style::for_stdout(), false))?;
    Ok(ExitCode::SUCCESS)
}

/// `GET /v1/deliveries`.
struct Deliveries {
    raw: Value,
    page: DeliveryPage,
}

impl View for Deliveries {
    fn document(&self) -> &Value {
        &self.raw
    }

    fn names(&self) -> Vec<String> {
        self.page.deliveries.iter().map(|d| d.id.clone()).collect()
    }

    fn text(&self, style: Style, wide: bool) -> String {
        let rows = self.page.deliveries.iter().map(|d| {
            let cells = vec![
                d.id.clone(),
                d.endpoint.clone(),
                d.kind.clone(),
                paint(style, d.state),
                d.attempts.to_string(),
                age(&d.created_at),
                optional(d.last_error.clone()),
            ];
            let extra = vec![
                optional(d.last_status.map(|s| s.to_string())),
                optional(d.next_attempt_at.clone()),
            ];
            (cells, extra)
        });
        table_maybe_wide(
            wide,
            &[
                "ID",
                "ENDPOINT",
                "TYPE",
                "STATE",
                "ATTEMPTS",
                "AGE",
                "LAST ERROR",
            ],
            &["LAST STATUS", "NEXT ATTEMPT"],
            rows.collect(),
        )
    }
}

pub fn deliveries(args: &DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let mut query = vec![format!("limit={}", args.limit.clamp(1, 500))];
    query.extend(args.state.iter().map(|s| format!("state={s}")));
    query.extend(
        args.endpoint
            .iter()
            .map(|e| format!("endpoint={}", crate::api::percent_encode(e))),
    );
    let path = format!("/v1/deliveries?{}", query.join("&"));
    show(&args.api, &path, args.output, false, |raw, page| {
        Deliveries { raw, page }
    })
}

/// `GET /v1/deployments/{namespace}/{name}/runs`.
struct Runs {
    raw: Value,
    page: RunPage,
}

impl View for Runs {
    fn document(&self) -> &Value {
        &self.raw
    }

    fn names(&self) -> Vec<String> {
        self.page.runs.iter().map(|r| r.run.to_string()).collect()
    }

    fn text(&self, style: Style, wide: bool) -> String {
        let rows = self.page.runs.iter().map(|r| {
            let cells = vec![
                r.run.to_string(),
                paint(style, r.outcome),
                r.due_at.clone(),
                r.started_at.as_deref().map_or_else(|| "-".to_owned(), age),
                optional(r.duration_ms.map(super::render::took)),
                optional(r.exit_code.map(|c| c.to_string())),
                optional(r.reason.clone()),
            ];
            let extra = vec![r.generation.to_string(), optional(r.cleared_at.clone())];
            (cells, extra)
        });
        table_maybe_wide(
            wide,
            &["RUN", "OUTCOME", "DUE", "STARTED", "TOOK", "EXIT", "REASON"],
            &["GENERATION", "CLEARED"],
            rows.collect(),
        )
    }
}

pub fn runs(args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let before = args
        .before
        .map(|b| format!("&before={b}"))
        .unwrap_or_default();
    let path = args
        .target
        .path(&format!("/runs?limit={}{before}", args.limit.clamp(1, 500)))?;
    show(&args.api, &path, args.output, false, |raw, page| Runs {
        raw,
        page,
    })
}

/// Clears a cron job's failed runs (with an admin token in KEEL_TOKEN).
pub fn clear_runs(args: &ClearRunsArgs) -> anyhow::Result<ExitCode> {
    let (namespace, name) = args.target.id()?;
    let path = args.target.path("/runs/clear")?;
    let token = crate::config::api_token_from_env();
    let reply =
        block_on(async { Ok(client::post(&args.api.api, &path, token.as_deref()).await?) })?;
    if reply.status != 200 {
        return Err(problem(&format!("{namespace}/{name}"), &reply));
    }
    let (_, cleared) = decode::<ClearedRuns>(&path, &reply.body)?;
    let n = cleared.cleared;
    emit(&format!(
        "cleared {n} failed run{} of {namespace}/{name}\n",
        if n == 1 { "" } else { "s" }
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Retries a rolled-back revision's desired state (with an admin token in KEEL_TOKEN).
pub fn retry(args: &RetryArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/revisions/{}/retry", args.revision);
    let token = crate::config::api_token_from_env();
    let reply =
        block_on(async { Ok(client::post(&args.api.api, &path, token.as_deref()).await?) })?;
    if reply.status != 200 {
        return Err(problem(&args.revision, &reply));
    }
    let (_, revision) = decode::<RevisionDto>(&path, &reply.body)?;
    emit(&format!(
        "revision {} applied again ({}); follow it with: keel wait {}\n",
        revision.id, revision.state, revision.id
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// This program's version and, when asked and reachable, the agent's.
struct Versions {
    raw: Value,
    client: VersionDto,
    agent: Option<VersionDto>,
    api: String,
}

impl View for Versions {
    fn document(&self) -> &Value {
        &self.raw
    }

    fn names(&self) -> Vec<String> {
        std::iter::once(&self.client)
            .chain(&self.agent)
            .map(|v| v.version.clone())
            .collect()
    }

    fn text(&self, _style: Style, _wide: bool) -> String {
        let line = |v: &VersionDto| format!("keel {} (build {})", v.version, v.build);
        let mut out = format!("Client:  {}\n", line(&self.client));
        if let Some(agent) = &self.agent {
            out += &format!("Agent:   {} at {}\n", line(agent), self.api);
        }
        out
    }
}

pub fn version(args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let client = VersionDto::current();
    let agent = match args.client {
        true => Ok(None),
        false => block_on(agent_version(&args.api)).map(Some),
    };
    let reached = agent.as_ref().ok().cloned().flatten();
    let mut raw = serde_json::json!({ "client": client });
    if !args.client {
        raw["agent"] = serde_json::to_value(&reached)?;
    }
    let view = Versions {
        raw,
        client,
        agent: reached,
        api: args.api.api.clone(),
    };
    emit(&render(&view, args.output, Style::for_stdout(), false))?;
    match agent {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("error: {error:#} (--client shows this program's version alone)");
            Ok(ExitCode::from(1))
        }
    }
}

/// The agent's version: `/v1/version`, or from an agent older than it, its OpenAPI
/// document's `info.version` (build unknown).
async fn agent_version(api: &ApiArgs) -> anyhow::Result<VersionDto> {
    let token = crate::config::api_token_from_env();
    let reply = client::get(&api.api, "/v1/version", token.as_deref()).await?;
    match reply.status {
        200 => Ok(decode::<VersionDto>("/v1/version", &reply.body)?.1),
        404 => {
            let (document, _) = fetch::<Value>(api, "/openapi.json").await?;
            let version = document["info"]["version"]
                .as_str()
                .context("the agent's OpenAPI document names no version")?;
            Ok(VersionDto {
                version: version.to_owned(),
                build: "unknown".to_owned(),
            })
        }
        _ => Err(problem("/v1/version", &reply)),
    }
}

/// Exit 0 when the revision succeeded; 1 when it failed, is invalid or superseded, or on timeout.
pub fn wait(args: &WaitArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let started = Instant::now();
        let mut last_state = String::new();
        loop {
            let token = crate::config::api_token_from_env();
            let reply = client::get(
                &args.api.api,
                &format!("/v1/revisions/{}", args.revision),
                token.as_deref(),
            )
            .await?;
            let revision = match reply.status {
                200 => Some(serde_json::from_str::<RevisionDetail>(&reply.body)?.revision),
                404 => None,
                other => bail!("the API answered {other}: {}", reply.body.trim()),
            };
            let state = revision.as_ref().map(|r| r.state);
            let said = revision
                .as_ref()
                .map_or_else(|| "not seen yet".to_owned(), RevisionDto::described_state);
            if said != last_state {
                eprintln!("revision {}: {said}", args.revision);
                last_state = said.clone();
            }
            match state {
                Some(RevisionState::Succeeded) => return Ok(ExitCode::SUCCESS),
                Some(
                    RevisionState::Failed
                    | RevisionState::Invalid
                    | RevisionState::Superseded
                    | RevisionState::RolledBack
                    | RevisionState::Quarantined,
                ) => return Ok(ExitCode::from(1)),
                Some(RevisionState::Queued | RevisionState::Applying) | None => {}
            }
            if started.elapsed() >= args.timeout.to_std() {
                eprintln!(
                    "gave up after {}: revision {} is still {said}",
                    args.timeout, args.revision
                );
                return Ok(ExitCode::from(1));
            }
            tokio::time::sleep(args.interval.to_std()).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(deployment: &str, namespace: Option<&str>) -> Target {
        Target {
            deployment: deployment.to_owned(),
            namespace: namespace.map(str::to_owned),
        }
    }

    #[test]
    fn a_deployment_is_namespace_slash_name_or_a_name_with_its_namespace() {
        assert_eq!(target("demo/web", None).id().unwrap(), ("demo", "web"));
        assert_eq!(target("web", Some("demo")).id().unwrap(), ("demo", "web"));
        assert_eq!(
            target("demo/web", Some("demo")).id().unwrap(),
            ("demo", "web")
        );
        for (bad, ns) in [
            ("web", None),
            ("/web", None),
            ("demo/", None),
            ("demo/web", Some("other")),
        ] {
            assert!(target(bad, ns).id().is_err(), "{bad} -n {ns:?}");
        }
    }
}
