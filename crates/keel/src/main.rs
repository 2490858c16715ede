//! `keel`: the node and its tools in one binary.

mod admin;
mod bench;
mod bench_compact;
mod bench_group;
mod bench_kv;
mod bench_table;
mod cli;
mod cluster;
mod config;
mod dev_tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use keel_broker::{Broker, BrokerConfig, SystemClock};
use keel_kafka::handlers::{Advertised, Handler};
use keel_kafka::ServerConfig;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "Keel: Kafka's wire protocol on a replicated log, the etcd v3 API on a Raft quorum, \
             and CQL tables with tunable consistency, in one binary",
    long_about = "Keel: Kafka's wire protocol on a replicated, CRC-checked log (kcat, librdkafka, \
                  kafka-python, KafkaJS work unchanged), the etcd v3 API on a Raft quorum (etcdctl, \
                  etcd's clients and its JSON gateway), and Cassandra's CQL on a leaderless table \
                  store with ONE/QUORUM/ALL (cqlsh, Cassandra's drivers), in one binary.\n\n\
                  Start one node with `keel dev`, three with `keel dev --nodes 3`, a node of a real \
                  cluster with `keel start`; the other commands are the operator's tools."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node with embedded defaults (data in ./keel-data, Kafka on 127.0.0.1:9092,
    /// etcd on 127.0.0.1:2379, CQL on 127.0.0.1:9042, admin on 127.0.0.1:9644);
    /// `--nodes 3` runs a local three-node cluster instead.
    Dev(DevArgs),
    /// Run one node of a cluster (flags modelled on etcd's: --node-id,
    /// --initial-cluster ...). Every flag is also a KEEL_<FLAG> environment
    /// variable and a key of the --config-file TOML file.
    Start(DevArgs),
    /// Benchmarks against a running node: Kafka produce, consume and consumer
    /// groups, etcd puts/ranges/txns (against Keel or etcd), CQL inserts and
    /// selects (against Keel or any CQL server), and the log cleaner in process.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Create, list, describe, delete and configure topics.
    Topic {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        cmd: cli::TopicCommand,
    },
    /// Produce one record per line of stdin.
    Produce {
        #[command(flatten)]
        common: cli::Common,
        #[command(flatten)]
        args: cli::ProduceArgs,
    },
    /// Print records of a topic.
    Consume {
        #[command(flatten)]
        common: cli::Common,
        #[command(flatten)]
        args: cli::ConsumeArgs,
    },
    /// List, describe, reset and delete consumer groups.
    Group {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        cmd: cli::GroupCommand,
    },
    /// The cluster: brokers, controller, versions.
    Cluster {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        cmd: cli::ClusterCommand,
    },
    /// The tables face's ring: tokens, node states, where a key's replicas are
    /// (nodetool's ring, status and getendpoints), read from --admin.
    Table {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        cmd: cli::TableCommand,
    },
    /// Restore the etcd face from a backup (`etcdctl snapshot save` against Keel).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
}

#[derive(clap::Subcommand)]
enum SnapshotCommand {
    /// Check a backup and stage it in a new data dir; the node started there
    /// (`keel dev` or `keel start`, with the new cluster's --initial-cluster)
    /// begins with the backup's keys, history and leases. Restore the same
    /// file for every member of the new cluster, as with etcd.
    Restore {
        /// The file `etcdctl snapshot save` wrote.
        file: PathBuf,
        /// A new or empty directory for the restored member.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct DevArgs {
    /// Where partition logs and metadata live.
    #[arg(long, default_value = "./keel-data")]
    data_dir: PathBuf,
    /// Address of the Kafka listener.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka_addr: String,
    /// Address of the admin HTTP listener (/metrics, /health); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:9644")]
    admin_addr: String,
    /// Address to advertise in Metadata, if not the listener's own.
    #[arg(long)]
    advertised_addr: Option<String>,
    /// Partitions of auto-created topics (Kafka's num.partitions).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    num_partitions: i32,
    /// Do not create topics on first use (Kafka's auto.create.topics.enable=false).
    #[arg(long)]
    no_auto_create_topics: bool,
    /// Most partitions this node will hold.
    #[arg(long, default_value_t = 4096)]
    partitions_max: usize,
    /// Most open client connections.
    #[arg(long, default_value_t = 1024)]
    connections_max: usize,
    /// Forget an idempotent producer after this many idle milliseconds (Kafka's producer.id.expiration.ms).
    #[arg(long, default_value_t = 86_400_000, value_parser = clap::value_parser!(i64).range(1..))]
    producer_id_expiration_ms: i64,
    /// How often retention, producer expiry and producer snapshots run, in milliseconds
    /// (Kafka's log.retention.check.interval.ms).
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..))]
    retention_check_ms: u64,
    /// How often the log cleaner looks for compacted partitions that are due, in
    /// milliseconds (Kafka's log.cleaner.backoff.ms).
    #[arg(long, default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(10..))]
    log_cleaner_backoff_ms: u64,
    /// Memory for one compaction pass's key map, in bytes, at 32 bytes a key;
    /// a partition with more dirty keys is cleaned over several passes (Kafka's
    /// log.cleaner.dedupe.buffer.size).
    #[arg(long, default_value_t = 128 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 40)))]
    log_cleaner_dedupe_buffer_size: u64,
    /// How long a new consumer group waits for more members before its first
    /// rebalance completes (Kafka's group.initial.rebalance.delay.ms).
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(i64).range(0..=300_000))]
    group_initial_rebalance_delay_ms: i64,
    /// Most members per consumer group (Kafka's group.max.size).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    group_max_size: u64,
    /// How often a member of a KIP-848 consumer group (group.protocol=consumer)
    /// heartbeats (Kafka's group.consumer.heartbeat.interval.ms).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(i32).range(100..=300_000))]
    group_consumer_heartbeat_interval_ms: i32,
    /// A KIP-848 member not heard from for this long is removed from its group
    /// (Kafka's group.consumer.session.timeout.ms).
    #[arg(long, default_value_t = 45_000, value_parser = clap::value_parser!(i32).range(1_000..=1_800_000))]
    group_consumer_session_timeout_ms: i32,
    /// The server-side assignor of a KIP-848 group whose members name none
    /// (the first of Kafka's group.consumer.assignors): uniform or range.
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "range"])]
    group_consumer_assignor: String,
    /// Client quotas (AlterClientQuotas: producer_byte_rate,
    /// consumer_byte_rate, request_percentage) measure each client's rate
    /// over this many windows (Kafka's quota.window.num): a new client may
    /// send this many windows' worth less one before it is throttled.
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u32).range(2..=100))]
    quota_window_num: u32,
    /// The length in seconds of one client quota window (Kafka's
    /// quota.window.size.seconds).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    quota_window_size_seconds: u64,
    /// Committed offsets of a group without members are dropped after this many
    /// minutes (Kafka's offsets.retention.minutes).
    #[arg(long, default_value_t = 10_080, value_parser = clap::value_parser!(i64).range(1..=52_560_000))]
    offsets_retention_minutes: i64,
    /// This node's id: its Raft member id and its Kafka broker id.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    node_id: u64,
    /// This node's rack (Kafka's broker.rack; the tables face's rack):
    /// replicas of a partition go to different racks first. Under
    /// `keel dev --nodes N`, a comma-separated list gives each node its own
    /// (`r1,r2,r1`).
    #[arg(long, default_value = "")]
    rack: String,
    /// This node's datacenter on the tables face's ring (Cassandra's
    /// GossipingPropertyFileSnitch `dc`), for NetworkTopologyStrategy. Under
    /// `keel dev --nodes N`, a comma-separated list gives each node its own
    /// (`dc1,dc1,dc1,dc2,dc2`).
    #[arg(long, default_value = "datacenter1")]
    datacenter: String,
    /// How long into a replica's outage a coordinator keeps the writes it
    /// missed, to send when it is back (Cassandra's max_hint_window, 3 h);
    /// 0 turns hinted handoff off.
    #[arg(long, default_value_t = 3 * 3600 * 1000, value_parser = clap::value_parser!(u64).range(0..=7 * 24 * 3600 * 1000))]
    max_hint_window_ms: u64,
    /// How often this node gossips its heartbeat to a peer on the tables
    /// face (Cassandra: 1 s).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    gossip_interval_ms: u64,
    /// The suspicion (phi) at which the failure detector convicts a silent
    /// node (Cassandra's phi_convict_threshold, 8): higher waits longer
    /// before calling a node down, lower calls it sooner.
    #[arg(long, default_value_t = 8.0, value_parser = phi_threshold)]
    phi_convict_threshold: f64,
    /// Tokens this node takes on the ring when it first joins (Cassandra's
    /// num_tokens); kept across restarts.
    #[arg(long, default_value_t = keel_meta::ring::DEFAULT_NUM_TOKENS as u32, value_parser = clap::value_parser!(u32).range(1..=keel_meta::ring::MAX_NUM_TOKENS as i64))]
    num_tokens: u32,
    /// Which replica serves consumers (Kafka's replica.selector.class):
    /// `leader`, or `rack-aware`, where a leader sends a consumer that names
    /// its rack (client.rack) to an in-sync replica in that rack (KIP-392).
    #[arg(long, default_value = "leader", value_parser = ["leader", "rack-aware"])]
    replica_selector: String,
    /// The controller fences a node it has not heard from for this long, in
    /// milliseconds (Kafka's broker.session.timeout.ms).
    #[arg(long, default_value_t = keel_etcd::cluster::SESSION_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1000..=600_000))]
    broker_session_timeout_ms: u64,
    /// A follower not caught up with its leader for this long leaves the ISR,
    /// in milliseconds (Kafka's replica.lag.time.max.ms).
    #[arg(long, default_value_t = keel_kafka::replication::REPLICA_LAG_TIME_MAX_MS, value_parser = clap::value_parser!(i64).range(100..=3_600_000))]
    replica_lag_time_max_ms: i64,
    /// How often the controller hands partitions back to their preferred
    /// leaders, in milliseconds (Kafka's leader.imbalance.check.interval.seconds,
    /// 300 s).
    #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    leader_imbalance_check_interval_ms: u64,
    /// Address of the etcd v3 gRPC listener.
    #[arg(long, default_value = "127.0.0.1:2379")]
    etcd_addr: String,
    /// Address of the CQL native protocol listener (Cassandra's
    /// native_transport_port); `none` serves no CQL.
    #[arg(long, default_value = "127.0.0.1:9042")]
    cql_addr: String,
    /// When a table write is acknowledged (Cassandra's commitlog_sync):
    /// `batch` after the commit log holding it is fsynced (group commit: one
    /// fsync shared by every write waiting), or `periodic`, at once, with the
    /// log fsynced every --commitlog-sync-period-ms (a machine crash can lose
    /// up to that window of acknowledged writes).
    #[arg(long, default_value = "batch", value_parser = ["batch", "periodic"])]
    commitlog_sync: String,
    /// The `periodic` commit log's fsync interval in milliseconds
    /// (Cassandra's commitlog_sync_period, 10 s).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    commitlog_sync_period_ms: u64,
    /// Address for Raft traffic between nodes.
    #[arg(long, default_value = "127.0.0.1:2380")]
    peer_addr: String,
    /// Every voter of a new cluster: ID=HOST:PORT,... (peer addresses); by
    /// default this node alone.
    #[arg(long, default_value = "")]
    initial_cluster: String,
    /// `new` bootstraps a cluster from --initial-cluster; `existing` joins one that
    /// already added this node (etcdctl member add).
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    initial_cluster_state: String,
    /// Bytes the etcd store may hold before it raises the NOSPACE alarm (etcd's
    /// --quota-backend-bytes).
    #[arg(long, default_value_t = 2 << 30, value_parser = clap::value_parser!(u64).range(1 << 20..))]
    quota_backend_bytes: u64,
    /// Raft election timeout in milliseconds (ticks are 100 ms; etcd's --election-timeout).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(300..=50_000))]
    election_timeout_ms: u64,
    /// How often an idle etcd watch that asked for progress_notify hears the
    /// current revision, in milliseconds (etcd's
    /// --experimental-watch-progress-notify-interval, 10 min; Kubernetes'
    /// watch cache is served better by a few seconds).
    #[arg(long, default_value_t = keel_etcd::server::WATCH_PROGRESS_INTERVAL.as_millis() as u64, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    watch_progress_notify_interval_ms: u64,
    /// TLS on the etcd client port: this node's certificate chain (PEM; etcd's
    /// --cert-file). Needs --key-file.
    #[arg(long, requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The private key of --cert-file (PEM; etcd's --key-file).
    #[arg(long, requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// CAs whose client certificates the etcd client port accepts, and that
    /// sign the other members' certificates (PEM; etcd's --trusted-ca-file).
    #[arg(long, requires = "cert_file")]
    trusted_ca_file: Option<PathBuf>,
    /// Refuse etcd clients without a certificate signed by --trusted-ca-file
    /// (etcd's --client-cert-auth).
    #[arg(long, requires = "trusted_ca_file")]
    client_cert_auth: bool,
    /// TLS on Raft's peer links: this node's certificate chain (PEM; etcd's
    /// --peer-cert-file). Every member needs it. Needs --peer-key-file.
    #[arg(long, requires = "peer_key_file")]
    peer_cert_file: Option<PathBuf>,
    /// The private key of --peer-cert-file (PEM; etcd's --peer-key-file).
    #[arg(long, requires = "peer_cert_file")]
    peer_key_file: Option<PathBuf>,
    /// CAs that sign the other members' peer certificates (PEM; etcd's
    /// --peer-trusted-ca-file).
    #[arg(long, requires = "peer_cert_file")]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peers without a certificate signed by --peer-trusted-ca-file
    /// (etcd's --peer-client-cert-auth).
    #[arg(long, requires = "peer_trusted_ca_file")]
    peer_client_cert_auth: bool,
    /// The etcd face's auth tokens (etcd's --auth-token): `simple` (etcd's
    /// default: kept in memory, known to every member), or
    /// `jwt,pub-key=PATH,priv-key=PATH,sign-method=ES256,ttl=5m` (signed,
    /// checked by any member with the public key; RS256/384/512, ES256/384,
    /// EdDSA; PEM keys, the private one PKCS#8).
    #[arg(long, default_value = "simple", value_parser = parse_auth_token)]
    auth_token: String,
    /// Seconds a simple auth token lives without use (etcd's --auth-token-ttl).
    #[arg(long, default_value_t = keel_etcd::auth::TOKEN_TTL_DEFAULT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400 * 365))]
    auth_token_ttl: u64,
    /// bcrypt's cost for etcd user passwords (etcd's --bcrypt-cost).
    #[arg(long, default_value_t = keel_etcd::auth::BCRYPT_COST_DEFAULT, value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
    /// `keel dev` only: make a throwaway CA and certificates under
    /// DATA_DIR/tls and serve etcd's client and peer ports over mutual TLS;
    /// the etcdctl command that uses them is printed.
    #[arg(long, conflicts_with_all = ["cert_file", "peer_cert_file"])]
    tls: bool,
    /// `keel dev` only: start this many local nodes as separate processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// How the node writes its log lines to stderr: `text` for people, or
    /// `json`, one object per line for log shippers. Which lines: RUST_LOG,
    /// e.g. `RUST_LOG=info,keel_raft=debug` (tracing's EnvFilter syntax).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Read settings from this TOML file: each key a flag's name without its
    /// dashes (`data-dir = "/var/lib/keel"`); flags and KEEL_* variables
    /// override it, and an unknown key is an error.
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Print the effective settings, each with where it came from (flag,
    /// environment, file, default), as a config file, and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

impl DevArgs {
    /// The etcd client port's TLS files, if TLS was asked for.
    fn client_tls(&self) -> Option<keel_tls::TlsFiles> {
        tls_files(
            &self.cert_file,
            &self.key_file,
            &self.trusted_ca_file,
            self.client_cert_auth,
        )
    }

    /// The peer links' TLS files, if TLS was asked for.
    fn peer_tls(&self) -> Option<keel_tls::TlsFiles> {
        tls_files(
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
        )
    }

    /// The same TLS and auth flags, for a child `keel start`.
    fn security_flags(&self) -> Vec<std::ffi::OsString> {
        let mut out: Vec<std::ffi::OsString> = vec![
            "--auth-token".into(),
            self.auth_token.clone().into(),
            "--auth-token-ttl".into(),
            self.auth_token_ttl.to_string().into(),
            "--bcrypt-cost".into(),
            self.bcrypt_cost.to_string().into(),
        ];
        for (flag, path) in [
            ("--cert-file", &self.cert_file),
            ("--key-file", &self.key_file),
            ("--trusted-ca-file", &self.trusted_ca_file),
            ("--peer-cert-file", &self.peer_cert_file),
            ("--peer-key-file", &self.peer_key_file),
            ("--peer-trusted-ca-file", &self.peer_trusted_ca_file),
        ] {
            if let Some(p) = path {
                out.push(flag.into());
                out.push(p.clone().into_os_string());
            }
        }
        for (flag, on) in [
            ("--client-cert-auth", self.client_cert_auth),
            ("--peer-client-cert-auth", self.peer_client_cert_auth),
        ] {
            if on {
                out.push(flag.into());
            }
        }
        out
    }
}

/// `simple`, or `jwt,` and its options (checked again, with the key files
/// read, when the node starts).
fn parse_auth_token(s: &str) -> Result<String, String> {
    if s == "simple" || s.starts_with("jwt,") {
        Ok(s.to_string())
    } else {
        Err("expected `simple` or `jwt,pub-key=PATH,priv-key=PATH,sign-method=METHOD`".into())
    }
}

/// jemalloc, as TiKV and other Rust databases run: a CQL insert's many
/// short-lived allocations beside the memtable's long-lived ones left
/// glibc's malloc spending about a quarter of the node's CPU (consolidating
/// and unlinking chunks, aligned task allocations); with jemalloc one node
/// serves 1.3-1.4x the fsynced inserts at lower p99 (docs/perf.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start (the `MALLOC_CONF` string; the
/// `_RJEM_MALLOC_CONF` variable still overrides). Each thread caches freed
/// blocks up to 4 MiB, not jemalloc's default 32 KiB: a Kafka produce
/// request's buffer (hundreds of KiB) otherwise came back as pages the
/// kernel had to fault in again, one fault per 4 KiB of produced data
/// (82 000 faults and 0.9x glibc's rate for 300 MB produced; 8 000 faults
/// and glibc's rate with the cache; docs/perf.md).
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static u8> = Some(&b"tcache_max:4194304\0"[0]);

fn main() {
    if let Err(e) = run() {
        // One line that names the problem; no stack trace.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// A node never lives on half dead (issue 34): a panic on any of its
/// threads (the Raft thread, the etcd persister, a broker's flusher, the
/// table engine's, a tokio worker serving a Kafka or etcd request) is logged
/// with its thread and location and ends the process with status 101, as an
/// uncaught panic on the main thread would. Left alone, a panic ends only its
/// own thread or task: the node would go on accepting connections it can no
/// longer answer (a dead Raft thread never commits again), or serve
/// requests past a poisoned lock. The one panic that is contained is a CQL
/// request's (`keel_cql::server::panic_is_contained`): it is answered with a
/// server error, as Cassandra answers an unexpected exception, and only logged.
/// Restarting is safe by design: recovery checks every CRC and replays the
/// Raft log, and nothing acknowledged depended on the thread that died.
fn stop_on_panic() {
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown location".into());
        let what = match (
            info.payload().downcast_ref::<&str>(),
            info.payload().downcast_ref::<String>(),
        ) {
            (Some(s), _) => s.to_string(),
            (_, Some(s)) => s.clone(),
            _ => "a panic without a message".into(),
        };
        if keel_cql::server::panic_is_contained() {
            tracing::error!(thread, at, "a CQL request panicked: {what}; it is answered with a server error and the node goes on");
            return;
        }
        // The standard report first (with a backtrace under RUST_BACKTRACE=1),
        // then one line that says what happens next.
        standard(info);
        tracing::error!(
            thread,
            at,
            "keel is stopping: thread '{thread}' panicked at {at}: {what}"
        );
        eprintln!("keel: stopped because thread '{thread}' panicked at {at}: {what}");
        // _exit, not exit: the other threads are still running, and the
        // atexit handlers and destructors exit would run under them are not
        // needed: every acknowledged write is already on disk.
        // SAFETY: _exit only ends the process.
        unsafe { libc::_exit(101) }
    }));
}

fn run() -> Result<()> {
    let config::Parsed {
        cli,
        node: settings,
    } = config::parse()?;
    if !matches!(cli.command, Command::Dev(_) | Command::Start(_)) {
        // A tool whose reader went away (`keel completion bash | head -3`,
        // `keel consume t | head`) ends quietly, as cat does, instead of
        // panicking in println!. Rust ignores SIGPIPE so that writes return
        // EPIPE; sockets are unaffected either way (std sends with
        // MSG_NOSIGNAL). A node keeps ignoring it: its logs must never kill it.
        // SAFETY: called before any other thread exists; SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The node and benchmarks narrate at info; the operator verbs only warn.
    let default_level = match cli.command {
        Command::Dev(_) | Command::Start(_) | Command::Bench(_) => "info",
        _ => "warn",
    };
    let json_logs = matches!(&cli.command, Command::Dev(a) | Command::Start(a) if a.log_format == LogFormat::Json);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr);
    if json_logs {
        // One JSON object per line, with the module that logged it, for log
        // shippers (Vector, Fluent Bit, Loki's promtail).
        logs.json().with_current_span(false).init();
    } else {
        logs.with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    if matches!(cli.command, Command::Dev(_) | Command::Start(_)) {
        stop_on_panic();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    let command = match cli.command {
        Command::Dev(mut args) if args.tls && !args.print_config => {
            let files = dev_tls::make(&args.data_dir).context("keel dev --tls")?;
            args.cert_file = Some(files.server_cert.clone());
            args.key_file = Some(files.server_key.clone());
            args.trusted_ca_file = Some(files.ca.clone());
            args.client_cert_auth = true;
            args.peer_cert_file = Some(files.server_cert);
            args.peer_key_file = Some(files.server_key);
            args.peer_trusted_ca_file = Some(files.ca);
            args.peer_client_cert_auth = true;
            Command::Dev(args)
        }
        Command::Dev(args) | Command::Start(args)
            if args.nodes == 1 && (args.datacenter.contains(',') || args.rack.contains(',')) =>
        {
            anyhow::bail!(
                "--datacenter and --rack name this node's own (a list, one per node, is for keel dev --nodes N)"
            )
        }
        Command::Start(args) if args.tls => anyhow::bail!(
            "--tls makes throwaway certificates for keel dev only; a cluster's nodes need certificates from one CA: --cert-file, --key-file, --trusted-ca-file (and --peer-* for Raft)"
        ),
        other => other,
    };
    match command {
        Command::Dev(args) | Command::Start(args) if args.print_config => {
            let settings = settings.expect("a node command has settings");
            print!("{}", settings.render());
            Ok(())
        }
        Command::Dev(args) if args.nodes > 1 => rt.block_on(dev_cluster(
            args,
            settings.expect("a node command has settings"),
        )),
        Command::Dev(args) | Command::Start(args) => {
            let r = rt.block_on(dev(args));
            // By now every log, index and table is fsynced and closed; what
            // still sits on the runtime (a blocking task parked on a timer, an
            // idle connection's read) is not worth the two seconds dropping
            // the runtime would wait for it.
            rt.shutdown_background();
            r
        }
        Command::Bench(cmd) => rt.block_on(bench::run(cmd)),
        Command::Topic { common, cmd } => rt.block_on(cli::topic::run(cmd, &common)),
        Command::Produce { common, args } => rt.block_on(cli::produce::run(args, &common)),
        Command::Consume { common, args } => rt.block_on(cli::consume::run(args, &common)),
        Command::Group { common, cmd } => rt.block_on(cli::group::run(cmd, &common)),
        Command::Cluster { common, cmd } => rt.block_on(cli::cluster(cmd, &common)),
        Command::Table { common, cmd } => rt.block_on(cli::table::run(cmd, &common)),
        Command::Snapshot(SnapshotCommand::Restore { file, data_dir }) => {
            let s = keel_etcd::backup::stage_restore(&file, &data_dir)
                .map_err(anyhow::Error::msg)
                .context("restore")?;
            println!(
                "restored {} into {}: revision {}, compacted at {}, {} stored versions, {} leases; \
                 start a node with --data-dir {}",
                file.display(),
                data_dir.display(),
                s.revision,
                s.compact_revision,
                s.versions,
                s.leases,
                data_dir.display()
            );
            Ok(())
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "keel", &mut std::io::stdout());
            Ok(())
        }
    }
}

async fn dev(args: DevArgs) -> Result<()> {
    let initial_cluster = if args.initial_cluster.is_empty() {
        vec![(args.node_id, args.peer_addr.clone())]
    } else {
        keel_etcd::quorum::parse_initial_cluster(&args.initial_cluster)?
    };
    let listener = tokio::net::TcpListener::bind(&args.kafka_addr)
        .await
        .with_context(|| format!("listen on {}", args.kafka_addr))?;
    let local = listener.local_addr()?;
    let admin_listener = admin::bind(&args.admin_addr).await?;
    let admin_local = admin_listener.local_addr()?;
    let advertised = match &args.advertised_addr {
        Some(a) => {
            let (h, p) = a
                .rsplit_once(':')
                .with_context(|| format!("--advertised-addr {a}: expected HOST:PORT"))?;
            Advertised {
                host: h.to_string(),
                port: p
                    .parse()
                    .with_context(|| format!("--advertised-addr {a}: bad port"))?,
            }
        }
        None => {
            anyhow::ensure!(!local.ip().is_unspecified(), "--kafka-addr {local} listens on every interface; say which address clients should use with --advertised-addr");
            Advertised {
                host: local.ip().to_string(),
                port: i32::from(local.port()),
            }
        }
    };
    let mut config = BrokerConfig::new(&args.data_dir);
    config.node_id = i32::try_from(args.node_id).context("--node-id")?;
    config.offsets_topic_from_cluster = true;
    config.default_partitions = args.num_partitions;
    config.auto_create_topics = !args.no_auto_create_topics;
    config.partitions_max = args.partitions_max;
    config.producer_id_expiration_ms = args.producer_id_expiration_ms;
    config.group_config.initial_rebalance_delay_ms = args.group_initial_rebalance_delay_ms;
    config.group_config.max_size = args.group_max_size as usize;
    config.group_config.consumer.heartbeat_interval_ms = args.group_consumer_heartbeat_interval_ms;
    config.group_config.consumer.session_timeout_ms = args.group_consumer_session_timeout_ms;
    config.group_config.consumer.assignor =
        keel_broker::consumer_groups::Assignor::from_name(&args.group_consumer_assignor)
            .context("--group-consumer-assignor")?;
    config.group_config.offsets_retention_ms = args.offsets_retention_minutes * 60_000;
    config.cleaner_dedupe_buffer_bytes =
        usize::try_from(args.log_cleaner_dedupe_buffer_size).unwrap_or(usize::MAX);
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, Arc::new(SystemClock)))
        .await?
        .context("open data directory")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let quorum = keel_etcd::quorum::Quorum::start(
        keel_etcd::quorum::QuorumArgs {
            node_id: args.node_id,
            data_dir: args.data_dir.clone(),
            peer_addr: args.peer_addr.clone(),
            etcd_addr: args.etcd_addr.clone(),
            initial_cluster,
            existing: args.initial_cluster_state == "existing",
            quota_bytes: args.quota_backend_bytes,
            election_ms: args.election_timeout_ms,
            watch_progress_notify_ms: args.watch_progress_notify_interval_ms,
            client_tls: args.client_tls(),
            peer_tls: args.peer_tls(),
            auth_token_ttl: Duration::from_secs(args.auth_token_ttl),
            bcrypt_cost: args.bcrypt_cost,
            jwt: match args.auth_token.strip_prefix("jwt,") {
                Some(opts) => Some(
                    keel_etcd::jwt::Jwt::from_options(opts)
                        .map_err(anyhow::Error::msg)
                        .context("--auth-token jwt")?,
                ),
                None => None,
            },
        },
        stop_rx.clone(),
    )
    .await?;

    let ticker = {
        let broker = broker.clone();
        let mut stop = stop_rx.clone();
        let retention_every = Duration::from_millis(args.retention_check_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut last_retention = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                    _ = tick.tick() => {}
                }
                let retention = last_retention.elapsed() >= retention_every;
                if retention {
                    last_retention = tokio::time::Instant::now();
                }
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.tick(retention)).await;
            }
        })
    };

    // The log cleaner: its own task, so a long compaction holds up neither group
    // timers nor retention (Kafka runs it on dedicated threads too).
    let cleaner = {
        let broker = broker.clone();
        let mut stop = stop_rx.clone();
        let every = Duration::from_millis(args.log_cleaner_backoff_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                    _ = tick.tick() => {}
                }
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.clean()).await;
            }
        })
    };

    // The tables face: its listener first (its address goes in the registry),
    // then the engine its replicas live in.
    let cql_listener = if args.cql_addr == "none" {
        None
    } else {
        let l = tokio::net::TcpListener::bind(&args.cql_addr)
            .await
            .with_context(|| {
                format!(
                    "listen on {} (CQL; --cql-addr none turns it off)",
                    args.cql_addr
                )
            })?;
        Some(l)
    };
    let cql_advertised: (String, i32) = match &cql_listener {
        Some(l) => {
            let a = l.local_addr()?;
            (a.ip().to_string(), i32::from(a.port()))
        }
        None => (String::new(), 0),
    };
    let table_engine = {
        let mut cfg = keel_table::EngineConfig::new(args.data_dir.join("table"));
        if args.commitlog_sync == "periodic" {
            cfg.sync = keel_table::SyncMode::Periodic(Duration::from_millis(
                args.commitlog_sync_period_ms,
            ));
        }
        let (engine, recovery) = tokio::task::spawn_blocking(move || keel_table::Engine::open(cfg))
            .await?
            .context("open the table engine")?;
        if recovery.cut > 0 {
            tracing::warn!(
                cut = recovery.cut,
                "table commit log: torn or corrupt tails cut at replay"
            );
        }
        Arc::new(engine)
    };
    // This node in the one registry of nodes, and the controller's duty when it leads.
    let membership = keel_etcd::cluster::Membership::new(
        quorum.server.clone(),
        keel_etcd::cluster::Registration {
            node_id: broker.node_id(),
            kafka_host: advertised.host.clone(),
            kafka_port: advertised.port,
            rack: args.rack.clone(),
            cluster_id: broker.cluster_id().to_string(),
            cql_host: cql_advertised.0.clone(),
            cql_port: cql_advertised.1,
            datacenter: args.datacenter.clone(),
            num_tokens: args.num_tokens,
        },
    );
    let membership_task = tokio::spawn(membership.clone().run(
        keel_etcd::cluster::Duties {
            session_timeout: Duration::from_millis(args.broker_session_timeout_ms),
            rebalance_every: Duration::from_millis(args.leader_imbalance_check_interval_ms),
        },
        stop_rx.clone(),
    ));
    let controller = {
        let node = quorum.server.node().clone();
        std::sync::Arc::new(move || match node.status().leader {
            0 => -1,
            id => i32::try_from(id).unwrap_or(-1),
        })
    };
    // Up means registered in the cluster metadata, when the quorum can say so
    // soon (a node of a cluster whose other members are not up yet serves
    // what it can meanwhile).
    if tokio::time::timeout(Duration::from_secs(5), membership.registered())
        .await
        .is_err()
    {
        tracing::warn!("not registered in the cluster metadata yet: is a quorum up?");
    }
    // This node's topics from before it joined the metadata, then its logs
    // follow the metadata from here on.
    let follower = {
        let (broker, membership, server) =
            (broker.clone(), membership.clone(), quorum.server.clone());
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            membership.registered().await;
            cluster::adopt_local_topics(&broker, &membership, &server).await;
            cluster::follow_metadata(broker, membership.watch(), stop).await;
        })
    };
    let view = keel_kafka::handlers::ClusterView {
        image: membership.watch(),
        incarnation: membership.incarnation(),
        controller: controller.clone(),
        propose: cluster::proposer(quorum.server.clone()),
        rack_aware_reads: args.replica_selector == "rack-aware",
        fresh: {
            let node = quorum.server.node().clone();
            let session = Duration::from_millis(args.broker_session_timeout_ms);
            Arc::new(move || node.in_touch_within(session))
        },
        cut: {
            // `keel lab isolate` cuts Kafka replication too, both ways.
            let faults = quorum.faults.clone();
            Arc::new(move |id| {
                u64::try_from(id).is_ok_and(|p| {
                    faults.drop_to.read().expect("faults lock").contains(&p)
                        || faults.drop_from.read().expect("faults lock").contains(&p)
                })
            })
        },
    };
    let handler = Handler::new(broker.clone(), advertised.clone())
        .with_cluster(view.clone())
        .with_quota_windows(keel_kafka::quotas::Windows {
            num: args.quota_window_num,
            size: Duration::from_secs(args.quota_window_size_seconds),
        });
    let replication = tokio::spawn(keel_kafka::replication::run(
        broker.clone(),
        view,
        args.replica_lag_time_max_ms,
        stop_rx.clone(),
    ));
    let server_config = ServerConfig {
        connections_max: args.connections_max,
        ..ServerConfig::default()
    };
    let cql_node = cql_listener.as_ref().map(|_| {
        Arc::new(keel_cql::Node::new(
            table_engine.clone(),
            membership.watch(),
            cluster::proposer(quorum.server.clone()),
            keel_cql::LocalInfo {
                node_id: broker.node_id(),
                cql_host: cql_advertised.0.clone(),
                cql_port: cql_advertised.1,
                datacenter: args.datacenter.clone(),
                rack: if args.rack.is_empty() {
                    "rack1".into()
                } else {
                    args.rack.clone()
                },
                cluster_name: "Keel".into(),
                max_hint_window: Duration::from_millis(args.max_hint_window_ms),
                gossip_interval: Duration::from_millis(args.gossip_interval_ms),
                phi_convict_threshold: args.phi_convict_threshold,
            },
        ))
    });
    if let Some(node) = &cql_node {
        // `keel lab isolate` cuts the tables face's links too, as a real
        // partition would.
        let faults = quorum.faults.clone();
        node.peers.set_cut(Arc::new(move |peer| {
            u64::try_from(peer)
                .is_ok_and(|p| faults.drop_to.read().expect("faults lock").contains(&p))
        }));
    }
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        broker.clone(),
        Some(admin::Lab {
            server: quorum.server.clone(),
            faults: quorum.faults.clone(),
            cql: cql_node.clone(),
        }),
        stop_rx.clone(),
    ));
    let server = tokio::spawn(keel_kafka::serve(listener, handler, server_config, stop_rx));
    let schema_follower = tokio::spawn(keel_cql::follow_schema(
        table_engine.clone(),
        membership.watch(),
    ));
    let cql_server = cql_listener
        .zip(cql_node.clone())
        .map(|(l, node)| tokio::spawn(keel_cql::serve(l, node)));
    let data_dir = std::fs::canonicalize(&args.data_dir).unwrap_or(args.data_dir.clone());
    let topics = broker.topics().len();
    // The cluster's id is the quorum's (the first node to register set it),
    // the one Kafka's Metadata and /health answer; this node's own only
    // while it has not registered.
    let cluster_id = match membership.watch().borrow().cluster_id.clone() {
        id if id.is_empty() => broker.cluster_id().to_string(),
        id => id,
    };
    println!(
        "Keel {} is up (node {}, cluster {cluster_id})",
        env!("CARGO_PKG_VERSION"),
        broker.node_id(),
    );
    println!(
        "  Kafka:  {}:{}   try: kcat -b {}:{} -L",
        advertised.host, advertised.port, advertised.host, advertised.port
    );
    println!(
        "  etcd:   {}   try: etcdctl --endpoints={} put greeting hello",
        quorum.etcd_local,
        etcd_endpoint(&args, &[quorum.etcd_local.to_string()]),
    );
    if cql_server.is_some() {
        println!(
            "  CQL:    {}:{}   try: cqlsh {} {}",
            cql_advertised.0, cql_advertised.1, cql_advertised.0, cql_advertised.1
        );
    }
    println!(
        "  Raft:   node {} peers on {}",
        args.node_id, quorum.peer_local
    );
    println!("  Admin:  http://{admin_local}/metrics  http://{admin_local}/health  http://{admin_local}/raft");
    println!(
        "  Data:   {} ({topics} {})",
        data_dir.display(),
        if topics == 1 { "topic" } else { "topics" }
    );
    println!("  Stop:   Ctrl-C");

    wait_for_signal().await?;
    tracing::info!("shutting down: finishing in-flight requests");
    if let Some(node) = &cql_node {
        // Coordinators stop sending to this node now, not at conviction.
        node.announce_leaving().await;
    }
    membership.shut_down().await;
    let _ = stop_tx.send(true);
    let _ = membership_task.await;
    follower.abort();
    let _ = follower.await;
    let _ = replication.await;
    broker.stop_cleaning();
    let _ = server.await;
    if let Some(cql) = cql_server {
        cql.abort();
        let _ = cql.await;
    }
    schema_follower.abort();
    let _ = schema_follower.await;
    tokio::task::spawn_blocking(move || table_engine.shutdown()).await?;
    let _ = admin.await;
    let _ = ticker.await;
    let _ = cleaner.await;
    quorum.shutdown().await;
    tokio::task::spawn_blocking(move || broker.shutdown())
        .await?
        .context("close logs")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

fn phi_threshold(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (1.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a phi between 1 and 100")),
    }
}

/// `keel dev --nodes N`: N `keel start` processes on local ports, stopped together.
/// One listener's TLS files from its four flags; none without a certificate.
fn tls_files(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    ca: &Option<PathBuf>,
    client_cert_auth: bool,
) -> Option<keel_tls::TlsFiles> {
    Some(keel_tls::TlsFiles {
        cert_file: cert.clone()?,
        key_file: key.clone()?,
        trusted_ca_file: ca.clone(),
        client_cert_auth,
    })
}

/// etcdctl's `--endpoints` value (and flags) for these addresses: with TLS,
/// https:// and the CA; with client certificates required, the client
/// certificate `keel dev --tls` made beside the CA, or placeholders for the
/// operator's own.
fn etcd_endpoint(args: &DevArgs, addrs: &[String]) -> String {
    if args.cert_file.is_none() {
        return addrs.join(",");
    }
    let urls: Vec<String> = addrs.iter().map(|a| format!("https://{a}")).collect();
    let mut out = urls.join(",");
    if let Some(ca) = &args.trusted_ca_file {
        let dir = ca.parent().unwrap_or(Path::new("."));
        let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
        out += &format!(" --cacert {}", ca.display());
        if args.client_cert_auth && cert.exists() && key.exists() {
            out += &format!(" --cert {} --key {}", cert.display(), key.display());
        } else if args.client_cert_auth {
            out += " --cert CLIENT.pem --key CLIENT.key";
        }
    }
    out
}

/// Settings `keel dev --nodes N` gives each node itself (addresses, data,
/// identity) or passes in security_flags; the rest it forwards as given.
const PER_NODE_SETTINGS: [&str; 23] = [
    "node-id",
    "datacenter",
    "rack",
    "data-dir",
    "etcd-addr",
    "peer-addr",
    "kafka-addr",
    "admin-addr",
    "cql-addr",
    "advertised-addr",
    "initial-cluster",
    "initial-cluster-state",
    "nodes",
    "tls",
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "client-cert-auth",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "peer-client-cert-auth",
    "auth-token",
];

/// `keel dev`'s `--datacenter` or `--rack`: one value for every node, or a
/// comma-separated list of one per node.
fn per_node(flag: &str, value: &str, nodes: u64) -> Result<Vec<String>> {
    let values: Vec<String> = value.split(',').map(|v| v.trim().to_string()).collect();
    match values.len() as u64 {
        1 => Ok(vec![values[0].clone(); nodes as usize]),
        k if k == nodes => Ok(values),
        k => anyhow::bail!(
            "--{flag} {value:?} names {k} values for {nodes} nodes: give one for every node, or one for all"
        ),
    }
}

async fn dev_cluster(args: DevArgs, settings: config::Settings) -> Result<()> {
    let exe = std::env::current_exe().context("find the keel binary")?;
    let n = args.nodes;
    let port = |base: u16, i: u64| base + (i as u16 - 1) * 10_000;
    let initial: Vec<String> = (1..=n)
        .map(|i| format!("{i}=127.0.0.1:{}", port(2380, i)))
        .collect();
    let initial = initial.join(",");
    // Every setting given to `keel dev` (by flag, variable or file) goes to
    // each node, less those each node has its own of and the security files
    // security_flags passes; the children get them as flags and none of the
    // KEEL_* variables, so nothing applies twice.
    let forwarded = settings.forwarded(&PER_NODE_SETTINGS);
    let keel_vars: Vec<String> = settings
        .rows
        .iter()
        .map(|r| config::env_name(&r.name))
        .chain([
            "KEEL_CONFIG_FILE".to_string(),
            "KEEL_PRINT_CONFIG".to_string(),
        ])
        .collect();
    let datacenters = per_node("datacenter", &args.datacenter, n)?;
    let racks = per_node("rack", &args.rack, n)?;
    let json_logs = args.log_format == LogFormat::Json;
    let (exited_tx, mut exited_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut running: std::collections::BTreeMap<u64, (u32, String)> = Default::default();
    println!("Keel: a local cluster of {n} nodes (each a `keel start` process)");
    for i in 1..=n {
        let dir = args.data_dir.join(format!("node{i}"));
        let etcd = format!("127.0.0.1:{}", port(2379, i));
        let kafka = format!("127.0.0.1:{}", 9092 + i - 1);
        let admin = format!("127.0.0.1:{}", 9644 + i - 1);
        let peer = format!("127.0.0.1:{}", port(2380, i));
        // CQL as Cassandra nodes on one machine: one loopback address each,
        // one port, since drivers take every peer's port to be the same.
        let cql = format!("127.0.0.{i}:9042");
        let (dc, rack) = (&datacenters[i as usize - 1], &racks[i as usize - 1]);
        let place = if args.datacenter.contains(',') || args.rack.contains(',') {
            format!(
                "  dc {dc}{}",
                if rack.is_empty() {
                    String::new()
                } else {
                    format!(" rack {rack}")
                }
            )
        } else {
            String::new()
        };
        println!(
            "  node {i}: etcd {etcd}  kafka {kafka}  cql {cql}  admin http://{admin}  peer {peer}{place}  data {}",
            dir.display()
        );
        let mut argv: Vec<std::ffi::OsString> = vec!["start".into()];
        for (flag, value) in [
            ("--node-id", i.to_string()),
            ("--data-dir", dir.to_string_lossy().into_owned()),
            ("--etcd-addr", etcd),
            ("--peer-addr", peer),
            ("--kafka-addr", kafka),
            ("--admin-addr", admin),
            ("--cql-addr", cql),
            ("--initial-cluster", initial.clone()),
            ("--datacenter", dc.clone()),
            ("--rack", rack.clone()),
        ] {
            // No empty argument (the default rack): a node's command line,
            // read back from /proc and joined with spaces as the README
            // does to restart it, must not lose a value.
            if value.is_empty() {
                continue;
            }
            argv.push(flag.into());
            argv.push(value.into());
        }
        argv.extend(forwarded.iter().cloned());
        argv.extend(args.security_flags());
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(&argv)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for v in &keel_vars {
            cmd.env_remove(v);
        }
        let mut child = cmd.spawn().with_context(|| format!("start node {i}"))?;
        // Each node's lines, labelled with its id, interleave on ours.
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        tokio::spawn(relay_lines(i, out, json_logs, false));
        tokio::spawn(relay_lines(i, err, json_logs, true));
        let restart = std::iter::once(exe.as_os_str().to_owned())
            .chain(argv)
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        running.insert(i, (child.id().unwrap_or(0), restart));
        let tx = exited_tx.clone();
        tokio::spawn(async move {
            // Waiting reaps the child: a node that dies leaves no <defunct>.
            let status = child.wait().await;
            let _ = tx.send((i, status));
        });
    }
    drop(exited_tx);
    let endpoints: Vec<String> = (1..=n)
        .map(|i| format!("127.0.0.1:{}", port(2379, i)))
        .collect();
    println!(
        "  try:    etcdctl --endpoints={} endpoint status -w table",
        etcd_endpoint(&args, &endpoints),
    );
    println!("  Stop:   Ctrl-C");
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            r = &mut signal => { r?; break; }
            Some((i, status)) = exited_rx.recv() => {
                let (_, restart) = running.remove(&i).unwrap_or_default();
                eprintln!(
                    "keel dev: node {i} exited ({}); the others go on. Restart it with:\n  {restart}",
                    describe_exit(&status)
                );
                if running.is_empty() {
                    anyhow::bail!(
                        "every node this keel dev started has exited (nodes restarted by hand run on their own)"
                    );
                }
            }
        }
    }
    for (pid, _) in running.values() {
        if *pid != 0 {
            // SIGTERM: each node stops cleanly.
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    while let Some((i, status)) = exited_rx.recv().await {
        if let Ok(s) = &status {
            if !s.success() {
                eprintln!("keel dev: node {i} exited ({})", describe_exit(&status));
            }
        }
    }
    Ok(())
}

/// "exit code 1", "killed by signal 9 (SIGKILL)".
fn describe_exit(status: &std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Err(e) => format!("waiting for it failed: {e}"),
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => {
                let name = match sig {
                    libc::SIGKILL => " (SIGKILL)",
                    libc::SIGTERM => " (SIGTERM)",
                    libc::SIGSEGV => " (SIGSEGV)",
                    libc::SIGABRT => " (SIGABRT)",
                    libc::SIGINT => " (SIGINT)",
                    _ => "",
                };
                format!("killed by signal {sig}{name}")
            }
            (None, None) => "unknown status".into(),
        },
    }
}

/// Copies a child node's output line by line, each labelled with its node
/// id: `n2| ...` for text, a `"node":2` field for JSON lines.
async fn relay_lines(
    node: u64,
    from: impl tokio::io::AsyncRead + Unpin,
    json: bool,
    to_stderr: bool,
) {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let labelled = match line.strip_prefix('{') {
            Some(rest) if json => format!("{{\"node\":{node},{rest}"),
            _ => format!("n{node}| {line}"),
        };
        // A closed terminal ends the relay, never the parent.
        let _ = if to_stderr {
            writeln!(std::io::stderr().lock(), "{labelled}")
        } else {
            writeln!(std::io::stdout().lock(), "{labelled}")
        };
    }
}

/// Quotes an argument for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::per_node;

    #[test]
    fn keel_dev_gives_each_node_its_datacenter_and_rack() {
        assert_eq!(per_node("rack", "", 3).unwrap(), ["", "", ""]);
        assert_eq!(per_node("datacenter", "dc1", 2).unwrap(), ["dc1", "dc1"]);
        assert_eq!(
            per_node("datacenter", "dc1, dc1,dc2", 3).unwrap(),
            ["dc1", "dc1", "dc2"]
        );
        let e = per_node("datacenter", "dc1,dc2", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names 2 values for 3 nodes"), "{e}");
    }
}
