//! Shared test helpers: waiting with a safety net, a scripted HTTP server on
//! 127.0.0.1, and a ticking agent that proves the others are not blocked.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use vigil_runtime::{Agent, AgentContext, AgentResult};

/// Safety net of every wait.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);

/// Polls `probe` until it yields a value; panics with `what` after [`LIMIT`] (the
/// testkit's [`eventually`](vigil_runtime::testkit::eventually) with this suite's limit).
pub(crate) async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    vigil_runtime::testkit::eventually(what, LIMIT, probe).await
}

/// One request the fake server received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// `POST`, ...
    pub method: String,
    /// The request target.
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: serde_json::Value,
}

/// What the server does with the n-th request (from 0).
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Answer with this status and JSON body.
    Json(u16, serde_json::Value),
    /// Never answer (keep the connection open).
    Hang,
}

/// A scripted HTTP/1.1 server on 127.0.0.1.
pub(crate) struct FakeServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every request, in arrival order.
    pub received: mpsc::UnboundedReceiver<Recorded>,
    all: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeServer {
    /// Starts a server answering request `n` with `script(n)`.
    pub(crate) async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, received) = mpsc::unbounded_channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let seen = all.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, seen, script) = (tx.clone(), seen.clone(), script.clone());
                let index = n;
                n += 1;
                tokio::spawn(async move { serve(stream, index, &*script, tx, seen).await });
            }
        });
        FakeServer { url, received, all }
    }

    /// Waits for the next request.
    pub(crate) async fn next(&mut self) -> Recorded {
        tokio::time::timeout(LIMIT, self.received.recv())
            .await
            .expect("a request in time")
            .expect("server alive")
    }

    /// How many requests arrived so far.
    pub(crate) fn count(&self) -> usize {
        self.all.lock().unwrap().len()
    }
}

async fn serve(
    mut stream: TcpStream,
    index: usize,
    script: &(dyn Fn(usize) -> Reply + Send + Sync),
    tx: mpsc::UnboundedSender<Recorded>,
    seen: Arc<Mutex<Vec<Recorded>>>,
) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let header_end = loop {
        let Ok(n) = stream.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(pos) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while raw.len() < header_end + length {
        let Ok(n) = stream.read(&mut buf).await else { return };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = serde_json::from_slice(&raw[header_end..(header_end + length).min(raw.len())])
        .unwrap_or(serde_json::Value::Null);
    let recorded = Recorded { method, path, headers, body };
    seen.lock().unwrap().push(recorded.clone());
    let _ = tx.send(recorded);
    match script(index) {
        Reply::Json(status, body) => {
            let body = body.to_string();
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => {
            // Hold the connection open, answering nothing.
            let mut sink = [0u8; 64];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
    }
}

/// Sends its cycle count on every cycle: proof that agents keep running.
#[derive(vigil_runtime::Agent)]
#[agent(name = "ticker", cycle = "50ms", heartbeat = "1s")]
pub(crate) struct Ticker {
    pub cycles: u64,
    pub tick: mpsc::UnboundedSender<u64>,
}

impl Agent for Ticker {
    async fn cycle(&mut self, _ctx: &AgentContext) -> AgentResult {
        self.cycles += 1;
        let _ = self.tick.send(self.cycles);
        Ok(())
    }
}

/// The runtimes' databases: SQLite always, PostgreSQL when there is a server.
pub(crate) async fn databases() -> Vec<vigil_persistence::testing::TestDb> {
    let mut dbs = vec![vigil_persistence::testing::TestDb::sqlite()];
    if let Some(pg) = vigil_persistence::testing::TestDb::postgres().await {
        dbs.push(pg);
    }
    dbs
}
