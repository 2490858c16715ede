//! Request framing: a big-endian i32 length, then a request header and body.
//! Everything here turns untrusted bytes into a `Result`.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::versions;

/// Requests larger than this close the connection (Kafka's `socket.request.max.bytes`).
pub const REQUEST_BYTES_MAX: usize = 100 << 20;
/// api_key, api_version and correlation_id.
pub const HEADER_FIXED_BYTES: usize = 8;

/// Why a frame cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is negative, too small or over the limit: close the connection.
    BadLength(i64),
    /// An API key this node does not answer: close the connection (Kafka does the same).
    UnknownApi { api_key: i16, correlation_id: i32 },
    /// A known API at a version outside the advertised range. For ApiVersions the
    /// server answers with UNSUPPORTED_VERSION (KIP-511); otherwise it closes.
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
    },
    /// The header does not decode.
    BadHeader { correlation_id: i32, why: String },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadLength(n) => write!(
                f,
                "request length {n} is outside [{HEADER_FIXED_BYTES}, {REQUEST_BYTES_MAX}]"
            ),
            FrameError::UnknownApi { api_key, .. } => {
                write!(f, "api key {api_key} is not supported")
            }
            FrameError::UnsupportedVersion {
                api_key,
                api_version,
                ..
            } => write!(f, "{api_key:?} v{api_version} is not supported"),
            FrameError::BadHeader { why, .. } => write!(f, "malformed request header: {why}"),
        }
    }
}

/// Checks a length prefix before any bytes of the frame are read.
pub fn check_length(len: i32) -> Result<usize, FrameError> {
    let n = i64::from(len);
    if n < HEADER_FIXED_BYTES as i64 || n > REQUEST_BYTES_MAX as i64 {
        return Err(FrameError::BadLength(n));
    }
    Ok(n as usize)
}

/// A request whose header decoded and whose API and version this node answers.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
    /// The client's address as Kafka shows it in group descriptions ("/127.0.0.1");
    /// set by the server, empty otherwise.
    pub client_host: String,
    /// The connection's mute, which client quotas hold (KIP-219); set by
    /// the server, absent otherwise.
    pub throttle: Option<std::sync::Arc<crate::quotas::Throttle>>,
}

/// Parses a frame (without its length prefix).
pub fn parse(mut frame: Bytes) -> Result<Request, FrameError> {
    if frame.len() < HEADER_FIXED_BYTES {
        return Err(FrameError::BadLength(frame.len() as i64));
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some((key, min, max)) = versions::range(api_key) else {
        return Err(FrameError::UnknownApi {
            api_key,
            correlation_id,
        });
    };
    if api_version < min || api_version > max {
        return Err(FrameError::UnsupportedVersion {
            api_key: key,
            api_version,
            correlation_id,
        });
    }
    let header_version = key.request_header_version(api_version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| FrameError::BadHeader {
            correlation_id,
            why: e.to_string(),
        })?;
    Ok(Request {
        api_key: key,
        header,
        body: frame,
        client_host: String::new(),
        throttle: None,
    })
}

/// Frames an encoded response header and body with its length prefix.
pub fn with_length(mut encoded: bytes::BytesMut) -> Bytes {
    let len = (encoded.len() - 4) as i32;
    encoded[..4].copy_from_slice(&len.to_be_bytes());
    encoded.freeze()
}

/// Reads a big-endian i32 if 4 bytes are there.
pub fn peek_i32(b: &[u8]) -> Option<i32> {
    let mut s = b.get(..4)?;
    Some(s.get_i32())
}
