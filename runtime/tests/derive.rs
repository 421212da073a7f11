//! `#[derive(Agent)]`: the settings it generates, and trybuild UI tests for every
//! diagnostic it promises (`tests/ui/fail`) and the accepted forms (`tests/ui/pass`).
//!
//! Regenerate the expected `.stderr` files with `TRYBUILD=overwrite`, then read them.

use std::time::Duration;

use vigil_runtime::{Agent, AgentContext, AgentDescriptor, AgentResult, AgentSettings, Restart};

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

/// Implements the `Agent` trait with a cycle that does nothing.
macro_rules! idle_agent {
    ($ty:ty) => {
        impl Agent for $ty {
            async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
                Ok(())
            }
        }
    };
}

#[derive(Agent)]
struct HeartbeatHealthAgent;
idle_agent!(HeartbeatHealthAgent);

#[derive(Agent)]
#[agent(name = "explicit.agent-1", cycle = "250ms", heartbeat = "2m", restart = "transient")]
#[agent(mailbox = 128, shutdown_timeout = "1h")]
struct Explicit {
    _ticks: u64,
}
idle_agent!(Explicit);

#[derive(Agent)]
#[agent(restart = "temporary", cycle = "3s")]
struct HTTPProbe(#[allow(dead_code)] u8);
idle_agent!(HTTPProbe);

#[test]
fn defaults_are_those_of_agent_settings_new() {
    let settings = <HeartbeatHealthAgent as AgentDescriptor>::settings();
    assert_eq!(settings, AgentSettings::new("heartbeat_health_agent"));
    assert_eq!(settings.cycle_interval, Duration::from_secs(5));
    assert_eq!(settings.heartbeat_interval, Duration::from_secs(30));
    assert_eq!(settings.restart, Restart::Permanent);
    assert_eq!(settings.mailbox_capacity, 64);
    assert_eq!(settings.shutdown_timeout, Duration::from_secs(5));
}

#[test]
fn explicit_attributes_from_several_attributes_merge() {
    let settings = <Explicit as AgentDescriptor>::settings();
    assert_eq!(settings.name, "explicit.agent-1");
    assert_eq!(settings.cycle_interval, Duration::from_millis(250));
    assert_eq!(settings.heartbeat_interval, Duration::from_secs(120));
    assert_eq!(settings.restart, Restart::Transient);
    assert_eq!(settings.mailbox_capacity, 128);
    assert_eq!(settings.shutdown_timeout, Duration::from_secs(3600));
}

#[test]
fn unset_keys_keep_their_defaults() {
    let settings = <HTTPProbe as AgentDescriptor>::settings();
    assert_eq!(
        settings,
        AgentSettings::new("http_probe")
            .with_restart(Restart::Temporary)
            .with_cycle_interval(Duration::from_secs(3))
    );
}
