//! Sockets: a bounded accept loop, and per connection a reader that applies
//! requests in order and a writer that sends their replies in the same order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::frame::{self, FrameError, REQUEST_BYTES_MAX};
use crate::handlers::{self, Handler, Reply};
use crate::metrics;

/// Limits of the Kafka listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Open connections at most; more are closed on accept.
    pub connections_max: usize,
    /// Requests read but not yet answered, per connection.
    pub in_flight_requests_max: usize,
    /// Bytes of requests read but not yet answered, per connection.
    pub in_flight_bytes_max: usize,
    /// How long shutdown waits for connections to finish their replies.
    pub drain_timeout: Duration,
    /// A connection with no request for this long is closed (Kafka's
    /// `connections.max.idle.ms`, 10 minutes).
    pub idle_timeout: Duration,
    /// Once a frame's length has arrived, the rest must follow within this, so a
    /// stalled client cannot hold a connection slot and its buffer forever.
    pub frame_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            connections_max: 1024,
            in_flight_requests_max: 128,
            in_flight_bytes_max: 2 * REQUEST_BYTES_MAX,
            drain_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(60),
        }
    }
}

// A connection must always be able to take one request of the largest size.
const _: () = assert!(2 * REQUEST_BYTES_MAX <= u32::MAX as usize);

/// Serves Kafka clients on `listener` until `shutdown` turns true, then waits for
/// open connections to send the replies they owe (up to `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    config: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    assert!(
        config.in_flight_bytes_max >= REQUEST_BYTES_MAX,
        "in_flight_bytes_max must hold one largest request"
    );
    let slots = Arc::new(Semaphore::new(config.connections_max));
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    let conn_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    backoff = Duration::from_millis(5);
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = config.connections_max, "connection limit reached; closing new connection");
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    conns.spawn(connection(sock, peer, handler.clone(), config, conn_shutdown.clone(), slot));
                }
                Err(e) => {
                    // Usually EMFILE: back off rather than spin.
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(config.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "connections still open after {:?}; closing them",
            config.drain_timeout
        );
        conns.abort_all();
    }
}

type Queued = (Reply, OwnedSemaphorePermit);

async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    config: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    tracing::debug!(%peer, "connected");
    metrics::CONNECTIONS_ACCEPTED.inc();
    metrics::CONNECTIONS.inc();
    let _open = scopeguard(|| metrics::CONNECTIONS.dec());
    let (rd, wr) = sock.into_split();
    let (tx, rx) = mpsc::channel::<Queued>(config.in_flight_requests_max);
    let budget = Arc::new(Semaphore::new(config.in_flight_bytes_max));
    let writer = tokio::spawn(write_replies(wr, rx, peer));
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    // Client quotas mute the connection: no request is read until the
    // throttle a quota gave has passed (KIP-219).
    let throttle = Arc::new(crate::quotas::Throttle::default());
    loop {
        if let Some(until) = throttle.until() {
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        let len = tokio::select! {
            r = tokio::time::timeout(config.idle_timeout, rd.read_i32()) => r,
            _ = stopped(&mut shutdown) => break,
        };
        let Ok(Ok(len)) = len else { break };
        let n = match frame::check_length(len) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(%peer, "{e}; closing connection");
                break;
            }
        };
        let Ok(permit) = budget.clone().acquire_many_owned(n as u32).await else {
            break;
        };
        let mut buf = BytesMut::zeroed(n);
        match tokio::time::timeout(config.frame_timeout, rd.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!(%peer, "a {n}-byte request did not arrive within {:?}; closing connection", config.frame_timeout);
                break;
            }
        }
        let reply = match frame::parse(buf.freeze()) {
            Ok(mut req) => {
                let api = req.api_key;
                req.client_host = format!("/{}", peer.ip());
                req.throttle = Some(throttle.clone());
                let started = std::time::Instant::now();
                match handler.handle(req) {
                    Ok(reply) => timed(reply, api, started),
                    Err(e) => {
                        tracing::warn!(%peer, "bad {api:?} request: {e:#}; closing connection");
                        break;
                    }
                }
            }
            // KIP-511: answer an ApiVersions of unknown version at v0 with the versions we have.
            Err(FrameError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                api_version,
            }) => {
                tracing::debug!(%peer, api_version, "ApiVersions version unsupported; answering v0");
                match handlers::encode(
                    ApiKey::ApiVersions,
                    0,
                    correlation_id,
                    &handlers::api_versions_response(ResponseError::UnsupportedVersion.code()),
                ) {
                    Ok(b) => Reply::Ready(b),
                    Err(_) => break,
                }
            }
            Err(e) => {
                tracing::warn!(%peer, "{e}; closing connection");
                break;
            }
        };
        if tx.send((reply, permit)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
    tracing::debug!(%peer, "disconnected");
}

async fn write_replies(
    wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Queued>,
    peer: SocketAddr,
) {
    let mut w = BufWriter::with_capacity(64 << 10, wr);
    while let Some((reply, permit)) = rx.recv().await {
        let bytes: Bytes = match reply {
            Reply::Ready(b) => b,
            Reply::Deferred(f) => match f.await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(%peer, "could not encode a reply: {e:#}; closing connection");
                    return;
                }
            },
            Reply::Nothing => continue,
        };
        if w.write_all(&bytes).await.is_err() {
            return;
        }
        drop(permit);
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
}

/// Counts a request and times it until its reply is ready.
fn timed(reply: Reply, api: ApiKey, started: std::time::Instant) -> Reply {
    let name = format!("{api:?}");
    metrics::REQUESTS.with_label_values(&[&name]).inc();
    let latency = metrics::REQUEST_SECONDS.with_label_values(&[&name]);
    match reply {
        Reply::Deferred(f) => Reply::Deferred(Box::pin(async move {
            let r = f.await;
            latency.observe(started.elapsed().as_secs_f64());
            r
        })),
        ready => {
            latency.observe(started.elapsed().as_secs_f64());
            ready
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Resolves once `shutdown` is true (or its sender is gone). Returns nothing, so no
/// watch guard is held across an await.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
