//! The CLI's views of a running agent, read from its API: deployments, one deployment, events,
//! revisions, the overall status, and `wait` — the primitive a CI job runs after a push.
//! Tables for people (colours only on a terminal), `-o json` for scripts (the API's JSON as is).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::api::client;

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
pub struct ListArgs {
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

/// GETs `path` and returns its JSON, turning problems into errors with their detail.
async fn fetch(api: &ApiArgs, path: &str) -> anyhow::Result<Value> {
    let token = crate::config::api_token_from_env();
    let reply = client::get(&api.api, path, token.as_deref()).await?;
    let body: Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("{path}: not JSON ({} {})", reply.status, reply.body.trim()))?;
    if reply.status != 200 {
        let detail = body["detail"].as_str().unwrap_or("no detail");
        bail!("{path}: {} — {detail}", reply.status);
    }
    Ok(body)
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
    let list = block_on(fetch(api, &path))?;
    if args.output == Output::Json {
        return print_json(&list);
    }
    let rows = list.as_array().into_iter().flatten().map(|d| {
        vec![
            text(&d["namespace"]),
            text(&d["name"]),
            text(&d["kind"]),
            paint_status(&text(&d["status"])),
            text(&d["health"]),
            format!("{}/{}", d["ready"], d["desired"]),
            d["restart_count"].to_string(),
            age(&text(&d["created_at"])),
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
    let d = block_on(fetch(api, &format!("/v1/deployments/{namespace}/{name}")))?;
    if args.output == Output::Json {
        return print_json(&d);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Deployment:  {namespace}/{name} ({}, {})",
        text(&d["kind"]),
        text(&d["runtime"])
    )?;
    writeln!(
        out,
        "Status:      {} since {}",
        paint_status(&text(&d["status"])),
        text(&d["status_since"])
    )?;
    writeln!(
        out,
        "Health:      {} ({}/{} ready)",
        text(&d["health"]),
        d["ready"],
        d["desired"]
    )?;
    writeln!(out, "Restarts:    {}", d["restart_count"])?;
    writeln!(
        out,
        "Generation:  {} (revision {})",
        d["generation"],
        text(&d["revision"])
    )?;
    if !d["waiting_on"].is_null() {
        writeln!(out, "Waiting on:  {}", d["waiting_on"])?;
    }
    writeln!(out)?;
    drop(out);
    let rows = d["instances"].as_array().into_iter().flatten().map(|i| {
        vec![
            text(&i["id"]).chars().take(12).collect(),
            text(&i["state"]),
            text(&i["ip"]),
            age(&text(&i["started_at"])),
            text(&i["reason"]),
        ]
    });
    table(
        &["INSTANCE", "STATE", "IP", "AGE", "REASON"],
        rows.collect(),
    )
}

pub fn events(api: &ApiArgs, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let (namespace, name) = split_id(&args.deployment)?;
    let base = format!("/v1/deployments/{namespace}/{name}/events");
    block_on(async {
        let page = fetch(api, &format!("{base}?limit={}", args.limit.clamp(1, 500))).await?;
        let mut events: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
        events.reverse();
        let mut last = events.last().and_then(|e| e["id"].as_i64()).unwrap_or(0);
        print_events(&events, args.output)?;
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let page = fetch(api, &format!("{base}?limit=500")).await?;
            let mut fresh: Vec<Value> = page["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["id"].as_i64().unwrap_or(0) > last)
                .cloned()
                .collect();
            fresh.reverse();
            last = fresh.last().and_then(|e| e["id"].as_i64()).unwrap_or(last);
            print_events(&fresh, args.output)?;
        }
    })
}

fn print_events(events: &[Value], output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for e in events {
        match output {
            Output::Json => writeln!(out, "{e}")?,
            Output::Table => writeln!(
                out,
                "{}  {:<22} {}",
                text(&e["time"]),
                text(&e["type"]),
                text(&e["message"])
            )?,
        }
    }
    Ok(())
}

pub fn revisions(api: &ApiArgs, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let list = block_on(fetch(api, "/v1/revisions"))?;
    if args.output == Output::Json {
        return print_json(&list);
    }
    let rows = list.as_array().into_iter().flatten().map(|r| {
        let message = text(&r["message"])
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(50)
            .collect();
        vec![
            text(&r["id"]).chars().take(12).collect(),
            paint_status(&text(&r["state"])),
            age(&text(&r["received_at"])),
            message,
        ]
    });
    table(&["REVISION", "STATE", "AGE", "MESSAGE"], rows.collect())
}

pub fn status(api: &ApiArgs, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let (source, revisions, namespaces) = block_on(async {
        Ok((
            fetch(api, "/v1/source").await?,
            fetch(api, "/v1/revisions?limit=1").await?,
            fetch(api, "/v1/namespaces").await?,
        ))
    })?;
    if args.output == Output::Json {
        return print_json(
            &serde_json::json!({"source": source, "revision": revisions.get(0), "namespaces": namespaces}),
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "Source:    {}", text(&source["source"]))?;
    if !source["last_error"].is_null() {
        writeln!(
            out,
            "           last error: {}",
            text(&source["last_error"])
        )?;
    }
    match revisions.get(0) {
        Some(r) => writeln!(
            out,
            "Revision:  {} {}",
            text(&r["id"]),
            paint_status(&text(&r["state"]))
        )?,
        None => writeln!(out, "Revision:  none yet")?,
    }
    writeln!(out)?;
    drop(out);
    let rows = namespaces.as_array().into_iter().flatten().map(|n| {
        vec![
            text(&n["name"]),
            paint_status(&text(&n["status"])),
            n["deployments"].to_string(),
        ]
    });
    table(&["NAMESPACE", "STATUS", "DEPLOYMENTS"], rows.collect())
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
                200 => text(&serde_json::from_str::<Value>(&reply.body)?["state"]),
                404 => "not seen yet".to_owned(),
                other => bail!("the API answered {other}: {}", reply.body.trim()),
            };
            if state != last_state {
                eprintln!("revision {}: {state}", args.revision);
                last_state = state.clone();
            }
            match state.as_str() {
                "succeeded" => return Ok(ExitCode::SUCCESS),
                "failed" | "invalid" | "superseded" => return Ok(ExitCode::from(1)),
                _ => {}
            }
            if started.elapsed() >= args.timeout.to_std() {
                eprintln!(
                    "gave up after {}: revision {} is still {state}",
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

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Colours a status word on a terminal: green settled, yellow progressing, red failures.
fn paint_status(status: &str) -> String {
    if !std::io::stdout().is_terminal() {
        return status.to_owned();
    }
    let colour = match status {
        "running" | "completed" | "succeeded" | "healthy" => "32",
        "pending" | "creating" | "queued" | "applying" | "starting" | "stopping" | "deleted"
        | "stopped" | "superseded" => "33",
        _ => "31",
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
