//! The CLI's views of a running agent, read from its API: deployments, one deployment, events,
//! revisions, the overall status, and `wait` — the primitive a CI job runs after a push.
//! Tables for people (colours only on a terminal), `-o json` for scripts (the API's JSON as is).
//! Tables are built from the API's typed DTOs (`api::dto`), so a status or field this CLI does
//! not know fails loudly instead of printing a blank cell.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::client;
use crate::api::dto::{
    DeliveryPage, DeploymentDetail, DeploymentSummary, EventDto, EventPage, NamespaceDto,
    RevisionDetail, RevisionDto, SourceDto,
};
use crate::model::delivery::DeliveryState;
use crate::model::status::{DeploymentStatus, Health, NamespaceStatus, RevisionState};

/// Where the agent's API is.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The agent's API (token from KEEL_TOKEN).
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:7878",
        value_name = "URL"
    )]
    pub api: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    /// Only deployments in this status (repeat for several).
    #[arg(long)]
    pub status: Vec<String>,
    /// Only this namespace.
    #[arg(long, short)]
    pub namespace: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DeploymentArgs {
    /// NAMESPACE/NAME
    pub deployment: String,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// NAMESPACE/NAME
    pub deployment: String,
    /// Keep printing new events as they happen.
    #[arg(long, short)]
    pub follow: bool,
    /// How many of the latest events to show first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// NAMESPACE/NAME
    pub deployment: String,
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
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Only deliveries in this state: pending, delivered or dead.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this endpoint (`webhook:<url>` or `forge`).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// How many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The revision (commit SHA or content hash) to wait for.
    pub revision: String,
    /// Give up after this long (exit 1), e.g. 90s, 10m.
    #[arg(long, default_value = "10m")]
    pub timeout: crate::model::units::Duration,
    /// How often to ask.
    #[arg(long, default_value = "1s")]
    pub interval: crate::model::units::Duration,
}

/// Runs an async view on a small runtime of its own.
fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// GETs `path`: its JSON as the API sent it (for `-o json`) and decoded as the API's typed
/// DTO (for tables), turning problems into errors with their detail.
async fn fetch<T: DeserializeOwned>(api: &ApiArgs, path: &str) -> anyhow::Result<(Value, T)> {
    let (body, typed, _) = fetch_page(api, path).await?;
    Ok((body, typed))
}

/// One answer: its JSON, decoded, and the path of the next page when the API links one.
async fn fetch_page<T: DeserializeOwned>(
    api: &ApiArgs,
    path: &str,
) -> anyhow::Result<(Value, T, Option<String>)> {
    let token = crate::config::api_token_from_env();
    let reply = client::get(&api.api, path, token.as_deref()).await?;
    let body: Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("{path}: not JSON ({} {})", reply.status, reply.body.trim()))?;
    if reply.status != 200 {
        let detail = body["detail"].as_str().unwrap_or("no detail");
        bail!("{path}: {} — {detail}", reply.status);
    }
    let typed = T::deserialize(&body)
        .with_context(|| format!("{path}: the API answered a shape this keel does not know"))?;
    Ok((body, typed, reply.next))
}

/// A paged list, every page of it (the API links each page to the next).
async fn fetch_all_pages(
    api: &ApiArgs,
    path: &str,
) -> anyhow::Result<(Value, Vec<DeploymentSummary>)> {
    let (mut raw, mut list) = (Vec::new(), Vec::new());
    let mut next = Some(path.to_owned());
    while let Some(path) = next.take() {
        let (page, typed, link) = fetch_page::<Vec<DeploymentSummary>>(api, &path).await?;
        raw.extend(page.as_array().cloned().unwrap_or_default());
        list.extend(typed);
        next = link;
    }
    Ok((Value::Array(raw), list))
}

fn print_json(value: &Value) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn deployments(api: &ApiArgs, args: &DeploymentsArgs) -> anyhow::Result<ExitCode> {
    let mut query: Vec<String> = args.status.iter().map(|s| format!("status={s}")).collect();
    query.extend(args.namespace.iter().map(|n| format!("namespace={n}")));
    let path = format!(
        "/v1/deployments{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let (raw, list) = block_on(fetch_all_pages(api, &path))?;
    if args.output == Output::Json {
        return print_json(&raw);
    }
    let rows = list.iter().map(|d| {
        vec![
            d.namespace.clone(),
            d.name.clone(),
            d.kind.clone(),
            paint(d.status),
            optional(d.health.map(paint)),
            format!("{}/{}", d.ready, d.desired),
            d.restart_count.to_string(),
            age(&d.created_at),
        ]
    });
    table(
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
        rows.collect(),
    )
}

pub fn deployment(api: &ApiArgs, args: &DeploymentArgs) -> anyhow::Result<ExitCode> {
    let (namespace, name) = split_id(&args.deployment)?;
    let path = format!("/v1/deployments/{namespace}/{name}");
    let (raw, d) = block_on(fetch::<DeploymentDetail>(api, &path))?;
    if args.output == Output::Json {
        return print_json(&raw);
    }
    let s = &d.summary;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Deployment:  {namespace}/{name} ({}, {})",
        s.kind, s.runtime
    )?;
    writeln!(
        out,
        "Status:      {} since {}",
        paint(s.status),
        d.status_since
    )?;
    writeln!(
        out,
        "Health:      {} ({}/{} ready)",
        optional(s.health.map(paint)),
        s.ready,
        s.desired
    )?;
    writeln!(out, "Restarts:    {}", s.restart_count)?;
    writeln!(
        out,
        "Generation:  {} (revision {})",
        s.generation, s.revision
    )?;
    if let Some(waiting_on) = &d.waiting_on {
        writeln!(out, "Waiting on:  {waiting_on}")?;
    }
    writeln!(out)?;
    drop(out);
    let rows = d.instances.iter().map(|i| {
        vec![
            optional(Some(i.id.chars().take(12).collect::<String>()).filter(|id| !id.is_empty())),
            i.state.to_string(),
            optional(i.ip.clone()),
            i.started_at.as_deref().map_or_else(|| "-".to_owned(), age),
            optional(i.reason.clone()),
        ]
    });
    table(
        &["INSTANCE", "STATE", "IP", "AGE", "REASON"],
        rows.collect(),
    )
}

pub fn logs(api: &ApiArgs, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let (namespace, name) = split_id(&args.deployment)?;
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
    let path = format!(
        "/v1/deployments/{namespace}/{name}/logs?{}",
        query.join("&")
    );
    block_on(async {
        let token = crate::config::api_token_from_env();
        let mut out = std::io::stdout();
        let refused = client::stream(&api.api, &path, token.as_deref(), |bytes| {
            out.write_all(bytes)?;
            out.flush()
        })
        .await?;
        match refused {
            None => Ok(ExitCode::SUCCESS),
            Some(reply) => {
                let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
                let detail = body["detail"].as_str().unwrap_or(reply.body.trim());
                bail!("{} {}/{}: {detail}", reply.status, namespace, name)
            }
        }
    })
}

pub fn events(api: &ApiArgs, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let (namespace, name) = split_id(&args.deployment)?;
    let base = format!("/v1/deployments/{namespace}/{name}/events");
    block_on(async {
        let path = format!("{base}?limit={}", args.limit.clamp(1, 500));
        let (raw, page) = fetch::<EventPage>(api, &path).await?;
        let mut events = paired(&raw, page.events);
        events.reverse();
        let mut last = events.last().map_or(0, |(_, e)| e.id);
        print_events(&events, args.output)?;
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (raw, page) = fetch::<EventPage>(api, &format!("{base}?limit=500")).await?;
            let mut fresh: Vec<(Value, EventDto)> = paired(&raw, page.events)
                .into_iter()
                .filter(|(_, e)| e.id > last)
                .collect();
            fresh.reverse();
            last = fresh.last().map_or(last, |(_, e)| e.id);
            print_events(&fresh, args.output)?;
        }
    })
}

/// Each event of a page with its JSON as the API sent it.
fn paired(raw: &Value, events: Vec<EventDto>) -> Vec<(Value, EventDto)> {
    let sent = raw["events"].as_array().cloned().unwrap_or_default();
    sent.into_iter().zip(events).collect()
}

fn print_events(events: &[(Value, EventDto)], output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (raw, e) in events {
        match output {
            Output::Json => writeln!(out, "{raw}")?,
            Output::Table => writeln!(out, "{}  {:<22} {}", e.time, e.kind, e.message)?,
        }
    }
    Ok(())
}

pub fn revisions(api: &ApiArgs, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let (raw, list) = block_on(fetch::<Vec<RevisionDto>>(api, "/v1/revisions"))?;
    if args.output == Output::Json {
        return print_json(&raw);
    }
    let rows = list.iter().map(|r| {
        let message = r
            .message
            .as_deref()
            .unwrap_or("-")
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(50)
            .collect();
        vec![
            r.id.chars().take(12).collect(),
            paint(r.state),
            age(&r.received_at),
            message,
        ]
    });
    table(&["REVISION", "STATE", "AGE", "MESSAGE"], rows.collect())
}

pub fn status(api: &ApiArgs, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let ((raw_source, source), (raw_revisions, revisions), (raw_namespaces, namespaces)) =
        block_on(async {
            Ok((
                fetch::<SourceDto>(api, "/v1/source").await?,
                fetch::<Vec<RevisionDto>>(api, "/v1/revisions?limit=1").await?,
                fetch::<Vec<NamespaceDto>>(api, "/v1/namespaces").await?,
            ))
        })?;
    if args.output == Output::Json {
        return print_json(
            &serde_json::json!({"source": raw_source, "revision": raw_revisions.get(0), "namespaces": raw_namespaces}),
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "Source:    {}", optional(source.source))?;
    if let Some(error) = &source.last_error {
        writeln!(out, "           last error: {error}")?;
    }
    match revisions.first() {
        Some(r) => writeln!(out, "Revision:  {} {}", r.id, paint(r.state))?,
        None => writeln!(out, "Revision:  none yet")?,
    }
    writeln!(out)?;
    drop(out);
    let rows = namespaces
        .iter()
        .map(|n| vec![n.name.clone(), paint(n.status), n.deployments.to_string()]);
    table(&["NAMESPACE", "STATUS", "DEPLOYMENTS"], rows.collect())
}

pub fn deliveries(api: &ApiArgs, args: &DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let mut query = vec![format!("limit={}", args.limit.clamp(1, 500))];
    query.extend(args.state.iter().map(|s| format!("state={s}")));
    query.extend(
        args.endpoint
            .iter()
            .map(|e| format!("endpoint={}", crate::api::percent_encode(e))),
    );
    let path = format!("/v1/deliveries?{}", query.join("&"));
    let (raw, page) = block_on(fetch::<DeliveryPage>(api, &path))?;
    if args.output == Output::Json {
        return print_json(&raw);
    }
    let rows = page.deliveries.iter().map(|d| {
        vec![
            d.id.clone(),
            d.endpoint.clone(),
            d.kind.clone(),
            paint(d.state),
            d.attempts.to_string(),
            age(&d.created_at),
            optional(d.last_error.clone()),
        ]
    });
    table(
        &[
            "ID",
            "ENDPOINT",
            "TYPE",
            "STATE",
            "ATTEMPTS",
            "AGE",
            "LAST ERROR",
        ],
        rows.collect(),
    )
}

/// Exit 0 when the revision succeeded; 1 when it failed, is invalid or superseded, or on timeout.
pub fn wait(api: &ApiArgs, args: &WaitArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let started = Instant::now();
        let mut last_state = String::new();
        loop {
            let token = crate::config::api_token_from_env();
            let reply = client::get(
                &api.api,
                &format!("/v1/revisions/{}", args.revision),
                token.as_deref(),
            )
            .await?;
            let state = match reply.status {
                200 => Some(
                    serde_json::from_str::<RevisionDetail>(&reply.body)?
                        .revision
                        .state,
                ),
                404 => None,
                other => bail!("the API answered {other}: {}", reply.body.trim()),
            };
            let said = state.map_or_else(|| "not seen yet".to_owned(), |s| s.to_string());
            if said != last_state {
                eprintln!("revision {}: {said}", args.revision);
                last_state = said.clone();
            }
            match state {
                Some(RevisionState::Succeeded) => return Ok(ExitCode::SUCCESS),
                Some(
                    RevisionState::Failed | RevisionState::Invalid | RevisionState::Superseded,
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

fn split_id(id: &str) -> anyhow::Result<(&str, &str)> {
    id.split_once('/')
        .filter(|(n, m)| !n.is_empty() && !m.is_empty())
        .with_context(|| format!("{id:?} is not NAMESPACE/NAME"))
}

/// A cell for an optional value: `-` when absent.
fn optional(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// How a status reads at a glance: settled, on its way, or in trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Good,
    Moving,
    Bad,
}

/// A status word the CLI colours; every value is placed explicitly, so a new status is a
/// compile error here, not a blank or mis-coloured cell.
trait Toned: std::fmt::Display + Copy {
    fn tone(self) -> Tone;
}

impl Toned for DeploymentStatus {
    fn tone(self) -> Tone {
        match self {
            DeploymentStatus::Running | DeploymentStatus::Completed => Tone::Good,
            DeploymentStatus::Pending | DeploymentStatus::Creating | DeploymentStatus::Deleted => {
                Tone::Moving
            }
            DeploymentStatus::Failed
            | DeploymentStatus::CrashLoopBackOff
            | DeploymentStatus::InsufficientResources
            | DeploymentStatus::ImagePullBackOff
            | DeploymentStatus::CreateContainerError
            | DeploymentStatus::NetworkError
            | DeploymentStatus::ConfigError
            | DeploymentStatus::FileSystemError
            | DeploymentStatus::Error => Tone::Bad,
        }
    }
}

impl Toned for Health {
    fn tone(self) -> Tone {
        match self {
            Health::Healthy => Tone::Good,
            Health::Degraded | Health::Unhealthy => Tone::Bad,
        }
    }
}

impl Toned for NamespaceStatus {
    fn tone(self) -> Tone {
        match self {
            NamespaceStatus::Running => Tone::Good,
            NamespaceStatus::Starting | NamespaceStatus::Stopping | NamespaceStatus::Stopped => {
                Tone::Moving
            }
            NamespaceStatus::Error | NamespaceStatus::Warning => Tone::Bad,
        }
    }
}

impl Toned for DeliveryState {
    fn tone(self) -> Tone {
        match self {
            DeliveryState::Delivered => Tone::Good,
            DeliveryState::Pending => Tone::Moving,
            DeliveryState::Dead => Tone::Bad,
        }
    }
}

impl Toned for RevisionState {
    fn tone(self) -> Tone {
        match self {
            RevisionState::Succeeded => Tone::Good,
            RevisionState::Queued | RevisionState::Applying | RevisionState::Superseded => {
                Tone::Moving
            }
            RevisionState::Failed | RevisionState::Invalid => Tone::Bad,
        }
    }
}

/// Colours a status word on a terminal: green settled, yellow progressing, red failures.
fn paint(status: impl Toned) -> String {
    if !std::io::stdout().is_terminal() {
        return status.to_string();
    }
    let colour = match status.tone() {
        Tone::Good => "32",
        Tone::Moving => "33",
        Tone::Bad => "31",
    };
    format!("\x1b[{colour}m{status}\x1b[0m")
}
/// "3m", "2h", "5d" since an RFC 3339 instant.
fn age(rfc3339: &str) -> String {
    let Some(then) = crate::model::time::parse_rfc3339(rfc3339) else {
        return "-".to_owned();
    };
    let secs = (crate::clock::now().millis() - then.millis()).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Prints aligned columns (ANSI colour codes do not count towards the width).
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<ExitCode> {
    let visible = |s: &str| {
        let mut n = 0;
        let mut in_escape = false;
        for c in s.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (true, _) => {}
                (false, _) => n += 1,
            }
        }
        n
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible(cell));
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(visible(c)) + 2)))
            .collect::<String>()
            .trim_end()
            .to_owned()
    };
    writeln!(
        out,
        "{}",
        line(headers.iter().map(|h| h.to_string()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(ExitCode::SUCCESS)
}
