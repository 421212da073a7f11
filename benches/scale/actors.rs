//! The other runtimes: a plain actix actor, a kameo actor and a ractor actor, each
//! answering the same `Ping` with the same handler as the Vigil agent.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use actix::prelude::*;
use kameo::actor::Spawn;
use ractor::{ActorProcessingErr, RpcReplyPort};

use crate::common::Ping;

impl actix::Message for Ping {
    type Result = u64;
}

// ------------------------------------------------------------------ actix

pub(crate) struct RawActix {
    pings: u64,
    started: Rc<Cell<usize>>,
}

impl Actor for RawActix {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.started.set(self.started.get() + 1);
    }
}

impl Handler<Ping> for RawActix {
    type Result = u64;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> u64 {
        self.pings += 1;
        self.pings
    }
}

/// Pending once, waking itself: it goes to the back of the arbiter's queue, so it
/// completes after every task queued before it has been polled once.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

pub(crate) fn actix_one() -> Addr<RawActix> {
    RawActix { pings: 0, started: Rc::default() }.start()
}

/// `n` actors to running (`started` ran for each); the addresses keep them alive.
pub(crate) async fn actix_spawn(n: usize) -> (f64, Vec<Addr<RawActix>>) {
    let counter = Rc::new(Cell::new(0));
    let started = Instant::now();
    let keep: Vec<_> = (0..n).map(|_| RawActix { pings: 0, started: counter.clone() }.start()).collect();
    // An actor's first poll (its `started`) is a task queued by `start`: a marker
    // queued after the last one, re-queued once, runs after all of them.
    let seen = counter.clone();
    let (at, ran) = actix_rt::spawn(async move {
        YieldOnce(false).await;
        (Instant::now(), seen.get())
    })
    .await
    .expect("marker");
    assert_eq!(ran, n, "every actix actor ran `started` before the marker");
    (at.duration_since(started).as_secs_f64() * 1e3, keep)
}

// ------------------------------------------------------------------ kameo

#[derive(kameo::Actor, Default)]
pub(crate) struct KameoActor {
    pings: u64,
}

impl kameo::message::Message<Ping> for KameoActor {
    type Reply = u64;
    async fn handle(&mut self, _: Ping, _: &mut kameo::message::Context<Self, u64>) -> u64 {
        self.pings += 1;
        self.pings
    }
}

pub(crate) type KameoRef = kameo::actor::ActorRef<KameoActor>;

pub(crate) fn kameo_one() -> KameoRef {
    KameoActor::spawn(KameoActor::default())
}

/// `n` actors to started (`on_start` done, as `wait_for_startup` reports).
pub(crate) async fn kameo_spawn(n: usize) -> (f64, Vec<KameoRef>) {
    let started = Instant::now();
    let keep: Vec<_> = (0..n).map(|_| KameoActor::spawn(KameoActor::default())).collect();
    for actor in &keep {
        actor.wait_for_startup().await;
    }
    (started.elapsed().as_secs_f64() * 1e3, keep)
}

pub(crate) async fn kameo_stop(actors: Vec<KameoRef>) {
    for actor in &actors {
        actor.kill();
    }
    for actor in &actors {
        actor.wait_for_shutdown().await;
    }
}

// ------------------------------------------------------------------ ractor

pub(crate) struct RactorActor;

#[derive(Debug)]
pub(crate) enum RactorMsg {
    Tell(Ping),
    Ask(Ping, RpcReplyPort<u64>),
}

impl ractor::Actor for RactorActor {
    type Msg = RactorMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ractor::ActorRef<RactorMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ractor::ActorRef<RactorMsg>,
        message: RactorMsg,
        pings: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        *pings += 1;
        if let RactorMsg::Ask(Ping, reply) = message {
            let _ = reply.send(*pings);
        }
        Ok(())
    }
}

pub(crate) type RactorRef = ractor::ActorRef<RactorMsg>;
pub(crate) type RactorKeep = Vec<(RactorRef, ractor::concurrency::JoinHandle<()>)>;

pub(crate) async fn ractor_one() -> (RactorRef, ractor::concurrency::JoinHandle<()>) {
    ractor::Actor::spawn(None, RactorActor, ()).await.expect("ractor spawn")
}

/// `n` actors to started: `Actor::spawn` returns once `pre_start` has run.
pub(crate) async fn ractor_spawn(n: usize) -> (f64, RactorKeep) {
    let started = Instant::now();
    let mut keep = Vec::with_capacity(n);
    for _ in 0..n {
        keep.push(ractor_one().await);
    }
    (started.elapsed().as_secs_f64() * 1e3, keep)
}

pub(crate) async fn ractor_stop(actors: RactorKeep) {
    for (actor, _) in &actors {
        actor.stop(None);
    }
    for (_, handle) in actors {
        let _ = handle.await;
    }
}

pub(crate) async fn ractor_ask(actor: &RactorRef) -> u64 {
    match actor.call(|reply| RactorMsg::Ask(Ping, reply), None).await.expect("ractor call") {
        ractor::rpc::CallResult::Success(n) => n,
        other => panic!("ractor call: {other:?}"),
    }
}

pub(crate) fn ractor_tell(actor: &RactorRef) {
    actor.cast(RactorMsg::Tell(Ping)).expect("ractor cast");
}

// ------------------------------------------------------------------ senders

/// Runs `senders` tasks on the current actix arbiter, each sending `per` messages
/// in turn with `send`; returns when every task is done.
pub(crate) async fn local_senders<F, Fut>(senders: usize, per: usize, send: F)
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let send = send.clone();
            actix_rt::spawn(async move {
                for _ in 0..per {
                    send().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("sender");
    }
}

/// The same on a tokio runtime (kameo, ractor): tasks free to run on any worker.
pub(crate) async fn tokio_senders<F, Fut>(senders: usize, per: usize, send: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let send = send.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    send().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("sender");
    }
}
