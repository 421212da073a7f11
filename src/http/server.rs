//! Serving the endpoints on an address of their own: [`serve`] binds, starts one
//! actix-web worker in the background and returns a handle that stops it.

use std::net::SocketAddr;

use actix_web::{App, HttpServer};

use super::{HttpState, configure};

/// A running HTTP service. Dropping it leaves the server running; call
/// [`stop`](Self::stop) to end it (in-flight requests get a few seconds).
#[derive(Debug)]
pub struct HttpServerHandle {
    /// The address it listens on (with the port the system chose for port 0).
    addr: SocketAddr,
    /// actix-web's handle, to stop it.
    handle: actix_web::dev::ServerHandle,
    /// The state served, to end its event streams first.
    state: HttpState,
}

impl HttpServerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server gracefully and waits until it has stopped. Open event streams
    /// are ended first: they would otherwise hold the graceful stop until its timeout.
    pub async fn stop(&self) {
        self.state.close_event_streams();
        self.handle.stop(true).await;
    }
}

/// Binds `addr` and serves every endpoint of [`crate::http`] over `state` until
/// [`HttpServerHandle::stop`]. Call it inside an actix system (`vigil run` does); the
/// server runs one worker, which is plenty for scrapes, probes and operators.
pub fn serve(addr: SocketAddr, state: HttpState) -> std::io::Result<HttpServerHandle> {
    let served = state.clone();
    let server = HttpServer::new(move || {
        let state = served.clone();
        App::new().configure(move |cfg| configure(cfg, &state))
    })
    .workers(1)
    .shutdown_timeout(5)
    .disable_signals()
    .bind(addr)?;
    let addr = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "the HTTP service stopped with an error");
        }
    });
    tracing::info!(%addr, "HTTP service listening");
    Ok(HttpServerHandle { addr, handle, state })
}
