//! Raft messages between nodes over TCP: one outbound connection per peer,
//! each message a frame `len u32 BE | eraftpb.Message`. Sends never block the
//! node: a full queue or a broken link drops messages, which Raft tolerates
//! (it retries from its own state), and reports the peer unreachable.
//!
//! With [`PeerTls`] every link is TLS (etcd's `--peer-cert-file` and
//! friends): a handshake that fails is logged and the link is not used.
//!
//! [`Faults`] lets tests and `keel lab` cut links (both directions, or one),
//! drop a share of messages and delay them, on this node's side: network
//! partitions without touching the host's network.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::node::is_snapshot;

/// A frame larger than this is refused (a snapshot is one frame).
pub const FRAME_BYTES_MAX: u32 = 512 << 20;
/// Messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_MAX: usize = 4096;

/// Where inbound messages and link reports go (the node's mailbox).
pub trait Inbound: Send + Sync + 'static {
    fn deliver(&self, msg: Message);
    fn unreachable(&self, to: u64);
    fn snapshot_done(&self, to: u64, ok: bool);
}

/// Sends messages to peers. Never blocks.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, msgs: Vec<Message>);
}

/// Injected faults on this node's links. All off by default.
#[derive(Default)]
pub struct Faults {
    /// Peers whose messages to us are dropped.
    pub drop_from: RwLock<HashSet<u64>>,
    /// Peers our messages to are dropped.
    pub drop_to: RwLock<HashSet<u64>>,
    /// Share of all outbound messages dropped, per mille.
    pub loss_permille: AtomicU32,
    /// Delay added to every outbound message, in milliseconds.
    pub delay_ms: AtomicU64,
    rng: AtomicU64,
}

impl Faults {
    /// Cuts both directions between this node and `peers`.
    pub fn isolate_from(&self, peers: &[u64]) {
        self.drop_from.write().expect("faults lock").extend(peers);
        self.drop_to.write().expect("faults lock").extend(peers);
    }
    /// Removes every fault.
    pub fn heal(&self) {
        self.drop_from.write().expect("faults lock").clear();
        self.drop_to.write().expect("faults lock").clear();
        self.loss_permille.store(0, Ordering::Relaxed);
        self.delay_ms.store(0, Ordering::Relaxed);
    }
    pub fn describe(&self) -> String {
        let mut from: Vec<u64> = self
            .drop_from
            .read()
            .expect("faults lock")
            .iter()
            .copied()
            .collect();
        let mut to: Vec<u64> = self
            .drop_to
            .read()
            .expect("faults lock")
            .iter()
            .copied()
            .collect();
        from.sort_unstable();
        to.sort_unstable();
        format!(
            "drop_from={from:?} drop_to={to:?} loss_permille={} delay_ms={}",
            self.loss_permille.load(Ordering::Relaxed),
            self.delay_ms.load(Ordering::Relaxed)
        )
    }
    fn drops_outbound(&self, to: u64) -> bool {
        if self.drop_to.read().expect("faults lock").contains(&to) {
            return true;
        }
        let loss = self.loss_permille.load(Ordering::Relaxed);
        if loss == 0 {
            return false;
        }
        // xorshift: fault injection needs no cryptographic randomness.
        let mut x = self.rng.load(Ordering::Relaxed) | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x % 1000) < u64::from(loss)
    }
}

/// Peer addresses by node id, shared with whoever learns membership.
pub type AddressBook = Arc<RwLock<HashMap<u64, String>>>;

/// TLS on every peer link: how this node accepts peers, and how it dials
/// them (presenting its own certificate, checking theirs against the host of
/// their address).
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<keel_tls::rustls::ServerConfig>,
    pub client: Arc<keel_tls::rustls::ClientConfig>,
}

/// An outbound link, plain or TLS.
type Link = BufWriter<Box<dyn AsyncWrite + Unpin + Send>>;

pub struct TcpTransport {
    id: u64,
    addresses: AddressBook,
    peers: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    inbound: Arc<dyn Inbound>,
    faults: Arc<Faults>,
    tls: Option<PeerTls>,
    rt: tokio::runtime::Handle,
}

impl TcpTransport {
    /// Serves inbound peer connections on `listener` and returns the transport.
    /// Must be called inside a tokio runtime.
    pub fn start(
        id: u64,
        listener: TcpListener,
        addresses: AddressBook,
        inbound: Arc<dyn Inbound>,
        faults: Arc<Faults>,
        tls: Option<PeerTls>,
    ) -> Arc<TcpTransport> {
        let t = Arc::new(TcpTransport {
            id,
            addresses,
            peers: Mutex::new(HashMap::new()),
            inbound: inbound.clone(),
            faults: faults.clone(),
            tls: tls.clone(),
            rt: tokio::runtime::Handle::current(),
        });
        match tls {
            None => {
                tokio::spawn(accept_loop(listener, inbound, faults));
            }
            Some(tls) => {
                tokio::spawn(accept_tls_loop(listener, tls, inbound, faults));
            }
        }
        t
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    fn peer_queue(&self, to: u64) -> mpsc::Sender<Message> {
        let mut peers = self.peers.lock().expect("peers lock");
        if let Some(q) = peers.get(&to) {
            if !q.is_closed() {
                return q.clone();
            }
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
        self.rt.spawn(peer_writer(
            self.id,
            to,
            rx,
            self.addresses.clone(),
            self.inbound.clone(),
            self.faults.clone(),
            self.tls.clone(),
        ));
        peers.insert(to, tx.clone());
        tx
    }
}

impl Transport for TcpTransport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            if self.faults.drops_outbound(to) {
                if is_snapshot(&m) {
                    self.inbound.snapshot_done(to, false);
                }
                continue;
            }
            let snapshot = is_snapshot(&m);
            if self.peer_queue(to).try_send(m).is_err() {
                self.inbound.unreachable(to);
                if snapshot {
                    self.inbound.snapshot_done(to, false);
                }
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, inbound: Arc<dyn Inbound>, faults: Arc<Faults>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(read_peer(stream, inbound.clone(), faults.clone()));
            }
            Err(e) => {
                tracing::warn!("raft transport: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_tls_loop(
    listener: TcpListener,
    tls: PeerTls,
    inbound: Arc<dyn Inbound>,
    faults: Arc<Faults>,
) {
    // The transport lives as long as its runtime: nothing stops this loop.
    let (_running, stop) = watch::channel(false);
    let mut conns = keel_tls::accept(listener, tls.server, "raft peer port", stop);
    while let Some(conn) = conns.recv().await {
        if let Ok(conn) = conn {
            tokio::spawn(read_peer(conn, inbound.clone(), faults.clone()));
        }
    }
}

async fn read_peer<S: AsyncRead + Unpin>(
    stream: S,
    inbound: Arc<dyn Inbound>,
    faults: Arc<Faults>,
) {
    let mut r = tokio::io::BufReader::with_capacity(256 << 10, stream);
    let mut buf = Vec::new();
    loop {
        let len = match r.read_u32().await {
            Ok(n) => n,
            Err(_) => return,
        };
        if len > FRAME_BYTES_MAX {
            tracing::warn!("raft transport: frame of {len} bytes refused; closing the link");
            return;
        }
        buf.resize(len as usize, 0);
        if r.read_exact(&mut buf).await.is_err() {
            return;
        }
        match Message::parse_from_bytes(&buf) {
            Ok(m) => {
                if faults
                    .drop_from
                    .read()
                    .expect("faults lock")
                    .contains(&m.from)
                {
                    continue;
                }
                inbound.deliver(m);
            }
            Err(e) => {
                tracing::warn!("raft transport: bad message: {e}; closing the link");
                return;
            }
        }
    }
}

async fn peer_writer(
    id: u64,
    to: u64,
    mut rx: mpsc::Receiver<Message>,
    addresses: AddressBook,
    inbound: Arc<dyn Inbound>,
    faults: Arc<Faults>,
    tls: Option<PeerTls>,
) {
    let mut conn: Option<Link> = None;
    let mut backoff = Duration::from_millis(20);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let delay = faults.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if conn.is_none() {
            let addr = addresses.read().expect("address lock").get(&to).cloned();
            let Some(addr) = addr else {
                fail(&batch, to, &*inbound);
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(1), dial(&addr, tls.as_ref())).await {
                Ok(Ok(s)) => {
                    conn = Some(BufWriter::with_capacity(256 << 10, s));
                    backoff = Duration::from_millis(20);
                }
                failed => {
                    match failed {
                        // A refused handshake (a bad certificate) is worth the
                        // operator's attention; a peer that is down is not, at
                        // every retry.
                        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                            tracing::warn!("raft transport {id}: TLS link to {to} at {addr}: {e}")
                        }
                        _ => tracing::debug!("raft transport {id}: cannot reach {to} at {addr}"),
                    }
                    fail(&batch, to, &*inbound);
                    // Drop what queued meanwhile: raft resends from its own state.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    while rx.try_recv().is_ok() {}
                    continue;
                }
            }
        }
        let w = conn.as_mut().expect("connected above");
        let mut ok = true;
        for m in &batch {
            let bytes = match m.write_to_bytes() {
                Ok(b) => b,
                Err(_) => continue,
            };
            if w.write_u32(bytes.len() as u32).await.is_err() || w.write_all(&bytes).await.is_err()
            {
                ok = false;
                break;
            }
        }
        if ok {
            ok = w.flush().await.is_ok();
        }
        if ok {
            for m in batch.iter().filter(|m| is_snapshot(m)) {
                inbound.snapshot_done(m.to, true);
            }
        } else {
            conn = None;
            fail(&batch, to, &*inbound);
        }
    }
}

/// Opens a link to a peer's `host:port`, over TLS when configured (the
/// peer's certificate must name `host`).
async fn dial(
    addr: &str,
    tls: Option<&PeerTls>,
) -> std::io::Result<Box<dyn AsyncWrite + Unpin + Send>> {
    match tls {
        None => {
            let s = TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Some(tls) => Ok(Box::new(keel_tls::connect(tls.client.clone(), addr).await?)),
    }
}

fn fail(batch: &[Message], to: u64, inbound: &dyn Inbound) {
    inbound.unreachable(to);
    for m in batch.iter().filter(|m| is_snapshot(m)) {
        inbound.snapshot_done(m.to, false);
    }
}
