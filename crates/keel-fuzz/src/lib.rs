//! What each of Keel's fuzz targets runs on one input (issue 34, item 5).
//!
//! The targets themselves live in `fuzz/` (cargo-fuzz, libFuzzer), one line
//! each, so that this crate builds with the workspace and its test replays
//! every target's seed corpus (`fuzz/corpus/TARGET`) and every input fuzzing
//! ever found (`fuzz/regressions/TARGET`) on each `cargo test`: a fixed bug
//! stays fixed without a fuzzer on the machine.
//!
//! The contract every target checks: whatever the bytes, nothing panics
//! (an arithmetic overflow included: fuzz builds keep debug assertions on),
//! nothing allocates without bound, and nothing hangs.
//!
//! On-disk formats carry CRCs, which random bytes almost never match: the
//! fuzzer would only ever exercise the "corrupt, cut here" branch. So the
//! first byte of a disk target's input chooses: odd, the bytes are used as
//! they are; even, each record's CRC is recomputed first ([`fix`]), which is
//! what a file written by a buggy or hostile writer looks like, and what
//! reaches the parsers behind the checks.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use keel_broker::{Broker, BrokerConfig, SystemClock};
use keel_kafka::handlers::{Advertised, Handler, Reply};

/// What a target runs on one input.
pub type Target = fn(&[u8]);

/// Every target: its name (a `fuzz/fuzz_targets/NAME.rs` and a corpus
/// folder) and what it runs.
pub const TARGETS: &[(&str, Target)] = &[
    ("kafka_request", kafka_request),
    ("record_batch", record_batch),
    ("log_recovery", log_recovery),
    ("raft_wal", raft_wal),
    ("cql_frame", cql_frame),
    ("cql_text", cql_text),
    ("table_files", table_files),
    ("hints_file", hints_file),
    ("etcd_snapshot", etcd_snapshot),
    ("etcd_messages", etcd_messages),
    ("etcd_apply", etcd_apply),
];

/// One broker for the whole fuzzing process, in a directory of its own,
/// with a topic of two partitions holding records, so requests that name
/// it reach the log. Bounded: no topic is created by a Metadata or
/// Produce, and CreateTopics stops at [`PARTITIONS_MAX`] partitions.
struct Kafka {
    rt: tokio::runtime::Runtime,
    handler: Handler,
    _dir: tempfile::TempDir,
}

const PARTITIONS_MAX: usize = 64;

fn kafka() -> &'static Mutex<Kafka> {
    static K: OnceLock<Mutex<Kafka>> = OnceLock::new();
    K.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = BrokerConfig::new(dir.path());
        config.auto_create_topics = false;
        config.partitions_max = PARTITIONS_MAX;
        let broker = {
            let _in = rt.enter();
            Broker::open(config, Arc::new(SystemClock)).expect("a broker")
        };
        let handler = Handler::new(
            broker,
            Advertised {
                host: "127.0.0.1".into(),
                port: 9092,
            },
        );
        let k = Kafka {
            rt,
            handler,
            _dir: dir,
        };
        for frame in seed_frames() {
            k.serve(frame);
        }
        Mutex::new(k)
    })
}

impl Kafka {
    /// Serves one frame (without its length prefix) as the connection loop
    /// does; an answer that would wait (a long poll, acks=all) is polled
    /// once and dropped, as a client that hangs up.
    fn serve(&self, frame: Bytes) {
        let Ok(req) = keel_kafka::frame::parse(frame) else {
            return;
        };
        let _in = self.rt.enter();
        match self.handler.handle(req) {
            Ok(Reply::Deferred(mut fut)) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let _ = fut.as_mut().poll(&mut cx);
            }
            Ok(Reply::Ready(_) | Reply::Nothing) | Err(_) => {}
        }
    }
}

/// A CreateTopics for `fuzz` (two partitions) and a produce of records to
/// each, built with the codec so the fuzzer starts from a populated log.
fn seed_frames() -> Vec<Bytes> {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiKey, CreateTopicsRequest, ProduceRequest, RequestHeader, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let frame = |key: ApiKey, version: i16, body: &dyn Fn(&mut bytes::BytesMut)| {
        let mut buf = bytes::BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")))
            .encode(&mut buf, key.request_header_version(version))
            .expect("a header");
        body(&mut buf);
        buf.freeze()
    };
    let name = TopicName(StrBytes::from_static_str("fuzz"));
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name.clone())
            .with_num_partitions(2)
            .with_replication_factor(1)])
        .with_timeout_ms(1000);
    let mut out = vec![frame(ApiKey::CreateTopics, 5, &|b| {
        create.encode(b, 5).expect("CreateTopics")
    })];
    for partition in 0..2 {
        let records = keel_storage::batch::build(
            1_700_000_000_000,
            &[
                (Some(&b"k1"[..]), Some(&b"v1"[..])),
                (None, Some(&b"v2"[..])),
                (Some(&b"k3"[..]), None),
            ],
        );
        let produce = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(records)))])]);
        out.push(frame(ApiKey::Produce, 9, &|b| {
            produce.encode(b, 9).expect("Produce")
        }));
    }
    out
}

/// A Kafka request frame (after its length prefix), through the frame
/// parser, the codec at the version it names, and a real broker's handler.
pub fn kafka_request(data: &[u8]) {
    let k = kafka().lock().unwrap_or_else(|e| e.into_inner());
    k.serve(Bytes::copy_from_slice(data));
}

/// The first byte chooses whether CRCs are fixed; the rest is the data.
fn split_mode(data: &[u8]) -> (bool, Vec<u8>) {
    match data.split_first() {
        Some((m, rest)) => (m & 1 == 0, rest.to_vec()),
        None => (false, Vec::new()),
    }
}

/// Kafka record batches (the `records` of a produce, or a log's bytes):
/// split, checked, validated as a produce is, records walked, looked up by
/// timestamp, recompressed.
pub fn record_batch(data: &[u8]) {
    use keel_storage::batch;
    let (fix_crcs, mut bytes) = split_mode(data);
    if fix_crcs {
        fix::kafka_batches(&mut bytes);
    }
    let Ok(ranges) = batch::split(&bytes) else {
        return;
    };
    for r in ranges {
        let b = &bytes[r];
        for keys_required in [false, true] {
            let _ = batch::validate(
                b,
                &batch::Limits {
                    batch_bytes_max: 1 << 20,
                    decompressed_bytes_max: 1 << 20,
                    keys_required,
                },
            );
        }
        let _ = batch::for_each_record(b, |h, r| {
            let _ = batch::record_timestamp(h, r);
            false
        });
        let _ = batch::first_record_at_or_after(b, 0);
        let _ = batch::recompress(b, keel_storage::compression::Codec::Lz4, 1 << 20);
    }
}

/// Splits an input into `n` files: each but the last is prefixed by its
/// length (u16, little-endian), the last takes the rest.
fn files(mut data: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n - 1 {
        let len = match data {
            [a, b, rest @ ..] => {
                data = rest;
                usize::from(u16::from_le_bytes([*a, *b]))
            }
            _ => 0,
        };
        let (file, rest) = data.split_at(len.min(data.len()));
        out.push(file.to_vec());
        data = rest;
    }
    out.push(data.to_vec());
    out
}

/// A directory for one input's files. `in_memory`: in /dev/shm where there
/// is one, so the fsyncs recovery makes cost nothing; not for formats whose
/// recovery preallocates (the Raft WAL's 64 MiB, a segment's indexes),
/// which tmpfs fills with real zeroed memory where a disk only notes it.
fn scratch(in_memory: bool) -> tempfile::TempDir {
    let shm = in_memory.then(|| {
        tempfile::Builder::new()
            .prefix("keel-fuzz-")
            .tempdir_in("/dev/shm")
            .ok()
    });
    shm.flatten()
        .unwrap_or_else(|| tempfile::tempdir().expect("a temporary directory"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write a fuzz input file");
}

/// A partition's directory as a crash left it: a segment's `.log`,
/// `.index` and `.timeindex` and the `leader-epoch-checkpoint`, recovered
/// (CRCs checked, torn tails cut, indexes rebuilt) and then read whole.
pub fn log_recovery(data: &[u8]) {
    let (fix_crcs, bytes) = split_mode(data);
    let mut parts = files(&bytes, 4);
    if fix_crcs {
        fix::kafka_batches(&mut parts[0]);
    }
    let dir = scratch(false);
    let base = "00000000000000000000";
    write(dir.path(), &format!("{base}.log"), &parts[0]);
    write(dir.path(), &format!("{base}.index"), &parts[1]);
    write(dir.path(), &format!("{base}.timeindex"), &parts[2]);
    write(dir.path(), "leader-epoch-checkpoint", &parts[3]);
    let Ok((mut log, _)) =
        keel_storage::Log::open(dir.path(), keel_storage::LogConfig::default(), 0)
    else {
        return;
    };
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        match log.read(offset, 1 << 20, i64::MAX) {
            Ok(r) if !r.bytes.is_empty() => {
                let mut next = offset;
                if let Ok(ranges) = keel_storage::batch::split(&r.bytes) {
                    for range in ranges {
                        if let Ok(h) = keel_storage::batch::check(&r.bytes[range]) {
                            next = next.max(h.last_offset() + 1);
                        }
                    }
                }
                if next <= offset {
                    break;
                }
                offset = next;
            }
            _ => break,
        }
    }
    let _ = log.offset_for_timestamp(0, i64::MAX);
    let _ = log.latest_epoch();
    let _ = log.epoch_end(0);
    let _ = log.close();
}

/// The Raft write-ahead log as a crash left it, replayed.
pub fn raft_wal(data: &[u8]) {
    let (fix_crcs, mut bytes) = split_mode(data);
    if fix_crcs {
        fix::raft_wal(&mut bytes);
    }
    let dir = scratch(false);
    write(dir.path(), "wal", &bytes);
    if let Ok((wal, _)) = keel_raft::wal::Wal::open(dir.path()) {
        let _ = (
            wal.hard_state(),
            wal.first_index_now(),
            wal.last_index_now(),
        );
    }
}

/// Bytes a CQL client sends on one connection: the first byte chooses v4
/// envelopes or v5 frames, and whether lz4 was agreed at STARTUP.
pub fn cql_frame(data: &[u8]) {
    let Some((mode, bytes)) = data.split_first() else {
        return;
    };
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    rt.block_on(keel_cql::server::decode_stream(
        bytes,
        mode & 1 != 0,
        mode & 2 != 0,
    ));
}

/// CQL text, as QUERY and PREPARE carry it.
pub fn cql_text(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keel_cql::exec::parse(text);
    }
}

/// The tables face's files as a crash left them: a commit log segment
/// replayed, and an SSTable opened and read through.
pub fn table_files(data: &[u8]) {
    use keel_table::engine::{commitlog, sstable};
    let (fix_crcs, bytes) = split_mode(data);
    let mut parts = files(&bytes, 2);
    if fix_crcs {
        fix::commit_log(&mut parts[0]);
        fix::sstable(&mut parts[1]);
    }
    let dir = scratch(true);
    let log = commitlog::segment_path(dir.path(), 1);
    std::fs::write(&log, &parts[0]).expect("write a fuzz input file");
    let _ = commitlog::replay(&log);
    std::fs::write(sstable::data_path(dir.path(), 1), &parts[1]).expect("write a fuzz input file");
    if let Ok(t) = sstable::SsTable::open(dir.path(), 1) {
        let t = Arc::new(t);
        let _ = t.may_contain_partition(b"k");
        for cell in t.range(b"", b"").take(10_000) {
            if cell.is_err() {
                break;
            }
        }
    }
}

/// A coordinator's hint file for one replica as a crash left it
/// (`hints/node-N.log`: commit-log records): read back at start, cut at its
/// first torn or corrupt record. Whatever was read back is read back the
/// same from the file as it was cut.
pub fn hints_file(data: &[u8]) {
    use keel_cql::hints::Hints;
    let (fix_crcs, mut bytes) = split_mode(data);
    if fix_crcs {
        fix::commit_log(&mut bytes);
    }
    let dir = scratch(true);
    let hints = dir.path().join("hints");
    std::fs::create_dir_all(&hints).expect("a hints directory");
    std::fs::write(hints.join("node-2.log"), &bytes).expect("write a fuzz input file");
    let window = std::time::Duration::from_secs(3600);
    let Ok(first) = Hints::open(hints.clone(), window) else {
        return;
    };
    let kept = first.pending(2);
    drop(first);
    let again = Hints::open(hints, window).expect("a hints file as it was cut reopens");
    assert_eq!(
        again.pending(2),
        kept,
        "a cut hints file reads back the same"
    );
}

/// An etcd snapshot file (`etcdctl snapshot save`'s output, what
/// `keel snapshot restore` reads).
pub fn etcd_snapshot(data: &[u8]) {
    let (fix_digest, mut bytes) = split_mode(data);
    if fix_digest {
        fix::etcd_snapshot(&mut bytes);
    }
    let _ = keel_etcd::backup::decode(&bytes);
}

/// Recomputes the checksums of files in each format, so a fuzzer's input
/// reaches what the checks guard. Each walks the records by their own
/// lengths and stops where they no longer fit.
pub mod fix {
    /// Kafka record batches: CRC-32C from the attributes to the end.
    pub fn kafka_batches(b: &mut [u8]) {
        let mut at = 0usize;
        while let Some(len) = b.get(at + 8..at + 12) {
            let len = i32::from_be_bytes(len.try_into().expect("4 bytes"));
            let Ok(len) = usize::try_from(len) else {
                return;
            };
            let end = at + 12 + len;
            if len < 9 || end > b.len() {
                return;
            }
            let crc = crc32c::crc32c(&b[at + 21..end]);
            b[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
            at = end;
        }
    }

    /// Raft WAL records: `len u32 LE | crc32c u32 LE (kind and body) | kind | body`.
    pub fn raft_wal(b: &mut [u8]) {
        let mut at = 0usize;
        while let Some(len) = b.get(at..at + 4) {
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let end = at + 8 + len;
            if len == 0 || end > b.len() {
                return;
            }
            let crc = crc32c::crc32c(&b[at + 8..end]);
            b[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            at = end;
        }
    }

    /// Table commit log records: `len u32 BE | crc32c u32 BE (payload) | payload`.
    pub fn commit_log(b: &mut [u8]) {
        let mut at = 0usize;
        while let Some(len) = b.get(at..at + 4) {
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            let end = at + 8 + len;
            if len == 0 || end > b.len() {
                return;
            }
            let crc = crc32c::crc32c(&b[at + 8..end]);
            b[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
            at = end;
        }
    }

    /// An SSTable's footer CRC of its index and bloom filter (48-byte
    /// footer: index offset, index length, bloom offset, bloom length,
    /// cells, crc, magic).
    pub fn sstable(b: &mut [u8]) {
        let Some(footer_at) = b.len().checked_sub(48) else {
            return;
        };
        let at = |i: usize| {
            u64::from_be_bytes(b[footer_at + i..footer_at + i + 8].try_into().expect("8"))
        };
        let (index_off, index_len, bloom_len) = (at(0), at(8), at(24));
        let Some(end) = index_off
            .checked_add(index_len)
            .and_then(|e| e.checked_add(bloom_len))
        else {
            return;
        };
        if end as usize != footer_at || index_off as usize > footer_at {
            return;
        }
        let crc = crc32c::crc32c(&b[index_off as usize..footer_at]);
        b[footer_at + 40..footer_at + 44].copy_from_slice(&crc.to_be_bytes());
    }

    /// An etcd snapshot: its trailing SHA-256 over the body, the body padded
    /// to whole 512-byte blocks first.
    pub fn etcd_snapshot(b: &mut Vec<u8>) {
        use keel_etcd::backup::{digest, BLOCK};
        b.resize(b.len().div_ceil(BLOCK) * BLOCK, 0);
        let d = digest(b);
        b.extend_from_slice(&d);
    }
}

/// An etcd request as a client sends it: the first byte picks the message
/// type and the encoding; JSON as etcd's gateway takes it (pbjson's serde,
/// one value, what follows ignored as the gateway does), protobuf as gRPC
/// carries it (prost). What decodes is encoded again both ways.
pub fn etcd_messages(data: &[u8]) {
    use keel_etcd::pb::{etcdserverpb as pb, keelpb, v3electionpb, v3lockpb};
    let Some((pick, bytes)) = data.split_first() else {
        return;
    };
    fn one<T>(json: bool, bytes: &[u8])
    where
        T: prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned,
    {
        let decoded = if json {
            serde_json::Deserializer::from_slice(bytes)
                .into_iter::<T>()
                .next()
                .and_then(Result::ok)
        } else {
            T::decode(bytes).ok()
        };
        if let Some(m) = decoded {
            let _ = serde_json::to_vec(&m);
            let _ = m.encode_to_vec();
        }
    }
    let json = pick & 0x80 != 0;
    match pick & 0x7f {
        0 => one::<pb::RangeRequest>(json, bytes),
        1 => one::<pb::PutRequest>(json, bytes),
        2 => one::<pb::DeleteRangeRequest>(json, bytes),
        3 => one::<pb::TxnRequest>(json, bytes),
        4 => one::<pb::CompactionRequest>(json, bytes),
        5 => one::<pb::LeaseGrantRequest>(json, bytes),
        6 => one::<pb::LeaseRevokeRequest>(json, bytes),
        7 => one::<pb::LeaseKeepAliveRequest>(json, bytes),
        8 => one::<pb::LeaseTimeToLiveRequest>(json, bytes),
        9 => one::<pb::WatchRequest>(json, bytes),
        10 => one::<pb::AuthenticateRequest>(json, bytes),
        11 => one::<pb::AuthUserAddRequest>(json, bytes),
        12 => one::<pb::AuthRoleGrantPermissionRequest>(json, bytes),
        13 => one::<pb::MemberAddRequest>(json, bytes),
        14 => one::<v3lockpb::LockRequest>(json, bytes),
        15 => one::<v3electionpb::CampaignRequest>(json, bytes),
        _ => {
            let _ = <keelpb::InternalRequest as prost::Message>::decode(bytes);
        }
    }
}

/// One etcd store for the whole fuzzing process (in /dev/shm where there
/// is one), its backend bounded by a 64 MiB quota (the NOSPACE alarm
/// refuses writes past it).
fn etcd_store() -> &'static Mutex<(keel_etcd::store::Store, u64, tempfile::TempDir)> {
    static S: OnceLock<Mutex<(keel_etcd::store::Store, u64, tempfile::TempDir)>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = scratch(true);
        let config = keel_etcd::store::StoreConfig {
            cluster_id: 1,
            initial_members: vec![keel_etcd::pb::keelpb::MemberInfo {
                id: 1,
                name: "fuzz".into(),
                ..Default::default()
            }],
            quota_bytes: 64 << 20,
            lease_ttl_min: 1,
            persist_interval: std::time::Duration::from_millis(100),
            token_ttl: std::time::Duration::from_secs(300),
            seed: None,
        };
        let store = keel_etcd::store::Store::open(dir.path(), config, Default::default())
            .expect("an etcd store");
        Mutex::new((store, 1, dir))
    })
}

/// A Raft log entry as the etcd store applies it on every member: whatever
/// a committed entry holds (from a leader, or read back from the WAL), the
/// apply must answer it (an error is an answer) and never panic, since a
/// panic there would stop every replica at the same entry. Entries that do
/// not decode are skipped: the store stops the node on them by design
/// (`fatal`), as a committed entry that does not decode means corruption
/// the CRCs did not catch.
pub fn etcd_apply(data: &[u8]) {
    use keel_raft::StateMachine;
    if <keel_etcd::pb::keelpb::InternalRequest as prost::Message>::decode(data).is_err() {
        return;
    }
    let mut s = etcd_store().lock().unwrap_or_else(|e| e.into_inner());
    let (store, index, _) = &mut *s;
    *index += 1;
    let _ = store.apply(*index, 1, data);
}
