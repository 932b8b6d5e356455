//! `GET /api/scenarios` and `GET /api/scenarios/{id}`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::error::{ApiError, Json, Path};
use crate::scenario::view::{ScenarioDetail, ScenarioSummary};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/scenarios", get(list))
        .route("/api/scenarios/{id}", get(detail))
}

/// Lists every scenario.
#[utoipa::path(get, path = "/api/scenarios", tag = "scenarios",
    responses((status = 200, body = Vec<ScenarioSummary>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ScenarioSummary>> {
    Json(
        state
            .scenarios
            .all()
            .map(|s| ScenarioSummary::of(s))
            .collect(),
    )
}

/// One scenario in full: agents with instructions, tools and handoffs, and guardrails.
#[utoipa::path(get, path = "/api/scenarios/{id}", tag = "scenarios",
    params(("id" = String, Path, description = "Scenario id or alias")),
    responses((status = 200, body = ScenarioDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScenarioDetail>, ApiError> {
    let s = state
        .scenarios
        .resolve(&id)
        .ok_or_else(|| unknown_scenario(&state, &id, false))?;
    Ok(Json(ScenarioDetail::of(&s)))
}

/// `unknown_scenario` naming the valid ids (404 on a path, 400 in a request).
pub fn unknown_scenario(state: &AppState, id: &str, in_request: bool) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    let msg = format!(
        "unknown scenario {shown:?}; scenarios are {}",
        state.scenarios.ids().join(", ")
    );
    if in_request {
        ApiError::bad_request("unknown_scenario", msg)
    } else {
        ApiError::not_found("unknown_scenario", msg)
    }
}
