//! The operator command processor: carries out `agent_commands` rows (`vigil agent
//! restart|stop|fix|standby|activate|maintenance|... ID` from any shell) against this
//! runtime's agents.
//!
//! It wakes on PostgreSQL `NOTIFY` and also polls (the only way on SQLite), claims
//! only commands for agents of this runtime — so several runtimes can share one
//! database — carries each out through [`RuntimeControl`], and records the outcome:
//! for a restart, only once the agent is `active` again (or why it is not).
//!
//! Turned on with [`RuntimeBuilder::operator_commands`](crate::RuntimeBuilder::operator_commands).

use std::time::Duration;

use vigil_persistence::SharedState;
use vigil_persistence::agent_commands::{AgentCommandRecord, COMMAND_CHANNEL, CommandAction};

use crate::control::RuntimeControl;
use crate::events::EventBus;
use crate::lifecycle::{State, Trigger};

/// How often pending commands are looked for without a notification.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a restarted agent may take to be `active` again before the command fails.
pub(crate) const RESTART_DEADLINE: Duration = Duration::from_secs(30);

/// Runs until the returned handle is aborted. Call inside an actix System.
pub(crate) fn spawn(
    shared: SharedState,
    control: RuntimeControl,
    events: EventBus,
) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        let mut notifications = shared.store().listen(COMMAND_CHANNEL);
        loop {
            let ours = control.agent_ids();
            match shared.claim_agent_commands_for(&ours, 16).await {
                Ok(commands) => {
                    for command in commands {
                        let (ok, outcome) = execute(&command, &control, &events).await;
                        tracing::info!(command.id = command.id, agent.id = %command.agent_id, action = %command.action, ok, %outcome, "operator command");
                        if let Err(e) = shared.complete_agent_command(command.id, ok, &outcome).await {
                            tracing::error!(command.id = command.id, error = %e, "could not record a command's outcome");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read operator commands"),
            }
            // Wait for a notification or the next poll, whichever comes first.
            match &mut notifications {
                Some(receiver) => {
                    let _ = tokio::time::timeout(POLL_INTERVAL, receiver.recv()).await;
                }
                None => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    })
}

async fn execute(
    command: &AgentCommandRecord,
    control: &RuntimeControl,
    events: &EventBus,
) -> (bool, String) {
    let id = command.agent_id.as_str();
    let Some(action) = command.action() else {
        return (false, format!("unknown action `{}`", command.action));
    };
    match action {
        CommandAction::Restart => {
            let mut stream = events.subscribe();
            if let Err(e) = control.restart(id, "operator command").await {
                return (false, e.to_string());
            }
            match stream.wait_for_state(id, State::Active, RESTART_DEADLINE).await {
                Ok(_) => {
                    let restarts = control.status(id).await.map(|s| s.restarts).unwrap_or_default();
                    (true, format!("restarted with fresh state; active again (restarts so far: {restarts})"))
                }
                Err(e) => (false, format!("restart requested, but the agent is not active again: {e}")),
            }
        }
        CommandAction::Stop => match control.stop(id).await {
            Ok(()) => (true, "stopped".into()),
            Err(e) => (false, e.to_string()),
        },
        CommandAction::Fix => match control.fix(id).await {
            Ok(transition) => (true, format!("fixed: {} -> {}", transition.from, transition.to)),
            Err(e) => (false, e.to_string()),
        },
        CommandAction::Standby => operate(control, id, Trigger::StandbyRequest).await,
        CommandAction::Activate => operate(control, id, Trigger::Activate).await,
        CommandAction::Maintenance => operate(control, id, Trigger::MaintenanceRequest).await,
        CommandAction::EndMaintenance => operate(control, id, Trigger::MaintenanceComplete).await,
        CommandAction::Optimize => operate(control, id, Trigger::OptimizationRequest).await,
        CommandAction::EndOptimization => operate(control, id, Trigger::OptimizationComplete).await,
    }
}

/// An operational transition, and its outcome in words.
async fn operate(control: &RuntimeControl, id: &str, trigger: Trigger) -> (bool, String) {
    match control.transition(id, trigger).await {
        Ok(transition) => (true, format!("{trigger}: {} -> {}", transition.from, transition.to)),
        Err(e) => (false, e.to_string()),
    }
}
