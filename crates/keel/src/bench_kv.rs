//! `keel bench kv`: load on any etcd v3 API server, with the same client for
//! Keel and for etcd, in the manner of etcd's own `benchmark put|range|txn-put`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_etcd::pb::etcdserverpb::kv_client::KvClient;
use keel_etcd::pb::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::bench::Latencies;

#[derive(clap::Args, Clone)]
pub struct KvArgs {
    /// etcd API endpoints, comma separated; connections are spread over them.
    #[arg(long, default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// What each request does: put, range (linearizable get), range-serializable, txn (CAS put).
    #[arg(long, default_value = "put", value_parser = ["put", "range", "range-serializable", "txn"])]
    op: String,
    /// Requests in all.
    #[arg(long, default_value_t = 20_000)]
    total: u64,
    /// Concurrent clients, each awaiting its request before sending the next.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    clients: u64,
    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    conns: u64,
    /// Bytes per key.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Distinct keys written or read.
    #[arg(long, default_value_t = 10_000)]
    key_space: u64,
}

fn key(i: u64, size: usize) -> Vec<u8> {
    let mut k = format!("{i:0width$}", width = size.max(1)).into_bytes();
    k.truncate(size.max(1));
    k
}

pub async fn run(a: KvArgs) -> Result<()> {
    let endpoints: Vec<String> = a
        .endpoints
        .split(',')
        .map(|e| e.trim().to_string())
        .collect();
    let mut channels = Vec::new();
    for i in 0..a.conns {
        let ep = &endpoints[i as usize % endpoints.len()];
        let url = if ep.contains("://") {
            ep.clone()
        } else {
            format!("http://{ep}")
        };
        let ch: Channel = Endpoint::from_shared(url.clone())
            .with_context(|| format!("endpoint {ep}"))?
            .connect()
            .await
            .with_context(|| format!("connect to {ep} (is an etcd API server running there?)"))?;
        channels.push(ch);
    }
    let value = vec![b'v'; a.val_size];
    if a.op.starts_with("range") {
        // Reads need data: write the key space once.
        let mut c = KvClient::new(channels[0].clone());
        for i in 0..a.key_space.min(a.total) {
            c.put(PutRequest {
                key: key(i, a.key_size),
                value: value.clone(),
                ..Default::default()
            })
            .await?;
        }
    }
    let per = a.total / a.clients;
    if per == 0 {
        bail!("--total must be at least --clients");
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.clients {
        let mut c = KvClient::new(channels[w as usize % channels.len()].clone());
        let a = a.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            let mut errors = 0u64;
            for n in 0..per {
                let k = key(
                    (w * per + n).wrapping_mul(2_654_435_761) % a.key_space,
                    a.key_size,
                );
                let t = Instant::now();
                let r = match a.op.as_str() {
                    "put" => c
                        .put(PutRequest {
                            key: k,
                            value: value.clone(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    "range" | "range-serializable" => c
                        .range(RangeRequest {
                            key: k,
                            serializable: a.op == "range-serializable",
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    _ => c
                        .txn(TxnRequest {
                            compare: vec![Compare {
                                result: compare::CompareResult::Greater as i32,
                                target: compare::CompareTarget::Mod as i32,
                                key: k.clone(),
                                range_end: vec![],
                                target_union: Some(compare::TargetUnion::ModRevision(-1)),
                            }],
                            success: vec![RequestOp {
                                request: Some(request_op::Request::RequestPut(PutRequest {
                                    key: k,
                                    value: value.clone(),
                                    ..Default::default()
                                })),
                            }],
                            failure: vec![],
                        })
                        .await
                        .map(|_| ()),
                };
                match r {
                    Ok(()) => lat.push((t.elapsed(), 1)),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();
    let l = Latencies(lat);
    let done = l.0.len() as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "kv {}: {} requests ({} errors) in {:.2} s from {} clients on {} connections to {}",
        a.op,
        done,
        errors,
        elapsed.as_secs_f64(),
        a.clients,
        a.conns,
        a.endpoints
    );
    println!(
        "  {:.0} req/s   latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms   ({} B keys, {} B values)",
        done / elapsed.as_secs_f64(),
        ms(l.percentile(0.5)),
        ms(l.percentile(0.9)),
        ms(l.percentile(0.99)),
        ms(l.percentile(1.0)),
        a.key_size,
        a.val_size
    );
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}
