//! etcd's HTTP/JSON gateway: every RPC that etcd's protos give an HTTP path
//! (`google.api.http`), served under `/v3/` (and etcd 3.4's older `/v3beta/`)
//! on the client port, beside gRPC. Patroni, APISIX, OpenStack's tooz through
//! `etcd3gw`, and `curl` speak etcd only this way.
//!
//! It answers as etcd 3.4's gateway (grpc-gateway v1 with `OrigName: true`)
//! does, checked against Debian's etcd by `tests/interop/test_etcd_gateway.py`:
//! - bodies are the proto3 JSON mapping with the proto's own field names
//!   (`create_revision`, `ID`, `TTL`), 64-bit integers as strings, bytes as
//!   base64 and default values left out (pbjson's generated serde impls, see
//!   `scripts/gen-etcd-proto.sh`); on input lowerCamelCase names are accepted
//!   too and unknown fields are ignored; an empty body is the default request;
//! - errors are `{"error": m, "message": m, "code": grpc_code}` with the HTTP
//!   status grpc-gateway v1 maps the code to ([`http_status`]); a body that is
//!   not the request's JSON is code 3 (InvalidArgument) and changes nothing;
//! - streaming calls (`/v3/watch`, `/v3/lease/keepalive`, snapshot, observe)
//!   read a stream of JSON requests from the body and answer a chunked stream
//!   of newline-separated `{"result": {...}}` objects, one chunk per message as
//!   it happens; a failure mid-stream is `{"error": {"grpc_code": ..,
//!   "http_code": .., "message": .., "http_status": ..}}` and ends it.
//!
//! Each route calls the same service method a gRPC client reaches, so the
//! gateway has no rules of its own. The `Authorization` header (a token from
//! `/v3/auth/authenticate`) travels as the gRPC metadata `authorization`, as
//! grpc-gateway forwards it; a watch is checked with it at each create. A
//! client certificate's CN is never a gateway request's user (etcd ignores it
//! for gateway requests too).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{any, post, MethodRouter};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Status};

use crate::pb::etcdserverpb::auth_server::Auth;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{LeaseKeepAliveRequest, WatchRequest};
use crate::pb::v3electionpb::election_server::Election;
use crate::pb::v3lockpb::lock_server::Lock;
use crate::server::{BoxStream, EtcdServer, GRPC_OVERHEAD_BYTES, REQUEST_BYTES_MAX};

/// The largest JSON request body (or one message of a streaming body): the
/// largest gRPC message etcd takes, grown by a third for base64 and again for
/// the JSON around it.
pub const GATEWAY_MESSAGE_BYTES_MAX: usize = 2 * (REQUEST_BYTES_MAX + GRPC_OVERHEAD_BYTES);

/// The gateway's routes for this member, under `/v3/` and `/v3beta/`.
pub fn router(server: &EtcdServer) -> Router {
    let mut r = Router::new();
    for prefix in ["/v3", "/v3beta"] {
        for (path, route) in routes(server) {
            r = r.route(&format!("{prefix}{path}"), route);
        }
        // Anything else under the gateway's prefix is Go's plain 404, not
        // gRPC's Unimplemented.
        r = r.route(&format!("{prefix}/*rest"), any(not_found));
    }
    r.layer(DefaultBodyLimit::max(GATEWAY_MESSAGE_BYTES_MAX))
}

/// A unary RPC: the body is one request, the answer one response.
macro_rules! unary {
    ($server:expr, $service:ident :: $method:ident) => {{
        let server = $server.clone();
        post(move |headers: HeaderMap, body: Bytes| {
            let server = server.clone();
            async move {
                unary(headers, body, move |req| async move {
                    $service::$method(&server, req).await
                })
                .await
            }
        })
        .options(preflight)
    }};
}

/// A server-streaming RPC: the body is one request, the answer a stream.
macro_rules! server_streaming {
    ($server:expr, $service:ident :: $method:ident) => {{
        let server = $server.clone();
        post(move |headers: HeaderMap, body: Bytes| {
            let server = server.clone();
            async move {
                match decode(&body) {
                    Err(e) => error_reply(&Status::invalid_argument(e)),
                    Ok(req) => {
                        let req = with_token(&headers, req);
                        match $service::$method(&server, req).await {
                            Ok(stream) => stream_reply(stream.into_inner()).await,
                            Err(status) => error_reply(&status),
                        }
                    }
                }
            }
        })
        .options(preflight)
    }};
}

fn routes(s: &EtcdServer) -> Vec<(&'static str, MethodRouter)> {
    let (watch, keep_alive) = (s.clone(), s.clone());
    vec![
        ("/kv/range", unary!(s, Kv::range)),
        ("/kv/put", unary!(s, Kv::put)),
        ("/kv/deleterange", unary!(s, Kv::delete_range)),
        ("/kv/txn", unary!(s, Kv::txn)),
        ("/kv/compaction", unary!(s, Kv::compact)),
        (
            "/watch",
            post(move |headers: HeaderMap, body: Body| {
                let s = watch.clone();
                let caller = s.caller(&with_token(&headers, ()));
                bidi::<WatchRequest, _, _>(body, move |inbound| s.watch_stream(inbound, caller))
            })
            .options(preflight),
        ),
        ("/lease/grant", unary!(s, Lease::lease_grant)),
        ("/lease/revoke", unary!(s, Lease::lease_revoke)),
        ("/kv/lease/revoke", unary!(s, Lease::lease_revoke)),
        (
            "/lease/keepalive",
            post(move |body: Body| {
                let s = keep_alive.clone();
                bidi::<LeaseKeepAliveRequest, _, _>(body, move |inbound| {
                    s.keep_alive_stream(inbound)
                })
            })
            .options(preflight),
        ),
        ("/lease/timetolive", unary!(s, Lease::lease_time_to_live)),
        ("/kv/lease/timetolive", unary!(s, Lease::lease_time_to_live)),
        ("/lease/leases", unary!(s, Lease::lease_leases)),
        ("/kv/lease/leases", unary!(s, Lease::lease_leases)),
        ("/cluster/member/add", unary!(s, Cluster::member_add)),
        ("/cluster/member/remove", unary!(s, Cluster::member_remove)),
        ("/cluster/member/update", unary!(s, Cluster::member_update)),
        ("/cluster/member/list", unary!(s, Cluster::member_list)),
        (
            "/cluster/member/promote",
            unary!(s, Cluster::member_promote),
        ),
        ("/maintenance/alarm", unary!(s, Maintenance::alarm)),
        ("/maintenance/status", unary!(s, Maintenance::status)),
        (
            "/maintenance/defragment",
            unary!(s, Maintenance::defragment),
        ),
        // etcd's protos give Hash and HashKV the same path; its gateway
        // registers Hash first, and the first match serves.
        ("/maintenance/hash", unary!(s, Maintenance::hash)),
        (
            "/maintenance/snapshot",
            server_streaming!(s, Maintenance::snapshot),
        ),
        (
            "/maintenance/transfer-leadership",
            unary!(s, Maintenance::move_leader),
        ),
        ("/lock/lock", unary!(s, Lock::lock)),
        ("/lock/unlock", unary!(s, Lock::unlock)),
        ("/election/campaign", unary!(s, Election::campaign)),
        ("/election/proclaim", unary!(s, Election::proclaim)),
        ("/election/leader", unary!(s, Election::leader)),
        ("/election/observe", server_streaming!(s, Election::observe)),
        ("/election/resign", unary!(s, Election::resign)),
        ("/auth/enable", unary!(s, Auth::auth_enable)),
        ("/auth/disable", unary!(s, Auth::auth_disable)),
        ("/auth/status", unary!(s, Auth::auth_status)),
        ("/auth/authenticate", unary!(s, Auth::authenticate)),
        ("/auth/user/add", unary!(s, Auth::user_add)),
        ("/auth/user/get", unary!(s, Auth::user_get)),
        ("/auth/user/list", unary!(s, Auth::user_list)),
        ("/auth/user/delete", unary!(s, Auth::user_delete)),
        ("/auth/user/changepw", unary!(s, Auth::user_change_password)),
        ("/auth/user/grant", unary!(s, Auth::user_grant_role)),
        ("/auth/user/revoke", unary!(s, Auth::user_revoke_role)),
        ("/auth/role/add", unary!(s, Auth::role_add)),
        ("/auth/role/get", unary!(s, Auth::role_get)),
        ("/auth/role/list", unary!(s, Auth::role_list)),
        ("/auth/role/delete", unary!(s, Auth::role_delete)),
        ("/auth/role/grant", unary!(s, Auth::role_grant_permission)),
        ("/auth/role/revoke", unary!(s, Auth::role_revoke_permission)),
    ]
    .into_iter()
    .collect()
}

/// The gRPC code's HTTP status, as etcd 3.4's grpc-gateway (v1) maps it:
/// FailedPrecondition is 412 and DeadlineExceeded 408 there, unlike later
/// grpc-gateway versions.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled | Code::DeadlineExceeded => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The code's name as grpc-go spells it (in a stream error's message).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The first JSON value of `buf` and the bytes it took, `None` when `buf` is
/// only whitespace; an error whose `is_eof()` holds means more bytes may
/// complete it. Bytes after the first value are left alone, as Go's
/// `json.Decoder` leaves them.
fn decode_prefix<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, serde_json::Error> {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<T>();
    match values.next() {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some((v, values.byte_offset()))),
        Some(Err(e)) => Err(e),
    }
}

/// A whole body as one request: empty is the default request.
fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    match decode_prefix(body) {
        Ok(Some((v, _))) => Ok(v),
        Ok(None) => Ok(T::default()),
        Err(e) => Err(e.to_string()),
    }
}

/// The request with the gateway's `Authorization` header as gRPC metadata.
fn with_token<T>(headers: &HeaderMap, message: T) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(v.as_bytes()) {
            req.metadata_mut().insert("authorization", v);
        }
    }
    req
}

async fn unary<Req, Resp, F, Fut>(headers: HeaderMap, body: Bytes, call: F) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let req = match decode::<Req>(&body) {
        Ok(r) => r,
        Err(e) => return error_reply(&Status::invalid_argument(e)),
    };
    match call(with_token(&headers, req)).await {
        Ok(resp) => match serde_json::to_vec(resp.get_ref()) {
            Ok(body) => reply(StatusCode::OK, Body::from(body)),
            Err(e) => error_reply(&Status::internal(format!("encoding the response: {e}"))),
        },
        Err(status) => error_reply(&status),
    }
}

/// A bidirectional RPC: requests are read from the body as they arrive and
/// fed to the service; the first must decode before anything is answered
/// (grpc-gateway answers a malformed first message with code 2 and HTTP 500).
/// A later malformed message ends the requests, as the client closing its
/// side would; the body breaking off (the client went away) resets them.
async fn bidi<Req, Resp, F>(body: Body, start: F) -> Response
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: FnOnce(ReceiverStream<Result<Req, Status>>) -> BoxStream<Resp>,
{
    let mut reader = MessageReader::new(body);
    let first = match reader.next::<Req>().await {
        Some(Err(e)) => return error_reply(&Status::unknown(e)),
        Some(Ok(m)) => Some(m),
        None => None,
    };
    let (tx, rx) = mpsc::channel::<Result<Req, Status>>(16);
    tokio::spawn(async move {
        if let Some(m) = first {
            if tx.send(Ok(m)).await.is_err() {
                return;
            }
        }
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = reader.next::<Req>() => next,
            };
            match next {
                Some(Ok(m)) => {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                Some(Err(_)) if reader.broken => {
                    let _ = tx.send(Err(Status::cancelled("client went away"))).await;
                    return;
                }
                // A malformed message or the end of the body: the client's
                // side is closed (dropping `tx`), its answers go on.
                Some(Err(_)) | None => return,
            }
        }
    });
    stream_reply(start(ReceiverStream::new(rx))).await
}

/// Reads consecutive JSON messages from a request body as its bytes arrive.
struct MessageReader {
    body: axum::body::BodyDataStream,
    buf: Vec<u8>,
    framer: Framer,
    /// The body failed (the connection broke), as opposed to ending.
    broken: bool,
}

impl MessageReader {
    fn new(body: Body) -> MessageReader {
        MessageReader {
            body: body.into_data_stream(),
            buf: Vec::new(),
            framer: Framer::default(),
            broken: false,
        }
    }

    /// The next message; `None` at a clean end of the body. Each byte is
    /// scanned once for where its message ends and parsed once, however
    /// the body is split into chunks.
    async fn next<T: DeserializeOwned>(&mut self) -> Option<Result<T, String>> {
        loop {
            match self.framer.scan(&self.buf) {
                Framed::Whole(end) => {
                    let m = serde_json::from_slice::<T>(&self.buf[..end]);
                    self.buf.drain(..end);
                    self.framer = Framer::default();
                    return Some(m.map_err(|e| e.to_string()));
                }
                Framed::NotAnObject => {
                    return Some(Err("a message must be a JSON object".into()));
                }
                Framed::Partial => {}
            }
            if self.buf.len() > GATEWAY_MESSAGE_BYTES_MAX {
                return Some(Err(format!(
                    "message larger than {GATEWAY_MESSAGE_BYTES_MAX} bytes"
                )));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.broken = true;
                    return Some(Err(e.to_string()));
                }
                None if self.buf.iter().all(u8::is_ascii_whitespace) => return None,
                None => return Some(Err("unexpected EOF".into())),
            }
        }
    }
}

/// Finds where the first top-level JSON object or array of a buffer ends,
/// scanning each byte once across calls (the buffer only grows between
/// them): nesting depth, and whether the scan is inside a string.
#[derive(Default)]
struct Framer {
    pos: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Framed {
    /// `buf[..end]` holds a whole value (leading whitespace included).
    Whole(usize),
    /// More bytes are needed.
    Partial,
    /// The next value is not an object or array.
    NotAnObject,
}

impl Framer {
    fn scan(&mut self, buf: &[u8]) -> Framed {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            self.pos += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Framed::Whole(self.pos);
                    }
                }
                b'"' if self.depth > 0 => self.in_string = true,
                _ if self.depth == 0 && !b.is_ascii_whitespace() => return Framed::NotAnObject,
                _ => {}
            }
        }
        Framed::Partial
    }
}

/// Answers a response stream as grpc-gateway does: the status comes from the
/// first item (200, or the first item's error), then one `{"result": ..}`
/// chunk per message, flushed as it comes.
async fn stream_reply<T: Serialize + Send + 'static>(mut stream: BoxStream<T>) -> Response {
    let first = stream.next().await;
    let status = match &first {
        Some(Err(s)) => http_status(s.code()),
        _ => StatusCode::OK,
    };
    let chunks = Chunks {
        first,
        rest: Some(stream),
    };
    let mut resp = reply(status, Body::from_stream(chunks));
    resp.headers_mut().insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    resp
}

/// The body of a streamed answer: each message (or the error that ends the
/// stream) as one newline-terminated chunk.
struct Chunks<T> {
    first: Option<Result<T, Status>>,
    rest: Option<BoxStream<T>>,
}

impl<T: Serialize> Chunks<T> {
    fn chunk(&mut self, item: Result<T, Status>) -> Bytes {
        let mut out = match item {
            // Written around the message's own encoding, which keeps the
            // proto's field order (a serde_json map would sort it).
            Ok(m) => match serde_json::to_vec(&m) {
                Ok(json) => [&b"{\"result\":"[..], &json, b"}"].concat(),
                Err(e) => {
                    self.rest = None;
                    stream_error(&Status::internal(format!("encoding the response: {e}")))
                }
            },
            Err(s) => {
                self.rest = None;
                stream_error(&s)
            }
        };
        out.push(b'\n');
        Bytes::from(out)
    }
}

impl<T: Serialize> Stream for Chunks<T> {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(item) = this.first.take() {
            return Poll::Ready(Some(Ok(this.chunk(item))));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match rest.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(Ok(this.chunk(item)))),
            Poll::Ready(None) => {
                this.rest = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Unpin for Chunks<T> {}

/// A stream's closing error, as grpc-gateway v1 writes it (in its field order).
fn stream_error(s: &Status) -> Vec<u8> {
    let http = http_status(s.code());
    let message = format!(
        "rpc error: code = {} desc = {}",
        code_name(s.code()),
        s.message()
    );
    format!(
        "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{},\"http_status\":{}}}}}",
        s.code() as i32,
        http.as_u16(),
        serde_json::Value::from(message),
        serde_json::Value::from(http.canonical_reason().unwrap_or("")),
    )
    .into_bytes()
}

/// A unary failure: etcd's gateway body and the code's HTTP status.
pub fn error_reply(s: &Status) -> Response {
    // In grpc-gateway's field order, which a serde_json map would sort.
    let message = serde_json::Value::from(s.message()).to_string();
    let body = format!(
        "{{\"error\":{message},\"message\":{message},\"code\":{}}}",
        s.code() as i32
    );
    reply(http_status(s.code()), Body::from(body))
}

async fn not_found() -> Response {
    let mut resp = reply(StatusCode::NOT_FOUND, Body::from("404 page not found\n"));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// etcd's gateway answers CORS preflights for any origin.
async fn preflight() -> Response {
    reply(StatusCode::OK, Body::empty())
}

fn reply(status: StatusCode, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // etcd wraps its gateway in these (embed/serve.go's grpcHandlerFunc and
    // the gateway's CORS wrapper), so browser consoles can call it.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
    use crate::pb::mvccpb::KeyValue;

    #[test]
    fn messages_are_framed_alike_however_the_body_is_split() {
        let body = br#" {"a":"}{\\\"]","b":[1,{"c":2}]}
[3] {"d":{}}"#;
        let whole: Vec<usize> = {
            let (mut f, mut ends, mut start) = (Framer::default(), vec![], 0);
            while let Framed::Whole(end) = f.scan(&body[start..]) {
                ends.push(start + end);
                start += end;
                f = Framer::default();
            }
            ends
        };
        assert_eq!(whole.len(), 3);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body[..whole[0]]).unwrap()["a"],
            "}{\\\"]"
        );
        // Fed a byte at a time, or split in two anywhere, it finds the same end.
        let mut f = Framer::default();
        let first = (1..=body.len()).find_map(|n| match f.scan(&body[..n]) {
            Framed::Whole(end) => Some(end),
            _ => None,
        });
        assert_eq!(first, Some(whole[0]));
        for split in 1..whole[0] {
            let mut f = Framer::default();
            assert_eq!(f.scan(&body[..split]), Framed::Partial);
            assert_eq!(f.scan(body), Framed::Whole(whole[0]));
        }
        assert_eq!(Framer::default().scan(b"  nonsense"), Framed::NotAnObject);
        assert_eq!(Framer::default().scan(b"   "), Framed::Partial);
    }

    #[test]
    fn requests_accept_both_spellings_and_ignore_unknown_fields() {
        let r: RangeRequest =
            decode(br#"{"key":"Zm9v","rangeEnd":"AA==","keys_only":true,"bogus":[1]}"#).unwrap();
        assert_eq!(r.key, b"foo");
        assert_eq!(r.range_end, b"\0");
        assert!(r.keys_only);
        let r: RangeRequest = decode(b"  ").unwrap();
        assert_eq!(r, RangeRequest::default());
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(decode::<RangeRequest>(br#"{"key":"#).is_err());
        assert!(decode::<RangeRequest>(br#"{"key":"Zm9v!!"}"#).is_err());
        assert!(decode::<RangeRequest>(br#"[1,2]"#).is_err());
        assert!(decode::<RangeRequest>(br#"{"keys_only":"true"}"#).is_err());
    }

    #[test]
    fn responses_use_proto_names_strings_for_64_bits_and_omit_defaults() {
        let resp = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 3,
                mod_revision: 3,
                version: 1,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"},"kvs":[{"key":"Zm9v","create_revision":"3","mod_revision":"3","version":"1","value":"YmFy"}],"count":"1"}"#
        );
    }

    #[test]
    fn consecutive_messages_decode_one_at_a_time() {
        let buf = br#"{"ID":"5"} {"ID":"6"}"#;
        let (a, used) = decode_prefix::<LeaseKeepAliveRequest>(buf)
            .unwrap()
            .unwrap();
        assert_eq!(a.id, 5);
        let (b, _) = decode_prefix::<LeaseKeepAliveRequest>(&buf[used..])
            .unwrap()
            .unwrap();
        assert_eq!(b.id, 6);
        let partial = decode_prefix::<LeaseKeepAliveRequest>(br#"{"ID":"#).unwrap_err();
        assert!(partial.is_eof());
    }

    #[test]
    fn stream_errors_name_the_code_as_grpc_go() {
        let v = stream_error(&Status::not_found("etcdserver: requested lease not found"));
        assert_eq!(
            String::from_utf8(v).unwrap(),
            r#"{"error":{"grpc_code":5,"http_code":404,"message":"rpc error: code = NotFound desc = etcdserver: requested lease not found","http_status":"Not Found"}}"#
        );
    }
}
