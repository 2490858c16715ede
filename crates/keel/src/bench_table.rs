//! `keel bench table`: inserts, reads or both over the CQL native protocol
//! against any CQL server (Keel's tables face, or a Cassandra where one can
//! run), in the manner of `cassandra-stress write|read|mixed`: prepared
//! statements, each client on its own connection awaiting its request
//! before the next; one run per consistency level named.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cassandra_protocol::compression::Compression;
use cassandra_protocol::consistency::Consistency;
use cassandra_protocol::frame::message_response::ResponseBody;
use cassandra_protocol::frame::message_result::ResResultBody;
use cassandra_protocol::frame::{Envelope, Flags, Version};
use cassandra_protocol::query::{QueryParams, QueryValues};
use cassandra_protocol::types::value::Value;
use cassandra_protocol::types::CBytesShort;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bench::Latencies;

#[derive(clap::Args, Clone)]
pub struct TableArgs {
    /// CQL addresses of the nodes, HOST:PORT[,HOST:PORT...]: clients are
    /// spread over them (each node coordinates its clients' requests).
    #[arg(long, default_value = "127.0.0.1:9042")]
    cql: String,
    /// The bench keyspace's replication factor (SimpleStrategy); each factor
    /// has its own keyspace, keel_bench or keel_bench_rfN.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    replication_factor: u32,
    /// What each request does: insert (one row), select (one row by key),
    /// or mixed (half of each, as cassandra-stress's `mixed
    /// ratio(write=1,read=1)`, each timed on its own; each select reads the
    /// key its client inserted just before).
    #[arg(long, default_value = "insert", value_parser = ["insert", "select", "mixed"])]
    op: String,
    /// The consistency level of every request (ONE, QUORUM, ALL, ...); a
    /// comma-separated list runs the load once per level, one after another.
    #[arg(long, default_value = "ONE")]
    consistency: String,
    /// Requests in all.
    #[arg(long, default_value_t = 50_000)]
    total: u64,
    /// Concurrent clients, each on its own connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    clients: u64,
    /// Bytes per value (a blob column).
    #[arg(long, default_value_t = 100)]
    val_size: usize,
    /// Distinct partition keys written or read.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    key_space: u64,
}

/// The bench keyspace for a replication factor, and the statements that
/// create it and its table.
fn setup(rf: u32) -> (String, [String; 2]) {
    let ks = if rf == 1 {
        "keel_bench".to_string()
    } else {
        format!("keel_bench_rf{rf}")
    };
    let create = [
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"),
        format!("CREATE TABLE IF NOT EXISTS {ks}.kv (k bigint PRIMARY KEY, v blob)"),
    ];
    (ks, create)
}

/// One connection, one request at a time.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn> {
        let sock = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to CQL at {addr}"))?;
        sock.set_nodelay(true)?;
        let mut c = Conn {
            sock,
            buf: Vec::new(),
        };
        match c.call(Envelope::new_req_startup(None, Version::V4)).await? {
            ResponseBody::Ready => Ok(c),
            other => bail!("STARTUP answered {other:?}"),
        }
    }

    async fn call(&mut self, env: Envelope) -> Result<ResponseBody> {
        let bytes = env.encode_with(Compression::None)?;
        self.sock.write_all(&bytes).await?;
        let mut head = [0u8; 9];
        self.sock.read_exact(&mut head).await?;
        let len = i32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        if !(0..=256 << 20).contains(&len) {
            bail!("a reply claims {len} bytes");
        }
        self.buf.clear();
        self.buf.extend_from_slice(&head);
        self.buf.resize(9 + len as usize, 0);
        self.sock.read_exact(&mut self.buf[9..]).await?;
        let parsed = Envelope::from_buffer(&self.buf, Compression::None)
            .map_err(|e| anyhow::anyhow!("bad reply frame: {e}"))?;
        match parsed.envelope.response_body()? {
            ResponseBody::Error(e) => bail!("{:?}: {}", e.ty, e.message),
            body => Ok(body),
        }
    }

    async fn query(&mut self, cql: &str) -> Result<ResponseBody> {
        let params = QueryParams {
            consistency: Consistency::One,
            ..Default::default()
        };
        let env = Envelope::new_req_query(
            cql.to_string(),
            params.consistency,
            None,
            false,
            None,
            None,
            None,
            None,
            None,
            None,
            Flags::empty(),
            Version::V4,
        );
        self.call(env).await
    }

    async fn prepare(&mut self, cql: &str) -> Result<CBytesShort> {
        let env = Envelope::new_req_prepare(cql.to_string(), None, Flags::empty(), Version::V4);
        match self.call(env).await? {
            ResponseBody::Result(ResResultBody::Prepared(p)) => Ok(p.id),
            other => bail!("PREPARE answered {other:?}"),
        }
    }

    async fn execute(
        &mut self,
        id: &CBytesShort,
        cl: Consistency,
        values: Vec<Value>,
    ) -> Result<ResponseBody> {
        let params = QueryParams {
            consistency: cl,
            values: Some(QueryValues::SimpleValues(values)),
            ..Default::default()
        };
        let env = Envelope::new_req_execute(id, None, &params, Flags::empty(), Version::V4);
        self.call(env).await
    }
}

fn level(name: &str) -> Result<Consistency> {
    Ok(match name.trim().to_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        other => bail!("--consistency {other}: not a consistency level (ONE, QUORUM, ALL, ...)"),
    })
}

/// Each kind of request's latencies (with a count of 1 each).
#[derive(Default)]
struct Timings {
    insert: Vec<(Duration, u64)>,
    select: Vec<(Duration, u64)>,
    rows: u64,
}

pub async fn run(a: TableArgs) -> Result<()> {
    let levels = a
        .consistency
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Ok((s.trim().to_uppercase(), level(s)?)))
        .collect::<Result<Vec<_>>>()?;
    if levels.is_empty() {
        bail!("--consistency names no level");
    }
    let nodes: Vec<String> = a
        .cql
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if nodes.is_empty() {
        bail!("--cql names no node");
    }
    let (ks, create) = setup(a.replication_factor);
    let mut first = Conn::open(&nodes[0]).await?;
    for s in &create {
        first.query(s).await.with_context(|| s.clone())?;
    }
    let insert = format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)");
    let select = format!("SELECT v FROM {ks}.kv WHERE k = ?");
    // Schema agreement, as drivers wait for it after DDL: every node must
    // know the table before its clients prepare statements on it.
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &nodes {
        let mut c = Conn::open(n).await?;
        loop {
            match c.prepare(&insert).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("{n} does not know {ks}.kv yet: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.context(format!("{n} never learned {ks}.kv"))),
            }
        }
    }
    for (name, cl) in levels {
        let t = load(&a, &nodes, &insert, &select, cl).await?;
        report(&a, &name, t)?;
    }
    Ok(())
}

/// One run of the load at one level.
async fn load(
    a: &TableArgs,
    nodes: &[String],
    insert: &str,
    select: &str,
    cl: Consistency,
) -> Result<(Duration, Timings)> {
    let value = vec![b'v'; a.val_size];
    let per = a.total / a.clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.clients {
        let a = a.clone();
        let value = value.clone();
        let node = nodes[w as usize % nodes.len()].clone();
        let (insert, select) = (insert.to_string(), select.to_string());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&node).await?;
            let ins = c.prepare(&insert).await?;
            let sel = c.prepare(&select).await?;
            let mut t = Timings::default();
            for n in 0..per {
                let i = w * per + n;
                let write = match a.op.as_str() {
                    "insert" => true,
                    "select" => false,
                    _ => i.is_multiple_of(2),
                };
                // Mixed: each select reads the key its client wrote just
                // before, so reads find rows, some still on their way to
                // the other replicas.
                let i = if a.op == "mixed" { i & !1 } else { i };
                let k = (i.wrapping_mul(2_654_435_761) % a.key_space) as i64;
                let mut values = vec![Value::Some(k.to_be_bytes().to_vec())];
                if write {
                    values.push(Value::Some(value.clone()));
                }
                let start = Instant::now();
                let reply = c
                    .execute(if write { &ins } else { &sel }, cl, values)
                    .await?;
                let took = (start.elapsed(), 1);
                if write {
                    t.insert.push(took);
                } else {
                    t.select.push(took);
                }
                if let ResponseBody::Result(ResResultBody::Rows(r)) = reply {
                    t.rows += r.rows_count as u64;
                }
            }
            anyhow::Ok(t)
        }));
    }
    let mut all = Timings::default();
    for task in tasks {
        let t = task.await??;
        all.insert.extend(t.insert);
        all.select.extend(t.select);
        all.rows += t.rows;
    }
    Ok((started.elapsed(), all))
}

fn report(a: &TableArgs, level: &str, (elapsed, t): (Duration, Timings)) -> Result<()> {
    let done = (t.insert.len() + t.select.len()) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "table {} at {} (replication factor {}): {} requests in {:.2} s from {} clients to {}{}",
        a.op,
        level,
        a.replication_factor,
        done,
        elapsed.as_secs_f64(),
        a.clients,
        a.cql,
        if t.select.is_empty() {
            String::new()
        } else {
            format!(" ({} rows found)", t.rows)
        }
    );
    println!(
        "  {:.0} req/s in all   (8 B keys, {} B values)",
        done / elapsed.as_secs_f64(),
        a.val_size
    );
    for (what, mut lat) in [("insert", t.insert), ("select", t.select)] {
        if lat.is_empty() {
            continue;
        }
        let n = lat.len() as f64;
        lat.sort_unstable();
        let l = Latencies(lat);
        println!(
            "  {what}: {:.0} req/s   latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            n / elapsed.as_secs_f64(),
            ms(l.percentile(0.5)),
            ms(l.percentile(0.9)),
            ms(l.percentile(0.99)),
            ms(l.percentile(1.0)),
        );
    }
    Ok(())
}
