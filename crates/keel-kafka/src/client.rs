//! A small pipelined Kafka client: one connection, requests written in order,
//! responses matched to them in order (Kafka answers a connection in order).
//! Used by `keel bench` and by tests that need exact control over frames.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

type Waiters = Arc<Mutex<VecDeque<(i32, oneshot::Sender<Bytes>)>>>;

pub struct Connection {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiting: Waiters,
    next_id: AtomicI32,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The response to a request sent with [`Connection::send`].
pub struct Pending<R> {
    rx: oneshot::Receiver<Bytes>,
    api_key: ApiKey,
    version: i16,
    _r: std::marker::PhantomData<fn() -> R>,
}

impl<R: Decodable> Pending<R> {
    pub async fn recv(self) -> Result<R> {
        let mut body = self
            .rx
            .await
            .map_err(|_| anyhow!("connection closed before the {:?} response", self.api_key))?;
        ResponseHeader::decode(
            &mut body,
            self.api_key.response_header_version(self.version),
        )?;
        R::decode(&mut body, self.version)
            .with_context(|| format!("decode {:?} v{} response", self.api_key, self.version))
    }
}

impl Connection {
    pub async fn connect(addr: &str) -> Result<Connection> {
        let sock = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        sock.set_nodelay(true)?;
        let (mut rd, wr) = sock.into_split();
        let waiting: Waiters = Arc::default();
        let w = waiting.clone();
        let reader = tokio::spawn(async move {
            while let Ok(len) = rd.read_i32().await {
                if !(4..=(256 << 20)).contains(&len) {
                    break;
                }
                let mut buf = BytesMut::zeroed(len as usize);
                if rd.read_exact(&mut buf).await.is_err() {
                    break;
                }
                let id = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                let Some((want, tx)) = w.lock().expect("waiters lock").pop_front() else {
                    break;
                };
                if want != id {
                    break;
                }
                let _ = tx.send(buf.freeze());
            }
            w.lock().expect("waiters lock").clear();
        });
        Ok(Connection {
            writer: tokio::sync::Mutex::new(wr),
            waiting,
            next_id: AtomicI32::new(1),
            reader,
        })
    }

    fn frame<R: Request>(&self, req: &R, version: i16, id: i32) -> Result<Bytes> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("__keel")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, key.request_header_version(version))?;
        req.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf.freeze())
    }

    /// Writes a request and returns its pending response without waiting for it.
    pub async fn send<R: Request>(&self, req: &R, version: i16) -> Result<Pending<R::Response>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = self.frame(req, version, id)?;
        let (tx, rx) = oneshot::channel();
        let mut w = self.writer.lock().await;
        self.waiting
            .lock()
            .expect("waiters lock")
            .push_back((id, tx));
        w.write_all(&bytes).await.context("send request")?;
        let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key"))?;
        Ok(Pending {
            rx,
            api_key,
            version,
            _r: std::marker::PhantomData,
        })
    }

    /// Writes a request that gets no response (an acks=0 produce).
    pub async fn send_oneway<R: Request>(&self, req: &R, version: i16) -> Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = self.frame(req, version, id)?;
        self.writer
            .lock()
            .await
            .write_all(&bytes)
            .await
            .context("send request")
    }

    /// Sends a request and waits for its response.
    pub async fn call<R: Request>(&self, req: &R, version: i16) -> Result<R::Response> {
        self.send(req, version).await?.recv().await
    }

    /// Writes raw bytes, for tests of malformed input.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        self.writer
            .lock()
            .await
            .write_all(bytes)
            .await
            .context("send raw bytes")
    }
}

/// Fails with the Kafka error name when `code` is not 0.
pub fn check(code: i16, what: &str) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => bail!("{what}: {e:?} ({code})"),
        None => bail!("{what}: error code {code}"),
    }
}
