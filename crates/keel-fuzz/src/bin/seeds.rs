//! Writes each fuzz target's seed corpus (`fuzz/corpus/TARGET/seed-*`) from
//! Keel's own encoders, so the fuzzer starts from inputs that pass every
//! check and mutates toward the deep branches: `cargo run -p keel-fuzz --bin seeds`.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use keel_storage::batch;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let put = |target: &str, seeds: Vec<Vec<u8>>| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).expect("write seed");
        }
        println!("{target}: {} seeds", seeds.len());
    };
    put("kafka_request", kafka_requests());
    put("record_batch", record_batches());
    put("log_recovery", log_files());
    put("raft_wal", raft_wal());
    put("cql_frame", cql_frames());
    put("cql_text", cql_texts());
    put("table_files", table_files());
    put("hints_file", hints_files());
    put("etcd_snapshot", etcd_snapshots());
    let (messages, entries) = etcd_requests();
    put("etcd_messages", messages);
    put("etcd_apply", entries);
}

fn frame<E: Encodable>(key: ApiKey, version: i16, body: &E) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("seed")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    buf.to_vec()
}

fn kafka_requests() -> Vec<Vec<u8>> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let name = TopicName(StrBytes::from_static_str("fuzz"));
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name.clone())),
    ]));
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name.clone())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let list = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name.clone())
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(1)
            .with_timestamp(-1)])]);
    let commit = OffsetCommitRequest::default()
        .with_group_id(StrBytes::from_static_str("g").into())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name)
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])]);
    vec![
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        frame(ApiKey::Metadata, 12, &metadata),
        frame(ApiKey::Fetch, 12, &fetch),
        frame(ApiKey::Fetch, 4, &fetch),
        frame(ApiKey::ListOffsets, 6, &list),
        frame(ApiKey::OffsetCommit, 8, &commit),
    ]
}

fn batches() -> Vec<Vec<u8>> {
    let plain = batch::build(
        1_700_000_000_000,
        &[
            (Some(&b"key"[..]), Some(&b"value"[..])),
            (None, Some(&b"no key"[..])),
            (Some(&b"tombstone"[..]), None),
        ],
    );
    let mut out = vec![plain.clone()];
    for codec in [
        keel_storage::compression::Codec::Gzip,
        keel_storage::compression::Codec::Snappy,
        keel_storage::compression::Codec::Lz4,
        keel_storage::compression::Codec::Zstd,
    ] {
        out.push(batch::recompress(&plain, codec, 1 << 20).expect("recompress"));
    }
    out
}

fn record_batches() -> Vec<Vec<u8>> {
    batches()
        .into_iter()
        .map(|b| [&[1u8][..], &b].concat())
        .collect()
}

/// `mode | len u16 | file | len u16 | file | len u16 | file | last file`.
fn files(mode: u8, files: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![mode];
    let (last, rest) = files.split_last().expect("files");
    for f in rest {
        out.extend_from_slice(&(f.len() as u16).to_le_bytes());
        out.extend_from_slice(f);
    }
    out.extend_from_slice(last);
    out
}

fn read_dir_files(dir: &Path, names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap_or_default())
        .collect()
}

fn log_files() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) =
        keel_storage::Log::open(dir.path(), keel_storage::LogConfig::default(), 0).expect("log");
    log.begin_epoch(3).expect("epoch");
    for (i, mut b) in batches().into_iter().enumerate() {
        log.append(&mut b, 3, false, 1_700_000_000_000 + i as i64)
            .expect("append");
    }
    let job = log.flush_job();
    if let Some(job) = job {
        job.run().expect("flush");
        log.complete_flush(&job).expect("flush done");
    }
    log.close().expect("close");
    let base = "00000000000000000000";
    let mut parts = read_dir_files(
        dir.path(),
        &[
            &format!("{base}.log"),
            &format!("{base}.index"),
            &format!("{base}.timeindex"),
            "leader-epoch-checkpoint",
        ],
    );
    for p in &mut parts[..3] {
        p.truncate(u16::MAX as usize);
    }
    vec![files(1, &parts), files(0, &parts)]
}

fn raft_wal() -> Vec<Vec<u8>> {
    use raft::eraftpb::{Entry, HardState};
    let dir = tempfile::tempdir().expect("tempdir");
    let written = {
        let (wal, _) = keel_raft::wal::Wal::open(dir.path()).expect("wal");
        let entries: Vec<Entry> = (1..=3)
            .map(|i| Entry {
                index: i,
                term: 1,
                data: format!("entry {i}").into_bytes().into(),
                ..Default::default()
            })
            .collect();
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 2,
            ..Default::default()
        };
        wal.save(&entries, Some(&hs)).expect("save");
        wal.sync().expect("sync");
        wal.written_bytes() as usize
    };
    let mut bytes = std::fs::read(dir.path().join("wal")).expect("read wal");
    bytes.truncate(written);
    vec![[&[1u8][..], &bytes].concat(), [&[0u8][..], &bytes].concat()]
}

/// A v4 request envelope: version, flags, stream, opcode, length, body.
fn envelope(version: u8, opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![version, 0, 0, 1, opcode];
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn string_map(kv: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (kv.len() as u16).to_be_bytes().to_vec();
    for (k, v) in kv {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

fn query_body(q: &str, v5: bool) -> Vec<u8> {
    let mut out = (q.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(q.as_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // consistency ONE
                                                // flags: values (0x01), with one bound int
    if v5 {
        out.extend_from_slice(&1u32.to_be_bytes());
    } else {
        out.push(1);
    }
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&42i32.to_be_bytes());
    out
}

/// One self-contained, uncompressed protocol v5 frame around `payload`.
fn v5_segment(payload: &[u8]) -> Vec<u8> {
    use cassandra_protocol::crc::{crc24, crc32};
    let header = (payload.len() as u64) | (1 << 17);
    let h = header.to_le_bytes();
    let mut out = h[..3].to_vec();
    out.extend_from_slice(&crc24(&h[..3]).to_le_bytes()[..3]);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out
}

fn cql_frames() -> Vec<Vec<u8>> {
    const STARTUP: u8 = 0x01;
    const OPTIONS: u8 = 0x05;
    const QUERY: u8 = 0x07;
    const PREPARE: u8 = 0x09;
    let startup = envelope(4, STARTUP, &string_map(&[("CQL_VERSION", "3.0.0")]));
    let q = "SELECT v FROM ks.t WHERE k = ?";
    let query = envelope(4, QUERY, &query_body(q, false));
    let mut prepare_body = (q.len() as i32).to_be_bytes().to_vec();
    prepare_body.extend_from_slice(q.as_bytes());
    let prepare = envelope(4, PREPARE, &prepare_body);
    let v5_query = envelope(5, QUERY, &query_body(q, true));
    vec![
        [
            &[0u8][..],
            &envelope(4, OPTIONS, &[]),
            &startup,
            &query,
            &prepare,
        ]
        .concat(),
        [&[1u8][..], &v5_segment(&v5_query)].concat(),
    ]
}

fn cql_texts() -> Vec<Vec<u8>> {
    [
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}",
        "CREATE TABLE ks.t (k int, c text, v blob, s set<int>, m map<text, int>, PRIMARY KEY ((k), c)) WITH CLUSTERING ORDER BY (c DESC)",
        "INSERT INTO ks.t (k, c, v) VALUES (1, 'a', 0xcafe) IF NOT EXISTS USING TTL 60",
        "UPDATE ks.t SET m['x'] = 3, s = s + {1, 2} WHERE k = 1 AND c = 'a' IF v = 0xcafe",
        "SELECT k, c, writetime(v), ttl(v) FROM ks.t WHERE k IN (1, 2) AND c > 'a' ORDER BY c ASC LIMIT 10 ALLOW FILTERING",
        "BEGIN BATCH INSERT INTO ks.t (k, c) VALUES (?, ?); DELETE v FROM ks.t WHERE k = :k AND c = 'b' APPLY BATCH",
        "DESCRIBE KEYSPACE ks",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn table_files() -> Vec<Vec<u8>> {
    use keel_table::engine::{commitlog, sstable};
    use keel_table::Cell;
    let m: commitlog::Mutation = vec![
        (b"pk\0a".to_vec(), Cell::live(5, b"value".to_vec())),
        (b"pk\0b".to_vec(), Cell::tombstone(6, 1_700_000_000)),
        (
            b"pk\0c".to_vec(),
            Cell::expiring(7, b"x".to_vec(), 60, 1_700_000_000),
        ),
    ];
    let log = [
        commitlog::encode_record(&m),
        commitlog::encode_record(&m[..1].to_vec()),
    ]
    .concat();
    let dir = tempfile::tempdir().expect("tempdir");
    sstable::write(dir.path(), 1, 1, m.into_iter()).expect("sstable");
    let sst = std::fs::read(sstable::data_path(dir.path(), 1)).expect("read sstable");
    vec![files(1, &[log.clone(), sst.clone()]), files(0, &[log, sst])]
}

/// Hint files: two whole records, and the same with a torn tail.
fn hints_files() -> Vec<Vec<u8>> {
    use keel_table::engine::commitlog;
    use keel_table::Cell;
    let m: commitlog::Mutation = vec![
        (b"pk\0a".to_vec(), Cell::live(5, b"value".to_vec())),
        (b"pk\0b".to_vec(), Cell::tombstone(6, 1_700_000_000)),
    ];
    let file = [
        commitlog::encode_record(&m),
        commitlog::encode_record(&m[..1].to_vec()),
    ]
    .concat();
    let torn = file[..file.len() - 3].to_vec();
    vec![[&[1u8][..], &file].concat(), [&[0u8][..], &torn].concat()]
}

fn etcd_snapshots() -> Vec<Vec<u8>> {
    use prost::Message as _;
    let state = keel_etcd::pb::keelpb::StateSnapshot {
        current_revision: 7,
        compact_revision: 2,
        cluster_id: 9,
        ..Default::default()
    };
    let mut file = keel_etcd::backup::encode(&state.encode_to_vec());
    let digest = keel_etcd::backup::digest(&file);
    file.extend_from_slice(&digest);
    vec![[&[1u8][..], &file].concat()]
}

/// etcd requests as clients send them (each in protobuf and in the
/// gateway's JSON), and the store's Raft entries that carry them.
fn etcd_requests() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use keel_etcd::pb::etcdserverpb as pb;
    use keel_etcd::pb::keelpb::{internal_request::Request, InternalRequest, RequestHeader};
    use prost::Message as _;
    let put = pb::PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let range = pb::RangeRequest {
        key: b"a".to_vec(),
        range_end: b"z".to_vec(),
        limit: 10,
        ..Default::default()
    };
    let txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            key: b"k".to_vec(),
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Version as i32,
            target_union: Some(pb::compare::TargetUnion::Version(1)),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(put.clone())),
        }],
        failure: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(range.clone())),
        }],
    };
    let delete = pb::DeleteRangeRequest {
        key: b"a".to_vec(),
        range_end: vec![0],
        prev_kv: true,
    };
    let lease = pb::LeaseGrantRequest { ttl: 60, id: 7 };
    let messages = vec![
        [&[0u8][..], &range.encode_to_vec()].concat(),
        [&[1u8][..], &put.encode_to_vec()].concat(),
        [&[3u8][..], &txn.encode_to_vec()].concat(),
        [&[0x80u8][..], &serde_json::to_vec(&range).expect("json")].concat(),
        [&[0x81u8][..], &serde_json::to_vec(&put).expect("json")].concat(),
        [&[0x83u8][..], &serde_json::to_vec(&txn).expect("json")].concat(),
        [&[0x85u8][..], &serde_json::to_vec(&lease).expect("json")].concat(),
    ];
    let entry = |r: Request| {
        InternalRequest {
            header: Some(RequestHeader {
                system: true,
                ..Default::default()
            }),
            request: Some(r),
        }
        .encode_to_vec()
    };
    let entries = vec![
        entry(Request::Put(put)),
        entry(Request::Txn(txn)),
        entry(Request::DeleteRange(delete)),
        entry(Request::LeaseGrant(lease)),
        entry(Request::Compaction(pb::CompactionRequest {
            revision: 2,
            physical: false,
        })),
    ];
    (messages, entries)
}
