//! The conversation record over HTTP (DESIGN.md §10):
//!
//! - `GET /api/sessions/{id}/timeline?after=&limit=&kinds=`: the session's items, oldest
//!   first, `limit` (1 to 500, default 100) at a time after the cursor `after` (a `seq`;
//!   `next_cursor` of the previous page). `kinds` is a comma-separated list. For the session's
//!   token, the server API key, or the host-app user who owns the session.
//! - `GET /api/sessions/{id}/timeline/export`: every item as JSON Lines
//!   (`application/x-ndjson`), same access.
//! - `GET /api/sessions?from=&to=&scenario=&user=&sort=&limit=&offset=`: recorded sessions
//!   (server API key), with turns, tool calls, cost, and `live` while a call is in progress.
//! - `DELETE /api/sessions/{id}/record`: erases the session's record (server API key or the
//!   owning user); afterwards its timeline is 404 and nothing buffered comes back.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::SessionId;
use crate::error::{ApiError, Json, Path, Query};
use crate::http::caller::{Caller, classify};
use crate::record::{Item, KINDS, RecordError, SessionQuery, SessionRow, SessionSort};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", get(list))
        .route("/api/sessions/{id}/timeline", get(timeline))
        .route("/api/sessions/{id}/timeline/export", get(export))
        .route("/api/sessions/{id}/record", delete(erase))
}

/// One page of a timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    /// The session.
    pub session_id: String,
    /// Items, oldest first.
    pub items: Vec<Item>,
    /// Pass as `after` for the next page (`null` when this page is the last so far).
    pub next_cursor: Option<u64>,
    /// Total cost of the session so far (US dollars, decimal string).
    pub cost_usd: String,
}

/// Timeline query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// Items after this `seq` (default 0: from the start).
    pub after: Option<String>,
    /// At most this many (1 to 500, default 100).
    pub limit: Option<String>,
    /// Only these kinds, comma-separated.
    pub kinds: Option<String>,
}

/// The session list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// Sessions in the asked order.
    pub sessions: Vec<SessionRow>,
    /// How many match in all.
    pub total: u64,
    /// Pass as `offset` for the next page (`null` on the last).
    pub next_offset: Option<u64>,
}

/// Session list query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Started at or after (RFC 3339 in UTC, `2026-12-02T10:00:00Z`).
    pub from: Option<String>,
    /// Started before (RFC 3339 in UTC).
    pub to: Option<String>,
    /// Only this scenario.
    pub scenario: Option<String>,
    /// Only this user's sessions.
    pub user: Option<String>,
    /// `started` (newest first, the default), `-started` (oldest first), `cost`, `last`.
    pub sort: Option<String>,
    /// At most this many (1 to 200, default 50).
    pub limit: Option<String>,
    /// Skip this many.
    pub offset: Option<String>,
}

fn unavailable(e: RecordError) -> ApiError {
    tracing::warn!(error = %e, "the conversation record cannot be read");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "record_unavailable",
        "the conversation record cannot be read right now; retry shortly",
    )
    .with_retry_after(2)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_session",
        format!(
            "session {id:?} has no record (it never existed, or its record was erased or expired)"
        ),
    )
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn number(
    name: &'static str,
    v: Option<&str>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiError> {
    let Some(v) = v else { return Ok(default) };
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "{name} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

fn recorder(state: &AppState) -> Result<&crate::sessions::record::Recorder, ApiError> {
    state.sessions.record.as_deref().ok_or_else(|| {
        ApiError::not_found(
            "record_off",
            "the conversation record is off (SWITCHBOARD_RECORD=off)",
        )
    })
}

/// Lets through the server API key, this session's token, or the user who owns it; the
/// session must have a record (or be live). Returns the parsed id.
async fn allowed(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    session_token_ok: bool,
) -> Result<SessionId, ApiError> {
    let rec = recorder(state)?;
    let caller = classify(state, headers).await?;
    let sid: SessionId = id.parse().map_err(|_| not_found(id))?;
    if rec.store.erased(id).await.map_err(unavailable)? {
        return Err(not_found(id));
    }
    let row = rec.store.session(id).await.map_err(unavailable)?;
    let live = state.sessions.store.get(&sid).await.ok().flatten();
    let buffered = rec.buffer.pending(id, 1).await.map_err(unavailable)?;
    if row.is_none() && live.is_none() && buffered.is_empty() {
        return match caller {
            Caller::Anonymous => Err(crate::auth::TokenError::Missing.into()),
            _ => Err(not_found(id)),
        };
    }
    let owner = live
        .and_then(|s| s.user_id)
        .or_else(|| row.and_then(|r| r.user_id))
        .or_else(|| buffered.first().and_then(|e| e.user_id.clone()));
    match caller {
        Caller::ApiKey => Ok(sid),
        Caller::Session(c) if session_token_ok && c.sid == id => Ok(sid),
        Caller::Session(_) if session_token_ok => {
            Err(forbidden("this token is for another session"))
        }
        Caller::Session(_) => Err(forbidden(
            "this needs the server API key or the user who owns the session",
        )),
        Caller::User(u) if owner.as_deref() == Some(u.sub.as_str()) => Ok(sid),
        Caller::User(_) => Err(forbidden("the session belongs to another user")),
        Caller::Anonymous => Err(crate::auth::TokenError::Missing.into()),
    }
}

fn kinds(v: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = v.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let list: Vec<String> = v
        .split(',')
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(bad) = list.iter().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("unknown kind {bad:?}; kinds are {}", KINDS.join(", ")),
        ));
    }
    Ok(Some(list))
}

/// A page of the session's timeline.
#[utoipa::path(get, path = "/api/sessions/{id}/timeline", tag = "record",
    params(("id" = String, Path, description = "Session id"), TimelineQuery),
    security(("session_token" = []), ("server_api_key" = [])),
    responses((status = 200, body = Timeline), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn timeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let after = number("after", q.after.as_deref(), 0, 0..=u64::MAX)?;
    let limit = number("limit", q.limit.as_deref(), 100, 1..=500)?;
    let kinds = kinds(q.kinds.as_deref())?;
    allowed(&state, &headers, &id, true).await?;
    let items = (state.sessions)
        .timeline(&id, after, kinds.as_deref(), limit)
        .await
        .map_err(unavailable)?;
    let cost = session_cost(&state, &id).await?;
    let next_cursor = items
        .last()
        .map(|i| i.seq)
        .filter(|_| items.len() as u64 == limit);
    Ok(Json(Timeline {
        session_id: id,
        items,
        next_cursor,
        cost_usd: crate::record::usd(cost),
    }))
}

/// The session's total cost: the database's sum and what is still buffered.
async fn session_cost(state: &AppState, id: &str) -> Result<i64, ApiError> {
    let rec = recorder(state)?;
    let row = rec.store.session(id).await.map_err(unavailable)?;
    let mut nanos = row
        .map(|r| crate::record::parse_usd(&r.cost_usd))
        .unwrap_or(0);
    let pending = rec.buffer.pending(id, 100_000).await.map_err(unavailable)?;
    let Some(first) = pending.first() else {
        return Ok(nanos);
    };
    // Buffered entries not yet in the database add to its sum.
    let last_written = rec
        .store
        .items(id, first.seq - 1, None, pending.len() as u64)
        .await
        .map_err(unavailable)?;
    for e in &pending {
        if !last_written.iter().any(|i| i.seq == e.seq) {
            nanos += e.cost_nanousd;
        }
    }
    Ok(nanos)
}

/// Every item of the session as JSON Lines.
#[utoipa::path(get, path = "/api/sessions/{id}/timeline/export", tag = "record",
    params(("id" = String, Path, description = "Session id")),
    security(("session_token" = []), ("server_api_key" = [])),
    responses((status = 200, description = "One item per line", content_type = "application/x-ndjson"),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    allowed(&state, &headers, &id, true).await?;
    let mut out = String::new();
    let mut after = 0;
    loop {
        let page = (state.sessions)
            .timeline(&id, after, None, 500)
            .await
            .map_err(unavailable)?;
        for item in &page {
            out.push_str(&serde_json::to_string(item).expect("items serialize"));
            out.push('\n');
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = last.seq,
            _ => break,
        }
    }
    let disposition = format!("attachment; filename=\"{id}.jsonl\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}

/// Recorded sessions (server API key).
#[utoipa::path(get, path = "/api/sessions", tag = "record",
    params(ListQuery),
    security(("server_api_key" = [])),
    responses((status = 200, body = SessionList), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    match classify(&state, &headers).await? {
        Caller::ApiKey => {}
        Caller::Anonymous => {
            return Err(ApiError::unauthorized(
                "listing sessions needs the server API key (Authorization: Bearer <key>)",
            ));
        }
        _ => return Err(forbidden("listing sessions needs the server API key")),
    }
    let rec = recorder(&state)?;
    let time = |name: &'static str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                crate::record::parse_rfc3339_ms(s).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("{name} must be an RFC 3339 time"),
                    )
                })
            })
            .transpose()
    };
    let sort = match q.sort.as_deref().unwrap_or("started") {
        "started" => SessionSort::StartedDesc,
        "-started" => SessionSort::StartedAsc,
        "cost" => SessionSort::CostDesc,
        "last" => SessionSort::LastDesc,
        other => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown sort {other:?}; use started, -started, cost or last"),
            ));
        }
    };
    let query = SessionQuery {
        from_ms: time("from", &q.from)?,
        to_ms: time("to", &q.to)?,
        scenario: q.scenario.clone(),
        user_id: q.user.clone(),
        sort,
        offset: number("offset", q.offset.as_deref(), 0, 0..=u64::MAX / 2)?,
        limit: number("limit", q.limit.as_deref(), 50, 1..=200)?,
    };
    let (mut sessions, total) = rec.store.sessions(&query).await.map_err(unavailable)?;
    for s in &mut sessions {
        if let Ok(sid) = s.session_id.parse::<SessionId>() {
            s.live = matches!(state.calls.leases.call_of(&sid).await, Ok(Some(_)));
        }
    }
    let shown = query.offset + sessions.len() as u64;
    Ok(Json(SessionList {
        next_offset: (shown < total).then_some(shown),
        sessions,
        total,
    }))
}

/// Erases a session's record (a privacy request): the server API key or the owning user.
#[utoipa::path(delete, path = "/api/sessions/{id}/record", tag = "record",
    params(("id" = String, Path, description = "Session id")),
    security(("server_api_key" = [])),
    responses((status = 204, description = "Erased"), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
pub async fn erase(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    allowed(&state, &headers, &id, false).await?;
    let rec = recorder(&state)?;
    // The buffer first (it refuses later entries), then the database (which also drops any
    // batch a flusher was writing when this ran).
    rec.buffer.erase(&id).await.map_err(unavailable)?;
    rec.store.erase(&id).await.map_err(unavailable)?;
    tracing::info!(session_id = %id, "conversation record erased");
    Ok(StatusCode::NO_CONTENT)
}
