//! The OpenAPI 3.1 document of the API. Paths are written here; every schema is generated from
//! the wire types in `dto.rs` by schemars, so the document cannot drift from what is served.
//! `tests/api.rs` checks that every route is described and every response validates.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::dto::*;

/// The `webhooks` section: one signed POST per notification type (Standard Webhooks headers
/// `webhook-id`, `webhook-timestamp`, `webhook-signature`), body `{type, timestamp, data}`.
fn webhooks(body: &dyn Fn(&str) -> Value) -> Value {
    let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": true, "schema": {"type": "string"}, "description": description});
    let headers = json!([
        header(
            "webhook-id",
            "The delivery's id, the same on every retry: deduplicate on it"
        ),
        header(
            "webhook-timestamp",
            "Seconds since the epoch, at this attempt"
        ),
        header(
            "webhook-signature",
            "v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">, keyed by the base64 after whsec_"
        )
    ]);
    let types = [
        (
            "deployment.status_changed",
            "DeploymentStatusChanged",
            "A deployment's status moved",
        ),
        (
            "deployment.health_check_failed",
            "DeploymentNotice",
            "A liveness check reached its threshold and fired",
        ),
        (
            "deployment.rolling_update",
            "DeploymentNotice",
            "A rolling update stopped an old instance, or failed",
        ),
        (
            "revision.status_changed",
            "RevisionStatusChanged",
            "A revision moved: applying, succeeded, failed, invalid, superseded, rolled_back or quarantined",
        ),
        (
            "revision.rolled_back",
            "RevisionRolledBack",
            "A revision failed at run time and the host returned to the last good one",
        ),
        (
            "revision.quarantined",
            "RevisionQuarantined",
            "A revision was not applied: its desired state was rolled back before",
        ),
        (
            "job.run_finished",
            "JobRunFinished",
            "A cron job's run ended: completed, failed or skipped",
        ),
    ];
    let mut section = Map::new();
    for (kind, data, summary) in types {
        let envelope = json!({
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": kind},
                "timestamp": {"type": "string", "description": "When the change happened (RFC 3339, UTC)"},
                "data": body(data)
            }
        });
        section.insert(kind.to_owned(), json!({"post": {
            "summary": summary,
            "parameters": headers,
            "requestBody": {"required": true, "content": {"application/json": {"schema": envelope}}},
            "responses": {
                "2XX": {"description": "Delivered"},
                "410": {"description": "The endpoint is disabled: no further deliveries"},
                "429": {"description": "Retried after Retry-After"}
            }
        }}));
    }
    Value::Object(section)
}

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas/".into();
    let mut generator = settings.into_generator();
    let mut refs = Map::new();
    let mut add = |name: &str, schema: schemars::Schema| {
        refs.insert(name.to_owned(), schema.to_value());
    };
    add(
        "DeploymentList",
        generator.subschema_for::<Vec<DeploymentSummary>>(),
    );
    add(
        "DeploymentDetail",
        generator.subschema_for::<DeploymentDetail>(),
    );
    add("EventPage", generator.subschema_for::<EventPage>());
    add(
        "NamespaceList",
        generator.subschema_for::<Vec<NamespaceDto>>(),
    );
    add(
        "RevisionList",
        generator.subschema_for::<Vec<RevisionDto>>(),
    );
    add("Revision", generator.subschema_for::<RevisionDto>());
    add(
        "RevisionDetail",
        generator.subschema_for::<RevisionDetail>(),
    );
    add("Source", generator.subschema_for::<SourceDto>());
    add("Version", generator.subschema_for::<VersionDto>());
    add("RuntimeList", generator.subschema_for::<Vec<RuntimeDto>>());
    add("DeliveryPage", generator.subschema_for::<DeliveryPage>());
    add("RunPage", generator.subschema_for::<RunPage>());
    add("ClearedRuns", generator.subschema_for::<ClearedRuns>());
    // The webhooks' data, from the very types the notifier serializes.
    add(
        "DeploymentStatusChanged",
        generator.subschema_for::<crate::model::event::StatusChanged>(),
    );
    add(
        "DeploymentNotice",
        generator.subschema_for::<crate::model::event::DeploymentNotice>(),
    );
    add(
        "RevisionStatusChanged",
        generator.subschema_for::<crate::model::event::RevisionChanged>(),
    );
    add(
        "JobRunFinished",
        generator.subschema_for::<crate::model::run::RunFinished>(),
    );
    add(
        "RevisionRolledBack",
        generator.subschema_for::<crate::model::event::RolledBack>(),
    );
    add(
        "RevisionQuarantined",
        generator.subschema_for::<crate::model::event::Quarantined>(),
    );
    add("Problem", generator.subschema_for::<Problem>());
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    let body = |name: &str| refs.get(name).cloned().unwrap_or(Value::Null);
    let ok = |name: &str| json!({"200": {"description": "OK", "content": {"application/json": {"schema": body(name)}}}});
    let problem = json!({"content": {"application/problem+json": {"schema": body("Problem")}}});
    let with_errors = |mut responses: Value, codes: &[(&str, &str)]| {
        for (code, description) in codes {
            let mut p = problem.clone();
            p["description"] = json!(description);
            responses[*code] = p;
        }
        responses
    };
    let auth = [("401", "A bearer token is required")];
    let path_param = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    let query = |name: &str, schema: Value, description: &str| json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description});
    let if_none_match = json!({"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"}, "description": "The ETag of a copy you hold: 304 without a body while it is current"});
    let wait = query("wait", json!({"type": "string", "examples": ["30s"]}), "With If-None-Match: hold the request until the answer differs from that copy (200) or this long has passed (304); at most 30s");
    // A cacheable answer: an ETag (and, for a paged list, a Link to the next page) and a 304.
    let cached = |mut responses: Value, paged: bool| {
        let mut headers = json!({"ETag": {"description": "The entity tag of this answer", "schema": {"type": "string"}}});
        if paged {
            headers["Link"] = json!({"description": "`<path>; rel=\"next\"` when there is a next page", "schema": {"type": "string"}});
        }
        responses["200"]["headers"] = headers;
        responses["304"] =
            json!({"description": "Not modified: the ETag in If-None-Match is current"});
        responses
    };
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keel status API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read-only view of a keel agent: deployments, events, logs, namespaces, revisions, the source and the runtimes.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "servers": [{"url": "http://127.0.0.1:7878", "description": "An agent on its default listen address (`--listen`)"}],
        "tags": [
            {"name": "deployments", "description": "What runs, its instances, events and output"},
            {"name": "revisions", "description": "What the source delivered and how it converged"},
            {"name": "agent", "description": "The agent itself: health, metrics, source, runtimes, deliveries"}
        ],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness of the agent", "security": [], "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": with_errors(json!({"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}), &auth)}},
            "/openapi.json": {"get": {"summary": "This document", "responses": with_errors(json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}), &auth)}},
            "/v1/deployments": {"get": {
                "summary": "Deployments, filtered",
                "parameters": [
                    query("status", json!({"type": "string"}), "A deployment status; repeat for several"),
                    query("namespace", json!({"type": "string"}), "Only this namespace"),
                    query("kind", json!({"type": "string", "enum": ["worker", "job", "cronjob"]}), "Only workers, jobs or cron jobs"),
                    query("limit", json!({"type": "integer", "minimum": 1, "maximum": 5000}), "Deployments per page (default 500)"),
                    query("after", json!({"type": "string"}), "Only deployments after this `<namespace>/<name>` (the cursor the `Link` header of the previous page carries)"),
                    if_none_match.clone(),
                    wait.clone()
                ],
                "responses": with_errors(cached(ok("DeploymentList"), true), &[("400", "An unknown status or kind, or a malformed limit, cursor or wait"), auth[0]])
            }},
            "/v1/deployments/{namespace}/{name}": {"get": {
                "summary": "One deployment with its instances",
                "parameters": [path_param("namespace"), path_param("name"), if_none_match.clone(), wait.clone()],
                "responses": with_errors(cached(ok("DeploymentDetail"), false), &[("400", "A malformed wait"), ("404", "No such deployment"), auth[0]])
            }},
            "/v1/deployments/{namespace}/{name}/events": {"get": {
                "summary": "A deployment's events, newest first",
                "parameters": [path_param("namespace"), path_param("name"),
                    query("limit", json!({"type": "integer", "minimum": 1, "maximum": 500}), "Events per page (default 50)"),
                    query("before", json!({"type": "integer"}), "Only events older than this cursor (`next_before`)"),
                    if_none_match.clone(), wait],
                "responses": with_errors(cached(ok("EventPage"), false), &[("400", "A malformed limit, cursor or wait"), ("404", "No such deployment"), auth[0]])
            }},
            "/v1/deployments/{namespace}/{name}/logs": {"get": {
                "summary": "What one instance prints (a container's stdout and stderr, a VM's serial console), streamed; it may hold whatever the application writes",
                "parameters": [path_param("namespace"), path_param("name"),
                    query("instance", json!({"type": "string"}), "A runtime id or its prefix (default: the newest generation's lowest ordinal)"),
                    query("follow", json!({"type": "boolean"}), "Go on streaming what it prints next"),
                    query("since", json!({"type": "string"}), "Only output from then on: a duration back from now (10m) or an RFC 3339 time (containers only)"),
                    query("tail", json!({"type": "integer", "minimum": 0}), "Only the last lines")],
                "responses": with_errors(json!({"200": {"description": "The output, as it is printed", "content": {"text/plain": {"schema": {"type": "string"}}}}}), &[("400", "A malformed follow, since or tail"), ("404", "No such deployment, or no instance to read"), auth[0]])
            }},
            "/v1/deployments/{namespace}/{name}/runs": {"get": {
                "summary": "A cron job's runs, newest first: due, started, finished, exit code, outcome",
                "parameters": [path_param("namespace"), path_param("name"),
                    query("limit", json!({"type": "integer", "minimum": 1, "maximum": 500}), "Runs per page (default 50)"),
                    query("before", json!({"type": "integer"}), "Only runs older than this run number (`next_before`)")],
                "responses": with_errors(ok("RunPage"), &[("400", "A malformed limit or cursor"), ("404", "No such deployment"), auth[0]])
            }},
            "/v1/deployments/{namespace}/{name}/runs/clear": {"post": {
                "summary": "Clear a cron job's failed runs, so that they no longer count against its namespace (an admin token only; recorded as an event)",
                "parameters": [path_param("namespace"), path_param("name")],
                "responses": with_errors(ok("ClearedRuns"), &[("400", "Not a cron job"), ("401", "No admin token"), ("403", "A token that may only read, or no admin token configured"), ("404", "No such deployment")])
            }},
            "/v1/namespaces": {"get": {"summary": "Namespaces and their status", "responses": with_errors(ok("NamespaceList"), &auth)}},
            "/v1/revisions": {"get": {
                "summary": "Revisions, newest first",
                "parameters": [query("limit", json!({"type": "integer", "minimum": 1, "maximum": 500}), "How many (default 50)")],
                "responses": with_errors(ok("RevisionList"), &[("400", "A malformed limit"), auth[0]])
            }},
            "/v1/revisions/{id}": {"get": {
                "summary": "One revision and the deployments it changed",
                "parameters": [path_param("id")],
                "responses": with_errors(ok("RevisionDetail"), &[("404", "No such revision"), auth[0]])
            }},
            "/v1/revisions/{id}/retry": {"post": {
                "summary": "Lift the quarantine of a rolled-back revision's desired state (named by that revision or by a quarantined twin) and apply it again (an admin token only); answers the new revision",
                "parameters": [path_param("id")],
                "responses": with_errors(ok("Revision"), &[("400", "Neither rolled back nor quarantined, or no longer quarantined"), ("401", "No admin token"), ("403", "A token that may only read, or no admin token configured"), ("404", "No such revision")])
            }},
            "/v1/source": {"get": {"summary": "What the source last fetched", "responses": with_errors(ok("Source"), &auth)}},
            "/v1/version": {"get": {"summary": "The agent's version and build", "responses": with_errors(ok("Version"), &auth)}},
            "/v1/runtimes": {"get": {"summary": "Whether each runtime can be listed (while one cannot, its deployments hold)", "responses": with_errors(ok("RuntimeList"), &auth)}},
            "/v1/deliveries": {"get": {
                "summary": "Webhook and commit-status deliveries, newest first (never a secret, token or signature)",
                "parameters": [
                    query("state", json!({"type": "string", "enum": ["pending", "delivered", "dead"]}), "Only deliveries in this state"),
                    query("endpoint", json!({"type": "string"}), "Only this endpoint (`webhook:<url>` or `forge`)"),
                    query("limit", json!({"type": "integer", "minimum": 1, "maximum": 500}), "How many (default 50)"),
                    query("before", json!({"type": "integer"}), "Only deliveries older than this cursor (`next_before`)")
                ],
                "responses": with_errors(ok("DeliveryPage"), &[("400", "An unknown state or a malformed number"), auth[0]])
            }}
        },
        "webhooks": webhooks(&body)
    });
    name_operations(&mut document);
    document
}

/// Every operation's stable `operationId` and tag, for client generators: (path, id, tag).
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("/healthz", "getHealth", "agent"),
    ("/metrics", "getMetrics", "agent"),
    ("/openapi.json", "getOpenApiDocument", "agent"),
    ("/v1/deployments", "listDeployments", "deployments"),
    (
        "/v1/deployments/{namespace}/{name}",
        "getDeployment",
        "deployments",
    ),
    (
        "/v1/deployments/{namespace}/{name}/events",
        "listDeploymentEvents",
        "deployments",
    ),
    (
        "/v1/deployments/{namespace}/{name}/logs",
        "getDeploymentLogs",
        "deployments",
    ),
    (
        "/v1/deployments/{namespace}/{name}/runs",
        "listDeploymentRuns",
        "deployments",
    ),
    (
        "/v1/deployments/{namespace}/{name}/runs/clear",
        "clearDeploymentRuns",
        "deployments",
    ),
    ("/v1/namespaces", "listNamespaces", "deployments"),
    ("/v1/revisions", "listRevisions", "revisions"),
    ("/v1/revisions/{id}", "getRevision", "revisions"),
    ("/v1/revisions/{id}/retry", "retryRevision", "revisions"),
    ("/v1/source", "getSource", "agent"),
    ("/v1/version", "getVersion", "agent"),
    ("/v1/runtimes", "listRuntimes", "agent"),
    ("/v1/deliveries", "listDeliveries", "agent"),
];

fn name_operations(document: &mut Value) {
    for (path, id, tag) in OPERATIONS {
        let Some(item) = document["paths"].get_mut(*path) else {
            continue;
        };
        for method in ["get", "post"] {
            if let Some(operation) = item.get_mut(method) {
                operation["operationId"] = json!(id);
                operation["tags"] = json!([tag]);
            }
        }
    }
}
