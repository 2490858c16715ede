//! The CQL native protocol server (v4 and v5, and v3 for old clients):
//! frames in and out, the connection's handshake, keyspace and compression,
//! and requests run concurrently per stream id as Cassandra does.
//!
//! A frame's 9-byte header is checked here before the codec sees it: the
//! direction bit, the version (v1/v2 and v6 get Cassandra's "Invalid or
//! unsupported protocol version" so drivers downgrade), and the body length
//! (at most [`MAX_FRAME`], Cassandra's `native_transport_max_frame_size`).
//! After a v5 STARTUP is answered, both directions switch to v5's frames
//! (CRC24-checked headers, CRC32-checked payloads of up to 128 KiB, lz4 per
//! frame when agreed), each carrying whole envelopes or a part of one.
//! Malformed bodies get a ProtocolError on their stream and the connection
//! keeps serving; only a frame whose length cannot be trusted closes it.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cassandra_protocol::compression::Compression;
use cassandra_protocol::frame::events::{
    SchemaChange, SchemaChangeOptions, SchemaChangeTarget, SchemaChangeType, ServerEvent,
    SimpleServerEvent, StatusChange, StatusChangeType, TopologyChange, TopologyChangeType,
};
use cassandra_protocol::frame::message_batch::{BatchQuerySubj, BatchType, BodyReqBatch};
use cassandra_protocol::frame::message_error::ErrorBody;
use cassandra_protocol::frame::message_request::RequestBody;
use cassandra_protocol::frame::message_result::{
    BodyResResultPrepared, BodyResResultRows, BodyResResultSetKeyspace, ColSpec, ColType,
    ColTypeOption, ColTypeOptionValue, PreparedMetadata, ResResultBody, RowsMetadata,
    RowsMetadataFlags, TableSpec,
};
use cassandra_protocol::frame::{Direction, Envelope, Flags, Opcode, Serialize, Version};
use cassandra_protocol::query::{QueryParams, QueryValues};
use cassandra_protocol::types::value::Value;
use cassandra_protocol::types::{CBytes, CBytesShort};
use keel_table::CqlType;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::error::CqlError;
use crate::exec::{Bound, ColumnSpec, Event, Node, Outcome, Params, Rows, SchemaEvent};
use crate::parser::{self, BatchKind};

/// The largest frame body accepted (Cassandra 3's default
/// `native_transport_max_frame_size_in_mb`, 256).
pub const MAX_FRAME: usize = 256 << 20;
const HEADER: usize = 9;

/// Serves CQL on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    // This node's hints go out from here while it serves.
    let replay = tokio::spawn(crate::hints::replay(node.clone()));
    let _stop_replay = AbortOnDrop(replay);
    let _stop_gossip = AbortOnDrop(tokio::spawn(crate::gossip::run(node.clone())));
    let _stop_bootstrap = AbortOnDrop(tokio::spawn(crate::bootstrap::run(node.clone())));
    let _stop_watch = AbortOnDrop(tokio::spawn(watch_cluster(node.clone())));
    let _stop_batchlog = AbortOnDrop(tokio::spawn(crate::batchlog::replay(node.clone())));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("cql accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(sock, node).await {
                tracing::debug!("cql connection {peer}: {e}");
            }
        });
    }
}

/// Aborts a task when dropped (when `serve` is cancelled, so is the replay).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One connection's state shared by its requests.
struct Conn {
    node: Arc<Node>,
    keyspace: Mutex<Option<String>>,
    compression: Mutex<Compression>,
    started: Mutex<bool>,
    /// Protocol v5's framing is on (after a v5 STARTUP was answered):
    /// replies go out as v5 frames, requests come in as them.
    segmented: AtomicBool,
    out: mpsc::Sender<Vec<u8>>,
    /// The events this connection REGISTERed for (None: none yet).
    registered: Mutex<Option<Vec<SimpleServerEvent>>>,
}

async fn connection(sock: TcpStream, node: Arc<Node>) -> std::io::Result<()> {
    // Another node's coordinator opens with the internode magic; a CQL
    // client's first byte is a protocol version.
    let mut first = [0u8; 1];
    if sock.peek(&mut first).await? == 1 && first[0] == crate::internode::MAGIC[0] {
        let mut sock = sock;
        let mut magic = [0u8; 8];
        sock.read_exact(&mut magic).await?;
        if &magic != crate::internode::MAGIC {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "neither a CQL frame nor Keel's internode magic",
            ));
        }
        return crate::internode::serve(sock, node).await;
    }
    let (rd, wr) = sock.into_split();
    // Buffered: a request's header and body (and under load, the next
    // requests) in one read, not a syscall for each.
    let mut rd = tokio::io::BufReader::with_capacity(64 << 10, rd);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
    // A driver with one request in flight per connection (as
    // cassandra-stress) has no second reply to wait for: never held back.
    let writer = tokio::spawn(crate::internode::write_frames(wr, rx, || false));
    let conn = Arc::new(Conn {
        node,
        keyspace: Mutex::new(None),
        compression: Mutex::new(Compression::None),
        started: Mutex::new(false),
        segmented: AtomicBool::new(false),
        out: tx,
        registered: Mutex::new(None),
    });
    let result = read_loop(&mut rd, &conn).await;
    drop(conn);
    let _ = writer.await;
    result
}

async fn read_loop(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    conn: &Arc<Conn>,
) -> std::io::Result<()> {
    let mut header = [0u8; HEADER];
    loop {
        if conn.segmented.load(Ordering::Acquire) {
            return read_segments(rd, conn).await;
        }
        match rd.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let Some(len) = conn.checked(check_header(&header)).await else {
            return Ok(());
        };
        let mut frame = vec![0u8; HEADER + len];
        frame[..HEADER].copy_from_slice(&header);
        rd.read_exact(&mut frame[HEADER..]).await?;
        if *conn.started.lock().expect("lock") {
            dispatch(conn, frame);
            continue;
        }
        // The handshake (OPTIONS, STARTUP) is served before the next frame
        // is read: after a v5 STARTUP is answered, both directions switch
        // to v5's framing (native_protocol_v5.spec, section 2).
        let v5 = header[0] & 0x7f == 5;
        let _ = dispatch(conn, frame).await;
        if v5 && *conn.started.lock().expect("lock") {
            conn.segmented.store(true, Ordering::Release);
        }
    }
}

/// Checks a frame's 9-byte header before the codec sees it: the direction
/// bit, the version, and the body length. Returns the body's length, or
/// the error to answer on the frame's stream before closing the connection
/// (its bytes can no longer be trusted to find the next frame).
fn check_header(header: &[u8; HEADER]) -> Result<usize, (Version, i16, CqlError)> {
    let stream = i16::from_be_bytes([header[2], header[3]]);
    let raw_version = header[0] & 0x7f;
    let reply_version = version_of(header[0]);
    if header[0] & 0x80 != 0 {
        return Err((
            reply_version,
            stream,
            CqlError::Protocol(
                "Invalid frame: a request with the response direction bit set".into(),
            ),
        ));
    }
    if !(3..=5).contains(&raw_version) {
        return Err((
            reply_version,
            stream,
            CqlError::Protocol(format!(
                "Invalid or unsupported protocol version ({raw_version}); supported versions are (3/v3, 4/v4, 5/v5)"
            )),
        ));
    }
    let len = i32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    match usize::try_from(len) {
        Ok(n) if n <= MAX_FRAME => Ok(n),
        _ => Err((
            reply_version,
            stream,
            CqlError::Protocol(format!(
                "Request is too big: length {len} exceeds maximum allowed length {MAX_FRAME}."
            )),
        )),
    }
}

/// The version to answer a frame in, from its first byte: its own when
/// Keel speaks it, else v4 (what drivers parse a version error from).
fn version_of(first: u8) -> Version {
    match first & 0x7f {
        3 => Version::V3,
        5 => Version::V5,
        _ => Version::V4,
    }
}

/// Serves one request frame (header checked) in a task of its own.
/// Requests of one connection run concurrently, as Cassandra runs each
/// stream id independently; replies carry their stream id. A bug that
/// panics while serving one request must still answer it (a ServerError,
/// as Cassandra answers an unexpected exception) and leave the connection
/// serving the others.
fn dispatch(conn: &Arc<Conn>, frame: Vec<u8>) -> tokio::task::JoinHandle<()> {
    let conn = conn.clone();
    let stream = i16::from_be_bytes([frame[2], frame[3]]);
    let version = version_of(frame[0]);
    tokio::spawn(async move {
        let work = CatchUnwind(Box::pin(conn.clone().handle(version, stream, frame)));
        if work.await.is_err() {
            tracing::error!("cql request on stream {stream} panicked");
            conn.send_error(
                version,
                stream,
                &CqlError::Server("internal error while serving the request".into()),
            )
            .await;
        }
    })
}

/// Reads protocol v5's frames ("segments") until the connection closes: each
/// carries up to 128 KiB of payload, checked by a CRC24 of its header and a
/// CRC32 of its payload, lz4-compressed if the connection agreed to it;
/// either whole request envelopes (self-contained) or a part of one larger
/// envelope. A corrupt segment closes the connection, as Cassandra's
/// `FrameDecoder` does: nothing after it can be trusted.
async fn read_segments(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    conn: &Arc<Conn>,
) -> std::io::Result<()> {
    let lz4 = *conn.compression.lock().expect("lock") == Compression::Lz4;
    // An envelope spanning segments, as far as it has come.
    let mut large: Vec<u8> = Vec::new();
    loop {
        let Some((self_contained, payload)) = read_segment(rd, lz4).await? else {
            return if large.is_empty() {
                Ok(())
            } else {
                Err(invalid("the connection closed inside an envelope"))
            };
        };
        if self_contained {
            if !large.is_empty() {
                return Err(invalid(
                    "a self-contained frame while an envelope spanning frames was incomplete",
                ));
            }
            let mut at = 0;
            while at < payload.len() {
                let Some(header) = payload.get(at..at + HEADER) else {
                    return Err(invalid(
                        "a self-contained frame ends inside an envelope header",
                    ));
                };
                let header: &[u8; HEADER] = header.try_into().expect("9 bytes");
                let Some(len) = conn.checked(check_v5_header(header)).await else {
                    return Ok(());
                };
                let Some(envelope) = payload.get(at..at + HEADER + len) else {
                    return Err(invalid("a self-contained frame ends inside an envelope"));
                };
                dispatch(conn, envelope.to_vec());
                at += HEADER + len;
            }
        } else {
            large.extend_from_slice(&payload);
            let Some(header) = large.get(..HEADER) else {
                continue;
            };
            let header: &[u8; HEADER] = header.try_into().expect("9 bytes");
            let Some(len) = conn.checked(check_v5_header(header)).await else {
                return Ok(());
            };
            if large.len() > HEADER + len {
                return Err(invalid(
                    "an envelope spanning frames is longer than its header says",
                ));
            }
            if large.len() == HEADER + len {
                dispatch(conn, std::mem::take(&mut large));
            }
        }
    }
}

/// [`check_header`] for an envelope inside v5 frames, which must say v5.
fn check_v5_header(header: &[u8; HEADER]) -> Result<usize, (Version, i16, CqlError)> {
    let len = check_header(header)?;
    if header[0] & 0x7f != 5 {
        let stream = i16::from_be_bytes([header[2], header[3]]);
        return Err((
            Version::V5,
            stream,
            CqlError::Protocol(format!(
                "Invalid message version: the connection speaks v5, the envelope says v{}",
                header[0] & 0x7f
            )),
        ));
    }
    Ok(len)
}

/// Uncompressed v5 frames have a 6-byte header, lz4 ones an 8-byte one;
/// both end with a 4-byte CRC32 of the payload.
const SEGMENT_HEADER: usize = 6;
const SEGMENT_HEADER_LZ4: usize = 8;
const SEGMENT_TRAILER: usize = 4;
/// The most payload one v5 frame carries (compressed or not), 128 KiB - 1.
const SEGMENT_PAYLOAD_MAX: usize = (1 << 17) - 1;

/// Reads one v5 frame: whether it is self-contained, and its payload
/// (decompressed). None at a clean end of stream.
async fn read_segment(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    lz4: bool,
) -> std::io::Result<Option<(bool, Vec<u8>)>> {
    use cassandra_protocol::crc::{crc24, crc32};
    let header_len = if lz4 {
        SEGMENT_HEADER_LZ4
    } else {
        SEGMENT_HEADER
    };
    let mut h = [0u8; 8];
    match rd.read_exact(&mut h[..header_len]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let fields = header_len - 3;
    let mut v = [0u8; 8];
    v[..fields].copy_from_slice(&h[..fields]);
    let v = u64::from_le_bytes(v);
    let crc = i32::from_le_bytes([h[fields], h[fields + 1], h[fields + 2], 0]);
    if crc24(&h[..fields]) != crc {
        return Err(invalid("a frame header's CRC24 does not match"));
    }
    let len = (v & 0x1ffff) as usize;
    let (uncompressed, self_contained) = if lz4 {
        (((v >> 17) & 0x1ffff) as usize, v & (1 << 34) != 0)
    } else {
        (0, v & (1 << 17) != 0)
    };
    let mut payload = vec![0u8; len + SEGMENT_TRAILER];
    rd.read_exact(&mut payload).await?;
    let trailer = payload.split_off(len);
    if crc32(&payload).to_le_bytes() != trailer[..] {
        return Err(invalid("a frame payload's CRC32 does not match"));
    }
    if uncompressed == 0 {
        // Stored as is (an lz4 frame whose payload would not shrink says
        // 0 for its uncompressed length).
        return Ok(Some((self_contained, payload)));
    }
    if uncompressed > SEGMENT_PAYLOAD_MAX {
        return Err(invalid("a frame's uncompressed length exceeds 128 KiB"));
    }
    let payload = lz4_flex::block::decompress(&payload, uncompressed)
        .map_err(|e| invalid(&format!("a frame's lz4 payload: {e}")))?;
    Ok(Some((self_contained, payload)))
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("protocol v5 framing: {why}"),
    )
}

/// One reply envelope as v5 frames: whole in one self-contained frame when
/// it fits, else split over frames that are not (the crate's encoders write
/// the headers, CRCs and lz4 blocks).
fn segments(envelope: Vec<u8>, lz4: bool) -> Vec<u8> {
    use cassandra_protocol::frame::frame_encoder::{
        FrameEncoder, Lz4FrameEncoder, UncompressedFrameEncoder,
    };
    let mut enc: Box<dyn FrameEncoder> = if lz4 {
        Box::new(Lz4FrameEncoder::default())
    } else {
        Box::new(UncompressedFrameEncoder::default())
    };
    if enc.can_fit(envelope.len()) {
        enc.add_envelope(envelope);
        return enc.finalize_self_contained().to_vec();
    }
    let mut out = Vec::with_capacity(envelope.len() + envelope.len() / 1000 + 64);
    let mut rest = envelope.as_slice();
    while !rest.is_empty() {
        enc.reset();
        let (n, frame) = enc.finalize_non_self_contained(rest);
        out.extend_from_slice(frame);
        rest = &rest[n..];
    }
    out
}

/// A future that turns a panic while it is polled into `Err`, so one task
/// per request both isolates a bug in serving it and answers it (a second
/// task only to catch the panic cost an allocation and a wake-up per
/// request: measured in docs/perf.md).
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = self.0.as_mut();
        let _contained = Contained::enter();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

/// Everything this server does to a client's bytes before a request reaches
/// a table, applied to `bytes` as one connection's stream: a frame's header
/// check, the envelope and request-body decoders (lz4-decompressing when
/// `lz4` is set), the CQL text of QUERY, PREPARE and BATCH, and the bound
/// values; with `v5`, the stream is first cut into protocol v5's frames
/// (CRC24 headers, CRC32 payloads) as `read_segments` does. For the fuzz
/// targets (crates/keel-fuzz): none of it may panic, whatever the bytes.
#[doc(hidden)]
pub async fn decode_stream(bytes: &[u8], v5: bool, lz4: bool) {
    let mut envelopes = Vec::new();
    if v5 {
        let mut rd = bytes;
        while let Ok(Some((_, payload))) = read_segment(&mut rd, lz4).await {
            let mut at = 0;
            while let Some(header) = payload.get(at..at + HEADER) {
                let header: &[u8; HEADER] = header.try_into().expect("9 bytes");
                let Ok(len) = check_v5_header(header) else {
                    break;
                };
                let Some(envelope) = payload.get(at..at + HEADER + len) else {
                    break;
                };
                envelopes.push(envelope.to_vec());
                at += HEADER + len;
            }
        }
    } else {
        let mut at = 0;
        while let Some(header) = bytes.get(at..at + HEADER) {
            let header: &[u8; HEADER] = header.try_into().expect("9 bytes");
            let Ok(len) = check_header(header) else {
                break;
            };
            let Some(frame) = bytes.get(at..at + HEADER + len) else {
                break;
            };
            envelopes.push(frame.to_vec());
            at += HEADER + len;
        }
    }
    for frame in envelopes {
        let compression = if frame[1] & 0x01 != 0 && lz4 {
            Compression::Lz4
        } else {
            Compression::None
        };
        let Ok(env) = Envelope::from_buffer(&frame, compression) else {
            continue;
        };
        let Ok(body) = env.envelope.request_body() else {
            continue;
        };
        match body {
            RequestBody::Query(q) => {
                let _ = crate::exec::parse(&q.query);
                let _ = params(&q.query_params);
            }
            RequestBody::Prepare(p) => {
                let _ = crate::exec::parse(&p.query);
            }
            RequestBody::Execute(e) => {
                let _ = params(&e.query_parameters);
            }
            RequestBody::Batch(b) => {
                for q in b.queries {
                    if let BatchQuerySubj::QueryString(text) = &q.subject {
                        let _ = crate::exec::parse(text);
                    }
                    let mut p = Params::default();
                    let _ = set_values(&mut p, Some(q.values));
                }
            }
            _ => {}
        }
    }
}

thread_local! {
    /// How many `CatchUnwind` polls this thread is inside.
    static CONTAINED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Marks the thread as polling a request whose panic is caught and answered,
/// for as long as it lives (a guard, so a panic unwinding through it leaves
/// the count right).
struct Contained;

impl Contained {
    fn enter() -> Self {
        CONTAINED.with(|c| c.set(c.get() + 1));
        Contained
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        CONTAINED.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// Whether a panic on this thread, now, happens while serving one CQL
/// request, where it is caught and answered with a server error. A node's
/// panic hook lets such a panic unwind and takes the process down for any
/// other (issue 34: a thread that died must not leave a node half alive).
pub fn panic_is_contained() -> bool {
    CONTAINED.with(|c| c.get() > 0)
}

impl Conn {
    async fn send(&self, version: Version, stream: i16, opcode: Opcode, body: Vec<u8>) {
        let agreed = *self.compression.lock().expect("lock");
        let segmented = self.segmented.load(Ordering::Acquire);
        // v5 compresses whole frames, not envelopes.
        let compression = if opcode == Opcode::Ready || opcode == Opcode::Supported || segmented {
            Compression::None
        } else {
            agreed
        };
        let env = Envelope::new(
            version,
            Direction::Response,
            Flags::empty(),
            opcode,
            stream,
            body,
            None,
            Vec::new(),
        );
        match env.encode_with(compression) {
            Ok(buf) => {
                let buf = if segmented {
                    segments(buf, agreed == Compression::Lz4)
                } else {
                    buf
                };
                let _ = self.out.send(buf).await;
            }
            Err(e) => tracing::warn!("cql encode: {e}"),
        }
    }

    async fn send_error(&self, version: Version, stream: i16, e: &CqlError) {
        self.send(version, stream, Opcode::Error, encode(&e.body(), version))
            .await;
    }

    /// A frame header's body length, or None after answering why the header
    /// is refused (the connection then closes: see [`check_header`]).
    async fn checked(&self, header: Result<usize, (Version, i16, CqlError)>) -> Option<usize> {
        match header {
            Ok(len) => Some(len),
            Err((version, stream, e)) => {
                self.send_error(version, stream, &e).await;
                None
            }
        }
    }

    async fn handle(self: Arc<Self>, version: Version, stream: i16, frame: Vec<u8>) {
        // v5's envelopes are never compressed themselves (its frames are).
        let compression = if frame[1] & 0x01 != 0 && version != Version::V5 {
            let c = *self.compression.lock().expect("lock");
            if c == Compression::None {
                self.send_error(
                    version,
                    stream,
                    &CqlError::Protocol(
                        "Invalid frame: compressed, but no compression was agreed at STARTUP"
                            .into(),
                    ),
                )
                .await;
                return;
            }
            c
        } else {
            Compression::None
        };
        let env = match Envelope::from_buffer(&frame, compression) {
            Ok(p) => p.envelope,
            Err(e) => {
                self.send_error(
                    version,
                    stream,
                    &CqlError::Protocol(format!("Invalid frame: {e}")),
                )
                .await;
                return;
            }
        };
        let body = match env.request_body() {
            Ok(b) => b,
            Err(e) => {
                self.send_error(
                    version,
                    stream,
                    &CqlError::Protocol(format!("Invalid message body for {:?}: {e}", env.opcode)),
                )
                .await;
                return;
            }
        };
        let started = *self.started.lock().expect("lock");
        if !started && !matches!(body, RequestBody::Startup(_) | RequestBody::Options(_)) {
            self.send_error(
                version,
                stream,
                &CqlError::Protocol(
                    format!(
                        "Unexpected message {:?}, expecting STARTUP or OPTIONS",
                        env.opcode
                    )
                    .to_uppercase(),
                ),
            )
            .await;
            return;
        }
        let reply = self.request(version, body).await;
        match reply {
            Ok((opcode, body)) => self.send(version, stream, opcode, body).await,
            Err(e) => self.send_error(version, stream, &e).await,
        }
    }

    async fn request(
        self: &Arc<Self>,
        version: Version,
        body: RequestBody,
    ) -> Result<(Opcode, Vec<u8>), CqlError> {
        match body {
            RequestBody::Options(_) => Ok((Opcode::Supported, supported())),
            RequestBody::Startup(s) => {
                if let Some(v) = s.map.get("CQL_VERSION") {
                    // Cassandra refuses only versions below 3 (its
                    // StartupMessage compares with 2.99.0): drivers send
                    // their own idea, ScyllaDB's Rust driver "4.0.0".
                    let major = v.split('.').next().and_then(|m| m.parse::<u32>().ok());
                    if major.is_none_or(|m| m < 3) {
                        return Err(CqlError::Protocol(format!(
                            "Unsupported CQL version {v}; this server speaks {}",
                            crate::system::CQL_VERSION
                        )));
                    }
                }
                let c = match s.map.get("COMPRESSION").map(|c| c.to_ascii_lowercase()) {
                    None => Compression::None,
                    Some(c) if c == "lz4" => Compression::Lz4,
                    Some(c) => {
                        return Err(CqlError::Protocol(format!(
                            "Unknown compression algorithm: {c}"
                        )))
                    }
                };
                *self.compression.lock().expect("lock") = c;
                *self.started.lock().expect("lock") = true;
                Ok((Opcode::Ready, Vec::new()))
            }
            RequestBody::AuthResponse(_) => Err(CqlError::Protocol(
                "Unexpected AUTH_RESPONSE: this server does not authenticate".into(),
            )),
            RequestBody::Register(r) => {
                self.register_events(version, r.events);
                Ok((Opcode::Ready, Vec::new()))
            }
            RequestBody::Query(q) => {
                let parsed = crate::exec::parse(&q.query)?;
                let params = params(&q.query_params)?;
                let ks = self.session_keyspace(&q.query_params.keyspace);
                let out = self.node.execute(&ks, &parsed, &params).await?;
                Ok((Opcode::Result, self.outcome(out, version)))
            }
            RequestBody::Prepare(p) => {
                let ks = self.session_keyspace(&p.keyspace);
                let (id, prepared) = self.node.prepare(&ks, &p.query)?;
                let body = ResResultBody::Prepared(BodyResResultPrepared {
                    id: CBytesShort::new(id),
                    // v5 names the result's columns by an id the driver
                    // sends back on EXECUTE (Cassandra: an MD5 of them).
                    result_metadata_id: (version == Version::V5)
                        .then(|| CBytesShort::new(result_metadata_id(&prepared.result))),
                    metadata: PreparedMetadata {
                        pk_indexes: prepared.pk_indexes.clone(),
                        global_table_spec: None,
                        col_specs: prepared.binds.iter().map(col_spec).collect(),
                    },
                    result_metadata: match &prepared.result {
                        Some(cols) => rows_metadata(cols, None),
                        None => RowsMetadata {
                            flags: RowsMetadataFlags::NO_METADATA,
                            columns_count: 0,
                            paging_state: None,
                            new_metadata_id: None,
                            global_table_spec: None,
                            col_specs: Vec::new(),
                        },
                    },
                });
                Ok((Opcode::Result, encode(&body, version)))
            }
            RequestBody::Execute(e) => {
                let id = e.id.into_bytes().unwrap_or_default();
                let prepared = self.node.prepared.lock().expect("lock").get(&id).cloned();
                let Some(prepared) = prepared else {
                    return Err(CqlError::Unprepared(id));
                };
                let params = params(&e.query_parameters)?;
                let ks = prepared
                    .keyspace
                    .clone()
                    .or_else(|| self.session_keyspace(&None));
                let out = self.node.execute(&ks, &prepared.parsed, &params).await?;
                Ok((Opcode::Result, self.outcome(out, version)))
            }
            RequestBody::Batch(b) => self.batch(b, version).await,
            _ => Err(CqlError::Protocol("Unsupported request".into())),
        }
    }

    async fn batch(
        self: &Arc<Self>,
        b: BodyReqBatch,
        version: Version,
    ) -> Result<(Opcode, Vec<u8>), CqlError> {
        let kind = match b.batch_type {
            BatchType::Logged => BatchKind::Logged,
            BatchType::Unlogged => BatchKind::Unlogged,
            _ => {
                return Err(CqlError::Invalid(
                    "Counter batches are not supported: Keel has no counter columns".into(),
                ))
            }
        };
        let ks = self.session_keyspace(&b.keyspace);
        let mut statements = Vec::new();
        for q in b.queries {
            let (parsed, stmt_ks) = match q.subject {
                BatchQuerySubj::QueryString(s) => (crate::exec::parse(&s)?, ks.clone()),
                BatchQuerySubj::PreparedId(id) => {
                    let id = id.into_bytes().unwrap_or_default();
                    let p = self.node.prepared.lock().expect("lock").get(&id).cloned();
                    let Some(p) = p else {
                        return Err(CqlError::Unprepared(id));
                    };
                    (p.parsed.clone(), p.keyspace.clone().or_else(|| ks.clone()))
                }
            };
            let mut params = Params {
                consistency: b.consistency,
                serial_consistency: b.serial_consistency,
                timestamp: b.timestamp,
                ..Params::default()
            };
            set_values(&mut params, Some(q.values))?;
            if stmt_ks != ks {
                // A prepared statement's keyspace is its own; qualify via the parse.
                statements.push((qualify(parsed, &stmt_ks), params));
            } else {
                statements.push((parsed, params));
            }
        }
        let out = self
            .node
            .batch(&ks, &statements, b.consistency, b.timestamp, kind)
            .await?;
        Ok((Opcode::Result, self.outcome(out, version)))
    }

    fn session_keyspace(&self, per_request: &Option<String>) -> Option<String> {
        per_request
            .clone()
            .or_else(|| self.keyspace.lock().expect("lock").clone())
    }

    fn outcome(&self, out: Outcome, version: Version) -> Vec<u8> {
        let body = match out {
            Outcome::Void => ResResultBody::Void,
            Outcome::SetKeyspace(k) => {
                *self.keyspace.lock().expect("lock") = Some(k.clone());
                ResResultBody::SetKeyspace(BodyResResultSetKeyspace { body: k })
            }
            Outcome::SchemaChange(ev) => ResResultBody::SchemaChange(schema_change(&ev)),
            Outcome::Rows(rows) => ResResultBody::Rows(rows_body(rows, version)),
        };
        encode(&body, version)
    }

    /// Sends this connection the events it registers for, from now on.
    fn register_events(self: &Arc<Self>, version: Version, events: Vec<SimpleServerEvent>) {
        let mut registered = self.registered.lock().expect("lock");
        if let Some(have) = registered.as_mut() {
            have.extend(events);
            return;
        }
        *registered = Some(events);
        drop(registered);
        let mut rx = self.node.events.subscribe();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(conn) = weak.upgrade() else {
                    return;
                };
                let (kind, body) = match &ev {
                    Event::Schema(s) => (
                        SimpleServerEvent::SchemaChange,
                        ServerEvent::SchemaChange(schema_change(s)),
                    ),
                    Event::Topology { joined, addr } => (
                        SimpleServerEvent::TopologyChange,
                        ServerEvent::TopologyChange(TopologyChange {
                            change_type: if *joined {
                                TopologyChangeType::NewNode
                            } else {
                                TopologyChangeType::RemovedNode
                            },
                            addr: *addr,
                        }),
                    ),
                    Event::Status { up, addr } => (
                        SimpleServerEvent::StatusChange,
                        ServerEvent::StatusChange(StatusChange {
                            change_type: if *up {
                                StatusChangeType::Up
                            } else {
                                StatusChangeType::Down
                            },
                            addr: *addr,
                        }),
                    ),
                };
                let wanted = conn
                    .registered
                    .lock()
                    .expect("lock")
                    .as_ref()
                    .is_some_and(|r| r.contains(&kind));
                if !wanted {
                    continue;
                }
                let mut buf = Vec::new();
                serialize_event(&body, &mut buf, version);
                if conn.out.is_closed() {
                    return;
                }
                conn.send(version, -1, Opcode::Event, buf).await;
            }
        });
    }
}

/// Watches the ring and the coordinator's view of who is up, and tells
/// registered connections of nodes joining or leaving the ring
/// (TOPOLOGY_CHANGE) and going down or up (STATUS_CHANGE), as Cassandra's
/// `Server.EventNotifier` does on gossip's changes; drivers update their
/// host lists and pools from them.
async fn watch_cluster(node: Arc<Node>) {
    let mut known: std::collections::BTreeMap<i32, (std::net::SocketAddr, bool)> =
        Default::default();
    let mut first = true;
    let mut tick = tokio::time::interval(node.gossip.interval);
    loop {
        tick.tick().await;
        let img = node.image();
        let mut now = std::collections::BTreeMap::new();
        for n in img.nodes.values() {
            if n.id == node.local.node_id || n.tokens.is_empty() || n.cql_port <= 0 {
                continue;
            }
            let Ok(addr) = format!("{}:{}", n.cql_host, n.cql_port).parse() else {
                continue;
            };
            now.insert(n.id, (addr, node.is_up(&img, n.id)));
        }
        if !first {
            for (id, (addr, up)) in &now {
                match known.get(id) {
                    None => {
                        let _ = node.events.send(Event::Topology {
                            joined: true,
                            addr: *addr,
                        });
                    }
                    Some((_, was)) if was != up => {
                        // Which of the three sources said so, for the log.
                        tracing::info!(
                            node = id,
                            up,
                            fenced = img.nodes.get(id).is_some_and(|n| n.fenced),
                            link_up = node.peers.is_up(*id),
                            gossip_alive = node.gossip.alive(*id),
                            "a table replica's state changed"
                        );
                        let _ = node.events.send(Event::Status {
                            up: *up,
                            addr: *addr,
                        });
                    }
                    Some(_) => {}
                }
            }
            for (id, (addr, _)) in &known {
                if !now.contains_key(id) {
                    let _ = node.events.send(Event::Topology {
                        joined: false,
                        addr: *addr,
                    });
                }
            }
        }
        first = false;
        known = now;
    }
}

/// Prefixes a statement's unqualified table with `keyspace`.
fn qualify(mut p: parser::Parsed, keyspace: &Option<String>) -> parser::Parsed {
    use parser::Statement as S;
    if let S::Insert { table, .. } | S::Update { table, .. } | S::Delete { table, .. } =
        &mut p.statement
    {
        if table.keyspace.is_none() {
            table.keyspace = keyspace.clone();
        }
    }
    p
}

fn serialize_event(ev: &ServerEvent, buf: &mut Vec<u8>, version: Version) {
    let mut c = Cursor::new(buf);
    ev.serialize(&mut c, version);
}

fn encode<T: Serialize>(body: &T, version: Version) -> Vec<u8> {
    let mut buf = Vec::new();
    body.serialize(&mut Cursor::new(&mut buf), version);
    buf
}

/// The id of a prepared statement's result columns (16 bytes of a SHA-256
/// of their names and types): equal exactly when the columns are.
fn result_metadata_id(result: &Option<Vec<ColumnSpec>>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!("{result:?}").as_bytes());
    h.finalize()[..16].to_vec()
}

fn supported() -> Vec<u8> {
    let map: [(&str, &[&str]); 3] = [
        ("CQL_VERSION", &[crate::system::CQL_VERSION]),
        ("COMPRESSION", &["lz4"]),
        ("PROTOCOL_VERSIONS", &["3/v3", "4/v4", "5/v5"]),
    ];
    let mut b = Vec::new();
    b.extend_from_slice(&(map.len() as u16).to_be_bytes());
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend_from_slice(&(x.len() as u16).to_be_bytes());
        b.extend_from_slice(x.as_bytes());
    };
    for (k, vs) in map {
        s(&mut b, k);
        b.extend_from_slice(&(vs.len() as u16).to_be_bytes());
        for v in vs {
            s(&mut b, v);
        }
    }
    b
}

fn schema_change(ev: &SchemaEvent) -> SchemaChange {
    SchemaChange {
        change_type: match ev.change {
            "CREATED" => SchemaChangeType::Created,
            "DROPPED" => SchemaChangeType::Dropped,
            _ => SchemaChangeType::Updated,
        },
        target: if ev.table.is_some() {
            SchemaChangeTarget::Table
        } else {
            SchemaChangeTarget::Keyspace
        },
        options: match &ev.table {
            Some(t) => SchemaChangeOptions::TableType(ev.keyspace.clone(), t.clone()),
            None => SchemaChangeOptions::Keyspace(ev.keyspace.clone()),
        },
    }
}

fn bound(v: Value) -> Bound {
    match v {
        Value::Some(b) => Bound::Value(b),
        Value::Null => Bound::Null,
        Value::NotSet => Bound::Unset,
    }
}

fn set_values(p: &mut Params, values: Option<QueryValues>) -> Result<(), CqlError> {
    match values {
        None => {}
        Some(QueryValues::SimpleValues(v)) => p.values = v.into_iter().map(bound).collect(),
        Some(QueryValues::NamedValues(m)) => {
            p.named = Some(
                m.into_iter()
                    .map(|(k, v)| (k.to_lowercase(), bound(v)))
                    .collect::<HashMap<_, _>>(),
            )
        }
    }
    Ok(())
}

fn params(q: &QueryParams) -> Result<Params, CqlError> {
    let mut p = Params {
        consistency: q.consistency,
        serial_consistency: q.serial_consistency,
        page_size: q.page_size,
        paging_state: q.paging_state.clone().and_then(|s| s.into_bytes()),
        timestamp: q.timestamp,
        ..Params::default()
    };
    set_values(&mut p, q.values.clone())?;
    Ok(p)
}

fn col_type(ty: &CqlType) -> ColTypeOption {
    let simple = |id: ColType| ColTypeOption { id, value: None };
    match ty {
        CqlType::Ascii => simple(ColType::Ascii),
        CqlType::Text => simple(ColType::Varchar),
        CqlType::Int => simple(ColType::Int),
        CqlType::Bigint => simple(ColType::Bigint),
        CqlType::Smallint => simple(ColType::Smallint),
        CqlType::Tinyint => simple(ColType::Tinyint),
        CqlType::Boolean => simple(ColType::Boolean),
        CqlType::Double => simple(ColType::Double),
        CqlType::Float => simple(ColType::Float),
        CqlType::Uuid => simple(ColType::Uuid),
        CqlType::Timeuuid => simple(ColType::Timeuuid),
        CqlType::Timestamp => simple(ColType::Timestamp),
        CqlType::Date => simple(ColType::Date),
        CqlType::Time => simple(ColType::Time),
        CqlType::Blob => simple(ColType::Blob),
        CqlType::Decimal => simple(ColType::Decimal),
        CqlType::Varint => simple(ColType::Varint),
        CqlType::Inet => simple(ColType::Inet),
        CqlType::Duration => simple(ColType::Duration),
        CqlType::List(e) => ColTypeOption {
            id: ColType::List,
            value: Some(ColTypeOptionValue::CList(Box::new(col_type(e)))),
        },
        CqlType::Set(e) => ColTypeOption {
            id: ColType::Set,
            value: Some(ColTypeOptionValue::CSet(Box::new(col_type(e)))),
        },
        CqlType::Map(k, v) => ColTypeOption {
            id: ColType::Map,
            value: Some(ColTypeOptionValue::CMap(
                Box::new(col_type(k)),
                Box::new(col_type(v)),
            )),
        },
        CqlType::Frozen(inner) => col_type(inner),
    }
}

fn col_spec(c: &ColumnSpec) -> ColSpec {
    ColSpec {
        table_spec: Some(TableSpec {
            ks_name: c.keyspace.clone(),
            table_name: c.table.clone(),
        }),
        name: c.name.clone(),
        col_type: col_type(&c.ty),
    }
}

fn rows_metadata(cols: &[ColumnSpec], paging_state: Option<Vec<u8>>) -> RowsMetadata {
    let mut flags = RowsMetadataFlags::empty();
    if paging_state.is_some() {
        flags |= RowsMetadataFlags::HAS_MORE_PAGES;
    }
    RowsMetadata {
        flags,
        columns_count: cols.len() as i32,
        paging_state: paging_state.map(CBytes::new),
        new_metadata_id: None,
        global_table_spec: None,
        col_specs: cols.iter().map(col_spec).collect(),
    }
}

fn rows_body(rows: Rows, version: Version) -> BodyResResultRows {
    let metadata = rows_metadata(&rows.columns, rows.paging_state);
    BodyResResultRows {
        metadata,
        rows_count: rows.rows.len() as i32,
        rows_content: rows
            .rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| match v {
                        Some(b) => CBytes::new(b),
                        None => CBytes::new_null(),
                    })
                    .collect()
            })
            .collect(),
        protocol_version: version,
    }
}

/// An error frame body (for tests and tools that speak the protocol).
pub fn error_body(e: &CqlError, version: Version) -> Vec<u8> {
    encode::<ErrorBody>(&e.body(), version)
}

#[cfg(test)]
mod tests {
    use super::{panic_is_contained, read_segment, segments, CatchUnwind};

    /// An envelope written as v5 frames reads back whole: in one
    /// self-contained frame when small, over several that are not when
    /// larger than a frame's 128 KiB; a flipped bit in a header or a payload
    /// is an error, never a wrong envelope.
    #[tokio::test]
    async fn v5_frames_round_trip_and_a_flipped_bit_is_caught() {
        for lz4 in [false, true] {
            for len in [10usize, 100_000, 300_000] {
                let env: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let wire = segments(env.clone(), lz4);
                let mut rd = wire.as_slice();
                let (mut got, mut frames) = (Vec::new(), Vec::new());
                while let Some((whole, payload)) = read_segment(&mut rd, lz4).await.unwrap() {
                    got.extend_from_slice(&payload);
                    frames.push(whole);
                }
                assert_eq!(got, env, "lz4 {lz4}, {len} bytes");
                if len > 200_000 {
                    assert!(frames.len() >= 3 && frames.iter().all(|w| !w), "{frames:?}");
                } else if len == 10 {
                    assert_eq!(frames, [true]);
                }
                for at in [1, wire.len() / 2, wire.len() - 1] {
                    let mut bad = segments(env.clone(), lz4);
                    bad[at] ^= 0x04;
                    let mut rd = bad.as_slice();
                    let err = loop {
                        match read_segment(&mut rd, lz4).await {
                            Ok(Some(_)) => {}
                            Ok(None) => break None,
                            Err(e) => break Some(e),
                        }
                    };
                    assert!(err.is_some(), "lz4 {lz4}, {len} bytes, bit at {at}");
                }
            }
        }
    }

    /// A request whose serving panics is turned into an error to answer
    /// with (after it yielded once, as a real request's future does), and
    /// one that finishes gives its value.
    #[tokio::test]
    async fn a_panic_while_serving_is_caught_and_a_value_passes_through() {
        let panics = CatchUnwind(Box::pin(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("a bug while serving");
            }
        }));
        assert!(panics.await.is_err());
        assert!(
            !panic_is_contained(),
            "the mark ends with the poll that panicked"
        );
        let fine = CatchUnwind(Box::pin(async {
            tokio::task::yield_now().await;
            (7, panic_is_contained())
        }));
        assert_eq!(
            fine.await,
            Ok((7, true)),
            "a value, computed inside the mark"
        );
    }
}
