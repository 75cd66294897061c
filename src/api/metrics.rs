//! `GET /metrics` in the Prometheus text exposition format (0.0.4): gauges read from the store
//! at scrape time, counters and the pass histogram from the process's `Metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::metrics::{Metrics, PASS_BUCKETS};
use crate::model::status::DeploymentStatus;

use super::{ApiError, ApiState};

pub async fn render(State(state): State<Arc<ApiState>>) -> Result<impl IntoResponse, ApiError> {
    let (all, instances, latest, depth, backlog, rollbacks) = state
        .read(|r| {
            let all = r.summaries()?;
            let instances = r.instance_counts()?;
            let backlog = r.delivery_backlog()?;
            Ok((
                all,
                instances,
                r.revisions(1)?.pop(),
                r.outbox_depth()?,
                backlog,
                r.rollback_counts()?,
            ))
        })
        .await?;
    let mut out = String::new();
    let mut by_status: BTreeMap<(&str, DeploymentStatus), u64> = BTreeMap::new();
    for d in &all {
        *by_status.entry((&d.id.namespace, d.status)).or_default() += 1;
    }
    family(
        &mut out,
        "keel_deployments",
        "gauge",
        "Deployments by namespace and status.",
    );
    for ((namespace, status), n) in &by_status {
        let _ = writeln!(
            out,
            "keel_deployments{{namespace=\"{}\",status=\"{status}\"}} {n}",
            escape(namespace)
        );
    }
    family(&mut out, "keel_instances", "gauge", "Instances by state.");
    for (state, n) in &instances {
        let _ = writeln!(out, "keel_instances{{state=\"{state}\"}} {n}");
    }
    family(
        &mut out,
        "keel_restarts",
        "gauge",
        "Restart counters summed over deployments.",
    );
    let restarts: u64 = all.iter().map(|d| u64::from(d.restart_count)).sum();
    let _ = writeln!(out, "keel_restarts {restarts}");
    revision_metrics(&mut out, latest.as_ref());
    rollback_metrics(&mut out, rollbacks);
    family(
        &mut out,
        "keel_outbox_depth",
        "gauge",
        "Notifications and deliveries not delivered yet.",
    );
    let (pending, oldest) = backlog;
    let _ = writeln!(out, "keel_outbox_depth {}", depth + pending);
    family(
        &mut out,
        "keel_outbox_oldest_pending_seconds",
        "gauge",
        "Age of the oldest delivery still pending (0 when none is).",
    );
    let age = oldest.map_or(0, |t| {
        (crate::clock::now().millis() - t.millis()).max(0) / 1000
    });
    let _ = writeln!(out, "keel_outbox_oldest_pending_seconds {age}");
    process_metrics(&mut out, &state.metrics);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

fn revision_metrics(out: &mut String, latest: Option<&crate::model::stored::RevisionRecord>) {
    family(
        out,
        "keel_revision_state",
        "gauge",
        "1 for the state of the latest revision.",
    );
    if let Some(r) = latest {
        let _ = writeln!(
            out,
            "keel_revision_state{{revision=\"{}\",state=\"{}\"}} 1",
            escape(&r.id),
            r.state
        );
        family(
            out,
            "keel_revision_age_seconds",
            "gauge",
            "Age of the latest revision.",
        );
        let age = (crate::clock::now().millis() - r.received_at.millis()).max(0) as f64 / 1000.0;
        let _ = writeln!(out, "keel_revision_age_seconds {age}");
    }
}

/// Rollbacks and quarantines, as the revisions table counts them.
fn rollback_metrics(out: &mut String, (rolled_back, refused, held): (u64, u64, u64)) {
    let rows = [
        (
            "keel_rollbacks_total",
            "counter",
            "Revisions that failed at run time and were rolled back.",
            rolled_back,
        ),
        (
            "keel_quarantined_revisions_total",
            "counter",
            "Revisions not applied: their desired state was rolled back before.",
            refused,
        ),
        (
            "keel_quarantined_states",
            "gauge",
            "Desired states quarantined now.",
            held,
        ),
    ];
    for (name, kind, help, value) in rows {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

fn process_metrics(out: &mut String, m: &Metrics) {
    family(
        out,
        "keel_reconcile_pass_seconds",
        "histogram",
        "Duration of reconcile passes.",
    );
    let h = m.pass_histogram();
    for (bound, count) in PASS_BUCKETS.iter().zip(&h.buckets) {
        let _ = writeln!(
            out,
            "keel_reconcile_pass_seconds_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "keel_reconcile_pass_seconds_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(out, "keel_reconcile_pass_seconds_sum {}", h.sum_seconds);
    let _ = writeln!(out, "keel_reconcile_pass_seconds_count {}", h.count);
    family(
        out,
        "keel_probe_results_total",
        "counter",
        "Health-check runs by outcome.",
    );
    let _ = writeln!(
        out,
        "keel_probe_results_total{{outcome=\"success\"}} {}",
        Metrics::get(&m.probes_ok)
    );
    let _ = writeln!(
        out,
        "keel_probe_results_total{{outcome=\"failure\"}} {}",
        Metrics::get(&m.probes_failed)
    );
    family(
        out,
        "keel_source_fetches_total",
        "counter",
        "Source fetches.",
    );
    let _ = writeln!(
        out,
        "keel_source_fetches_total {}",
        Metrics::get(&m.source_fetches)
    );
    family(
        out,
        "keel_source_fetch_errors_total",
        "counter",
        "Source fetches that failed.",
    );
    let _ = writeln!(
        out,
        "keel_source_fetch_errors_total {}",
        Metrics::get(&m.source_fetch_errors)
    );
    family(
        out,
        "keel_outbox_deliveries_total",
        "counter",
        "Delivery attempts by outcome (failed: will be retried; dead: given up).",
    );
    for (outcome, counter) in [
        ("delivered", &m.deliveries_ok),
        ("failed", &m.deliveries_failed),
        ("dead", &m.deliveries_dead),
    ] {
        let _ = writeln!(
            out,
            "keel_outbox_deliveries_total{{outcome=\"{outcome}\"}} {}",
            Metrics::get(counter)
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
