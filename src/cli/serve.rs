//! The `vigil` command's HTTP glue: `--http-token-env`, starting the service of
//! [`crate::http`] for `vigil run --http`, and `vigil dashboard` (the same endpoints
//! over the database alone, read-only).

use vigil_persistence::SharedState;

use super::CliError;
use super::run::{notice, shutdown_signal};

/// The operator token of `--http-token-env NAME`: the value of the variable `NAME`,
/// which must be set and not empty (bad usage otherwise, naming the variable only).
pub(super) fn http_token(variable: Option<&str>) -> Result<Option<String>, CliError> {
    let Some(name) = variable else { return Ok(None) };
    match std::env::var(name) {
        Ok(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
        _ => Err(CliError::Usage(format!(
            "--http-token-env: the environment variable {name} is not set or empty"
        ))),
    }
}

/// What `vigil run --http` serves: the platform's runtime, its operator token if any,
/// its alerter's figures if it alerts.
pub(super) fn platform_state(
    runtime: &vigil_runtime::Runtime,
    token: Option<&str>,
    alerter: Option<&crate::alerts::Alerter>,
) -> crate::http::HttpState {
    let mut state = crate::http::HttpState::new(runtime.shared_state().clone()).with_runtime(runtime.clone());
    if let Some(token) = token {
        state = state.with_operator_token(token);
    }
    if let Some(alerter) = alerter {
        state = state.with_alerts(alerter.view());
    }
    state
}

/// Starts the HTTP service on `addr` and says where.
pub(super) fn start_http(
    addr: std::net::SocketAddr,
    state: crate::http::HttpState,
    json_logs: bool,
) -> Result<crate::http::HttpServerHandle, CliError> {
    let actions = if state.operator_actions_enabled() { "enabled" } else { "off" };
    let server =
        crate::http::serve(addr, state).map_err(|e| CliError::Input(format!("--http {addr}: {e}")))?;
    notice(
        json_logs,
        &format!(
            "serving http://{}/metrics, /healthz, /readyz, /api/v1/ (operator actions {actions})",
            server.local_addr()
        ),
    );
    Ok(server)
}

/// `vigil dashboard`: the HTTP endpoints over the database alone, read-only, until
/// Ctrl-C or SIGTERM.
pub(super) async fn dashboard(shared: SharedState, addr: std::net::SocketAddr) -> Result<(), CliError> {
    let description = shared.store().config().describe();
    let server = start_http(addr, crate::http::HttpState::new(shared), false)?;
    notice(false, &format!("dashboard of {description}: read-only, no agents run here (Ctrl-C to stop)"));
    let reason = shutdown_signal(None).await;
    notice(false, &format!("{reason}; stopping"));
    server.stop().await;
    Ok(())
}
