//! `GET /api/v1/events/stream`: every new `system_events` row as a server-sent event.
//!
//! ```text
//! retry: 2000
//!
//! id: 1234
//! event: event
//! data: {"id":1234,"event_type":"state_transition","event_data":{...},"timestamp":"...","severity":"info"}
//!
//! : keepalive
//! ```
//!
//! **How it finds events.** It polls the table by row id every [`POLL`], reading at
//! most [`MAX_ROWS_PER_POLL`] rows oldest first after the last id sent
//! ([`SharedState::events_after`]), so it works wherever the database is readable: in
//! `vigil run`, in `vigil dashboard` with no runtime, and for events other nodes wrote.
//! A backlog larger than a poll's bound is sent over the next polls, in order.
//!
//! **Where it starts.** After the id in the `Last-Event-ID` header (a browser's
//! `EventSource` sends it when it reconnects), else after `?after=ID` (a page that
//! loaded recent events first asks for what follows them), else after the newest event
//! when the connection opened: only what happens next.
//!
//! **Keepalive and end.** A `: keepalive` comment goes out after [`KEEPALIVE`] without
//! an event (or what [`HttpState::with_stream_keepalive`] sets), so proxies keep the
//! connection open. The body is a [`MessageBody`] that owns its pending read: when the
//! response is dropped, the read and its timer go with it. No task is spawned, so
//! nothing outlives the response. actix-web notices a client that went away when it
//! next writes to it, so a silent stream of a gone client ends at its next keepalive;
//! [`HttpState::open_event_streams`] counts the streams not yet ended.
//! [`HttpState::close_event_streams`] ends every stream at once (and refuses new
//! ones: they end after their preamble), which [`HttpServerHandle::stop`](super::HttpServerHandle::stop)
//! does first, so a browser left open does not hold a graceful shutdown.
//! A database error is sent as an `event: error` (its message names no password) and
//! the stream goes on polling; a client never sees a half-written event.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::time::Instant;
use vigil_persistence::SharedState;
use vigil_persistence::models::SystemEventRecord;

use super::HttpState;
use super::api::{Query, error, param, store_error};

/// How often the table is read.
pub const POLL: Duration = Duration::from_millis(500);

/// The most rows one read takes.
pub const MAX_ROWS_PER_POLL: i64 = 200;

/// How long the stream stays silent before a keepalive comment.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// What the browser waits before reconnecting, in milliseconds (the `retry:` field).
const RETRY_MS: u32 = 2_000;

/// The event streams of an [`HttpState`] (shared by its clones): how many are open,
/// and the signal that ends them all.
#[derive(Debug)]
pub(crate) struct StreamRegistry {
    open: AtomicUsize,
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for StreamRegistry {
    fn default() -> Self {
        Self { open: AtomicUsize::new(0), closing: tokio::sync::watch::Sender::new(false) }
    }
}

impl StreamRegistry {
    /// Streams not ended yet.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Ends every stream, now and from now on.
    pub(crate) fn close_all(&self) {
        self.closing.send_replace(true);
    }
}

/// One open stream, counted in its registry until dropped.
struct OpenStream(Arc<StreamRegistry>);

impl OpenStream {
    fn new(registry: Arc<StreamRegistry>) -> Self {
        registry.open.fetch_add(1, Ordering::Relaxed);
        Self(registry)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /api/v1/events/stream[?after=ID]`.
pub(super) async fn events(state: web::Data<HttpState>, request: HttpRequest, query: Query) -> HttpResponse {
    let header = match request.headers().get("Last-Event-ID").map(|v| v.to_str().map(str::trim)) {
        None => None,
        Some(Ok(id)) => match parse_event_id(id) {
            Ok(id) => Some(id),
            Err(message) => return error(StatusCode::BAD_REQUEST, format!("Last-Event-ID: {message}")),
        },
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "Last-Event-ID: not text"),
    };
    let after = match param(&query, "after", parse_event_id) {
        Ok(after) => after,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let start = match header.or(after) {
        Some(id) => id,
        None => match state.shared_state().newest_event_id().await {
            Ok(id) => id,
            Err(e) => return store_error(&e),
        },
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        // Tells nginx not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .body(EventStreamBody::new(EventFollower::new(&state, start)))
}

/// An event id: a whole number, 0 or more.
fn parse_event_id(text: &str) -> Result<i32, String> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| format!("`{}` is not an event id (a whole number, 0 or more)", text.trim()))
}

/// Reads the table after a cursor and renders what it finds as SSE text.
struct EventFollower {
    shared: SharedState,
    /// The id of the last event sent.
    last_id: i32,
    /// When something (event or comment) was last sent.
    last_sent: Instant,
    /// The longest silence before a keepalive comment.
    keepalive: Duration,
    /// Whether the `retry:` preamble went out.
    opened: bool,
    /// Turns `true` when every stream must end.
    closing: tokio::sync::watch::Receiver<bool>,
    /// Counts this stream as open while it lives.
    _open: OpenStream,
}

impl EventFollower {
    fn new(state: &HttpState, last_id: i32) -> Self {
        Self {
            shared: state.shared_state().clone(),
            last_id,
            last_sent: Instant::now(),
            keepalive: state.stream_keepalive,
            opened: false,
            closing: state.streams.closing.subscribe(),
            _open: OpenStream::new(Arc::clone(&state.streams)),
        }
    }

    /// The next chunk to send: the preamble, the events of the next read that finds
    /// some, a keepalive comment after a silence, or an error event; `None` when the
    /// streams are closed.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.opened {
            self.opened = true;
            self.last_sent = Instant::now();
            // A comment makes the browser's EventSource open at once.
            return Some(Bytes::from(format!("retry: {RETRY_MS}\n: connected\n\n")));
        }
        loop {
            if *self.closing.borrow() {
                return None;
            }
            match self.shared.events_after(self.last_id, MAX_ROWS_PER_POLL).await {
                Ok(events) if !events.is_empty() => {
                    self.last_sent = Instant::now();
                    let mut text = String::new();
                    for event in &events {
                        render(event, &mut text);
                        self.last_id = self.last_id.max(event.id);
                    }
                    return Some(Bytes::from(text));
                }
                Ok(_) => {}
                Err(e) => {
                    self.last_sent = Instant::now();
                    let message = serde_json::json!({ "error": e.to_string() });
                    self.pause().await;
                    return Some(Bytes::from(format!("event: error\ndata: {message}\n\n")));
                }
            }
            if self.last_sent.elapsed() >= self.keepalive {
                self.last_sent = Instant::now();
                return Some(Bytes::from_static(b": keepalive\n\n"));
            }
            self.pause().await;
        }
    }

    /// Waits [`POLL`], or less if the streams are closed meanwhile.
    async fn pause(&mut self) {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = self.closing.wait_for(|closing| *closing) => {}
        }
    }
}

/// Appends `event` as one SSE message: its JSON (one line: JSON escapes newlines)
/// under its row id.
fn render(event: &SystemEventRecord, out: &mut String) {
    use std::fmt::Write as _;
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    let _ = write!(out, "id: {}\nevent: event\ndata: {data}\n\n", event.id);
}

/// The pending read of an [`EventFollower`], which it hands back with the chunk.
type PendingChunk = Pin<Box<dyn Future<Output = (EventFollower, Option<Bytes>)>>>;

/// The response body: polls the follower's next read and yields its chunks until the
/// streams are closed. Dropping it (the client went away) drops the read in flight.
struct EventStreamBody {
    /// The follower, while no read is in flight.
    idle: Option<EventFollower>,
    /// The read in flight, which owns the follower meanwhile.
    pending: Option<PendingChunk>,
}

impl EventStreamBody {
    fn new(follower: EventFollower) -> Self {
        Self { idle: Some(follower), pending: None }
    }
}

impl MessageBody for EventStreamBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        if self.pending.is_none() {
            let Some(mut follower) = self.idle.take() else { return Poll::Ready(None) };
            self.pending = Some(Box::pin(async move {
                let chunk = follower.next_chunk().await;
                (follower, chunk)
            }));
        }
        let Some(pending) = self.pending.as_mut() else { return Poll::Ready(None) };
        match pending.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((follower, chunk)) => {
                self.pending = None;
                // An ended stream drops its follower (and so stops counting as open).
                self.idle = chunk.is_some().then_some(follower);
                Poll::Ready(chunk.map(Ok))
            }
        }
    }
}
