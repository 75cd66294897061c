//! `GET /v1/deployments/{namespace}/{name}/logs`: what one instance prints — a container's
//! stdout and stderr, a VM's serial console — streamed as `text/plain` while it comes
//! (`follow=true`), straight from the runtime. Readers with the API token can read it; the
//! output is the application's own and may hold whatever it prints.
//!
//! Query: `instance` (a runtime id or its prefix; default the newest generation's lowest
//! ordinal), `follow`, `since` (a duration such as `10m`, or an RFC 3339 time), `tail` (lines).
//! An error after the stream began ends it with one `keel:` line saying why.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::Response;
use futures_util::StreamExt;

use crate::model::desired::DeploymentId;
use crate::model::stored::StoredInstance;
use crate::model::time::{parse_rfc3339, Timestamp};
use crate::runtime::LogOptions;

use super::{query_pairs, single, ApiError, ApiState};

pub async fn logs(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    streaming: Option<axum::Extension<super::serve::Streaming>>,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let options = options(&pairs, crate::clock::now())?;
    let wanted = single(&pairs, "instance").map(str::to_owned);
    let id = DeploymentId::new(namespace, name);
    let (row, instances) = {
        let id = id.clone();
        state
            .read(move |r| Ok((r.deployment(&id)?, r.instances(&id)?)))
            .await?
    };
    let row = row.ok_or_else(|| ApiError::NotFound(format!("no deployment {id}")))?;
    let instance = pick(&instances, wanted.as_deref()).map_err(|why| match why {
        Pick::None => match &wanted {
            Some(w) => ApiError::NotFound(format!("{id} has no instance {w}")),
            None => ApiError::NotFound(format!("{id} has no instance to read the output of")),
        },
        Pick::Ambiguous(ids) => ApiError::BadRequest(format!(
            "instance {} names several instances of {id}: {}",
            wanted.as_deref().unwrap_or_default(),
            ids.join(", ")
        )),
    })?;
    // The connection stays open while this body streams, however quiet the instance is.
    let held = streaming.map(|axum::Extension(s)| s.hold());
    let runtime = state.log_source(row.spec.runtime).ok_or_else(|| {
        ApiError::NotFound(format!(
            "the {} runtime does not serve logs here",
            row.spec.runtime
        ))
    })?;
    let chunks = runtime
        .logs(&instance.runtime_id, options)
        .scan(false, move |ended, chunk| {
            let _held = &held;
            let next = match (*ended, chunk) {
                (true, _) => None,
                (false, Ok(bytes)) => Some(bytes),
                (false, Err(e)) => {
                    *ended = true;
                    Some(format!("\nkeel: cannot read the output any further: {e}\n").into_bytes())
                }
            };
            std::future::ready(next)
        })
        .map(Ok::<_, std::convert::Infallible>);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(chunks))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `follow`, `since` and `tail` from the query.
fn options(pairs: &[(String, String)], now: Timestamp) -> Result<LogOptions, ApiError> {
    let follow = match single(pairs, "follow") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "follow must be true or false, got {other:?}"
            )))
        }
    };
    let tail = single(pairs, "tail")
        .map(|v| {
            v.parse::<u32>().map_err(|_| {
                ApiError::BadRequest(format!("tail must be a number of lines, got {v:?}"))
            })
        })
        .transpose()?;
    let since = single(pairs, "since")
        .map(|v| {
            parse_rfc3339(v)
                .or_else(|| {
                    v.parse::<crate::model::units::Duration>()
                        .ok()
                        .map(|d| now.minus(d))
                })
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "since must be a duration such as 10m or an RFC 3339 time, got {v:?}"
                    ))
                })
        })
        .transpose()?;
    Ok(LogOptions {
        follow,
        since,
        tail,
    })
}

/// Why no one instance was picked.
enum Pick {
    None,
    Ambiguous(Vec<String>),
}

/// The instance `wanted` names (a runtime id or a prefix only it has), or by default the
/// newest generation's lowest ordinal.
fn pick<'a>(
    instances: &'a [StoredInstance],
    wanted: Option<&str>,
) -> Result<&'a StoredInstance, Pick> {
    match wanted {
        Some(w) => {
            let matching: Vec<&StoredInstance> = instances
                .iter()
                .filter(|i| !w.is_empty() && i.runtime_id.starts_with(w))
                .collect();
            match matching.as_slice() {
                [] => Err(Pick::None),
                [one] => Ok(one),
                several => Err(Pick::Ambiguous(
                    several
                        .iter()
                        .map(|i| i.runtime_id.chars().take(12).collect())
                        .collect(),
                )),
            }
        }
        None => instances
            .iter()
            .max_by_key(|i| (i.generation, std::cmp::Reverse(i.ordinal)))
            .ok_or(Pick::None),
    }
}
