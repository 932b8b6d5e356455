//! Building and running the application: `Application::build` wires config into state and
//! the router and binds the port; `router(state)` is the one router tests and the binary
//! share; `run_until_stopped` serves until SIGINT/SIGTERM and then drains gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::TokenIssuer;
use crate::config::Config;
use crate::error::not_found_fallback;
use crate::http::edge::{Edge, EdgeLayer};
use crate::scenario::ScenarioRegistry;
use crate::sessions::{SessionSettings, Sessions};
use crate::state::{AppState, Inner};
use crate::upstream::UpstreamClient;
use crate::ws::hub::Hub;

mod backends;

/// A built application, bound to its port and ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Loads scenarios, connects backends, and binds the port. Fails (before binding) on
    /// any invalid setting or scenario file.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check_mode()?;
        let scenarios = ScenarioRegistry::load(config.scenarios_dir.as_deref())
            .context("invalid scenario file")?;
        let tools =
            crate::tools::ToolRegistry::build(&scenarios).context("invalid tool declaration")?;
        let tokens = token_issuer(&config);
        crate::metrics::handle(); // the recorder exists before the first request
        let upstream =
            UpstreamClient::from_config(&config).context("building the upstream client")?;
        let hub = Hub::new(config.conn_queue);
        let instance_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let tasks = crate::tasks::Tasks::new();
        let adopt_now = Arc::new(tokio::sync::Notify::new());
        let shared = backends::Shared {
            config: &config,
            hub: &hub,
            instance_id: &instance_id,
            local_calls: Arc::new(dashmap::DashMap::new()),
            tasks: &tasks,
            adopt_now: &adopt_now,
        };
        let backends::Backends {
            broker,
            store,
            memory,
            calls,
            record_buffer,
        } = backends::connect(shared).await?;
        let scenarios = Arc::new(scenarios);
        let tools = Arc::new(tools);
        let moderator = Arc::new(crate::moderation::Moderator::new(
            config.moderation,
            config.moderation_fail_closed,
            &config.deny_patterns,
        ));
        let sessions = Arc::new(Sessions {
            store: store.clone(),
            broker: broker.clone(),
            memory: memory.clone(),
            scenarios: scenarios.clone(),
            tools: tools.clone(),
            upstream: upstream.clone(),
            moderator: moderator.clone(),
            settings: session_settings(&config),
            live_calls: std::sync::OnceLock::new(),
            record: backends::recorder(&config, record_buffer, &tasks).await?,
        });
        let calls = Arc::new(calls);
        let call_deps = wire_calls(&config, &sessions, &calls, &instance_id, &tasks, adopt_now);
        let health = readiness(&tasks, &sessions).await;
        let limits = crate::http::limits::Limits::new(&config, &tasks);
        let state = AppState::new(Inner {
            tasks,
            health,
            call_deps,
            sessions,
            store,
            broker,
            memory,
            calls,
            hub,
            scenarios,
            tools,
            moderator,
            upstream,
            tokens,
            users: crate::auth::user::UserVerifier::from_settings(&config.access),
            limits,
            instance_id,
            started: Instant::now(),
            config,
        });
        crate::realtime::sideband::spawn_janitor(state.call_deps.clone());
        let listener = TcpListener::bind(state.config.bind)
            .await
            .with_context(|| format!("binding {}", state.config.bind))?;
        let addr = listener.local_addr()?;
        announce(&state, addr);
        Ok(Self { listener, state })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The application state (tests reach stores through it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_with_shutdown(shutdown_signal()).await
    }

    /// Serves until `signal` completes. Then it stops accepting, closes event-channel
    /// connections with 1012 in batches (clients reconnect elsewhere with `since`/`epoch`,
    /// without all arriving at once), and drains in-flight requests, giving up after
    /// `SWITCHBOARD_SHUTDOWN_TIMEOUT`.
    pub async fn run_with_shutdown(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let hub = self.state.hub.clone();
        let budget = self.state.config.ops.shutdown_timeout;
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let closer = hub.clone();
        let calls = self.state.call_deps.clone();
        let tasks = self.state.tasks.clone();
        let background = tasks.clone();
        let (handed_tx, handed_rx) = tokio::sync::oneshot::channel();
        let signal = async move {
            signal.await;
            let _ = stopping_tx.send(());
            // Calls first: each released lease lets another instance re-attach at once.
            let handing = background.spawn(async move {
                calls.hand_over(budget / 2).await;
            });
            let _ = handed_tx.send(handing);
            background.spawn(close_in_batches(closer, budget / 2));
        };
        let app = router(self.state);
        // Small writes (an event frame, an answer) leave at once instead of waiting for the
        // peer's acknowledgement of the previous one (Nagle).
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(app),
        )
        .with_graceful_shutdown(signal);
        let deadline = async move {
            if stopping_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(budget).await;
        };
        // Upgraded sockets are not the server's to wait for: wait until they are gone too.
        let drained = async move {
            let r = serve.await;
            while hub.connection_count() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r
        };
        let out = tokio::select! {
            r = drained => {
                tracing::info!("drained; stopped");
                r
            }
            () = deadline => {
                tracing::warn!(timeout = ?budget, "shutdown timeout: exiting with requests still in flight");
                Ok(())
            }
        };
        // The hand-over finishes (leases released, the others told) before the process
        // may exit; then whatever still runs in the background is stopped.
        if let Ok(handing) = handed_rx.await {
            let _ = tokio::time::timeout(budget / 2, handing).await;
        }
        tasks.stop(Duration::from_secs(1)).await;
        out
    }
}

/// The calls layer over `sessions`, and the weak link back that lets a switch from outside
/// a call reach it.
fn wire_calls(
    config: &Config,
    sessions: &Arc<Sessions>,
    calls: &Arc<crate::realtime::Calls>,
    instance_id: &str,
    tasks: &crate::tasks::Tasks,
    adopt_now: Arc<tokio::sync::Notify>,
) -> Arc<crate::realtime::CallDeps> {
    let call_deps = Arc::new(crate::realtime::CallDeps {
        sessions: sessions.clone(),
        calls: calls.clone(),
        realtime: config.realtime.clone(),
        realtime_model: config.realtime_model.clone(),
        api_key: config.openai_api_key.clone(),
        instance_id: instance_id.to_owned(),
        tasks: crate::tasks::Tasks::child_of(tasks),
        adopt_now,
    });
    let weak = Arc::downgrade(&call_deps);
    let live: std::sync::Weak<dyn crate::sessions::LiveCalls> = weak;
    let _ = sessions.live_calls.set(live);
    call_deps
}

/// The session-token issuer; warns when its secret is a random per-process one.
fn token_issuer(config: &Config) -> TokenIssuer {
    let (tokens, generated) = TokenIssuer::from_config(config);
    if generated {
        tracing::warn!(
            "no SWITCHBOARD_SESSION_SECRET is set: session tokens are signed with a random \
             per-process secret and stop working when the process restarts"
        );
    }
    tokens
}

/// Readiness, checked once now and then in the background for as long as `sessions` lives.
async fn readiness(
    tasks: &crate::tasks::Tasks,
    sessions: &Arc<Sessions>,
) -> Arc<crate::sessions::health::Health> {
    let health = Arc::new(crate::sessions::health::Health::default());
    health.check(sessions).await;
    tasks.spawn(health.clone().watch(Arc::downgrade(sessions)));
    health
}

/// What the session use-cases read from the settings.
fn session_settings(config: &Config) -> SessionSettings {
    SessionSettings {
        session_ttl: config.session_ttl,
        history_ttl: config.history_ttl,
        // Every attempt of the first call, and a margin to store its result.
        tool_claim_wait: config.upstream_timeout * (config.upstream_retries + 1)
            + Duration::from_secs(5),
        agents: config.agents.clone(),
    }
}

/// Logs how this instance runs (mode, upstream, address).
fn announce(state: &AppState, addr: SocketAddr) {
    let upstream_desc = match &state.upstream {
        Some(_) => format!("configured ({})", state.config.openai_base_url),
        None => "offline (no OPENAI_API_KEY)".to_owned(),
    };
    tracing::info!(
        mode = state.config.mode(),
        upstream = %upstream_desc,
        address = %addr,
        instance_id = %state.instance_id,
        "switchboard is listening on http://{addr} in {} mode, upstream {upstream_desc}",
        state.config.mode()
    );
}

/// The application: the router with every layer, inside the [`Edge`] (request id, span, time
/// limit, panic guard, JSON errors, security headers). The edge wraps the whole router, not
/// each route, so a request clones no boxed service for it.
pub fn router(state: AppState) -> Edge<Router> {
    let body_limit = state.config.body_limit;
    let cors = cors_layer(&state.config.cors_origins);
    let timeout = state.config.ops.request_timeout;
    // Route-level layers see the matched route template (for metrics); the fallback is
    // added after them and counts as `unmatched`.
    let mut app = crate::http::routes()
        .route("/metrics", axum::routing::get(crate::http::metrics::render))
        .layer(crate::http::metrics::TrackLayer)
        .fallback(not_found_fallback)
        .layer(DefaultBodyLimit::max(body_limit));
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    EdgeLayer::new(timeout).layer(app.with_state(state))
}

/// Closes every connection with 1012, at most [`CLOSE_BATCH`] every 50 ms, spread so the
/// last batch goes out within `within`.
async fn close_in_batches(hub: Arc<Hub>, within: Duration) {
    let total = hub.connection_count();
    let batches = total.div_ceil(CLOSE_BATCH).max(1);
    let pause = (within / batches as u32).min(Duration::from_millis(50));
    tracing::info!(
        connections = total,
        batches,
        "closing event-channel connections (1012)"
    );
    while hub.close_some(proto_events::CloseCode::ServiceRestart, CLOSE_BATCH) > 0 {
        tokio::time::sleep(pause).await;
    }
}

/// Connections closed per batch at shutdown.
const CLOSE_BATCH: usize = 500;

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ]),
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
