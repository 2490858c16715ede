//! The native protocol over a real socket: the handshake, version
//! negotiation, and frames that are malformed in every way a proptest can
//! think of, each answered with an error while the connection keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cassandra_protocol::frame::frame_decoder::{
    FrameDecoder, Lz4FrameDecoder, UncompressedFrameDecoder,
};
use cassandra_protocol::frame::frame_encoder::{
    FrameEncoder, Lz4FrameEncoder, UncompressedFrameEncoder,
};
use cassandra_protocol::frame::{Envelope, Opcode, Version};
use proptest::prelude::*;

use crate::local;

/// A server on a loopback port, on its own runtime.
fn server() -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<()>,
    tempfile::TempDir,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (dtx, drx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = local();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            dtx.send(l.dir).unwrap();
            keel_cql::serve(listener, l.node).await;
        });
    });
    (rx.recv().unwrap(), h, drx.recv().unwrap())
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one frame: (version byte, stream, opcode, body).
fn read_frame(s: &mut TcpStream) -> (u8, i16, u8, Vec<u8>) {
    let mut h = [0u8; 9];
    s.read_exact(&mut h).unwrap();
    let len = i32::from_be_bytes(h[5..9].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (h[0], i16::from_be_bytes([h[2], h[3]]), h[4], body)
}

fn send(s: &mut TcpStream, env: Envelope) {
    s.write_all(
        &env.encode_with(cassandra_protocol::compression::Compression::None)
            .unwrap(),
    )
    .unwrap();
}

fn error_message(body: &[u8]) -> (i32, String) {
    let code = i32::from_be_bytes(body[..4].try_into().unwrap());
    let len = u16::from_be_bytes([body[4], body[5]]) as usize;
    (code, String::from_utf8_lossy(&body[6..6 + len]).to_string())
}

/// One server per test thread, kept for all of a proptest's cases.
fn shared_server() -> std::net::SocketAddr {
    thread_local! {
        static SERVER: (std::net::SocketAddr, tempfile::TempDir) = {
            let (a, h, d) = server();
            std::mem::forget(h);
            (a, d)
        };
    }
    SERVER.with(|s| s.0)
}

fn started(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    send(&mut s, Envelope::new_req_startup(None, Version::V4));
    let (_, _, op, _) = read_frame(&mut s);
    assert_eq!(op, u8::from(Opcode::Ready));
    s
}

fn query(q: &str) -> Envelope {
    query_v(q, Version::V4)
}

fn query_v(q: &str, version: Version) -> Envelope {
    Envelope::new_req_query(
        q.to_string(),
        cassandra_protocol::consistency::Consistency::One,
        None,
        false,
        None,
        None,
        None,
        None,
        None,
        None,
        cassandra_protocol::frame::Flags::empty(),
        version,
    )
}

#[test]
fn the_handshake_and_version_negotiation_go_as_with_cassandra() {
    let (addr, _h, _d) = server();
    let mut s = connect(addr);
    send(&mut s, Envelope::new_req_options(Version::V4));
    let (v, _, op, body) = read_frame(&mut s);
    assert_eq!((v, op), (0x84, u8::from(Opcode::Supported)));
    assert!(String::from_utf8_lossy(&body).contains("lz4"));
    // Before STARTUP only OPTIONS and STARTUP are answered.
    send(&mut s, query("SELECT * FROM system.local"));
    let (_, _, op, body) = read_frame(&mut s);
    assert_eq!(op, u8::from(Opcode::Error));
    assert_eq!(error_message(&body).0, 0x000A);
    let mut s = started(addr);
    send(
        &mut s,
        query("SELECT release_version, partitioner FROM system.local WHERE key = 'local'"),
    );
    let (_, _, op, body) = read_frame(&mut s);
    assert_eq!(op, u8::from(Opcode::Result));
    assert!(String::from_utf8_lossy(&body).contains("Murmur3Partitioner"));
    // CQL versions from 3 on are accepted (ScyllaDB's Rust driver says
    // 4.0.0), below 3 refused, as Cassandra's StartupMessage does.
    for (cql, ok) in [
        ("4.0.0", true),
        ("3.4.5", true),
        ("2.0.0", false),
        ("x", false),
    ] {
        let mut body = 1u16.to_be_bytes().to_vec();
        for part in ["CQL_VERSION", cql] {
            body.extend_from_slice(&(part.len() as u16).to_be_bytes());
            body.extend_from_slice(part.as_bytes());
        }
        let mut frame = vec![0x04, 0, 0, 1, u8::from(Opcode::Startup)];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        let mut s = connect(addr);
        s.write_all(&frame).unwrap();
        let (_, _, op, body) = read_frame(&mut s);
        if ok {
            assert_eq!(op, u8::from(Opcode::Ready), "{cql}");
        } else {
            assert_eq!(op, u8::from(Opcode::Error), "{cql}");
            assert_eq!(error_message(&body).0, 0x000A, "{cql}");
        }
    }
    // A v6 client is told which versions to use, in a v4 frame, as drivers
    // expect; a v5 client's OPTIONS (before STARTUP: a v4-style frame) is
    // answered in kind.
    let mut s = connect(addr);
    s.write_all(&[0x06, 0, 0, 1, u8::from(Opcode::Options), 0, 0, 0, 0])
        .unwrap();
    let (v, _, op, body) = read_frame(&mut s);
    assert_eq!((v, op), (0x84, u8::from(Opcode::Error)));
    let (code, msg) = error_message(&body);
    assert_eq!(code, 0x000A);
    assert!(
        msg.contains("Invalid or unsupported protocol version (6)") && msg.contains("5/v5"),
        "{msg}"
    );
    let mut s = connect(addr);
    send(&mut s, Envelope::new_req_options(Version::V5));
    let (v, _, op, _) = read_frame(&mut s);
    assert_eq!((v, op), (0x85, u8::from(Opcode::Supported)));
    // An absurd length closes the connection after a ProtocolError.
    let mut s = connect(addr);
    s.write_all(&[0x04, 0, 0, 1, 0x05, 0x7f, 0xff, 0xff, 0xff])
        .unwrap();
    let (_, _, op, body) = read_frame(&mut s);
    assert_eq!(op, u8::from(Opcode::Error));
    assert!(error_message(&body).1.contains("Request is too big"));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
}

/// The crate's writer of v5 frames, lz4 or not.
fn encoder(lz4: bool) -> Box<dyn FrameEncoder> {
    if lz4 {
        Box::new(Lz4FrameEncoder::default())
    } else {
        Box::new(UncompressedFrameEncoder::default())
    }
}

/// The crate's reader of v5 frames, lz4 or not.
fn decoder(lz4: bool) -> Box<dyn FrameDecoder> {
    if lz4 {
        Box::new(Lz4FrameDecoder::default())
    } else {
        Box::new(UncompressedFrameDecoder::default())
    }
}

/// Sends an envelope as protocol v5 frames, built by the crate's encoders:
/// whole when it fits in one frame, else split over frames.
fn send_v5(s: &mut TcpStream, env: Envelope, lz4: bool) {
    let bytes = env
        .encode_with(cassandra_protocol::compression::Compression::None)
        .unwrap();
    let mut enc = encoder(lz4);
    if enc.can_fit(bytes.len()) {
        enc.add_envelope(bytes);
        s.write_all(enc.finalize_self_contained()).unwrap();
        return;
    }
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        enc.reset();
        let (n, frame) = enc.finalize_non_self_contained(rest);
        s.write_all(frame).unwrap();
        rest = &rest[n..];
    }
}

/// Reads v5 frames until the crate's decoder yields an envelope.
fn read_v5(s: &mut TcpStream, dec: &mut dyn FrameDecoder) -> Envelope {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed");
        let mut data = buf[..n].to_vec();
        let mut got = dec
            .consume(
                &mut data,
                cassandra_protocol::compression::Compression::None,
            )
            .unwrap();
        if !got.is_empty() {
            assert_eq!(got.len(), 1, "one request in flight, one reply");
            return got.remove(0);
        }
    }
}

/// Protocol v5: after STARTUP (answered in a v4-style frame) requests and
/// replies travel in CRC-checked frames, uncompressed or lz4, an envelope
/// over 128 KiB split over several (a 300 KiB value written and read back
/// whole), and a frame whose CRC does not match closes the connection.
#[test]
fn protocol_v5_frames_carry_envelopes_whole_or_split_and_a_corrupt_one_closes() {
    let (addr, _h, _d) = server();
    let big = "x".repeat(300 << 10);
    for lz4 in [false, true] {
        let mut s = connect(addr);
        let compression = lz4.then(|| "lz4".to_string());
        send(&mut s, Envelope::new_req_startup(compression, Version::V5));
        let (v, _, op, _) = read_frame(&mut s);
        assert_eq!((v, op), (0x85, u8::from(Opcode::Ready)));
        let mut dec = decoder(lz4);
        let ks = if lz4 { "v5_lz4" } else { "v5_plain" };
        for q in [
            format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
            format!("CREATE TABLE {ks}.t (k text PRIMARY KEY, v text)"),
            format!("INSERT INTO {ks}.t (k, v) VALUES ('big', '{big}')"),
        ] {
            send_v5(&mut s, query_v(&q, Version::V5), lz4);
            let reply = read_v5(&mut s, dec.as_mut());
            assert_eq!(reply.opcode, Opcode::Result, "{}", &q[..40.min(q.len())]);
            assert_eq!(reply.version, Version::V5);
        }
        send_v5(
            &mut s,
            query_v(
                &format!("SELECT v FROM {ks}.t WHERE k = 'big'"),
                Version::V5,
            ),
            lz4,
        );
        let reply = read_v5(&mut s, dec.as_mut());
        assert_eq!(reply.opcode, Opcode::Result);
        assert!(
            reply.body.windows(big.len()).any(|w| w == big.as_bytes()),
            "the 300 KiB value came back whole ({} bytes of body)",
            reply.body.len()
        );
        // One payload byte flipped: its CRC32 no longer matches.
        let mut frame = Vec::new();
        {
            let mut enc = encoder(lz4);
            enc.add_envelope(
                query_v("SELECT * FROM system.local", Version::V5)
                    .encode_with(cassandra_protocol::compression::Compression::None)
                    .unwrap(),
            );
            frame.extend_from_slice(enc.finalize_self_contained());
        }
        let at = frame.len() - 6;
        frame[at] ^= 0x20;
        s.write_all(&frame).unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            s.read_to_end(&mut rest).unwrap(),
            0,
            "lz4 {lz4}: closed, nothing answered"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn malformed_bodies_get_errors_and_the_connection_keeps_serving(
        opcode in prop::sample::select(vec![0x01u8, 0x05, 0x07, 0x09, 0x0A, 0x0B, 0x0D, 0x0F, 0x02, 0x42]),
        flags in prop::sample::select(vec![0u8, 0x02, 0x08]),
        body in prop::collection::vec(any::<u8>(), 0..64),
        prefix in prop::sample::select(vec![vec![], vec![0, 0, 0, 3, b'a', b'b', b'c'], vec![0x7f, 0xff, 0xff, 0xff], vec![0xff, 0xff]]),
    ) {
        let addr = shared_server();
        let mut s = started(addr);
        let mut b = prefix.clone();
        b.extend_from_slice(&body);
        let mut frame = vec![0x04, flags, 0, 9, opcode];
        frame.extend_from_slice(&(b.len() as i32).to_be_bytes());
        frame.extend_from_slice(&b);
        s.write_all(&frame).unwrap();
        let (_, stream, op, _) = read_frame(&mut s);
        prop_assert_eq!(stream, 9);
        prop_assert!(op == u8::from(Opcode::Error) || op == u8::from(Opcode::Result) || op == u8::from(Opcode::Ready) || op == u8::from(Opcode::Supported));
        send(&mut s, Envelope::new_req_options(Version::V4));
        let (_, _, op, _) = read_frame(&mut s);
        prop_assert_eq!(op, u8::from(Opcode::Supported));
    }

    /// After a v5 STARTUP: raw garbage, or well-formed frames (CRCs right)
    /// around a malformed envelope. The connection answers or closes, never
    /// hangs, and the next connection is served.
    #[test]
    fn v5_frames_of_garbage_never_stop_the_server(
        lz4 in any::<bool>(),
        framed in any::<bool>(),
        garbage in prop::collection::vec(any::<u8>(), 0..300),
        opcode in prop::sample::select(vec![0x01u8, 0x05, 0x07, 0x09, 0x0A, 0x0D, 0x42]),
        version in prop::sample::select(vec![5u8, 4, 0x85]),
        claimed in prop::sample::select(vec![0i32, 1, -1, 200, i32::MAX]),
    ) {
        let addr = shared_server();
        let start = |s: &mut TcpStream| {
            send(s, Envelope::new_req_startup(lz4.then(|| "lz4".to_string()), Version::V5));
            let (v, _, op, _) = read_frame(s);
            assert_eq!((v, op), (0x85, u8::from(Opcode::Ready)));
        };
        let mut s = connect(addr);
        start(&mut s);
        let bytes = if framed {
            let mut env = vec![version, 0, 0, 9, opcode];
            env.extend_from_slice(&(garbage.len() as i32).saturating_add(claimed).to_be_bytes());
            env.extend_from_slice(&garbage);
            let mut enc = encoder(lz4);
            enc.add_envelope(env);
            enc.finalize_self_contained().to_vec()
        } else {
            garbage.clone()
        };
        s.write_all(&bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        if let Err(e) = s.read_to_end(&mut rest) {
            prop_assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "the connection hung: {e}"
            );
        }
        let mut s = connect(addr);
        start(&mut s);
        let mut dec = decoder(lz4);
        send_v5(&mut s, query_v("SELECT * FROM system.local", Version::V5), lz4);
        prop_assert_eq!(read_v5(&mut s, dec.as_mut()).opcode, Opcode::Result);
    }
}
