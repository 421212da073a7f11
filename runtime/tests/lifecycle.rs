//! The transition table checked pair by pair against an independently written list of
//! the legal arrows, and the string forms of states and triggers.

use std::collections::HashMap;

use vigil_runtime::lifecycle::{
    Activate, Cause, DeployComplete, ErrorOccurred, Failure, IllegalTransition, Initialize, LifecycleError,
    LifecycleMessage, MaintenanceComplete, MaintenanceRequest, ManualFixed, ManualIntervention,
    OptimizationComplete, OptimizationRequest, RecoveryComplete, RecoveryFailed, RecoveryStart,
    ShutdownRequest, Stage, StandbyRequest, Start, State, Transition, Trigger, next_state,
};

use State::{
    Active, Deploying, Error, Initializing, Maintenance, Manual, Monitoring, Optimizing, Recovery, Shutdown,
    Standby,
};

/// Every legal `(from, trigger) -> to`, written out by hand from the specification's
/// diagram and the three documented extensions (not derived from the table under test).
const LEGAL: &[(State, Trigger, State)] = &[
    // The diagram.
    (Initializing, Trigger::Initialize, Deploying),
    (Deploying, Trigger::DeployComplete, Monitoring),
    (Monitoring, Trigger::Start, Active),
    (Active, Trigger::OptimizationRequest, Optimizing),
    (Optimizing, Trigger::OptimizationComplete, Active),
    (Active, Trigger::StandbyRequest, Standby),
    (Standby, Trigger::Activate, Active),
    (Active, Trigger::MaintenanceRequest, Maintenance),
    (Maintenance, Trigger::MaintenanceComplete, Active),
    (Active, Trigger::ErrorOccurred, Error),
    (Error, Trigger::RecoveryStart, Recovery),
    (Recovery, Trigger::RecoveryComplete, Active),
    (Recovery, Trigger::RecoveryFailed, Error),
    (Error, Trigger::ManualIntervention, Manual),
    (Manual, Trigger::ManualFixed, Active),
    (Active, Trigger::ShutdownRequest, Shutdown),
    // Extension 1: ErrorOccurred from every other running state.
    (Initializing, Trigger::ErrorOccurred, Error),
    (Deploying, Trigger::ErrorOccurred, Error),
    (Monitoring, Trigger::ErrorOccurred, Error),
    (Optimizing, Trigger::ErrorOccurred, Error),
    (Standby, Trigger::ErrorOccurred, Error),
    (Maintenance, Trigger::ErrorOccurred, Error),
    (Recovery, Trigger::ErrorOccurred, Error),
    // Extension 2: ShutdownRequest from every other state but shutdown.
    (Initializing, Trigger::ShutdownRequest, Shutdown),
    (Deploying, Trigger::ShutdownRequest, Shutdown),
    (Monitoring, Trigger::ShutdownRequest, Shutdown),
    (Optimizing, Trigger::ShutdownRequest, Shutdown),
    (Standby, Trigger::ShutdownRequest, Shutdown),
    (Maintenance, Trigger::ShutdownRequest, Shutdown),
    (Error, Trigger::ShutdownRequest, Shutdown),
    (Recovery, Trigger::ShutdownRequest, Shutdown),
    (Manual, Trigger::ShutdownRequest, Shutdown),
    // Extension 3: RecoveryStart (a requested restart) from every running state but
    // recovery.
    (Initializing, Trigger::RecoveryStart, Recovery),
    (Deploying, Trigger::RecoveryStart, Recovery),
    (Monitoring, Trigger::RecoveryStart, Recovery),
    (Active, Trigger::RecoveryStart, Recovery),
    (Optimizing, Trigger::RecoveryStart, Recovery),
    (Standby, Trigger::RecoveryStart, Recovery),
    (Maintenance, Trigger::RecoveryStart, Recovery),
];

#[test]
fn every_state_and_trigger_pair_matches_the_specification() {
    let expected: HashMap<(State, Trigger), State> =
        LEGAL.iter().map(|&(from, trigger, to)| ((from, trigger), to)).collect();
    assert_eq!(expected.len(), LEGAL.len(), "the expected list has a duplicate pair");
    assert_eq!(expected.len(), 39);

    let mut checked = 0;
    for from in State::ALL {
        for trigger in Trigger::ALL {
            checked += 1;
            let actual = next_state(from, trigger);
            assert_eq!(actual, from.apply(trigger), "State::apply must agree with next_state");
            match expected.get(&(from, trigger)) {
                Some(&to) => assert_eq!(actual, Ok(to), "{from} --{trigger}-->"),
                None => {
                    let error = actual.expect_err(&format!("{from} --{trigger}--> must be illegal"));
                    assert_eq!(error, IllegalTransition { from, trigger });
                    assert_eq!(
                        error.to_string(),
                        format!("illegal transition: {trigger} is not allowed in state `{from}`")
                    );
                }
            }
        }
    }
    assert_eq!(checked, 11 * 16);
}

#[test]
fn illegal_transition_message_names_trigger_and_state() {
    let error = next_state(Standby, Trigger::OptimizationRequest).unwrap_err();
    assert_eq!(
        error.to_string(),
        "illegal transition: OptimizationRequest is not allowed in state `standby`"
    );
    let wrapped = LifecycleError::from(error);
    assert_eq!(wrapped, LifecycleError::Illegal(error));
    assert_eq!(wrapped.to_string(), error.to_string());
}

#[test]
fn shutdown_is_final_and_running_states_are_the_documented_ones() {
    assert_eq!(Shutdown.legal_triggers().count(), 0);
    let running: Vec<State> = State::ALL.into_iter().filter(|state| state.is_running()).collect();
    assert_eq!(
        running,
        [Initializing, Deploying, Monitoring, Active, Optimizing, Standby, Maintenance, Recovery]
    );
    assert_eq!(
        Error.legal_triggers().collect::<Vec<_>>(),
        [Trigger::RecoveryStart, Trigger::ManualIntervention, Trigger::ShutdownRequest]
    );
}

#[test]
fn state_round_trips_through_its_string_forms() {
    let names = [
        "initializing",
        "deploying",
        "monitoring",
        "active",
        "optimizing",
        "standby",
        "maintenance",
        "error",
        "recovery",
        "manual",
        "shutdown",
    ];
    for (state, name) in State::ALL.into_iter().zip(names) {
        assert_eq!(state.as_str(), name);
        assert_eq!(state.to_string(), name);
        assert_eq!(name.parse::<State>(), Ok(state));
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, format!("\"{name}\""));
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state);
    }
}

#[test]
fn garbage_is_not_a_state() {
    for input in ["", "Active", "ACTIVE", " active", "running", "shut down"] {
        let error = input.parse::<State>().unwrap_err();
        assert_eq!(error.input, input);
        assert!(error.to_string().contains(&format!("unknown lifecycle state `{input}`")), "{error}");
        assert!(serde_json::from_str::<State>(&format!("\"{input}\"")).is_err());
    }
}

#[test]
fn triggers_display_in_pascal_case() {
    assert_eq!(Trigger::ALL.len(), 16);
    assert_eq!(Trigger::OptimizationRequest.to_string(), "OptimizationRequest");
    assert_eq!(Trigger::ShutdownRequest.as_str(), "ShutdownRequest");
    for trigger in Trigger::ALL {
        assert_eq!(serde_json::to_string(&trigger).unwrap(), format!("\"{trigger}\""));
    }
}

#[test]
fn each_message_stands_for_its_trigger_with_a_typed_cause() {
    fn check<M: LifecycleMessage>(message: M, trigger: Trigger, cause: Cause) {
        assert_eq!(M::TRIGGER, trigger);
        assert_eq!(message.cause(), cause);
    }
    let reason = || "boom".to_owned();
    check(Initialize, Trigger::Initialize, Cause::Startup);
    check(DeployComplete, Trigger::DeployComplete, Cause::Startup);
    check(Start, Trigger::Start, Cause::Startup);
    check(OptimizationRequest, Trigger::OptimizationRequest, Cause::Requested);
    check(OptimizationComplete, Trigger::OptimizationComplete, Cause::Requested);
    check(StandbyRequest, Trigger::StandbyRequest, Cause::Requested);
    check(Activate, Trigger::Activate, Cause::Requested);
    check(MaintenanceRequest, Trigger::MaintenanceRequest, Cause::Requested);
    check(MaintenanceComplete, Trigger::MaintenanceComplete, Cause::Requested);
    let failure = || Failure::panic(Stage::Cycle, "boom");
    check(
        ErrorOccurred { failure: failure() },
        Trigger::ErrorOccurred,
        Cause::Failure { failure: failure() },
    );
    check(RecoveryStart { attempt: 2 }, Trigger::RecoveryStart, Cause::Restart { attempt: 2 });
    check(RecoveryComplete, Trigger::RecoveryComplete, Cause::Startup);
    check(
        RecoveryFailed { failure: failure() },
        Trigger::RecoveryFailed,
        Cause::Failure { failure: failure() },
    );
    check(
        ManualIntervention { reason: reason() },
        Trigger::ManualIntervention,
        Cause::Escalation { reason: reason() },
    );
    check(ManualFixed, Trigger::ManualFixed, Cause::Requested);
    check(ShutdownRequest, Trigger::ShutdownRequest, Cause::Shutdown);
}

#[test]
fn transitions_are_built_from_the_table_and_serialize() {
    let failure = Failure::message(Stage::Cycle, "boom");
    let transition =
        Transition::new("health", Active, Trigger::ErrorOccurred, Cause::Failure { failure }).unwrap();
    assert_eq!((transition.from, transition.to), (Active, Error));

    let json = serde_json::to_value(&transition).unwrap();
    assert_eq!(json["agent_id"], "health");
    assert_eq!(json["from"], "active");
    assert_eq!(json["to"], "error");
    assert_eq!(json["trigger"], "ErrorOccurred");
    assert_eq!(
        json["cause"],
        serde_json::json!({
            "kind": "failure",
            "failure": { "stage": "cycle", "kind": { "type": "error", "message": "boom", "chain": [] } },
        })
    );
    assert_eq!(serde_json::from_value::<Transition>(json).unwrap(), transition);

    assert_eq!(
        Transition::new("health", Shutdown, Trigger::Start, Cause::Requested).unwrap_err(),
        IllegalTransition { from: Shutdown, trigger: Trigger::Start }
    );
}

#[test]
fn stop_failures_are_typed_and_read_as_sentences() {
    use vigil_runtime::StopFailure;
    let killed = StopFailure::Killed { timeout: std::time::Duration::from_millis(200) };
    assert_eq!(killed.to_string(), "did not stop within 200ms; killed");
    let refused = StopFailure::Refused(LifecycleError::AgentStopped);
    let subtree = StopFailure::Subtree(vec![("a".into(), killed.clone()), ("b".into(), refused)]);
    assert_eq!(
        subtree.to_string(),
        "2 child(ren) of the subtree did not stop cleanly: a: did not stop within 200ms; killed; \
         b: ShutdownRequest failed: the agent has stopped"
    );
    let json = serde_json::to_value(&killed).unwrap();
    assert_eq!(json["kind"], "killed");
}
