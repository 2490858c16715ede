//! `keel bench kv`: load on any etcd v3 API server, with the same client for
//! Keel and for etcd, in the manner of etcd's own `benchmark put|range|txn-put`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_etcd::pb::etcdserverpb::kv_client::KvClient;
use keel_etcd::pb::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A request's token, when the load runs as a user.
#[derive(Clone)]
struct Token(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

type Kv = KvClient<InterceptedService<Channel, Token>>;

use crate::bench::Latencies;

#[derive(clap::Args, Clone)]
pub struct KvArgs {
    /// etcd API endpoints, comma separated; connections are spread over them.
    #[arg(long, default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// What each request does: put, range (linearizable get), range-serializable, txn (CAS put).
    #[arg(long, default_value = "put", value_parser = ["put", "range", "range-serializable", "txn"])]
    op: String,
    /// Authenticate as NAME:PASSWORD once, and send every request with the
    /// token (as etcd's benchmark --user).
    #[arg(long)]
    user: Option<String>,
    /// TLS: the CA that signs the servers' certificates (etcdctl's --cacert).
    /// With --cert and --key, as `keel dev --tls` serves.
    #[arg(long, requires_all = ["cert", "key"])]
    cacert: Option<std::path::PathBuf>,
    /// TLS: the client certificate to present.
    #[arg(long, requires = "cacert")]
    cert: Option<std::path::PathBuf>,
    /// TLS: the key of --cert.
    #[arg(long, requires = "cacert")]
    key: Option<std::path::PathBuf>,
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
    let tls = match (&a.cacert, &a.cert, &a.key) {
        (Some(ca), Some(cert), Some(key)) => Some(
            keel_tls::TlsFiles {
                cert_file: cert.clone(),
                key_file: key.clone(),
                trusted_ca_file: Some(ca.clone()),
                client_cert_auth: false,
            }
            .client_config(&[b"h2"])
            .context("TLS")?,
        ),
        _ => None,
    };
    let mut channels = Vec::new();
    for i in 0..a.conns {
        let ep = &endpoints[i as usize % endpoints.len()];
        let addr = ep.split("://").last().unwrap_or(ep);
        let ch: Channel = match &tls {
            Some(config) => keel_etcd::server::tls_channel(config.clone(), addr)
                .map_err(|e| anyhow::anyhow!("endpoint {ep}: {e}"))?,
            None => Endpoint::from_shared(format!("http://{addr}"))
                .with_context(|| format!("endpoint {ep}"))?
                .connect()
                .await
                .with_context(|| {
                    format!("connect to {ep} (is an etcd API server running there?)")
                })?,
        };
        channels.push(ch);
    }
    let token = match &a.user {
        None => Token(None),
        Some(user) => {
            let (name, password) = user.split_once(':').context("--user is NAME:PASSWORD")?;
            let t = keel_etcd::pb::etcdserverpb::auth_client::AuthClient::new(channels[0].clone())
                .authenticate(keel_etcd::pb::etcdserverpb::AuthenticateRequest {
                    name: name.into(),
                    password: password.into(),
                })
                .await
                .context("authenticate")?
                .into_inner()
                .token;
            Token(Some(t.parse().context("the token is not ASCII")?))
        }
    };
    let client = |ch: &Channel| -> Kv { KvClient::with_interceptor(ch.clone(), token.clone()) };
    let value = vec![b'v'; a.val_size];
    if a.op.starts_with("range") {
        // Reads need data: write the key space once.
        let mut c = client(&channels[0]);
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
        let mut c = client(&channels[w as usize % channels.len()]);
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
