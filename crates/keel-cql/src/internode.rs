//! The tables face between nodes: what a coordinator sends the replicas of a
//! partition (mutations, reads of a key range, pings), on each node's CQL
//! port. A connection that opens with [`MAGIC`] instead of a CQL frame
//! header (whose first byte is a protocol version, 3 to 5) speaks this
//! protocol, so the registry's CQL address is all a node needs to reach
//! another; Cassandra 4 tells its internode connections apart by a magic
//! number too.
//!
//! Frames are `length u32 BE | id u64 | kind u8 | body`; replies carry their
//! request's id, so one connection per peer carries many requests at once.
//! Cells travel as commit-log records (length, CRC32C, cells), so a corrupt
//! body is refused, never applied.
//!
//! A link that fails (refused, reset, a request that times out) marks its
//! node down; a prober pings it every [`PROBE_EVERY`] and marks it up when
//! it answers. With the registry's fencing and gossip's phi-accrual detector
//! ([`crate::gossip`]) this is the coordinator's view of who is up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_table::engine::commitlog;
use keel_table::Mutation;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::exec::Node;
use crate::gossip::{decode_view, encode_view, Heartbeat};
use crate::paxos::{Ballot, PaxosState};

/// What an internode connection opens with.
pub const MAGIC: &[u8; 8] = b"KEELTBL1";
/// The largest frame either side accepts.
pub const FRAME_MAX: usize = 64 << 20;
/// How often a node marked down is pinged.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

const KIND_MUTATE: u8 = 1;
const KIND_READ: u8 = 2;
const KIND_PING: u8 = 3;
const KIND_APPLIED: u8 = 4;
const KIND_PREPARE: u8 = 5;
const KIND_PROPOSE: u8 = 6;
const KIND_COMMIT: u8 = 7;
const KIND_MERKLE: u8 = 8;
const KIND_GOSSIP: u8 = 9;
const KIND_DIGEST: u8 = 10;
const KIND_DONE: u8 = 0x81;
const KIND_CELLS: u8 = 0x82;
const KIND_PROMISE: u8 = 0x83;
const KIND_ACCEPTED: u8 = 0x84;
const KIND_HASHES: u8 = 0x85;
const KIND_GOSSIP_ACK: u8 = 0x86;
const KIND_DIGEST_OF: u8 = 0x87;
const KIND_FAILED: u8 = 0xff;

/// A request to a replica.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Apply these cells (answered after the commit log holds them).
    Mutate(Mutation),
    /// The cells with keys in `[start, end)` (`end` empty: to the last), at
    /// most about `max_bytes` of them; with `digest`, only a hash of that
    /// answer ([`Reply::Digest`], Cassandra's digest read).
    Read {
        start: Vec<u8>,
        end: Vec<u8>,
        partition: Option<Vec<u8>>,
        max_bytes: u32,
        digest: bool,
    },
    Ping,
    /// Answer once this node's metadata image has applied `index` (schema
    /// agreement after a schema change).
    Applied(u64),
    /// Paxos phase 1 for one partition (its key prefix): promise to accept
    /// nothing below `ballot` ([`crate::paxos`]).
    Prepare {
        partition: Vec<u8>,
        ballot: Ballot,
    },
    /// Paxos phase 2: accept `cells` as the partition's proposal at `ballot`.
    Propose {
        partition: Vec<u8>,
        ballot: Ballot,
        cells: Mutation,
    },
    /// Paxos commit: apply `cells`, the proposal chosen at `ballot`.
    Commit {
        partition: Vec<u8>,
        ballot: Ballot,
        cells: Mutation,
    },
    /// The Merkle tree leaves of a table's tokens `first..=last`
    /// ([`crate::repair`]).
    Merkle {
        table: Vec<u8>,
        first: i64,
        last: i64,
        leaves: u32,
    },
    /// A gossip round: the sender's view of every node's heartbeat
    /// ([`crate::gossip`]), answered with the receiver's.
    Gossip(Vec<Heartbeat>),
}

/// A replica's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done,
    /// Cells in key order; `resume` is where a cut-short read stops (every
    /// key below it was sent).
    Cells {
        cells: Mutation,
        resume: Option<Vec<u8>>,
    },
    /// The answer to a Prepare: whether the ballot was promised, and the
    /// replica's Paxos state for the partition (with the higher ballot it
    /// promised when it refused).
    Promise {
        ok: bool,
        state: PaxosState,
    },
    /// The answer to a Propose.
    Accepted(bool),
    /// The answer to a Merkle request: each leaf's hash.
    Hashes(Vec<crate::repair::Hash>),
    /// The answer to gossip: the receiver's view.
    Gossip(Vec<Heartbeat>),
    /// The answer to a digest read: the hash of the cells and resume point
    /// a full read would have answered ([`crate::coordinator::digest`]).
    Digest([u8; 32]),
    Failed(String),
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn take_bytes(p: &mut &[u8]) -> Option<Vec<u8>> {
    let n = u32::from_be_bytes(p.get(..4)?.try_into().ok()?) as usize;
    let b = p.get(4..4usize.checked_add(n)?)?.to_vec();
    *p = &p[4 + n..];
    Some(b)
}

/// `0`, or `1` and the bytes.
fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
        None => out.push(0),
    }
}

/// What [`put_opt_bytes`] wrote: Some(None) for absent, None if malformed.
fn take_opt_bytes(p: &mut &[u8]) -> Option<Option<Vec<u8>>> {
    let (flag, rest) = p.split_first()?;
    *p = rest;
    match flag {
        0 => Some(None),
        1 => Some(Some(take_bytes(p)?)),
        _ => None,
    }
}

fn frame(id: u64, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + body.len());
    out.extend_from_slice(&((9 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

impl Request {
    pub fn encode(&self, id: u64) -> Vec<u8> {
        match self {
            Request::Mutate(m) => frame(id, KIND_MUTATE, &commitlog::encode_record(m)),
            Request::Read {
                start,
                end,
                partition,
                max_bytes,
                digest,
            } => {
                let mut b = Vec::new();
                put_bytes(&mut b, start);
                put_bytes(&mut b, end);
                put_opt_bytes(&mut b, partition.as_deref());
                b.extend_from_slice(&max_bytes.to_be_bytes());
                frame(id, if *digest { KIND_DIGEST } else { KIND_READ }, &b)
            }
            Request::Ping => frame(id, KIND_PING, &[]),
            Request::Applied(index) => frame(id, KIND_APPLIED, &index.to_be_bytes()),
            Request::Prepare { partition, ballot } => {
                let mut b = Vec::new();
                put_bytes(&mut b, partition);
                ballot.put(&mut b);
                frame(id, KIND_PREPARE, &b)
            }
            Request::Propose {
                partition,
                ballot,
                cells,
            }
            | Request::Commit {
                partition,
                ballot,
                cells,
            } => {
                let mut b = Vec::new();
                put_bytes(&mut b, partition);
                ballot.put(&mut b);
                b.extend_from_slice(&commitlog::encode_record(cells));
                let kind = match self {
                    Request::Propose { .. } => KIND_PROPOSE,
                    _ => KIND_COMMIT,
                };
                frame(id, kind, &b)
            }
            Request::Merkle {
                table,
                first,
                last,
                leaves,
            } => {
                let mut b = Vec::new();
                put_bytes(&mut b, table);
                b.extend_from_slice(&first.to_be_bytes());
                b.extend_from_slice(&last.to_be_bytes());
                b.extend_from_slice(&leaves.to_be_bytes());
                frame(id, KIND_MERKLE, &b)
            }
            Request::Gossip(view) => {
                let mut b = Vec::new();
                encode_view(view, &mut b);
                frame(id, KIND_GOSSIP, &b)
            }
        }
    }

    pub fn decode(kind: u8, mut b: &[u8]) -> Option<Request> {
        match kind {
            KIND_MUTATE => commitlog::decode_record(b).map(Request::Mutate),
            KIND_READ | KIND_DIGEST => {
                let start = take_bytes(&mut b)?;
                let end = take_bytes(&mut b)?;
                let partition = take_opt_bytes(&mut b)?;
                let max_bytes = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
                (b.len() == 4).then_some(Request::Read {
                    start,
                    end,
                    partition,
                    max_bytes,
                    digest: kind == KIND_DIGEST,
                })
            }
            KIND_PING => b.is_empty().then_some(Request::Ping),
            KIND_APPLIED => Some(Request::Applied(u64::from_be_bytes(b.try_into().ok()?))),
            KIND_PREPARE => {
                let partition = take_bytes(&mut b)?;
                let ballot = Ballot::take(&mut b)?;
                b.is_empty()
                    .then_some(Request::Prepare { partition, ballot })
            }
            KIND_PROPOSE | KIND_COMMIT => {
                let partition = take_bytes(&mut b)?;
                let ballot = Ballot::take(&mut b)?;
                let cells = commitlog::decode_record(b)?;
                Some(if kind == KIND_PROPOSE {
                    Request::Propose {
                        partition,
                        ballot,
                        cells,
                    }
                } else {
                    Request::Commit {
                        partition,
                        ballot,
                        cells,
                    }
                })
            }
            KIND_MERKLE => {
                let table = take_bytes(&mut b)?;
                let first = i64::from_be_bytes(b.get(..8)?.try_into().ok()?);
                let last = i64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
                let leaves = u32::from_be_bytes(b.get(16..20)?.try_into().ok()?);
                (b.len() == 20).then_some(Request::Merkle {
                    table,
                    first,
                    last,
                    leaves,
                })
            }
            KIND_GOSSIP => decode_view(b).map(Request::Gossip),
            _ => None,
        }
    }
}

impl Reply {
    pub fn encode(&self, id: u64) -> Vec<u8> {
        match self {
            Reply::Done => frame(id, KIND_DONE, &[]),
            Reply::Cells { cells, resume } => {
                let mut b = Vec::new();
                put_opt_bytes(&mut b, resume.as_deref());
                b.extend_from_slice(&commitlog::encode_record(cells));
                frame(id, KIND_CELLS, &b)
            }
            Reply::Promise { ok, state } => {
                let mut b = vec![*ok as u8];
                state.encode(&mut b);
                frame(id, KIND_PROMISE, &b)
            }
            Reply::Accepted(ok) => frame(id, KIND_ACCEPTED, &[*ok as u8]),
            Reply::Hashes(h) => frame(id, KIND_HASHES, &h.concat()),
            Reply::Gossip(view) => {
                let mut b = Vec::new();
                encode_view(view, &mut b);
                frame(id, KIND_GOSSIP_ACK, &b)
            }
            Reply::Digest(h) => frame(id, KIND_DIGEST_OF, h),
            Reply::Failed(why) => frame(id, KIND_FAILED, why.as_bytes()),
        }
    }

    pub fn decode(kind: u8, mut b: &[u8]) -> Option<Reply> {
        match kind {
            KIND_DONE => b.is_empty().then_some(Reply::Done),
            KIND_CELLS => {
                let resume = take_opt_bytes(&mut b)?;
                Some(Reply::Cells {
                    cells: commitlog::decode_record(b)?,
                    resume,
                })
            }
            KIND_PROMISE => {
                let (ok, mut rest) = b.split_first()?;
                let state = PaxosState::decode(&mut rest)?;
                (*ok <= 1 && rest.is_empty()).then_some(Reply::Promise {
                    ok: *ok == 1,
                    state,
                })
            }
            KIND_ACCEPTED => match b {
                [ok @ (0 | 1)] => Some(Reply::Accepted(*ok == 1)),
                _ => None,
            },
            KIND_HASHES if b.len().is_multiple_of(32) => Some(Reply::Hashes(
                b.chunks_exact(32)
                    .map(|c| c.try_into().expect("32 bytes"))
                    .collect(),
            )),
            KIND_GOSSIP_ACK => decode_view(b).map(Reply::Gossip),
            KIND_DIGEST_OF => b.try_into().ok().map(Reply::Digest),
            KIND_FAILED => Some(Reply::Failed(String::from_utf8_lossy(b).into_owned())),
            _ => None,
        }
    }
}

/// Reads one frame: `(id, kind, body)`; None at a clean end of stream.
async fn read_frame<R: AsyncReadExt + Unpin>(
    rd: &mut R,
) -> std::io::Result<Option<(u64, u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if !(9..=FRAME_MAX).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("internode frame of {len} bytes (9 to {FRAME_MAX} allowed)"),
        ));
    }
    let mut buf = vec![0u8; len];
    rd.read_exact(&mut buf).await?;
    let id = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
    let kind = buf[8];
    buf.drain(..9);
    Ok(Some((id, kind, buf)))
}

/// Writes queued frames until the queue closes or the socket fails, every
/// frame waiting at the time in one write (one syscall for many requests
/// under load, none held back when idle). CQL connections' replies go out
/// the same way.
///
/// `busy` says whether other frames are on their way (requests in flight on
/// the link besides this one): then the writer first lets the tasks already
/// woken queue theirs (a yield), so they share this write; measured on three
/// nodes at QUORUM, 1.15-1.2x the inserts. A lone request is never held
/// back for it.
pub(crate) async fn write_frames(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    busy: impl Fn() -> bool,
) {
    let mut out = Vec::with_capacity(64 << 10);
    while let Some(buf) = rx.recv().await {
        out.clear();
        out.extend_from_slice(&buf);
        if busy() {
            tokio::task::yield_now().await;
        }
        while out.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(more) => out.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
    }
}

/// Serves one internode connection (its magic already read).
pub async fn serve(sock: TcpStream, node: Arc<Node>) -> std::io::Result<()> {
    let (rd, wr) = sock.into_split();
    let mut rd = tokio::io::BufReader::with_capacity(64 << 10, rd);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
    // Requests this link's peer has in flight here, not yet answered.
    let serving = Arc::new(AtomicUsize::new(0));
    let s = serving.clone();
    let writer = tokio::spawn(write_frames(wr, rx, move || s.load(Ordering::Relaxed) > 1));
    let result = loop {
        let (id, kind, body) = match read_frame(&mut rd).await {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let Some(req) = Request::decode(kind, &body) else {
            // A frame this side cannot read: answer it, keep the link.
            let _ = tx
                .send(
                    Reply::Failed(format!("malformed internode request (kind {kind})")).encode(id),
                )
                .await;
            continue;
        };
        let node = node.clone();
        let tx = tx.clone();
        let serving = serving.clone();
        serving.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let reply = node.replica_request(req).await;
            let _ = tx.send(reply.encode(id)).await;
            serving.fetch_sub(1, Ordering::Relaxed);
        });
    };
    drop(tx);
    let _ = writer.await;
    result
}

/// Why a request to a replica got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    Unreachable(String),
    Timeout,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    dead: Arc<AtomicBool>,
}

/// One peer: its address, its connection and whether it is believed up.
struct Link {
    node: i32,
    addr: Mutex<String>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    down: AtomicBool,
    probing: AtomicBool,
}

/// Which peers an injected fault cuts this node off from (`keel lab`).
pub type Cut = Arc<dyn Fn(i32) -> bool + Send + Sync>;

/// Links to every peer a coordinator talks to.
#[derive(Default)]
pub struct Peers {
    links: Mutex<HashMap<i32, Arc<Link>>>,
    next_id: AtomicU64,
    cut: std::sync::RwLock<Option<Cut>>,
}

impl Peers {
    /// Requests to the peers `cut` names go unanswered, as across a network
    /// partition: they time out (the lab's faults, applied to the tables
    /// face's links as to Raft's).
    pub fn set_cut(&self, cut: Cut) {
        *self.cut.write().expect("cut lock") = Some(cut);
    }

    fn is_cut(&self, node: i32) -> bool {
        self.cut
            .read()
            .expect("cut lock")
            .as_ref()
            .is_some_and(|c| c(node))
    }

    fn link(&self, node: i32, addr: &str) -> Arc<Link> {
        let mut links = self.links.lock().expect("links lock");
        let l = links.entry(node).or_insert_with(|| {
            Arc::new(Link {
                node,
                addr: Mutex::new(addr.to_string()),
                conn: tokio::sync::Mutex::new(None),
                down: AtomicBool::new(false),
                probing: AtomicBool::new(false),
            })
        });
        let mut a = l.addr.lock().expect("addr lock");
        if *a != addr {
            *a = addr.to_string();
        }
        drop(a);
        l.clone()
    }

    /// False once a request to `node` failed, until a ping gets through.
    pub fn is_up(&self, node: i32) -> bool {
        self.links
            .lock()
            .expect("links lock")
            .get(&node)
            .is_none_or(|l| !l.down.load(Ordering::Acquire))
    }

    /// Sends `req` to `node` at `addr` and waits up to `timeout` for its reply.
    pub async fn call(
        self: &Arc<Self>,
        node: i32,
        addr: &str,
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, LinkError> {
        let link = self.link(node, addr);
        let r = self.call_link(&link, req, timeout).await;
        if r.is_err() {
            self.mark_down(node, link);
        }
        r
    }

    async fn call_link(
        &self,
        link: &Arc<Link>,
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, LinkError> {
        if self.is_cut(link.node) {
            tokio::time::sleep(timeout).await;
            return Err(LinkError::Timeout);
        }
        let conn = connect(link).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().expect("pending lock").insert(id, tx);
        if conn.dead.load(Ordering::Acquire) || conn.tx.send(req.encode(id)).await.is_err() {
            conn.pending.lock().expect("pending lock").remove(&id);
            return Err(LinkError::Unreachable("connection closed".into()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(LinkError::Unreachable("connection closed".into())),
            Err(_) => {
                conn.pending.lock().expect("pending lock").remove(&id);
                Err(LinkError::Timeout)
            }
        }
    }

    fn mark_down(self: &Arc<Self>, node: i32, link: Arc<Link>) {
        link.down.store(true, Ordering::Release);
        if link.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        // The coordinator's "state changed" line says it at INFO.
        tracing::debug!(node, "table replica's link marked down; probing it");
        let peers = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if let Ok(Reply::Done) = peers
                    .call_link(&link, &Request::Ping, PROBE_EVERY.max(CONNECT_TIMEOUT))
                    .await
                {
                    link.down.store(false, Ordering::Release);
                    link.probing.store(false, Ordering::Release);
                    tracing::debug!(node, "table replica's link up again");
                    return;
                }
            }
        });
    }
}

/// The link's connection, opened if there is none.
async fn connect(link: &Arc<Link>) -> Result<Arc<Conn>, LinkError> {
    let mut slot = link.conn.lock().await;
    if let Some(c) = slot.as_ref() {
        if !c.dead.load(Ordering::Acquire) {
            return Ok(c.clone());
        }
    }
    let addr = link.addr.lock().expect("addr lock").clone();
    let mut sock = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(LinkError::Unreachable(format!("{addr}: {e}"))),
        Err(_) => return Err(LinkError::Unreachable(format!("{addr}: connect timed out"))),
    };
    let _ = sock.set_nodelay(true);
    sock.write_all(MAGIC)
        .await
        .map_err(|e| LinkError::Unreachable(format!("{addr}: {e}")))?;
    let (rd, wr) = sock.into_split();
    let mut rd = tokio::io::BufReader::with_capacity(64 << 10, rd);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4096);
    let pending: Pending = Arc::default();
    let dead = Arc::new(AtomicBool::new(false));
    let (p, d) = (pending.clone(), dead.clone());
    tokio::spawn(async move {
        // Other requests awaiting replies on this link: more are likely
        // being sent.
        write_frames(wr, rx, move || p.lock().expect("pending lock").len() > 1).await;
        d.store(true, Ordering::Release);
    });
    let (p, d) = (pending.clone(), dead.clone());
    tokio::spawn(async move {
        while let Ok(Some((id, kind, body))) = read_frame(&mut rd).await {
            let waiter = p.lock().expect("pending lock").remove(&id);
            if let Some(w) = waiter {
                let reply = Reply::decode(kind, &body).unwrap_or_else(|| {
                    Reply::Failed(format!("malformed internode reply (kind {kind})"))
                });
                let _ = w.send(reply);
            }
        }
        d.store(true, Ordering::Release);
        // Dropping the waiters tells each its connection closed.
        p.lock().expect("pending lock").clear();
    });
    let conn = Arc::new(Conn { tx, pending, dead });
    *slot = Some(conn.clone());
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_table::Cell;

    #[test]
    fn requests_and_replies_round_trip_and_bad_bodies_are_refused() {
        let m: Mutation = vec![
            (vec![1, 2, 3], Cell::live(5, b"v".to_vec())),
            (vec![4], Cell::tombstone(6, 7)),
        ];
        let reqs = [
            Request::Mutate(m.clone()),
            Request::Read {
                start: vec![1],
                end: vec![],
                partition: Some(vec![9, 9]),
                max_bytes: 1 << 20,
                digest: false,
            },
            Request::Read {
                start: vec![],
                end: vec![2],
                partition: None,
                max_bytes: 7,
                digest: true,
            },
            Request::Ping,
            Request::Applied(77),
            Request::Prepare {
                partition: vec![3; 40],
                ballot: Ballot::new(123, 2),
            },
            Request::Propose {
                partition: vec![3; 40],
                ballot: Ballot::new(124, -1),
                cells: m.clone(),
            },
            Request::Commit {
                partition: vec![],
                ballot: Ballot::new(i64::MIN, i32::MAX),
                cells: Vec::new(),
            },
            Request::Merkle {
                table: vec![1; 16],
                first: i64::MIN,
                last: 5,
                leaves: 64,
            },
            Request::Gossip(vec![Heartbeat {
                node: 2,
                generation: 1_700_000_000,
                version: 42,
                state: crate::gossip::State::Normal,
            }]),
        ];
        for r in reqs {
            let f = r.encode(42);
            assert_eq!(
                u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
                f.len() - 4
            );
            assert_eq!(u64::from_be_bytes(f[4..12].try_into().unwrap()), 42);
            assert_eq!(Request::decode(f[12], &f[13..]), Some(r.clone()));
            // Any cut or flipped byte in a body is refused, never misread.
            for cut in 0..f.len() - 13 {
                let _ = Request::decode(f[12], &f[13..13 + cut]);
            }
        }
        let f = Request::Mutate(m.clone()).encode(1);
        let mut bad = f[13..].to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(Request::decode(KIND_MUTATE, &bad), None);
        for r in [
            Reply::Done,
            Reply::Cells {
                cells: m.clone(),
                resume: Some(vec![8]),
            },
            Reply::Cells {
                cells: Vec::new(),
                resume: None,
            },
            Reply::Failed("disk full".into()),
            Reply::Accepted(true),
            Reply::Accepted(false),
            Reply::Hashes(vec![[7; 32], [0; 32]]),
            Reply::Hashes(Vec::new()),
            Reply::Digest([3; 32]),
            Reply::Gossip(Vec::new()),
            Reply::Promise {
                ok: false,
                state: PaxosState::default(),
            },
            Reply::Promise {
                ok: true,
                state: PaxosState {
                    promised: Ballot::new(9, 1),
                    accepted: Some((Ballot::new(8, 2), m.clone())),
                    committed: Some((Ballot::new(7, 3), Vec::new())),
                },
            },
        ] {
            let f = r.encode(3);
            assert_eq!(Reply::decode(f[12], &f[13..]), Some(r.clone()));
            for cut in 0..f.len() - 13 {
                let _ = Reply::decode(f[12], &f[13..13 + cut]);
            }
        }
        assert_eq!(Reply::decode(KIND_ACCEPTED, &[2]), None);
        assert_eq!(Reply::decode(KIND_HASHES, &[0; 33]), None);
        assert_eq!(Request::decode(99, &[]), None);
    }
}
