//! Switchboard: the server side of realtime voice-agent apps.
//!
//! Browsers talk to the OpenAI Realtime API directly over WebRTC; Switchboard owns
//! everything around it: scenarios, the browser's ephemeral key, tools, moderation,
//! orchestration, server-side agents, and a per-session event channel.
//!
//! # Layout
//! - [`config`]: typed settings (clap + env), validated before the port is bound.
//! - [`startup`]: `Application::build` / `run_until_stopped`, the shared `router(state)`.
//! - [`error`]: `ApiError`, the one JSON error shape, and the JSON-rejection extractors.
//! - [`telemetry`]: logging and request spans.
//! - [`state`]: `AppState`, what handlers reach.
//! - [`http`]: REST handlers, one file per resource, and the demo page at `/` (`http::demo`).
//! - [`agent`]: server-side agent turns (the tool loop over the Responses API) and
//!   multi-turn agent sessions (`/api/sdk/session/*`: turn lock, handoffs, linked events).
//! - [`auth`]: session tokens (HS256 JWT).
//! - [`domain`]: validated identifier newtypes.
//! - [`sessions`]: the application layer: publish a typed event, switch the agent, run a
//!   tool for a session, idempotency claims, re-creating a lost session from its token.
//! - [`scenario`]: scenario files, validation, registry and JSON views.
//! - [`store`]: `SessionStore` trait and the in-memory store.
//! - [`broker`]: `Broker` trait (per-session histories) and the in-memory broker.
//! - [`realtime`]: server-side realtime control: call setup, the sideband, leases, control.
//! - [`memory`]: server-side agent memory (Agents SDK `Session` semantics and Redis layout).
//! - [`moderation`]: local rules, PII redaction, upstream and brand checks.
//! - [`orchestrator`]: which agent should be in charge (local scorer, LLM classifier).
//! - [`tools`]: the `Tool` trait, registry, built-in and webhook tools.
//! - [`upstream`]: the OpenAI-compatible HTTP client.
//! - [`ws`]: the event channel (WebSocket, SSE), the local hub, recovery.

pub mod agent;
pub mod auth;
pub mod broker;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod moderation;
pub mod orchestrator;
pub mod realtime;
pub mod scenario;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod upstream;
pub mod ws;

pub use config::Config;
pub use startup::Application;
