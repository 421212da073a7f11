//! Agents that fail on purpose: [`FaultyAgent`], a stand-in that does nothing but
//! follow its [`FaultPlan`], and [`Faulty`], which puts the same plan around a real
//! agent of yours, so its supervision is tested with its own code in the loop.

use serde_json::Value;

use super::{FaultPlan, act_out};
use crate::agent::{Agent, AgentDescriptor, AgentResult, AgentSettings};
use crate::context::AgentContext;
use crate::lifecycle::Transition;
use crate::messaging::{AgentMessage, Handles};
use crate::supervisor::ChildSpec;

/// An agent that does nothing but follow its [`FaultPlan`]: a stand-in for real
/// agents in supervision tests. Cycles every 10 ms, with the default cycle timeout of
/// 5 minutes: for plans with hangs, set a short one on its child spec
/// (`ChildSpec::agent(id, factory).cycle_timeout(Duration::from_millis(100))`).
#[derive(crate::Agent, Debug, Clone)]
#[agent(name = "faulty", cycle = "10ms", heartbeat = "1s", shutdown_timeout = "200ms")]
pub struct FaultyAgent {
    plan: FaultPlan,
}

impl FaultyAgent {
    /// An agent following `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        Self { plan }
    }
}

impl Agent for FaultyAgent {
    async fn initialize(&mut self, ctx: &AgentContext) -> AgentResult {
        act_out(self.plan.next_initialize_fault(ctx.agent_id()), ctx.agent_id(), "initialize").await
    }

    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        act_out(self.plan.next_cycle_fault(ctx.agent_id()), ctx.agent_id(), "cycle").await
    }
}

/// A child spec for a [`FaultyAgent`] with id `id` following `plan` (each restart
/// gets a fresh agent on the same plan).
pub fn faulty_child(plan: &FaultPlan, id: &str) -> ChildSpec {
    let plan = plan.clone();
    ChildSpec::agent(id, move || FaultyAgent::new(plan.clone()))
}

/// Your agent `A` with a [`FaultPlan`] around it: before each `initialize` and `cycle`
/// the plan's fault for that agent id (if any) is acted out — a panic, an error or a
/// hang — and otherwise your hook runs. Everything else (settings, transitions,
/// heartbeat payload, shutdown, typed messages) is `A`'s own.
///
/// ```no_run
/// # use vigil_runtime::prelude::*;
/// # use vigil_runtime::testkit::{Fault, FaultPlan, Faulty};
/// # #[derive(Agent, Default)] struct Billing;
/// # impl vigil_runtime::Agent for Billing { async fn cycle(&mut self, _: &AgentContext) -> AgentResult { Ok(()) } }
/// let plan = FaultPlan::new().at_cycle("billing", 2, Fault::Panic);
/// let child = ChildSpec::agent("billing", move || Faulty::new(Billing::default(), plan.clone()));
/// # drop(child);
/// ```
#[derive(Debug, Clone)]
pub struct Faulty<A> {
    inner: A,
    plan: FaultPlan,
}

impl<A> Faulty<A> {
    /// `inner`, failing as `plan` says.
    pub fn new(inner: A, plan: FaultPlan) -> Self {
        Self { inner, plan }
    }

    /// The agent inside.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A: AgentDescriptor> AgentDescriptor for Faulty<A> {
    fn settings() -> AgentSettings {
        A::settings()
    }
}

impl<A: Agent> Agent for Faulty<A> {
    async fn initialize(&mut self, ctx: &AgentContext) -> AgentResult {
        act_out(self.plan.next_initialize_fault(ctx.agent_id()), ctx.agent_id(), "initialize").await?;
        self.inner.initialize(ctx).await
    }

    async fn cycle(&mut self, ctx: &AgentContext) -> AgentResult {
        act_out(self.plan.next_cycle_fault(ctx.agent_id()), ctx.agent_id(), "cycle").await?;
        self.inner.cycle(ctx).await
    }

    async fn on_transition(&mut self, transition: &Transition, ctx: &AgentContext) {
        self.inner.on_transition(transition, ctx).await;
    }

    fn heartbeat_payload(&self) -> Option<Value> {
        self.inner.heartbeat_payload()
    }

    async fn shutdown(&mut self, ctx: &AgentContext) -> AgentResult {
        self.inner.shutdown(ctx).await
    }
}

impl<A: Handles<M>, M: AgentMessage> Handles<M> for Faulty<A> {
    async fn handle(&mut self, message: M, ctx: &AgentContext) -> Result<M::Reply, crate::AgentError> {
        self.inner.handle(message, ctx).await
    }
}
