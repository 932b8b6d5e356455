//! Switchboard: the server side of realtime voice-agent apps.
//!
//! Browsers talk to the OpenAI Realtime API directly over WebRTC; Switchboard owns
//! everything around it: scenarios, the browser's ephemeral key, tools, moderation,
//! orchestration, server-side agents, and a per-session event channel.
//!
//! # Layout
//!
//! Five tiers; a file imports its own tier and the ones below, never above, and no files
//! import each other in a circle (`tests/architecture.rs` checks it; ARCHITECTURE.md says
//! where new things go).
//!
//! - Edge: [`http`] (one file per resource; `http::caller` and `http::limits` for access and
//!   rate limits; `http::metrics` serves `/metrics`), [`ws`] (WebSocket, SSE, the local hub,
//!   recovery), [`error`] (`ApiError` and, in `error/map.rs`, every domain error's status),
//!   [`state`] (`AppState`), [`startup`] (wiring, `router(state)`, shutdown).
//! - Application: [`sessions`] (publish a typed event, switch the active agent, run a tool for
//!   a session, idempotency claims, re-creating a lost session, multi-turn agent sessions) and
//!   [`realtime`] (call leases, the sideband, the control bus, ending a call).
//! - Domain: [`scenario`] (file types, checks, validated model, registry, views), [`tools`]
//!   (registry, `tools::run`: the one tool execution, `tools::turn`: the one Responses tool
//!   loop), [`moderation`], [`orchestrator`].
//! - Backends: [`store`] (`SessionStore`: memory and Redis), [`memory`] (agent memory, Agents
//!   SDK layout), [`broker`] (`Broker`: memory and Redis, `Frame`), [`upstream`] (the
//!   OpenAI-compatible client), [`auth`] (session and user tokens), [`record`] (the
//!   conversation record: its buffer, its SQL store, the flusher, the price table).
//! - Leaves: [`config`] (typed settings), [`clock`], [`domain`] (id newtypes), [`tasks`]
//!   (owned background work),
//!   [`telemetry`] (logs and traces), [`metrics`] (the Prometheus recorder).

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
pub mod record;
pub mod scenario;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod tools;
pub mod upstream;
pub mod ws;

pub use config::Config;
pub use startup::Application;
