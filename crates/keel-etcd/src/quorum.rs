//! Wiring of one quorum member (used by `keel dev`/`keel start`, tests and
//! benches): the Raft WAL, the etcd state
//! machine, the peer transport and the etcd gRPC listener.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::pb::keelpb::MemberInfo;
use crate::server::{lock_store, EtcdServer};
use crate::store::{ApplyResult, Store, StoreConfig};
use anyhow::{bail, Context, Result};
use keel_raft::node::mailbox;
use keel_raft::transport::AddressBook;
use keel_raft::{Faults, Node, NodeConfig, TcpTransport};
use tokio::sync::watch;

/// What the operator said about the quorum.
#[derive(Debug, Clone)]
pub struct QuorumArgs {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub peer_addr: String,
    pub etcd_addr: String,
    /// `id=host:port` for every voter of a new cluster (this node included).
    pub initial_cluster: Vec<(u64, String)>,
    /// `new` bootstraps from `initial_cluster`; `existing` joins a running cluster
    /// that already added this node (etcdctl member add).
    pub existing: bool,
    pub quota_bytes: u64,
    pub election_ms: u64,
    /// etcd's `--experimental-watch-progress-notify-interval`, in milliseconds.
    pub watch_progress_notify_ms: u64,
    /// TLS on the client port (gRPC, the gateway, /health, /version,
    /// /metrics): etcd's `--cert-file`, `--key-file`, `--trusted-ca-file`,
    /// `--client-cert-auth`. The member then publishes an https:// client URL
    /// and forwards to the leader over TLS with the same certificate.
    pub client_tls: Option<keel_tls::TlsFiles>,
    /// TLS on Raft's peer links: etcd's `--peer-cert-file`, `--peer-key-file`,
    /// `--peer-trusted-ca-file`, `--peer-client-cert-auth`. Peer URLs are then
    /// https://, and every member must be started with it.
    pub peer_tls: Option<keel_tls::TlsFiles>,
    /// etcd's `--auth-token-ttl`: how long a simple token lives unused.
    pub auth_token_ttl: Duration,
    /// etcd's `--bcrypt-cost` for new passwords.
    pub bcrypt_cost: u32,
    /// etcd's `--auth-token jwt,...`; simple tokens without it.
    pub jwt: Option<Arc<crate::jwt::Jwt>>,
}

pub struct Quorum {
    pub server: EtcdServer,
    pub faults: Arc<Faults>,
    pub etcd_local: std::net::SocketAddr,
    pub peer_local: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Parses `1=127.0.0.1:2380,2=127.0.0.1:22380`.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, addr) = part.split_once('=').with_context(|| {
            format!("--initial-cluster: {part:?} is not ID=HOST:PORT or keel-ID=http://HOST:PORT")
        })?;
        // etcd's NAME=URL form, as `etcdctl member add` prints it
        // (ETCD_INITIAL_CLUSTER): Keel names member ID `keel-ID`.
        let id_text = name.strip_prefix("keel-").unwrap_or(name);
        let id: u64 = id_text.parse().ok().filter(|id| *id > 0).with_context(|| {
            format!(
                "--initial-cluster: {name:?} is neither a node id (a positive integer) \
                 nor a member name keel-ID as etcdctl member list shows it"
            )
        })?;
        let addr = crate::store::strip_scheme(addr).to_string();
        if !addr.contains(':') {
            bail!("--initial-cluster: {addr:?} for node {id} has no port");
        }
        if out.iter().any(|(i, _)| *i == id) {
            bail!("--initial-cluster: node {id} appears twice");
        }
        out.push((id, addr));
    }
    Ok(out)
}

/// The cluster id: a hash of the initial membership, the same on every member.
fn cluster_id(initial: &[(u64, String)]) -> u64 {
    let mut sorted = initial.to_vec();
    sorted.sort();
    let text: String = sorted.iter().map(|(i, a)| format!("{i}={a},")).collect();
    let a = u64::from(crc32c::crc32c(text.as_bytes()));
    let b = u64::from(crc32c::crc32c_append(0x5eed, text.as_bytes()));
    (a << 32) | b
}

impl Quorum {
    pub async fn start(args: QuorumArgs, stop: watch::Receiver<bool>) -> Result<Quorum> {
        if !args.existing && !args.initial_cluster.iter().any(|(i, _)| *i == args.node_id) {
            bail!(
                "--initial-cluster does not name this node ({}); add {}={}",
                args.node_id,
                args.node_id,
                args.peer_addr
            );
        }
        let peer_listener = tokio::net::TcpListener::bind(&args.peer_addr)
            .await
            .with_context(|| format!("listen for Raft peers on {}", args.peer_addr))?;
        let etcd_listener = tokio::net::TcpListener::bind(&args.etcd_addr)
            .await
            .with_context(|| format!("listen for etcd clients on {}", args.etcd_addr))?;
        let peer_local = peer_listener.local_addr()?;
        let etcd_local = etcd_listener.local_addr()?;
        let mut args = args;
        for (id, a) in &mut args.initial_cluster {
            // `--peer-addr HOST:0` on a single node: name the port it got.
            if *id == args.node_id && a.ends_with(":0") {
                *a = peer_local.to_string();
            }
        }

        let addresses: AddressBook = Arc::new(RwLock::new(HashMap::new()));
        {
            let mut book = addresses.write().expect("address book lock");
            for (id, a) in &args.initial_cluster {
                book.insert(*id, a.clone());
            }
            book.insert(args.node_id, peer_local.to_string());
        }
        let peer_scheme = if args.peer_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let members = args
            .initial_cluster
            .iter()
            .map(|(id, a)| MemberInfo {
                id: *id,
                name: crate::server::member_name(*id),
                peer_urls: vec![format!("{peer_scheme}://{a}")],
                // Every member must bootstrap the same state: client URLs come
                // later, each member publishing its own through Raft.
                client_urls: vec![],
                is_learner: false,
            })
            .collect();
        let election_ticks = (args.election_ms / 100).max(3) as usize;
        let config = StoreConfig {
            cluster_id: cluster_id(&args.initial_cluster),
            initial_members: members,
            quota_bytes: args.quota_bytes,
            // etcd: a lease lives at least 1.5 election timeouts.
            lease_ttl_min: ((args.election_ms * 3 / 2) as f64 / 1000.0).ceil() as i64,
            persist_interval: crate::store::PERSIST_INTERVAL,
            token_ttl: args.auth_token_ttl,
            seed: None,
        };
        let dir = args.data_dir.clone();
        let book = addresses.clone();
        let existing = args.existing;
        let (wal, store, staged) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut config = config;
            let (wal, recovered) =
                keel_raft::wal::Wal::open(&dir.join("raft")).context("open the Raft log")?;
            if recovered.truncated_bytes > 0 {
                tracing::warn!(
                    "raft log: dropped a torn tail of {} bytes",
                    recovered.truncated_bytes
                );
            }
            // A backup staged by `keel snapshot restore` seeds a brand-new
            // cluster; once the log exists, the store already holds it.
            let had_staged = dir.join(crate::backup::RESTORE_FILE).exists();
            if had_staged && existing {
                bail!(
                    "{} was restored from a backup, but a member joining an existing cluster \
                     gets its state from the leader: start it with a new data dir",
                    dir.display()
                );
            }
            if had_staged && wal.is_empty() {
                config.seed = crate::backup::staged(&dir).map_err(anyhow::Error::msg)?;
            }
            let store = Store::open(&dir.join("etcd"), config, book)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("open the etcd store")?;
            Ok((wal, store, had_staged))
        })
        .await??;
        let store = Arc::new(Mutex::new(store));
        let (mb, inbox) = mailbox::<ApplyResult>();
        let faults = Arc::new(Faults::default());
        let peer_tls = match &args.peer_tls {
            Some(files) => Some(keel_raft::PeerTls {
                server: files.server_config(&[]).context("TLS on the peer port")?,
                client: files.client_config(&[]).context("TLS to the peers")?,
            }),
            None => None,
        };
        let transport = TcpTransport::start(
            args.node_id,
            peer_listener,
            addresses.clone(),
            Arc::new(mb.clone()),
            faults.clone(),
            peer_tls,
        );
        let voters = if args.existing {
            vec![]
        } else {
            args.initial_cluster.iter().map(|(i, _)| *i).collect()
        };
        let mut nc = NodeConfig::new(args.node_id, voters);
        nc.election_ticks = election_ticks;
        let node = Arc::new(
            Node::start(nc, wal, store.clone(), transport, mb, inbox)
                .context("start the Raft node")?,
        );
        if staged {
            // The bootstrap above wrote the backup's state durably (a snapshot
            // install commits at once); the staged copy has served.
            let path = args.data_dir.join(crate::backup::RESTORE_FILE);
            std::fs::remove_file(&path)
                .and_then(|_| std::fs::File::open(&args.data_dir)?.sync_all())
                .with_context(|| format!("remove {}", path.display()))?;
            tracing::info!("started from the restored backup");
        }
        // This node's client URL is what followers forward to; make it known
        // to the membership (etcd publishes it the same way at start-up).
        let tls = match &args.client_tls {
            Some(files) => Some((
                files
                    .server_config(&[b"h2", b"http/1.1"])
                    .context("TLS on the etcd client port")?,
                files
                    .client_config(&[b"h2"])
                    .context("TLS for forwarding to the leader")?,
            )),
            None => None,
        };
        let server = EtcdServer::new(
            node.clone(),
            store.clone(),
            args.node_id,
            args.data_dir.join("etcd"),
            crate::server::ServerOptions {
                watch_progress_interval: Duration::from_millis(args.watch_progress_notify_ms),
                client_tls: tls.as_ref().map(|(_, client)| client.clone()),
                client_cert_auth: args.client_tls.as_ref().is_some_and(|f| f.client_cert_auth),
                bcrypt_cost: args.bcrypt_cost,
                jwt: args.jwt.clone(),
            },
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(publish_client_url(
            server.clone(),
            format!("{scheme}://{etcd_local}"),
            stop.clone(),
        )));
        {
            let s = server.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move { s.run_lessor(stop).await }));
        }
        {
            let routes = crate::http::with_http_endpoints(&server, server.routes());
            let mut stop = stop.clone();
            let tls_server = tls.map(|(server, _)| server);
            let accept_stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                // HTTP/1.1 too: etcd serves /health, /version, /metrics and the
                // JSON gateway on the client port to plain HTTP clients.
                let builder = tonic::transport::Server::builder()
                    .accept_http1(true)
                    .http2_keepalive_interval(Some(Duration::from_secs(30)))
                    .add_routes(routes);
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let r = match tls_server {
                    Some(config) => {
                        let incoming = keel_tls::accept(
                            etcd_listener,
                            config,
                            "etcd client port",
                            accept_stop,
                        );
                        builder
                            .serve_with_incoming_shutdown(
                                tokio_stream::wrappers::ReceiverStream::new(incoming),
                                shutdown,
                            )
                            .await
                    }
                    None => {
                        // TCP_NODELAY: without it a small response waits out Nagle
                        // and the client's delayed ACK (40 ms) between HTTP/2 frames.
                        let incoming = match tonic::transport::server::TcpIncoming::from_listener(
                            etcd_listener,
                            true,
                            None,
                        ) {
                            Ok(i) => i,
                            Err(e) => {
                                tracing::error!("etcd listener: {e}");
                                return;
                            }
                        };
                        builder
                            .serve_with_incoming_shutdown(incoming, shutdown)
                            .await
                    }
                };
                if let Err(e) = r {
                    tracing::error!("etcd listener: {e}");
                }
            }));
        }
        Ok(Quorum {
            server,
            faults,
            etcd_local,
            peer_local,
            tasks,
        })
    }

    /// Waits for the tasks, then stops the Raft node (which persists applied state).
    pub async fn shutdown(self) {
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let node = self.server.node().clone();
        let _ = tokio::task::spawn_blocking(move || node.stop()).await;
    }
}

/// Records this node's name and client URL in the membership once a leader
/// exists (etcd's publish), so other members can forward to it and a member
/// that joined later is listed as started.
async fn publish_client_url(server: EtcdServer, url: String, mut stop: watch::Receiver<bool>) {
    let mut status = server.node().watch_status();
    loop {
        let known = {
            let store = lock_store(server.store());
            store.members().iter().any(|m| {
                m.client_urls.contains(&url) && m.id == status.borrow().id && !m.name.is_empty()
            })
        };
        if known {
            return;
        }
        let has_leader = status.borrow().leader != 0;
        if has_leader && server.publish_client_url(url.clone()).await.is_ok() {
            continue;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = status.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_initial_cluster;

    #[test]
    fn initial_cluster_takes_keels_ids_and_etcds_member_add_output() {
        assert_eq!(
            parse_initial_cluster("1=127.0.0.1:2380,2=http://127.0.0.1:12380").unwrap(),
            vec![(1, "127.0.0.1:2380".into()), (2, "127.0.0.1:12380".into())]
        );
        // What `etcdctl member add keel-4 ...` prints as ETCD_INITIAL_CLUSTER.
        assert_eq!(
            parse_initial_cluster("keel-1=http://127.0.0.1:2380,keel-4=http://127.0.0.1:32380")
                .unwrap(),
            vec![(1, "127.0.0.1:2380".into()), (4, "127.0.0.1:32380".into())]
        );
        for bad in [
            "infra1=http://10.0.0.1:2380",
            "keel-0=h:1",
            "1=127.0.0.1",
            "1=a:1,1=b:2",
        ] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad} accepted");
        }
    }
}
