//! The `switchboard` binary: parse config, init telemetry, build, run until stopped.

use std::process::ExitCode;

use switchboard::{Application, Config, telemetry};

/// mimalloc instead of glibc's allocator: the event path allocates small buffers on every
/// request and frame, across worker threads, and glibc's malloc/free took about 18 % of an
/// instance's CPU under load (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "switchboard could not start");
            eprintln!("switchboard: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server stopped with an error");
            ExitCode::FAILURE
        }
    };
    telemetry::shutdown();
    code
}
