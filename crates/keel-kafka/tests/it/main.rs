//! The Kafka front as a client sees it, over real sockets: normal requests, and
//! every kind of bad input, after which the node must still serve and its data
//! must be unchanged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use keel_broker::{Broker, BrokerConfig, SystemClock};
use keel_kafka::client::Connection;
use keel_kafka::frame;
use keel_kafka::handlers::{Advertised, Handler, Reply};
use keel_kafka::ServerConfig;
use keel_storage::batch;
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

struct Node {
    addr: String,
    broker: Broker,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start() -> Node {
    start_with(ServerConfig::default()).await
}

async fn start_with(config: ServerConfig) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Handler::new(
        broker.clone(),
        Advertised {
            host: addr.ip().to_string(),
            port: i32::from(addr.port()),
        },
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(keel_kafka::serve(listener, handler, config, rx));
    Node {
        addr: addr.to_string(),
        broker,
        stop,
        _dir: dir,
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn produce_req(topic: &str, partition: i32, acks: i16, records: Vec<u8>) -> ProduceRequest {
    let mut r = ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 10_000;
    r.topic_data = vec![TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(Bytes::from(records)))])];
    r
}

fn fetch_req(
    topic: &str,
    partition: i32,
    offset: i64,
    wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    let mut r = FetchRequest::default();
    r.replica_id = BrokerId(-1);
    r.max_wait_ms = wait_ms;
    r.min_bytes = min_bytes;
    r.max_bytes = 1 << 20;
    r.topics = vec![FetchTopic::default()
        .with_topic(name(topic))
        .with_partitions(vec![FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)])];
    r
}

fn values(records: &[u8]) -> Vec<Vec<u8>> {
    // Decode with the codec crate, as a client would.
    let mut b = Bytes::copy_from_slice(records);
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut b).unwrap();
    sets.into_iter()
        .flat_map(|s| s.records)
        .map(|r| r.value.unwrap().to_vec())
        .collect()
}

/// Produces as a client does: Metadata first (which auto-creates the topic), then Produce.
async fn produce(c: &Connection, topic: &str, vals: &[&str]) -> i64 {
    let mut md = MetadataRequest::default();
    md.topics = Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(topic)))
    ]);
    assert_eq!(c.call(&md, 12).await.unwrap().topics[0].error_code, 0);
    let recs: Vec<batch::KeyValue> = vals.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    let resp = c
        .call(
            &produce_req(topic, 0, -1, batch::build(1_700_000_000_000, &recs)),
            7,
        )
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    p.base_offset
}

async fn read_all(c: &Connection, topic: &str) -> Vec<Vec<u8>> {
    let resp = c.call(&fetch_req(topic, 0, 0, 0, 0), 11).await.unwrap();
    values(
        resp.responses[0].partitions[0]
            .records
            .as_deref()
            .unwrap_or(&[]),
    )
}

/// The connection was closed by the server: a read returns EOF.
async fn assert_closed(mut s: tokio::net::TcpStream) {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("server closes promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected the server to close the connection");
}

#[tokio::test]
async fn produce_fetch_and_metadata_round_trip() {
    let node = start().await;
    let c = Connection::connect(&node.addr).await.unwrap();
    let mut md = MetadataRequest::default();
    md.topics = Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("auto")))
    ]);
    let resp = c.call(&md, 12).await.unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "auto-created");
    assert_eq!(
        resp.brokers[0].port.to_string(),
        node.addr.rsplit(':').next().unwrap(),
        "advertises the address it listens on"
    );
    assert!(!resp.topics[0].topic_id.is_nil());
    assert_eq!(produce(&c, "auto", &["a", "b"]).await, 0);
    assert_eq!(produce(&c, "auto", &["c"]).await, 2);
    assert_eq!(
        read_all(&c, "auto").await,
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
}

#[tokio::test]
async fn a_fetchs_max_bytes_holds_across_partitions_after_the_first_batch() {
    let node = start().await;
    node.broker
        .create_topic("wide", 4, -1, Default::default(), false)
        .unwrap();
    let c = Connection::connect(&node.addr).await.unwrap();
    let big = vec![b'x'; 300_000];
    for partition in 0..4 {
        let recs: Vec<batch::KeyValue> = vec![(None, Some(big.as_slice()))];
        let resp = c
            .call(
                &produce_req(
                    "wide",
                    partition,
                    -1,
                    batch::build(1_700_000_000_000, &recs),
                ),
                7,
            )
            .await
            .unwrap();
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let fetch = |offsets: [i64; 4]| {
        let mut r = FetchRequest::default();
        r.replica_id = BrokerId(-1);
        r.max_bytes = 500_000;
        r.topics = vec![FetchTopic::default()
            .with_topic(name("wide"))
            .with_partitions(
                (0..4)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offsets[p as usize])
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )];
        r
    };
    let sizes = |resp: &FetchResponse| -> Vec<usize> {
        resp.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .collect()
    };
    // The first batch comes whole (KIP-74); the others would pass 500 000
    // bytes, so they wait for the next fetch. Kafka's answer; Keel sent 1.2 MB.
    let first = sizes(&c.call(&fetch([0, 0, 0, 0]), 11).await.unwrap());
    assert!(first[0] > 300_000, "{first:?}");
    assert_eq!(&first[1..], &[0, 0, 0], "past max_bytes: {first:?}");
    // Each partition is served in turn: nobody starves.
    let next = sizes(&c.call(&fetch([1, 0, 0, 0]), 11).await.unwrap());
    assert_eq!(next[0], 0);
    assert!(
        next[1] > 300_000 && next[2] == 0 && next[3] == 0,
        "{next:?}"
    );
}

#[tokio::test]
async fn a_topics_compression_type_is_the_codec_its_batches_are_stored_with() {
    let node = start().await;
    let c = Connection::connect(&node.addr).await.unwrap();
    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = 10_000;
    req.topics = vec![CreatableTopic::default()
        .with_name(name("zstd-topic"))
        .with_num_partitions(1)
        .with_replication_factor(-1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("compression.type"))
            .with_value(Some(StrBytes::from_static_str("zstd")))])];
    let resp = c.call(&req, 5).await.unwrap();
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
    // An uncompressed batch from the producer...
    let vals = ["a", "b", "c"].map(|v| v.repeat(100));
    let recs: Vec<batch::KeyValue> = vals.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    let resp = c
        .call(
            &produce_req("zstd-topic", 0, -1, batch::build(1_700_000_000_000, &recs)),
            7,
        )
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    // ...is stored and served as zstd, and decodes to the same records.
    let fetched = c
        .call(&fetch_req("zstd-topic", 0, 0, 0, 0), 11)
        .await
        .unwrap();
    let bytes = fetched.responses[0].partitions[0].records.clone().unwrap();
    let attributes = i16::from_be_bytes([bytes[21], bytes[22]]);
    assert_eq!(attributes & 0x7, 4, "zstd");
    assert_eq!(
        values(&bytes),
        vals.iter()
            .map(|v| v.as_bytes().to_vec())
            .collect::<Vec<_>>()
    );
    // A codec Kafka does not name is INVALID_CONFIG, and creates nothing.
    req.topics[0].name = name("bad-codec");
    req.topics[0].configs[0].value = Some(StrBytes::from_static_str("brotli"));
    let resp = c.call(&req, 5).await.unwrap();
    assert_eq!(
        resp.topics[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    assert!(node.broker.topic("bad-codec").is_none());
}

#[tokio::test]
async fn fetch_long_polls_until_data_arrives() {
    let node = start().await;
    let c = Connection::connect(&node.addr).await.unwrap();
    let p = Connection::connect(&node.addr).await.unwrap();
    produce(&p, "lp", &["first"]).await;
    let waiting = c.send(&fetch_req("lp", 0, 1, 10_000, 1), 11).await.unwrap();
    let started = std::time::Instant::now();
    produce(&p, "lp", &["second"]).await;
    let resp = waiting.recv().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fetch answered when data arrived, not at max_wait"
    );
    assert_eq!(
        values(resp.responses[0].partitions[0].records.as_deref().unwrap()),
        vec![b"second".to_vec()]
    );
    // With nothing new, it waits max_wait and answers empty.
    let started = std::time::Instant::now();
    let resp = c.call(&fetch_req("lp", 0, 2, 300, 1), 11).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(resp.responses[0].partitions[0]
        .records
        .as_deref()
        .unwrap_or(&[])
        .is_empty());
}

#[tokio::test]
async fn acks_zero_gets_no_response_but_is_written() {
    let node = start().await;
    let c = Connection::connect(&node.addr).await.unwrap();
    produce(&c, "z", &["x"]).await;
    c.send_oneway(
        &produce_req("z", 0, 0, batch::build(0, &[(None, Some(b"y"))])),
        7,
    )
    .await
    .unwrap();
    // The next response on the wire is the fetch's: no stray reply to acks=0. The
    // fetch long-polls from offset 1 until the acks=0 record is there.
    let resp = c.call(&fetch_req("z", 0, 1, 5_000, 1), 11).await.unwrap();
    let mut got = vec![b"x".to_vec()];
    got.extend(values(
        resp.responses[0].partitions[0].records.as_deref().unwrap(),
    ));
    assert_eq!(got, vec![b"x".to_vec(), b"y".to_vec()]);
}

#[tokio::test]
async fn api_versions_answers_an_unknown_version_at_v0() {
    let node = start().await;
    let c = Connection::connect(&node.addr).await.unwrap();
    let resp = c.call(&ApiVersionsRequest::default(), 3).await.unwrap();
    assert_eq!(resp.error_code, 0);
    let keys: Vec<i16> = resp.api_keys.iter().map(|k| k.api_key).collect();
    assert!(keys.contains(&(ApiKey::Produce as i16)) && keys.contains(&(ApiKey::Fetch as i16)));
    assert!(keys.contains(&(ApiKey::JoinGroup as i16)));
    assert!(keys.contains(&(ApiKey::ConsumerGroupHeartbeat as i16)));
    assert!(
        !keys.contains(&(ApiKey::AddPartitionsToTxn as i16)),
        "unimplemented APIs are not advertised, so clients do not use transactions"
    );
    // Features: at v4 the true ranges; below v4 none starts at 0 (KAFKA-17011).
    let features = |r: &ApiVersionsResponse| {
        r.supported_features
            .iter()
            .map(|f| (f.name.to_string(), f.min_version, f.max_version))
            .collect::<Vec<_>>()
    };
    let v4 = c.call(&ApiVersionsRequest::default(), 4).await.unwrap();
    assert_eq!(
        features(&v4),
        [
            ("group.version".to_string(), 0, 1),
            ("transaction.version".to_string(), 0, 0)
        ]
    );
    assert_eq!(features(&resp), [("group.version".to_string(), 1, 1)]);
    assert_eq!(resp.finalized_features[0].max_version_level, 1);
    // ApiVersions v99: a v0 reply with UNSUPPORTED_VERSION and the list (KIP-511).
    let mut raw = Vec::new();
    let body = [
        &18i16.to_be_bytes()[..],
        &99i16.to_be_bytes(),
        &7i32.to_be_bytes(),
        &(-1i16).to_be_bytes(),
    ]
    .concat();
    raw.extend_from_slice(&(body.len() as i32).to_be_bytes());
    raw.extend_from_slice(&body);
    let mut s = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &raw)
        .await
        .unwrap();
    let len = s.read_i32().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        i32::from_be_bytes(buf[0..4].try_into().unwrap()),
        7,
        "correlation id"
    );
    assert_eq!(
        i16::from_be_bytes(buf[4..6].try_into().unwrap()),
        ResponseError::UnsupportedVersion.code()
    );
}

/// Each bad frame closes its own connection; the node keeps serving others and
/// the data it holds is unchanged.
#[tokio::test]
async fn bad_frames_close_only_their_connection_and_change_nothing() {
    let node = start().await;
    let good = Connection::connect(&node.addr).await.unwrap();
    produce(&good, "keep", &["safe"]).await;
    let header = |key: i16, version: i16| {
        [
            &key.to_be_bytes()[..],
            &version.to_be_bytes(),
            &1i32.to_be_bytes(),
            &(-1i16).to_be_bytes(),
        ]
        .concat()
    };
    let framed = |body: Vec<u8>| [(body.len() as i32).to_be_bytes().to_vec(), body].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        (
            "length over the limit",
            ((frame::REQUEST_BYTES_MAX + 1) as i32)
                .to_be_bytes()
                .to_vec(),
        ),
        ("absurd length", i32::MAX.to_be_bytes().to_vec()),
        ("length too short for a header", framed(vec![0, 1, 2])),
        ("unknown api key", framed(header(9999, 0))),
        (
            "unimplemented api (JoinGroup)",
            framed(header(ApiKey::JoinGroup as i16, 5)),
        ),
        (
            "unsupported produce version",
            framed(header(ApiKey::Produce as i16, 0)),
        ),
        (
            "truncated produce body",
            framed(
                [
                    header(ApiKey::Produce as i16, 7),
                    vec![0xff, 0xff, 0, 0, 0x27],
                ]
                .concat(),
            ),
        ),
        (
            "metadata with 2^31 topics",
            framed(
                [
                    header(ApiKey::Metadata as i16, 1),
                    i32::MAX.to_be_bytes().to_vec(),
                ]
                .concat(),
            ),
        ),
        (
            "truncated header",
            framed(
                [ApiKey::Metadata as i16, 1]
                    .iter()
                    .flat_map(|x: &i16| x.to_be_bytes())
                    .chain([0, 0, 0, 1, 0, 50])
                    .collect(),
            ),
        ),
    ];
    for (what, bytes) in cases {
        let mut s = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, &bytes)
            .await
            .unwrap();
        assert_closed(s).await;
        assert_eq!(
            read_all(&good, "keep").await,
            vec![b"safe".to_vec()],
            "after {what}"
        );
    }
}

#[tokio::test]
async fn bad_produces_get_kafka_error_codes_and_write_nothing() {
    let node = start().await;
    let c = Connection::connect(&node.addr).await.unwrap();
    produce(&c, "t", &["only"]).await;
    let mut corrupt = batch::build(0, &[(None, Some(b"v"))]);
    let n = corrupt.len();
    corrupt[n - 1] ^= 0xff;
    let cases: Vec<(ProduceRequest, i16)> = vec![
        (
            produce_req("t", 0, -1, corrupt),
            ResponseError::CorruptMessage.code(),
        ),
        (
            produce_req("t", 0, -1, vec![0u8; 10]),
            ResponseError::CorruptMessage.code(),
        ),
        (
            produce_req("t", 0, 5, batch::build(0, &[(None, Some(b"v"))])),
            ResponseError::InvalidRequiredAcks.code(),
        ),
        (
            produce_req("t", 9, -1, batch::build(0, &[(None, Some(b"v"))])),
            ResponseError::UnknownTopicOrPartition.code(),
        ),
        (
            produce_req("missing", 0, -1, batch::build(0, &[(None, Some(b"v"))])),
            ResponseError::UnknownTopicOrPartition.code(),
        ),
        (
            produce_req(
                "t",
                0,
                -1,
                batch::build(0, &[(None, Some(&vec![1u8; 2 << 20]))]),
            ),
            ResponseError::MessageTooLarge.code(),
        ),
    ];
    for (req, want) in cases {
        let resp = c.call(&req, 7).await.unwrap();
        assert_eq!(resp.responses[0].partition_responses[0].error_code, want);
    }
    assert_eq!(read_all(&c, "t").await, vec![b"only".to_vec()]);
}

#[tokio::test]
async fn admin_rejects_bad_names_partitions_and_configs() {
    let node = start().await;
    let c = Connection::connect(&node.addr).await.unwrap();
    let topic = |n: &str, parts: i32, cfg: &[(&str, &str)]| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(parts)
            .with_replication_factor(-1)
            .with_configs(
                cfg.iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )
    };
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![
        topic("ok", 3, &[("retention.ms", "1000")]),
        topic("bad name!", 1, &[]),
        topic("huge", 1_000_000, &[]),
        topic("zero", 0, &[]),
        topic("cfg", 1, &[("retention.ms", "yesterday")]),
        topic("unknown-cfg", 1, &[("no.such", "1")]),
    ];
    let resp = c.call(&req, 7).await.unwrap();
    let codes: Vec<i16> = resp.topics.iter().map(|t| t.error_code).collect();
    use ResponseError as E;
    assert_eq!(
        codes,
        vec![
            0,
            E::InvalidTopicException.code(),
            E::InvalidPartitions.code(),
            E::InvalidPartitions.code(),
            E::InvalidConfig.code(),
            E::InvalidConfig.code()
        ]
    );
    assert!(
        resp.topics[2]
            .error_message
            .as_ref()
            .unwrap()
            .contains("limit"),
        "says why"
    );
    let names: Vec<String> = node
        .broker
        .topics()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(names, vec!["ok".to_string()], "nothing else was created");
    let mut md = MetadataRequest::default();
    md.topics = Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("no/slashes")))
    ]);
    assert_eq!(
        c.call(&md, 12).await.unwrap().topics[0].error_code,
        E::InvalidTopicException.code()
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let node = start_with(ServerConfig {
        connections_max: 2,
        ..ServerConfig::default()
    })
    .await;
    let addr = node.addr.clone();
    let a = Connection::connect(&addr).await.unwrap();
    let b = Connection::connect(&addr).await.unwrap();
    a.call(&ApiVersionsRequest::default(), 3).await.unwrap();
    b.call(&ApiVersionsRequest::default(), 3).await.unwrap();
    let third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_closed(third).await;
    drop(a);
    // A slot frees up once a connection goes away.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let c = Connection::connect(&addr).await.unwrap();
        if tokio::time::timeout(
            Duration::from_millis(500),
            c.call(&ApiVersionsRequest::default(), 3),
        )
        .await
        .is_ok_and(|r| r.is_ok())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a freed slot is reused"
        );
    }
}

#[tokio::test]
async fn a_stalled_request_is_dropped_after_the_frame_timeout() {
    let node = start_with(ServerConfig {
        frame_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    })
    .await;
    let addr = node.addr.clone();
    // A length, then nothing: closed once the frame timeout passes.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &100i32.to_be_bytes())
        .await
        .unwrap();
    assert_closed(s).await;
    // Nothing at all: closed once the idle timeout passes.
    assert_closed(tokio::net::TcpStream::connect(&addr).await.unwrap()).await;
}

#[tokio::test]
async fn shutdown_answers_in_flight_requests_then_stops() {
    let node = start().await;
    let c = Connection::connect(&node.addr).await.unwrap();
    produce(&c, "s", &["v"]).await;
    let pending = c.send(&fetch_req("s", 0, 1, 2_000, 1), 11).await.unwrap();
    // Stop only once the server has the fetch parked, waiting for data.
    tokio::time::timeout(Duration::from_secs(5), async {
        while node.broker.parked_fetches() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the fetch parks");
    node.stop.send(true).unwrap();
    let resp = pending
        .recv()
        .await
        .expect("the in-flight fetch is answered");
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
}

fn handler_for_fuzz() -> (Handler, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).unwrap();
    (
        Handler::new(
            broker,
            Advertised {
                host: "127.0.0.1".into(),
                port: 9092,
            },
        ),
        dir,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any bytes, under any supported API key and version, parse to a `Result`:
    /// never a panic, never an abort from a huge allocation.
    #[test]
    fn any_frame_is_parsed_or_refused_without_panicking(
        api in prop::sample::select(keel_kafka::versions::SUPPORTED.to_vec()),
        version_pick in 0i16..20,
        tail in prop::collection::vec(any::<u8>(), 0..256),
        raw in prop::bool::ANY,
    ) {
        let (key, lo, hi) = api;
        let version = lo + version_pick % (hi - lo + 1);
        let frame_bytes = if raw {
            tail.clone()
        } else {
            [&(key as i16).to_be_bytes()[..], &version.to_be_bytes(), &1i32.to_be_bytes(), &tail].concat()
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (h, _dir) = handler_for_fuzz();
        rt.block_on(async {
            if let Ok(req) = frame::parse(Bytes::from(frame_bytes)) {
                if let Ok(Reply::Deferred(f)) = h.handle(req) {
                    let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
                }
            }
        });
    }
}

/// The idempotent producer over the wire, deterministically: a batch that was
/// written but whose acknowledgement was lost (the node "crashed") is retried to
/// a node reopened on the same data without a clean shutdown, and is answered
/// with its original offset without being written again.
#[tokio::test]
async fn idempotent_retry_after_a_crash_is_answered_with_the_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let serve_on = |broker: Broker| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Handler::new(
            broker,
            Advertised {
                host: addr.ip().to_string(),
                port: i32::from(addr.port()),
            },
        );
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(keel_kafka::serve(
            listener,
            handler,
            ServerConfig::default(),
            rx,
        ));
        (addr.to_string(), stop)
    };
    let first = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).unwrap();
    let (addr, stop) = serve_on(first.clone()).await;
    let c = Connection::connect(&addr).await.unwrap();
    let init = c
        .call(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .unwrap();
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let mut records = batch::build(1_700_000_000_000, &[(None, Some(b"once"))]);
    batch::set_producer(&mut records, pid, epoch, 0);
    produce(&c, "idem", &["before"]).await;
    let resp = c
        .call(&produce_req("idem", 0, -1, records.clone()), 7)
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 1));
    // Crash: the node stops without a clean shutdown; its files stay as they are.
    stop.send(true).unwrap();
    drop(c);
    drop(first);
    let second = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).unwrap();
    let (addr, _stop) = serve_on(second).await;
    let c = Connection::connect(&addr).await.unwrap();
    let resp = c
        .call(&produce_req("idem", 0, -1, records.clone()), 7)
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(
        (p.error_code, p.base_offset),
        (0, 1),
        "the retry gets the original offset"
    );
    assert_eq!(
        read_all(&c, "idem").await,
        vec![b"before".to_vec(), b"once".to_vec()],
        "and is not written twice"
    );
    // The next batch in sequence is appended; a gap is refused.
    batch::set_producer(&mut records, pid, epoch, 1);
    assert_eq!(
        c.call(&produce_req("idem", 0, -1, records.clone()), 7)
            .await
            .unwrap()
            .responses[0]
            .partition_responses[0]
            .base_offset,
        2
    );
    batch::set_producer(&mut records, pid, epoch, 5);
    let gap = c
        .call(&produce_req("idem", 0, -1, records), 7)
        .await
        .unwrap();
    assert_eq!(
        gap.responses[0].partition_responses[0].error_code,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
}

async fn serve_broker(broker: Broker) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Handler::new(
        broker,
        Advertised {
            host: addr.ip().to_string(),
            port: i32::from(addr.port()),
        },
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(keel_kafka::serve(
        listener,
        handler,
        ServerConfig::default(),
        rx,
    ));
    (addr.to_string(), stop)
}

fn join_req(member: &str, session_timeout_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(b"meta"))])
}

fn commit_req(generation: i32, member: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                ]),
        ])
}

async fn committed(c: &Connection) -> i64 {
    let r = c
        .call(
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![0]),
                ])),
            7,
        )
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    r.topics[0].partitions[0].committed_offset
}

#[tokio::test]
async fn group_protocol_and_committed_offsets_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    // No ticker runs here, so no initial rebalance delay either.
    let config = || {
        let mut c = BrokerConfig::new(dir.path());
        c.group_config.initial_rebalance_delay_ms = 0;
        c
    };
    let first = Broker::open(config(), Arc::new(SystemClock)).unwrap();
    let (addr, stop) = serve_broker(first.clone()).await;
    let c = Connection::connect(&addr).await.unwrap();
    produce(&c, "t", &["a", "b", "c"]).await;

    let fc = c
        .call(
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
            3,
        )
        .await
        .unwrap();
    assert_eq!((fc.error_code, fc.node_id.0), (0, 1));
    let txn = c
        .call(
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("tx"))
                .with_key_type(1),
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        txn.error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );

    let bad = c.call(&join_req("", 10), 7).await.unwrap();
    assert_eq!(bad.error_code, ResponseError::InvalidSessionTimeout.code());
    // KIP-394: a new member is given its id first, then joins with it.
    let first_join = c.call(&join_req("", 10_000), 7).await.unwrap();
    assert_eq!(
        first_join.error_code,
        ResponseError::MemberIdRequired.code()
    );
    let member = first_join.member_id.to_string();
    let joined = c.call(&join_req(&member, 10_000), 7).await.unwrap();
    assert_eq!(joined.error_code, 0);
    assert_eq!(
        (joined.generation_id, joined.leader.as_str()),
        (1, member.as_str())
    );
    assert_eq!(joined.members.len(), 1);
    let sync = c
        .call(
            &SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id(1)
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member.clone()))
                        .with_assignment(Bytes::from_static(b"p0")),
                ]),
            5,
        )
        .await
        .unwrap();
    assert_eq!((sync.error_code, &sync.assignment[..]), (0, &b"p0"[..]));
    let hb = |generation: i32, m: &str| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(m.to_string()))
    };
    assert_eq!(c.call(&hb(1, &member), 4).await.unwrap().error_code, 0);
    assert_eq!(
        c.call(&hb(9, &member), 4).await.unwrap().error_code,
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        c.call(&hb(1, "stranger"), 4).await.unwrap().error_code,
        ResponseError::UnknownMemberId.code()
    );
    // Commits from the member count; one from an old generation does not.
    let ok = c.call(&commit_req(1, &member, 2), 8).await.unwrap();
    assert_eq!(ok.topics[0].partitions[0].error_code, 0);
    let stale = c.call(&commit_req(0, &member, 3), 8).await.unwrap();
    assert_eq!(
        stale.topics[0].partitions[0].error_code,
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(committed(&c).await, 2);
    // Clients may not write the offsets topic themselves.
    let forged = c
        .call(
            &produce_req(
                "__consumer_offsets",
                0,
                -1,
                batch::build(0, &[(Some(b"k"), Some(b"v"))]),
            ),
            7,
        )
        .await
        .unwrap();
    assert_eq!(
        forged.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidTopicException.code()
    );

    // Crash, then reopen: the commit and the group's generation are still there.
    stop.send(true).unwrap();
    drop(c);
    drop(first);
    let second = Broker::open(config(), Arc::new(SystemClock)).unwrap();
    let (addr, _stop) = serve_broker(second).await;
    let c = Connection::connect(&addr).await.unwrap();
    assert_eq!(committed(&c).await, 2);
    assert_eq!(
        c.call(&hb(1, &member), 4).await.unwrap().error_code,
        0,
        "the member of the stored generation carries on"
    );
    let d = c
        .call(
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("g"))]),
            5,
        )
        .await
        .unwrap();
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(&d.groups[0].members[0].member_assignment[..], b"p0");
}

/// Every API and version ApiVersions advertises, asked with a request
/// encoded from Kafka's own message schemas (the `kafka-protocol` crate's,
/// generated from them): each is answered with a response that decodes at
/// that version, and the connection stays up. A version advertised but
/// answered wrongly (a field of a later version, a missing tagged-field
/// section) fails here, not in a user's client (issue 37).
#[tokio::test]
async fn every_advertised_api_version_answers_a_response_that_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    // Each JoinGroup version joins a group of its own, answered at once.
    config.group_config.initial_rebalance_delay_ms = 0;
    let broker = Broker::open(config, Arc::new(SystemClock)).unwrap();
    let (addr, _stop) = serve_broker(broker).await;
    let c = Connection::connect(&addr).await.unwrap();
    produce(&c, "swept", &["a", "b"]).await;
    // Produce v13 and Fetch v13+ name the topic by its id (KIP-516).
    let md = c
        .call(
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("swept"))),
            ])),
            12,
        )
        .await
        .unwrap();
    let swept_id = md.topics[0].topic_id;
    assert!(!swept_id.is_nil());
    let by_id = |v: i16, mut p: ProduceRequest| {
        if v >= 13 {
            p.topic_data[0].topic_id = swept_id;
        }
        p
    };
    let fetch_by_id = |v: i16, mut f: FetchRequest| {
        if v >= 13 {
            f.topics[0].topic_id = swept_id;
        }
        f
    };
    macro_rules! ask {
        ($key:expr, $v:expr, { $($api:ident => $req:expr),* $(,)? }) => {
            match $key {
                $(ApiKey::$api => tokio::time::timeout(Duration::from_secs(10), c.call(&$req, $v))
                    .await
                    .unwrap_or_else(|_| panic!("{:?} v{} was not answered within 10 s", $key, $v))
                    .map(|_| ()),)*
                other => panic!("{other:?} is advertised but this sweep does not know it"),
            }
        };
    }
    let mut asked = 0;
    for &(key, lo, hi) in keel_kafka::versions::SUPPORTED {
        for v in lo..=hi {
            let answered = ask!(key, v, {
                Produce => by_id(v, produce_req("swept", 0, 1, batch::build(0, &[(None, Some(b"c"))]))),
                Fetch => fetch_by_id(v, fetch_req("swept", 0, 0, 0, 0)),
                ListOffsets => ListOffsetsRequest::default().with_replica_id(BrokerId(-1)),
                Metadata => MetadataRequest::default().with_topics(Some(vec![])),
                ApiVersions => ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("sweep"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
                CreateTopics => CreateTopicsRequest::default().with_timeout_ms(1000),
                DeleteTopics => DeleteTopicsRequest::default().with_timeout_ms(1000),
                DescribeConfigs => DescribeConfigsRequest::default(),
                AlterConfigs => AlterConfigsRequest::default(),
                CreatePartitions => CreatePartitionsRequest::default().with_timeout_ms(1000),
                IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default(),
                DescribeCluster => DescribeClusterRequest::default(),
                ElectLeaders => ElectLeadersRequest::default().with_topic_partitions(Some(vec![])),
                AlterPartitionReassignments => AlterPartitionReassignmentsRequest::default(),
                ListPartitionReassignments => ListPartitionReassignmentsRequest::default(),
                OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::default(),
                InitProducerId => InitProducerIdRequest::default()
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                FindCoordinator => if v < 4 {
                    FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
                } else {
                    FindCoordinatorRequest::default()
                        .with_coordinator_keys(vec![StrBytes::from_static_str("g")])
                },
                JoinGroup => join_req("", 10_000)
                    .with_group_id(GroupId(StrBytes::from_string(format!("sweep-{v}")))),
                SyncGroup => SyncGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g")))
                    .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                    .with_protocol_name(Some(StrBytes::from_static_str("range"))),
                Heartbeat => HeartbeatRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g"))),
                LeaveGroup => LeaveGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g"))),
                OffsetCommit => commit_req(-1, "", 0),
                OffsetFetch => if v < 8 {
                    OffsetFetchRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("g")))
                        .with_topics(Some(vec![]))
                } else {
                    OffsetFetchRequest::default().with_groups(vec![
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(StrBytes::from_static_str("g"))),
                    ])
                },
                ListGroups => ListGroupsRequest::default(),
                DescribeGroups => DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(StrBytes::from_static_str("g"))]),
                DeleteGroups => DeleteGroupsRequest::default(),
                OffsetDelete => OffsetDeleteRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g"))),
                DeleteRecords => DeleteRecordsRequest::default().with_timeout_ms(1000),
                DescribeLogDirs => DescribeLogDirsRequest::default(),
                DescribeProducers => DescribeProducersRequest::default(),
                DescribeTopicPartitions => DescribeTopicPartitionsRequest::default()
                    .with_response_partition_limit(1),
                ConsumerGroupHeartbeat => cg_heartbeat(&format!("sweep-cg-{v}"), "m", 0)
                    .with_subscribed_topic_names(Some(vec![name("swept")])),
                ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default()
                    .with_group_ids(vec![GroupId(StrBytes::from_static_str("sweep-cg-1"))]),
                DescribeClientQuotas => DescribeClientQuotasRequest::default(),
                AlterClientQuotas => AlterClientQuotasRequest::default(),
                UpdateFeatures => UpdateFeaturesRequest::default().with_timeout_ms(1000),
                GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest::default(),
            });
            answered.unwrap_or_else(|e| panic!("{key:?} v{v}: {e:#}"));
            asked += 1;
        }
    }
    assert!(asked > 100, "{asked} versions asked");
    // By id the records come back, every one; an id no topic has is
    // UNKNOWN_TOPIC_ID (KIP-516).
    let (_, lo, hi) = keel_kafka::versions::range(ApiKey::Produce as i16).unwrap();
    let f = c
        .call(&fetch_by_id(18, fetch_req("swept", 0, 0, 0, 0)), 18)
        .await
        .unwrap();
    assert_eq!(f.responses[0].topic_id, swept_id);
    assert_eq!(
        values(
            f.responses[0].partitions[0]
                .records
                .as_deref()
                .unwrap_or(&[])
        )
        .len(),
        2 + (hi - lo + 1) as usize
    );
    let mut unknown = fetch_req("swept", 0, 0, 0, 0);
    unknown.topics[0].topic_id = uuid::Uuid::new_v4();
    let f = c.call(&unknown, 13).await.unwrap();
    assert_eq!(
        f.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
    // Still serving, with its data: the two records, and one per Produce version.
    let (_, lo, hi) = keel_kafka::versions::range(ApiKey::Produce as i16).unwrap();
    assert_eq!(
        read_all(&c, "swept").await.len(),
        2 + (hi - lo + 1) as usize
    );
}

fn delete_records_req(topic: &str, offset: i64) -> DeleteRecordsRequest {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])])
}

async fn delete_records(c: &Connection, topic: &str, offset: i64) -> (i16, i64) {
    let resp = c.call(&delete_records_req(topic, offset), 2).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

async fn earliest(c: &Connection, topic: &str) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let r = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2)])]);
    let resp = c.call(&r, 6).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// DeleteRecords on one node: the start moves to the offset (or the high
/// watermark for -1), reads below it are OFFSET_OUT_OF_RANGE, the move
/// survives a crash, and an offset past the high watermark or a compacted
/// topic is refused with Kafka's code and changes nothing.
#[tokio::test]
async fn delete_records_moves_the_start_durably_and_refuses_what_kafka_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).unwrap();
    let broker = open();
    let (addr, stop) = serve_broker(broker.clone()).await;
    let c = Connection::connect(&addr).await.unwrap();
    for i in 0..5 {
        produce(&c, "trim", &[&format!("{i}a"), &format!("{i}b")]).await;
    }
    assert_eq!(
        delete_records(&c, "trim", 11).await.0,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(
        delete_records(&c, "trim", -7).await.0,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(
        earliest(&c, "trim").await,
        0,
        "a refused delete moves nothing"
    );
    assert_eq!(delete_records(&c, "trim", 5).await, (0, 5));
    assert_eq!(earliest(&c, "trim").await, 5);
    let below = c.call(&fetch_req("trim", 0, 3, 0, 0), 11).await.unwrap();
    assert_eq!(
        below.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    let from = c.call(&fetch_req("trim", 0, 5, 0, 0), 11).await.unwrap();
    let p = &from.responses[0].partitions[0];
    assert_eq!(p.log_start_offset, 5);
    // The batch holding offset 5 (4, 5) comes whole, as Kafka's does.
    assert_eq!(
        values(p.records.as_deref().unwrap())[..2],
        [b"2a".to_vec(), b"2b".to_vec()]
    );
    assert_eq!(
        delete_records(&c, "trim", 2).await,
        (0, 5),
        "never backwards"
    );

    // A compacted topic's records are not deleted by offset.
    let mut create = CreateTopicsRequest::default().with_timeout_ms(5_000);
    create.topics = vec![CreatableTopic::default()
        .with_name(name("keyed"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_value(Some(StrBytes::from_static_str("compact")))])];
    assert_eq!(c.call(&create, 5).await.unwrap().topics[0].error_code, 0);
    assert_eq!(
        delete_records(&c, "keyed", 0).await.0,
        ResponseError::PolicyViolation.code()
    );

    // A crash (no clean shutdown) keeps the start; -1 is the high watermark.
    let _ = stop.send(true);
    drop(c);
    drop(broker);
    let broker = open();
    let (addr, _stop) = serve_broker(broker.clone()).await;
    let c = Connection::connect(&addr).await.unwrap();
    assert_eq!(earliest(&c, "trim").await, 5);
    assert_eq!(delete_records(&c, "trim", -1).await, (0, 10));
    assert_eq!(earliest(&c, "trim").await, 10);
}

fn cg_heartbeat(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 })
        .with_topic_partitions(Some(vec![]))
}

fn owning(
    r: &ConsumerGroupHeartbeatResponse,
) -> Vec<consumer_group_heartbeat_request::TopicPartitions> {
    r.assignment
        .as_ref()
        .expect("an assignment")
        .topic_partitions
        .iter()
        .map(|tp| {
            consumer_group_heartbeat_request::TopicPartitions::default()
                .with_topic_id(tp.topic_id)
                .with_partitions(tp.partitions.clone())
        })
        .collect()
}

/// KIP-848 over the wire: a member joins and is assigned by the coordinator,
/// commits and fetches at its member epoch, the group is listed and described
/// as a consumer group, everything Kafka refuses is refused with Kafka's
/// code, and the group survives a crash of its coordinator.
#[tokio::test]
async fn a_consumer_group_heartbeat_assigns_survives_a_crash_and_refuses_what_kafka_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = BrokerConfig::new(dir.path());
        c.group_config.initial_rebalance_delay_ms = 0;
        c
    };
    let first = Broker::open(config(), Arc::new(SystemClock)).unwrap();
    let (addr, stop) = serve_broker(first.clone()).await;
    let c = Connection::connect(&addr).await.unwrap();
    produce(&c, "t", &["a", "b"]).await;
    let join = cg_heartbeat("g", "m1", 0).with_subscribed_topic_names(Some(vec![name("t")]));

    // Refused as Kafka refuses, and the group is not created by any of these.
    let code = |r: ConsumerGroupHeartbeatResponse| r.error_code;
    let refused = [
        (
            join.clone().with_member_id(StrBytes::from_static_str("")),
            1,
            ResponseError::InvalidRequest,
        ),
        (
            join.clone().with_rebalance_timeout_ms(-1),
            1,
            ResponseError::InvalidRequest,
        ),
        (
            join.clone().with_subscribed_topic_names(None),
            1,
            ResponseError::InvalidRequest,
        ),
        (
            join.clone().with_topic_partitions(None),
            1,
            ResponseError::InvalidRequest,
        ),
        (
            join.clone().with_member_epoch(-3),
            1,
            ResponseError::InvalidRequest,
        ),
        (
            join.clone()
                .with_server_assignor(Some(StrBytes::from_static_str("sticky"))),
            1,
            ResponseError::UnsupportedAssignor,
        ),
        (
            join.clone()
                .with_subscribed_topic_regex(Some(StrBytes::from_static_str("(t"))),
            1,
            ResponseError::InvalidRegularExpression,
        ),
        (
            cg_heartbeat("g", "m1", 1),
            1,
            ResponseError::UnknownMemberId,
        ),
    ];
    for (req, v, want) in refused {
        let got = c.call(&req, v).await.unwrap();
        assert_eq!(
            got.error_code,
            want.code(),
            "{req:?}: {:?}",
            got.error_message
        );
    }
    let listed = c.call(&ListGroupsRequest::default(), 5).await.unwrap();
    assert!(listed.groups.is_empty(), "{listed:?}");

    // v0: the coordinator names the member; v1: the client does.
    let v0 = c
        .call(
            &join.clone().with_member_id(StrBytes::from_static_str("")),
            0,
        )
        .await
        .unwrap();
    assert_eq!(code(v0.clone()), 0, "{:?}", v0.error_message);
    assert!(!v0.member_id.clone().unwrap().is_empty());
    let v0_id = v0.member_id.clone().unwrap().to_string();
    let gone = c
        .call(
            &cg_heartbeat("g", &v0_id, -1).with_rebalance_timeout_ms(-1),
            0,
        )
        .await
        .unwrap();
    assert_eq!((gone.error_code, gone.member_epoch), (0, -1));

    let joined = c.call(&join, 1).await.unwrap();
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    let epoch = joined.member_epoch;
    let owned = owning(&joined);
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].partitions, vec![0]);
    assert_eq!(joined.heartbeat_interval_ms, 5_000);
    let again = c
        .call(
            &cg_heartbeat("g", "m1", epoch).with_topic_partitions(Some(owned.clone())),
            1,
        )
        .await
        .unwrap();
    assert_eq!((again.error_code, again.member_epoch), (0, epoch));
    for bad in [epoch + 1, epoch - 1] {
        let r = c.call(&cg_heartbeat("g", "m1", bad), 1).await.unwrap();
        assert_eq!(
            r.error_code,
            ResponseError::FencedMemberEpoch.code(),
            "epoch {bad}"
        );
    }

    // OffsetCommit/OffsetFetch v9 carry the member epoch.
    let commit = |e: i32| commit_req(e, "m1", 1);
    assert_eq!(
        c.call(&commit(epoch), 9).await.unwrap().topics[0].partitions[0].error_code,
        0
    );
    assert_eq!(
        c.call(&commit(epoch - 1), 9).await.unwrap().topics[0].partitions[0].error_code,
        ResponseError::StaleMemberEpoch.code()
    );
    let fetch = |e: i32| {
        OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(Some(StrBytes::from_static_str("m1")))
                .with_member_epoch(e)
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![0]),
                ])),
        ])
    };
    let f = c.call(&fetch(epoch), 9).await.unwrap();
    assert_eq!(f.groups[0].error_code, 0);
    assert_eq!(f.groups[0].topics[0].partitions[0].committed_offset, 1);
    assert_eq!(
        c.call(&fetch(epoch + 5), 9).await.unwrap().groups[0].error_code,
        ResponseError::StaleMemberEpoch.code()
    );

    // A classic member cannot join it; it is listed and described as a consumer group.
    let classic = join_req("", 10_000).with_group_id(GroupId(StrBytes::from_static_str("g")));
    assert_eq!(
        c.call(&classic, 9).await.unwrap().error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let listed = c.call(&ListGroupsRequest::default(), 5).await.unwrap();
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_type.as_str(), "consumer");
    assert_eq!(listed.groups[0].group_state.as_str(), "Stable");
    let only_classic =
        ListGroupsRequest::default().with_types_filter(vec![StrBytes::from_static_str("classic")]);
    assert!(c.call(&only_classic, 5).await.unwrap().groups.is_empty());
    // DescribeGroups (the classic API) names a consumer group not found, at
    // every version: with its reason from v6 (KIP-1043), without before (a
    // reason at v5 once failed to encode and closed the connection).
    for v in [0, 5, 6] {
        let classic = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("g"))]);
        let d = c.call(&classic, v).await.unwrap();
        assert_eq!(
            d.groups[0].error_code,
            ResponseError::GroupIdNotFound.code()
        );
        assert_eq!(d.groups[0].error_message.is_some(), v >= 6);
    }
    let describe = ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_static_str("g"))]);
    let d = c.call(&describe, 1).await.unwrap();
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].assignor_name.as_str(), "uniform");
    assert_eq!(d.groups[0].members[0].member_id.as_str(), "m1");
    assert_eq!(
        d.groups[0].members[0].assignment.topic_partitions[0]
            .topic_name
            .as_str(),
        "t"
    );
    let deleted = c
        .call(
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("g"))]),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        deleted.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );

    // Crash and reopen: the member and its epoch and partitions are still there.
    stop.send(true).unwrap();
    drop(c);
    drop(first);
    let second = Broker::open(config(), Arc::new(SystemClock)).unwrap();
    let (addr, _stop) = serve_broker(second).await;
    let c = Connection::connect(&addr).await.unwrap();
    let back = c
        .call(
            &cg_heartbeat("g", "m1", epoch).with_topic_partitions(Some(owned.clone())),
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        (back.error_code, back.member_epoch),
        (0, epoch),
        "{:?}",
        back.error_message
    );
    let d = c.call(&describe, 1).await.unwrap();
    assert_eq!(
        d.groups[0].members[0].assignment.topic_partitions[0].partitions,
        vec![0]
    );
    let left = c.call(&cg_heartbeat("g", "m1", -1), 1).await.unwrap();
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    let deleted = c
        .call(
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("g"))]),
            2,
        )
        .await
        .unwrap();
    assert_eq!(deleted.results[0].error_code, 0);
}
