//! Integration tests: the real application on 127.0.0.1:0, a fake upstream on loopback.
//! One test binary (faster to link than one per file).

mod support;

mod access;
mod access_matrix;
mod agent;
mod agent_interop;
mod binary;
mod broker_contract;
mod channel;
mod context;
mod errors;
mod events_api;
mod health;
mod keys;
mod live_calls;
mod memory_contract;
mod moderation;
mod openapi;
mod ops;
mod orchestrate;
mod python_sdk;
mod realtime_calls;
mod realtime_edges;
mod realtime_takeover;
mod record;
mod record_durability;
mod record_store;
mod redis_cluster;
mod redis_faults;
mod redis_mode;
mod responses;
mod scenario_files;
mod scenarios;
mod schemathesis;
mod sdk_sessions;
mod session2;
mod sessions;
mod shutdown;
mod store_contract;
mod tools;
mod traces;
mod user_tokens;
