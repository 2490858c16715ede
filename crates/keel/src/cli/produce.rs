//! `keel produce TOPIC`: one record per line of stdin.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::json;

use super::client::{check, st, topic_name, Cluster};
use super::Common;

#[derive(clap::Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line at the first SEP into key and value (no key otherwise).
    #[arg(long, short = 'k', value_name = "SEP")]
    key_separator: Option<String>,
    /// A header on every record, NAME=VALUE; repeat for more.
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Write every record to this partition (by default: by key hash, as the Java
    /// client does, or round-robin without a key).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
}

/// Kafka's murmur2 (`Utils.murmur2`), which the Java client's default
/// partitioner hashes keys with, so keys land where Java producers put them.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

fn compression(name: &str) -> Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("--compression {other:?}: expected none, gzip, snappy, lz4 or zstd"),
    })
}

const BATCH_RECORDS: usize = 1000;
const BATCH_BYTES: usize = 512 << 10;

pub async fn run(a: ProduceArgs, common: &Common) -> Result<()> {
    let acks: i16 = match a.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks {other:?}: expected all, 1 or 0"),
    };
    let codec = compression(&a.compression)?;
    let mut headers = IndexMap::new();
    for h in &a.headers {
        let (k, v) = h
            .split_once('=')
            .ok_or_else(|| anyhow!("--header {h:?}: expected NAME=VALUE"))?;
        headers.insert(st(k), Some(Bytes::from(v.to_string())));
    }
    let mut c = common.connect().await?;
    let t = c.topic(&a.topic).await?;
    let leaders: BTreeMap<i32, i32> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    let count = leaders.len() as i32;
    if let Some(p) = a.partition {
        if !leaders.contains_key(&p) {
            bail!(
                "partition {p} does not exist: topic {:?} has partitions 0..{}",
                a.topic,
                count - 1
            );
        }
    }
    let mut pending: BTreeMap<i32, (Vec<Record>, usize)> = BTreeMap::new();
    let mut produced: BTreeMap<i32, u64> = BTreeMap::new();
    let mut next = 0i32;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("read stdin")?;
        let (key, value) = match &a.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let partition = match (a.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => (murmur2(k) & 0x7fff_ffff) % count,
            (None, None) => {
                next = (next + 1) % count;
                next
            }
        };
        let size = key.as_ref().map_or(0, Bytes::len) + value.len();
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now_ms(),
            key,
            value: Some(Bytes::from(value)),
            headers: headers.clone(),
        };
        let (records, bytes) = pending.entry(partition).or_default();
        records.push(record);
        *bytes += size;
        if records.len() >= BATCH_RECORDS || *bytes >= BATCH_BYTES {
            let (records, _) = pending.remove(&partition).unwrap_or_default();
            send(
                &mut c,
                &a.topic,
                partition,
                leaders[&partition],
                records,
                acks,
                codec,
                &mut produced,
            )
            .await?;
        }
    }
    for (partition, (records, _)) in std::mem::take(&mut pending) {
        send(
            &mut c,
            &a.topic,
            partition,
            leaders[&partition],
            records,
            acks,
            codec,
            &mut produced,
        )
        .await?;
    }
    let total: u64 = produced.values().sum();
    let json = json!({
        "topic": a.topic,
        "records": total,
        "partitions": produced.iter().map(|(p, n)| json!({"partition": p, "records": n})).collect::<Vec<_>>(),
    });
    let mut table = vec![vec!["TOPIC".into(), "PARTITION".into(), "RECORDS".into()]];
    for (p, n) in &produced {
        table.push(vec![a.topic.clone(), p.to_string(), n.to_string()]);
    }
    common.print(&json, &table)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[allow(clippy::too_many_arguments)]
async fn send(
    c: &mut Cluster,
    topic: &str,
    partition: i32,
    leader: i32,
    records: Vec<Record>,
    acks: i16,
    codec: Compression,
    produced: &mut BTreeMap<i32, u64>,
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    // Offsets within a batch are relative: 0, 1, 2, ... The encoder keeps records
    // in one batch while offset - sequence is constant; without a producer id the
    // batch's base sequence must read -1 (none).
    let mut records = records;
    for (i, r) in records.iter_mut().enumerate() {
        r.offset = i as i64;
        r.sequence = i as i32 - 1;
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .context("encode records")?;
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(buf.freeze()))])]);
    if acks == 0 {
        // No response comes for acks=0.
        c.call_oneway_node(leader, &req, 9).await?;
    } else {
        let resp = c.call_node(leader, &req, 9).await?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| anyhow!("no answer for {topic}-{partition}"))?;
        if p.error_code != 0 {
            let msg = p.error_message.as_ref().map(|m| m.to_string());
            check(p.error_code, &format!("produce to {topic}-{partition}")).map_err(
                |e| match msg {
                    Some(m) => anyhow!("{e} ({m})"),
                    None => e,
                },
            )?;
        }
    }
    *produced.entry(partition).or_default() += records.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(super::murmur2(b"21"), -973932308);
        assert_eq!(super::murmur2(b"foobar"), -790332482);
        assert_eq!(super::murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(super::murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            super::murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(super::murmur2(b"abc"), 479470107);
    }
}
