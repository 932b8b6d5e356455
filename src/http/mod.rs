//! The REST surface: one file per resource, each exposing `router()`. Handlers are thin:
//! parse (through the JSON-error extractors of [`crate::error`]), call the domain, map errors.

pub mod agent;
pub mod batch;
pub mod caller;
pub mod calls;
pub mod context;
pub mod demo;
pub mod edge;
pub mod events;
pub mod health;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod moderate;
pub mod openapi;
pub mod orchestrate;
pub mod record;
pub mod responses;
pub mod scenarios;
pub mod sdk;
pub mod session2;
pub mod sessions;
pub mod tools;

use axum::Router;

use crate::state::AppState;

/// Every REST route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(keys::router())
        .merge(responses::router())
        .merge(scenarios::router())
        .merge(session2::router())
        .merge(sessions::router())
        .merge(record::router())
        .merge(tools::router())
        .merge(moderate::router())
        .merge(context::router())
        .merge(orchestrate::router())
        .merge(agent::router())
        .merge(sdk::router())
        .merge(calls::router())
        .merge(events::router())
        .merge(batch::router())
        .merge(openapi::router())
        .merge(crate::ws::router())
        .merge(demo::router())
}
