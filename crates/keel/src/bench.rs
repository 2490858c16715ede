//! `keel bench`: produce and consume load against a running node, like Kafka's
//! kafka-producer-perf-test and kafka-consumer-perf-test. Results go to stdout;
//! a progress line goes to stderr every second.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use keel_kafka::client::{check, Connection};
use keel_storage::batch::{self, BatchHeader};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Produce fixed-size records as fast as the node acknowledges them.
    Produce(ProduceArgs),
    /// Read a topic from the start as fast as the node serves it.
    Consume(ConsumeArgs),
    /// Time a consumer group to stabilise (JoinGroup + SyncGroup for every member),
    /// then the cost of OffsetCommit.
    Group(GroupArgs),
    /// The log cleaner's throughput, in process: write a keyed log, then compact
    /// it until nothing is due.
    Compact(crate::bench_compact::CompactArgs),
    /// Puts, ranges or txns against any etcd v3 API server (Keel's or etcd's).
    Kv(crate::bench_kv::KvArgs),
    /// Inserts or reads over CQL with prepared statements, against any CQL server.
    Table(crate::bench_table::TableArgs),
}

#[derive(clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Members of the group, each on its own connection.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) members: u32,
    /// Groups to form, one after another; stabilise times are reported over all.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) rounds: u32,
    /// OffsetCommits to send, split over --concurrency connections, each awaiting
    /// its commit before sending the next.
    #[arg(long, default_value_t = 2000)]
    pub(crate) commits: u64,
}

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Bootstrap address of the node.
    #[arg(long, env = "KEEL_BROKERS", default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    #[arg(long, default_value = "keel-bench")]
    pub(crate) topic: String,
    /// Partitions of the topic (created if it does not exist).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub(crate) partitions: i32,
    /// Connections, each with its own share of the partitions.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) concurrency: u32,
    /// Create the topic with these replicas for every partition, the first
    /// the leader (the broker --brokers names), e.g. `1,2,3` on `keel dev
    /// --nodes 3`: replicated produce measured against one leader. By
    /// default every partition lives on the node --brokers names alone.
    #[arg(long, value_delimiter = ',')]
    pub(crate) replicas: Vec<i32>,
}

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    record_size: u32,
    /// all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Bytes of records per batch (the producer's batch.size).
    #[arg(long, default_value_t = 256 * 1024)]
    batch_bytes: u32,
    /// Produce requests in flight per connection (max.in.flight.requests.per.connection).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=128))]
    in_flight: u32,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Records to read; by default everything up to the end when the run starts.
    #[arg(long)]
    records: Option<u64>,
    /// Bytes per partition per fetch.
    #[arg(long, default_value_t = 4 << 20)]
    fetch_bytes: i32,
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Produce(a) => produce(a).await,
        BenchCommand::Consume(a) => consume(a).await,
        BenchCommand::Group(a) => crate::bench_group::run(a).await,
        BenchCommand::Kv(a) => crate::bench_kv::run(a).await,
        BenchCommand::Table(a) => crate::bench_table::run(a).await,
        BenchCommand::Compact(a) => {
            tokio::task::spawn_blocking(move || crate::bench_compact::run(a)).await?
        }
    }
}

fn name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// The broker id of the node --brokers names, when it is one of several
/// (None on a single node, or when the address matches no broker).
async fn measured_broker(conn: &Connection, brokers: &str) -> Result<Option<i32>> {
    let mut req = MetadataRequest::default();
    req.topics = Some(Vec::new());
    let resp = conn
        .call(&req, 12)
        .await
        .context("ask for the cluster's brokers")?;
    if resp.brokers.len() <= 1 {
        return Ok(None);
    }
    let first = brokers.split(',').next().unwrap_or_default();
    Ok(resp
        .brokers
        .iter()
        .find(|b| format!("{}:{}", b.host.as_str(), b.port) == first)
        .map(|b| b.node_id.0))
}

pub(crate) async fn ensure_topic(c: &Common) -> Result<()> {
    let conn = Connection::connect(&c.brokers).await?;
    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = 30_000;
    // On a cluster, without --replicas, every partition lives on the node
    // being measured alone, as on a single node: the benchmark sends all
    // its requests to that one node.
    let replicas = match (
        c.replicas.is_empty(),
        measured_broker(&conn, &c.brokers).await?,
    ) {
        (true, Some(me)) => vec![me],
        _ => c.replicas.clone(),
    };
    let topic = if replicas.is_empty() {
        CreatableTopic::default()
            .with_num_partitions(c.partitions)
            .with_replication_factor(-1)
    } else {
        use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
        CreatableTopic::default()
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                (0..c.partitions)
                    .map(|p| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(p)
                            .with_broker_ids(replicas.iter().map(|r| BrokerId(*r)).collect())
                    })
                    .collect(),
            )
    };
    req.topics = vec![topic.with_name(name(&c.topic))];
    let resp = conn.call(&req, 5).await?;
    let r = &resp.topics[0];
    if r.error_code != 0 && r.error_code != ResponseError::TopicAlreadyExists.code() {
        check(r.error_code, &format!("create topic {}", c.topic))?;
    }
    Ok(())
}

fn partitions_of(worker: u32, c: &Common) -> Vec<i32> {
    let mine: Vec<i32> = (0..c.partitions)
        .filter(|p| (*p as u32) % c.concurrency == worker % c.concurrency)
        .collect();
    if mine.is_empty() {
        vec![(worker as i32) % c.partitions]
    } else {
        mine
    }
}

fn progress(
    counter: Arc<AtomicU64>,
    total: u64,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let n = counter.load(Ordering::Relaxed);
            eprintln!(
                "  {what} {n}/{total} records, {:.0} records/s",
                n as f64 / start.elapsed().as_secs_f64()
            );
        }
    })
}

/// Latencies of requests, each weighing as many records as it carried.
pub(crate) struct Latencies(pub(crate) Vec<(Duration, u64)>);

impl Latencies {
    pub(crate) fn percentile(&self, q: f64) -> Duration {
        let total: u64 = self.0.iter().map(|(_, n)| n).sum();
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (d, n) in &self.0 {
            seen += n;
            if seen >= want {
                return *d;
            }
        }
        self.0.last().map(|(d, _)| *d).unwrap_or_default()
    }
}

async fn produce(a: ProduceArgs) -> Result<()> {
    let acks: i16 = match a.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks {other}: expected all, 1 or 0"),
    };
    ensure_topic(&a.common).await?;
    let per_batch = (a.batch_bytes / a.record_size).max(1) as u64;
    let value = vec![b'k'; a.record_size as usize];
    let sent = Arc::new(AtomicU64::new(0));
    let ticker = progress(sent.clone(), a.records, "produced");
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.common.concurrency {
        let share = a.records / u64::from(a.common.concurrency)
            + u64::from(u64::from(w) < a.records % u64::from(a.common.concurrency));
        let parts = partitions_of(w, &a.common);
        let c = a.common.clone();
        let value = value.clone();
        let sent = sent.clone();
        let in_flight = a.in_flight as usize;
        workers.push(tokio::spawn(async move {
            let conn = Connection::connect(&c.brokers).await?;
            let batch_of = |n: u64| -> Bytes {
                let recs: Vec<batch::KeyValue> =
                    (0..n).map(|_| (None, Some(value.as_slice()))).collect();
                batch::build(0, &recs).into()
            };
            let full = batch_of(per_batch);
            let mut lat = Vec::new();
            let mut queue = VecDeque::new();
            let mut left = share;
            let mut i = 0usize;
            while left > 0 || !queue.is_empty() {
                if left > 0 && queue.len() < in_flight {
                    let n = left.min(per_batch);
                    let records = if n == per_batch {
                        full.clone()
                    } else {
                        batch_of(n)
                    };
                    let mut req = ProduceRequest::default();
                    req.acks = acks;
                    req.timeout_ms = 30_000;
                    let p = parts[i % parts.len()];
                    i += 1;
                    req.topic_data = vec![TopicProduceData::default()
                        .with_name(name(&c.topic))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(records))])];
                    left -= n;
                    if acks == 0 {
                        conn.send_oneway(&req, 7).await?;
                        sent.fetch_add(n, Ordering::Relaxed);
                    } else {
                        queue.push_back((conn.send(&req, 7).await?, Instant::now(), n));
                    }
                    continue;
                }
                let (pending, at, n) = queue.pop_front().expect("queue is not empty");
                let resp = pending.recv().await?;
                for t in &resp.responses {
                    for p in &t.partition_responses {
                        check(p.error_code, "produce")?;
                    }
                }
                lat.push((at.elapsed(), n));
                sent.fetch_add(n, Ordering::Relaxed);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    let elapsed = start.elapsed();
    ticker.abort();
    all.sort_by_key(|(d, _)| *d);
    let lat = Latencies(all);
    let secs = elapsed.as_secs_f64();
    let mib = a.records as f64 * f64::from(a.record_size) / (1024.0 * 1024.0);
    println!(
        "produce: {} records of {} B, acks={}, {} partitions, {} connections x {} in flight, {} records per batch",
        a.records, a.record_size, a.acks, a.common.partitions, a.common.concurrency, a.in_flight, per_batch
    );
    let mut rows = vec![
        vec!["RESULT".to_string(), "VALUE".to_string()],
        vec!["elapsed".into(), format!("{secs:.2} s")],
        vec![
            "records/s".into(),
            format!("{:.0}", a.records as f64 / secs),
        ],
        vec!["MiB/s".into(), format!("{:.1}", mib / secs)],
    ];
    if acks != 0 {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        for (name, q) in [
            ("latency p50", 0.50),
            ("latency p99", 0.99),
            ("latency p999", 0.999),
            ("latency max", 1.0),
        ] {
            rows.push(vec![name.into(), ms(lat.percentile(q))]);
        }
    } else {
        rows.push(vec![
            "latency".into(),
            "n/a (acks=0 gets no response)".into(),
        ]);
    }
    print!("{}", crate::cli::render(&rows));
    Ok(())
}

async fn high_watermarks(c: &Common) -> Result<Vec<i64>> {
    let conn = Connection::connect(&c.brokers).await?;
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![ListOffsetsTopic::default()
        .with_name(name(&c.topic))
        .with_partitions(
            (0..c.partitions)
                .map(|p| {
                    ListOffsetsPartition::default()
                        .with_partition_index(p)
                        .with_timestamp(-1)
                })
                .collect(),
        )];
    let resp = conn.call(&req, 5).await?;
    let mut out = vec![0; c.partitions as usize];
    for p in &resp.topics[0].partitions {
        check(p.error_code, "list offsets")?;
        out[p.partition_index as usize] = p.offset;
    }
    Ok(out)
}

async fn consume(a: ConsumeArgs) -> Result<()> {
    let hws = high_watermarks(&a.common)
        .await
        .context("read the topic's end offsets (does it exist? run `keel bench produce` first)")?;
    let available: i64 = hws.iter().sum();
    let target = a.records.unwrap_or(available as u64);
    if target == 0 {
        bail!(
            "topic {} is empty: run `keel bench produce` first",
            a.common.topic
        );
    }
    let got = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let ticker = progress(got.clone(), target, "consumed");
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.common.concurrency.min(a.common.partitions as u32) {
        let parts = partitions_of(w, &a.common);
        let c = a.common.clone();
        let (got, bytes) = (got.clone(), bytes.clone());
        let ends: Vec<i64> = parts.iter().map(|p| hws[*p as usize]).collect();
        let fetch_bytes = a.fetch_bytes;
        workers.push(tokio::spawn(async move {
            let conn = Connection::connect(&c.brokers).await?;
            let mut offsets = vec![0i64; parts.len()];
            while got.load(Ordering::Relaxed) < target
                && offsets.iter().zip(&ends).any(|(o, e)| o < e)
            {
                let mut req = FetchRequest::default();
                req.replica_id = BrokerId(-1);
                req.max_wait_ms = 100;
                req.min_bytes = 1;
                req.max_bytes = i32::MAX;
                req.topics = vec![FetchTopic::default()
                    .with_topic(name(&c.topic))
                    .with_partitions(
                        parts
                            .iter()
                            .zip(&offsets)
                            .map(|(p, o)| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(*o)
                                    .with_partition_max_bytes(fetch_bytes)
                            })
                            .collect(),
                    )];
                let resp = conn.call(&req, 11).await?;
                for t in &resp.responses {
                    for pd in &t.partitions {
                        check(pd.error_code, "fetch")?;
                        let i = parts
                            .iter()
                            .position(|p| *p == pd.partition_index)
                            .context("fetch answered an unasked partition")?;
                        let recs = pd.records.as_deref().unwrap_or(&[]);
                        let mut at = 0;
                        while at + batch::HEADER_BYTES <= recs.len() {
                            let h = BatchHeader::parse(&recs[at..])?;
                            if at + h.total_bytes() > recs.len() {
                                break;
                            }
                            offsets[i] = h.last_offset() + 1;
                            got.fetch_add(h.records_count as u64, Ordering::Relaxed);
                            at += h.total_bytes();
                        }
                        bytes.fetch_add(at as u64, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    ticker.abort();
    let n = got.load(Ordering::Relaxed);
    let mib = bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
    println!(
        "consume: {n} records from {} partitions over {} connections",
        a.common.partitions,
        a.common.concurrency.min(a.common.partitions as u32)
    );
    let rows = vec![
        vec!["RESULT".to_string(), "VALUE".to_string()],
        vec!["elapsed".into(), format!("{secs:.2} s")],
        vec!["records/s".into(), format!("{:.0}", n as f64 / secs)],
        vec![
            "MiB/s".into(),
            format!("{:.1} (batch bytes on the wire)", mib / secs),
        ],
    ];
    print!("{}", crate::cli::render(&rows));
    Ok(())
}
