//! The HTTP connection loop: `axum::serve`'s job, with the two bounds it lacks. A client that
//! does not send a request's headers within the header timeout loses its connection (silent and
//! slow-header sockets would otherwise be held forever), and at most `max_connections` are open
//! at once: at the limit the listener stops accepting, so new connections wait in the kernel's
//! backlog instead of taking file descriptors the MQTT side needs. Every request passes the
//! listener's [`BrowserPolicy`] (its allowed hosts, and CORS) before it is routed.
//!
//! With TLS, each accepted socket first goes through the handshake, bounded by the same header
//! timeout and holding its connection permit, so neither bound can be sidestepped by a client
//! that stalls before HTTP even starts.
//!
//! The loop serves any [`Listener`]: TCP (the hub, the edge agent) or a Unix socket (the edge
//! agent's `--http-unix-socket`, where the socket file's permissions decide who connects).

use crate::browser::{BrowserPolicy, Guarded};
use crate::tls::TlsCertificates;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Largest request line and headers together: a URI, a bearer token (a JWT included) and the
/// usual headers fit many times over, and no client makes the hub buffer hyper's default of
/// about 400 KiB per connection for them. Beyond it the answer is 431, from hyper, before any
/// routing. Bodies are not bound by this; they stream under `limits.max_document_bytes`.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// Most request headers; beyond it 431 as above.
pub const MAX_REQUEST_HEADERS: usize = 100;

/// How long the loop pauses after a failed accept (out of file descriptors, say), so that it
/// does not spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Default most connections at once: far more than the applications and operators of one hub
/// keep open, few enough to leave the file descriptors to MQTT devices.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default time for a request's headers: ample for any real client, while slow-header clients
/// (a byte every few seconds) lose their socket soon.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, from the moment the server
    /// waits for them (a new connection, or a kept-alive one after its last answer). With TLS,
    /// the handshake gets as long again before that: it is the same kind of wait for a client,
    /// so one setting bounds both.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// Where connections come from.
pub trait Listener: Send {
    /// One accepted connection's byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection, and the peer's address when it has one (a Unix socket's peer has
    /// none; requests over it then count as from no address, never as from loopback).
    fn accept(
        &mut self,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, Option<SocketAddr>)>> + Send;
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Stream, Option<SocketAddr>)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // Answers are written whole; Nagle's algorithm would hold small ones back.
        let _ = stream.set_nodelay(true);
        Ok((stream, Some(peer)))
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Stream, Option<SocketAddr>)> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((stream, None))
    }
}

/// Serves `router` behind `policy` on `listener` (over TLS when `tls` is given) until
/// `shutdown` resolves, then lets the open connections finish their requests (idle ones are
/// closed at once) and returns.
pub async fn serve<L: Listener>(
    mut listener: L,
    tls: Option<Arc<TlsCertificates>>,
    router: Router,
    limits: ConnectionLimits,
    policy: &BrowserPolicy,
    shutdown: impl Future<Output = ()>,
) {
    let guarded = policy.guard(router);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Tells every connection that the server is stopping.
    let (stopping, stop) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_REQUEST_HEADERS);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept an HTTP connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let connection = Connection {
            http: http.clone(),
            router: guarded.clone(),
            stop: stop.clone(),
            peer,
            _permit: permit,
        };
        // Taken now, not in the task: a reload between accept and handshake is then simply
        // one that came after this connection.
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            match acceptor {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    connection
                        .serve_tls(acceptor, stream, handshake_timeout)
                        .await
                }
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection holds a permit until it ends: having them all back means all ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// One accepted connection, from its first byte of HTTP to its end.
struct Connection {
    http: http1::Builder,
    router: Guarded,
    /// Changes when the server is stopping.
    stop: watch::Receiver<bool>,
    /// Who is on the other end, over TCP: handlers may ask (`/metrics` is open to loopback
    /// only). `None` over a Unix socket.
    peer: Option<SocketAddr>,
    /// Returned to the connection cap when the connection ends, whichever way.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// The TLS handshake within `timeout`, then HTTP over the secured stream.
    async fn serve_tls<S>(self, acceptor: TlsAcceptor, stream: S, timeout: Duration)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
        let mut stop = self.stop.clone();
        let secured = tokio::select! {
            secured = handshake => secured,
            // A handshake has no request to finish: stopping ends it at once.
            _ = stop.changed() => return,
        };
        match secured {
            Ok(Ok(stream)) => self.serve(stream).await,
            // A client without a trusted certificate, a port scanner, a plain-HTTP client on
            // the HTTPS port: the client is told by the failed handshake; the server has
            // nothing to act on.
            Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn serve<S>(mut self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let service = TowerToHyperService::new(self.router.map_request(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                if let Some(peer) = peer {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                }
                request
            },
        ));
        let connection = self
            .http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(connection);
        // A connection ends with an error whenever a client goes away mid-request or times
        // out: nothing to act on here.
        tokio::select! {
            _ = connection.as_mut() => {}
            _ = self.stop.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}
