//! Runs statements: DDL through the metadata quorum, writes and reads
//! against the node's table engine.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cassandra_protocol::consistency::Consistency;
use cassandra_protocol::frame::message_error::WriteType;
use keel_meta::{record::Kind, Applied, ColumnKind, Image, MetaError, Record};
use keel_table::cell::{self, Cell};
use keel_table::types::{self, CqlType, Literal};
use keel_table::{Engine, Hlc, Mutation};
use tokio::sync::{broadcast, watch};

use crate::error::CqlError;
use crate::parser::{self, AlterTableOp, BatchKind, Condition, Op, Parsed, Statement, Term, Using};
use crate::table::{Col, TableSchema};

/// Proposes a metadata record through this node's Raft member and waits for
/// its apply here.
pub type Proposer = Arc<
    dyn Fn(
            Record,
        )
            -> Pin<Box<dyn Future<Output = Result<Result<Applied, MetaError>, String>> + Send>>
        + Send
        + Sync,
>;

/// A bound value as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Value(Vec<u8>),
    Null,
    /// Protocol v4's "not set": the column is left as it is.
    Unset,
}

/// What a request carries besides its statement.
#[derive(Debug, Clone)]
pub struct Params {
    pub consistency: Consistency,
    pub serial_consistency: Option<Consistency>,
    pub values: Vec<Bound>,
    pub named: Option<HashMap<String, Bound>>,
    pub page_size: Option<i32>,
    pub paging_state: Option<Vec<u8>>,
    /// The client's write timestamp, microseconds.
    pub timestamp: Option<i64>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            consistency: Consistency::One,
            serial_consistency: None,
            values: Vec::new(),
            named: None,
            page_size: None,
            paging_state: None,
            timestamp: None,
        }
    }
}

/// A result column: where it comes from and its type.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub keyspace: String,
    pub table: String,
    pub name: String,
    pub ty: CqlType,
}

#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<ColumnSpec>,
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    pub paging_state: Option<Vec<u8>>,
}

/// A schema change, as RESULT and EVENT messages report it.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaEvent {
    /// CREATED, UPDATED or DROPPED.
    pub change: &'static str,
    pub keyspace: String,
    /// None: the keyspace itself.
    pub table: Option<String>,
}

/// What a connection that REGISTERed hears of (the native protocol's
/// SCHEMA_CHANGE, TOPOLOGY_CHANGE and STATUS_CHANGE).
#[derive(Debug, Clone)]
pub enum Event {
    Schema(SchemaEvent),
    /// A node joined (true) or left (false) the ring; its CQL address.
    Topology {
        joined: bool,
        addr: std::net::SocketAddr,
    },
    /// A node came to be believed up (true) or down (false).
    Status {
        up: bool,
        addr: std::net::SocketAddr,
    },
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Void,
    Rows(Rows),
    SetKeyspace(String),
    SchemaChange(SchemaEvent),
}

/// This node as CQL clients see it (system.local).
#[derive(Debug, Clone)]
pub struct LocalInfo {
    pub node_id: i32,
    pub cql_host: String,
    pub cql_port: i32,
    pub datacenter: String,
    pub rack: String,
    pub cluster_name: String,
    /// How long into a replica's outage its missed writes are kept as hints
    /// (Cassandra's `max_hint_window`; zero turns hinted handoff off).
    pub max_hint_window: std::time::Duration,
    /// How often this node gossips, and the suspicion at which it convicts
    /// a peer (Cassandra's `phi_convict_threshold`).
    pub gossip_interval: std::time::Duration,
    pub phi_convict_threshold: f64,
}

/// What every connection of this node shares.
pub struct Node {
    pub engine: Arc<Engine>,
    pub image: watch::Receiver<Arc<Image>>,
    pub propose: Proposer,
    pub hlc: Hlc,
    pub local: LocalInfo,
    pub prepared: Mutex<HashMap<Vec<u8>, Arc<Prepared>>>,
    /// Schema, topology and status changes, for connections that
    /// REGISTERed for them.
    pub events: broadcast::Sender<Event>,
    /// This node's conditional writes run one at a time per partition
    /// stripe (fewer ballots lost to each other).
    lwt: Vec<tokio::sync::Mutex<()>>,
    /// A replica's Paxos state changes one at a time per partition stripe.
    pub(crate) paxos: Vec<tokio::sync::Mutex<()>>,
    /// Links to the other nodes, for the coordinator.
    pub peers: Arc<crate::internode::Peers>,
    /// Rings, schemas and replication of the image last seen.
    pub(crate) image_cache: Mutex<crate::coordinator::ImageCache>,
    /// Cells sent to replicas by read repair.
    pub read_repairs: std::sync::atomic::AtomicU64,
    /// Writes kept for replicas that were down.
    pub hints: Arc<crate::hints::Hints>,
    /// Heartbeats and the failure detector.
    pub gossip: Arc<crate::gossip::Gossip>,
    /// What streaming the ranges this node took over when it joined did.
    pub bootstrap: crate::bootstrap::Stats,
    pub batchlog: crate::batchlog::Stats,
    /// Reads this node coordinated with digests, and those whose digests
    /// differed (then read in full, merged and repaired).
    pub digest_reads: std::sync::atomic::AtomicU64,
    pub digest_mismatches: std::sync::atomic::AtomicU64,
    /// For `uuid()` and timeuuids' node part.
    clock_seq: u16,
    node_bits: [u8; 6],
}

/// A prepared statement.
#[derive(Debug)]
pub struct Prepared {
    pub query: String,
    pub keyspace: Option<String>,
    pub parsed: Parsed,
    /// The bind markers' specs (for PREPARED's metadata).
    pub binds: Vec<ColumnSpec>,
    /// Which bind markers are the partition key's columns, in key order.
    pub pk_indexes: Vec<i16>,
    /// A SELECT's result columns.
    pub result: Option<Vec<ColumnSpec>>,
}

/// The lock of `key`'s stripe.
pub(crate) fn stripe<'a>(
    locks: &'a [tokio::sync::Mutex<()>],
    key: &[u8],
) -> &'a tokio::sync::Mutex<()> {
    let h = key
        .iter()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(*b as u32));
    &locks[h as usize % locks.len()]
}

/// Statements a prepared-statement cache holds at most (Cassandra bounds its
/// cache by memory, 1/256 of the heap).
const PREPARED_MAX: usize = 10_000;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    for chunk in b.chunks_mut(16) {
        let u = uuid::Uuid::new_v4();
        chunk.copy_from_slice(&u.as_bytes()[..chunk.len()]);
    }
    b
}

impl Node {
    pub fn new(
        engine: Arc<Engine>,
        image: watch::Receiver<Arc<Image>>,
        propose: Proposer,
        local: LocalInfo,
    ) -> Node {
        let r: [u8; 8] = random_bytes();
        let window = local.max_hint_window;
        // Hint files beside the table engine's directory.
        let hints_dir = engine.dir().with_file_name("hints");
        let hints = crate::hints::Hints::open(hints_dir.clone(), window).unwrap_or_else(|e| {
            tracing::warn!("hints kept in memory only: {}: {e}", hints_dir.display());
            crate::hints::Hints::new(window)
        });
        let gossip = Arc::new(crate::gossip::Gossip::new(
            local.node_id,
            local.gossip_interval,
            local.phi_convict_threshold,
        ));
        Node {
            engine,
            image,
            propose,
            hlc: Hlc::system(),
            local,
            prepared: Mutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
            lwt: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
            paxos: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
            peers: Arc::default(),
            image_cache: Mutex::new(Default::default()),
            read_repairs: Default::default(),
            hints: Arc::new(hints),
            gossip,
            bootstrap: Default::default(),
            batchlog: Default::default(),
            digest_reads: Default::default(),
            digest_mismatches: Default::default(),
            clock_seq: u16::from_be_bytes([r[0], r[1]]) & 0x3fff,
            node_bits: [r[2] | 1, r[3], r[4], r[5], r[6], r[7]],
        }
    }

    pub fn image(&self) -> Arc<Image> {
        self.image.borrow().clone()
    }

    /// A version 1 (time-based) UUID at `micros`.
    pub fn timeuuid(&self, micros: i64) -> [u8; 16] {
        let t = (micros as u64)
            .wrapping_mul(10)
            .wrapping_add(0x01B2_1DD2_1381_4000);
        let mut u = [0u8; 16];
        u[..4].copy_from_slice(&((t & 0xffff_ffff) as u32).to_be_bytes());
        u[4..6].copy_from_slice(&(((t >> 32) & 0xffff) as u16).to_be_bytes());
        u[6..8].copy_from_slice(&((((t >> 48) & 0x0fff) as u16) | 0x1000).to_be_bytes());
        u[8..10].copy_from_slice(&(self.clock_seq | 0x8000).to_be_bytes());
        u[10..].copy_from_slice(&self.node_bits);
        u
    }

    /// The table a statement names, with the session's keyspace as default,
    /// its schema compiled once per metadata image.
    pub fn table(
        &self,
        ks: &Option<String>,
        q: &parser::QName,
    ) -> Result<Arc<TableSchema>, CqlError> {
        let keyspace = q
            .keyspace
            .clone()
            .or_else(|| ks.clone())
            .ok_or_else(|| CqlError::Invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename".into()))?;
        if let Some(t) = crate::system::table(&keyspace, &q.name) {
            return Ok(Arc::new(t));
        }
        let img = self.image();
        let mut cache = self.image_cache(&img);
        if let Some(t) = cache.tables.get(&keyspace).and_then(|ts| ts.get(&q.name)) {
            return Ok(t.clone());
        }
        let k = img
            .keyspaces
            .get(&keyspace)
            .ok_or_else(|| CqlError::Invalid(format!("Keyspace {keyspace} does not exist")))?;
        let t = k
            .tables
            .get(&q.name)
            .ok_or_else(|| CqlError::Invalid(format!("table {} does not exist", q.name)))?;
        let t = Arc::new(TableSchema::new(&keyspace, &q.name, t)?);
        cache
            .tables
            .entry(keyspace)
            .or_default()
            .insert(q.name.clone(), t.clone());
        Ok(t)
    }

    async fn propose(&self, rec: Record) -> Result<(), CqlError> {
        match (self.propose)(rec).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(CqlError::Server(format!(
                "schema change not committed: {e}"
            ))),
        }
    }

    /// Waits until this node's image satisfies `pred` (a schema change it
    /// proposed is applied here before the client hears of it).
    pub(crate) async fn wait_image(&self, pred: impl Fn(&Image) -> bool) {
        let mut rx = self.image.clone();
        let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|i| pred(i))).await;
        // Schema agreement: the other nodes up apply it too before the client
        // hears of it, so a statement sent next to any node finds the table
        // (Cassandra leaves this wait to drivers, which compare the
        // schema_version of system.local and system.peers).
        self.schema_agreement(self.image().applied).await;
    }

    fn schema_event(&self, ev: SchemaEvent) -> Outcome {
        let _ = self.events.send(Event::Schema(ev.clone()));
        Outcome::SchemaChange(ev)
    }

    /// Runs one statement.
    pub async fn execute(
        &self,
        keyspace: &Option<String>,
        parsed: &Parsed,
        params: &Params,
    ) -> Result<Outcome, CqlError> {
        let binds = Binds::new(&parsed.binds, params)?;
        match &parsed.statement {
            Statement::Use(k) => {
                if !self.image().keyspaces.contains_key(k) && !crate::system::is_system_keyspace(k)
                {
                    return Err(CqlError::Invalid(format!("Keyspace '{k}' does not exist")));
                }
                Ok(Outcome::SetKeyspace(k.clone()))
            }
            Statement::CreateKeyspace {
                name,
                if_not_exists,
                options,
            } => {
                let (replication, durable) = keyspace_options(options, None)?;
                if *if_not_exists && self.image().keyspaces.contains_key(name) {
                    return Ok(Outcome::Void);
                }
                self.propose(Record::new(Kind::CreateKeyspace(
                    keel_meta::CreateKeyspace {
                        name: name.clone(),
                        replication,
                        durable_writes: durable,
                        alter: false,
                    },
                )))
                .await?;
                self.wait_image(|i| i.keyspaces.contains_key(name)).await;
                Ok(self.schema_event(SchemaEvent {
                    change: "CREATED",
                    keyspace: name.clone(),
                    table: None,
                }))
            }
            Statement::AlterKeyspace { name, options } => {
                let img = self.image();
                let cur = img.keyspaces.get(name).ok_or_else(|| {
                    CqlError::Invalid(format!("Keyspace '{name}' does not exist"))
                })?;
                let (replication, durable) = keyspace_options(options, Some(cur))?;
                let epoch = img.schema_epoch;
                self.propose(Record::new(Kind::CreateKeyspace(
                    keel_meta::CreateKeyspace {
                        name: name.clone(),
                        replication,
                        durable_writes: durable,
                        alter: true,
                    },
                )))
                .await?;
                self.wait_image(|i| i.schema_epoch > epoch).await;
                Ok(self.schema_event(SchemaEvent {
                    change: "UPDATED",
                    keyspace: name.clone(),
                    table: None,
                }))
            }
            Statement::DropKeyspace { name, if_exists } => {
                if crate::system::is_system_keyspace(name) {
                    return Err(CqlError::Unauthorized(format!(
                        "{name} keyspace is not user-modifiable"
                    )));
                }
                if !self.image().keyspaces.contains_key(name) {
                    if *if_exists {
                        return Ok(Outcome::Void);
                    }
                    return Err(CqlError::Config(format!(
                        "Cannot drop non existing keyspace '{name}'."
                    )));
                }
                self.propose(Record::new(Kind::DropKeyspace(keel_meta::DropKeyspace {
                    name: name.clone(),
                })))
                .await?;
                self.wait_image(|i| !i.keyspaces.contains_key(name)).await;
                Ok(self.schema_event(SchemaEvent {
                    change: "DROPPED",
                    keyspace: name.clone(),
                    table: None,
                }))
            }
            Statement::CreateTable {
                table,
                if_not_exists,
                columns,
                partition_key,
                clustering,
                clustering_order,
                options,
            } => {
                let ks = table
                    .keyspace
                    .clone()
                    .or_else(|| keyspace.clone())
                    .ok_or_else(|| CqlError::Invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename".into()))?;
                if crate::system::is_system_keyspace(&ks) {
                    return Err(CqlError::Unauthorized(format!(
                        "{ks} keyspace is not user-modifiable"
                    )));
                }
                let img = self.image();
                let k = img
                    .keyspaces
                    .get(&ks)
                    .ok_or_else(|| CqlError::Invalid(format!("Keyspace '{ks}' doesn't exist")))?;
                if k.tables.contains_key(&table.name) {
                    if *if_not_exists {
                        return Ok(Outcome::Void);
                    }
                    return Err(CqlError::AlreadyExists {
                        message: format!("Object {ks}.{} already exists", table.name),
                        keyspace: ks,
                        table: table.name.clone(),
                    });
                }
                let cols = table_columns(columns, partition_key, clustering, clustering_order)?;
                let opts = table_options(options)?;
                let id = *uuid::Uuid::new_v4().as_bytes();
                self.propose(Record::new(Kind::CreateTable(keel_meta::CreateTable {
                    keyspace: ks.clone(),
                    name: table.name.clone(),
                    id: id.to_vec(),
                    columns: cols,
                    options: opts,
                })))
                .await?;
                let name = table.name.clone();
                self.wait_image(|i| {
                    i.keyspaces
                        .get(&ks)
                        .is_some_and(|k| k.tables.contains_key(&name))
                })
                .await;
                Ok(self.schema_event(SchemaEvent {
                    change: "CREATED",
                    keyspace: ks,
                    table: Some(table.name.clone()),
                }))
            }
            Statement::AlterTable { table, op } => {
                let t = self.table(keyspace, table)?;
                if crate::system::is_system_keyspace(&t.keyspace) {
                    return Err(CqlError::Unauthorized(format!(
                        "{} keyspace is not user-modifiable",
                        t.keyspace
                    )));
                }
                let mut alter = keel_meta::AlterTable {
                    keyspace: t.keyspace.clone(),
                    name: t.name.clone(),
                    ..Default::default()
                };
                match op {
                    AlterTableOp::Add(cols) => {
                        for (n, ty) in cols {
                            let parsed = CqlType::parse(ty).map_err(CqlError::Invalid)?;
                            alter.add.push(keel_meta::Column {
                                name: n.clone(),
                                cql_type: parsed.to_string(),
                                ..Default::default()
                            });
                        }
                    }
                    AlterTableOp::Drop(cols) => alter.drop = cols.clone(),
                    AlterTableOp::With(opts) => alter.options = table_options(opts)?,
                }
                let epoch = self.image().schema_epoch;
                self.propose(Record::new(Kind::AlterTable(alter))).await?;
                self.wait_image(|i| i.schema_epoch > epoch).await;
                Ok(self.schema_event(SchemaEvent {
                    change: "UPDATED",
                    keyspace: t.keyspace.clone(),
                    table: Some(t.name.clone()),
                }))
            }
            Statement::DropTable { table, if_exists } => {
                let t = match self.table(keyspace, table) {
                    Ok(t) => t,
                    Err(_) if *if_exists => return Ok(Outcome::Void),
                    Err(e) => return Err(e),
                };
                if crate::system::is_system_keyspace(&t.keyspace) {
                    return Err(CqlError::Unauthorized(format!(
                        "{} keyspace is not user-modifiable",
                        t.keyspace
                    )));
                }
                self.propose(Record::new(Kind::DropTable(keel_meta::DropTable {
                    keyspace: t.keyspace.clone(),
                    name: t.name.clone(),
                })))
                .await?;
                let (ks, name) = (t.keyspace.clone(), t.name.clone());
                self.wait_image(|i| {
                    !i.keyspaces
                        .get(&ks)
                        .is_some_and(|k| k.tables.contains_key(&name))
                })
                .await;
                Ok(self.schema_event(SchemaEvent {
                    change: "DROPPED",
                    keyspace: t.keyspace.clone(),
                    table: Some(t.name.clone()),
                }))
            }
            Statement::Truncate(q) => {
                let t = self.table(keyspace, q)?;
                self.truncate(&t, params).await?;
                Ok(Outcome::Void)
            }
            Statement::Insert { .. } | Statement::Update { .. } | Statement::Delete { .. } => {
                self.modify(keyspace, &parsed.statement, &binds, params, None)
                    .await
            }
            Statement::Batch {
                kind,
                using,
                statements,
            } => {
                let mut mutation = Mutation::new();
                for s in statements {
                    if matches!(
                        s,
                        Statement::Insert {
                            if_not_exists: true,
                            ..
                        }
                    ) || matches!(s, Statement::Update { condition, .. } | Statement::Delete { condition, .. } if *condition != Condition::None)
                    {
                        return Err(CqlError::Invalid(
                            "Conditional statements in batches are not supported".into(),
                        ));
                    }
                    let ts = self.timestamp(using, &binds, params)?;
                    self.mutation(keyspace, s, &binds, ts, &mut mutation)?;
                }
                self.write_batch(mutation, params.consistency, *kind)
                    .await?;
                Ok(Outcome::Void)
            }
            Statement::Select { .. } => {
                crate::read::select(self, keyspace, &parsed.statement, &binds, params).await
            }
            Statement::Describe(d) => crate::system::describe(self, keyspace, d),
        }
    }

    /// Runs a batch of already-parsed statements (the BATCH message).
    pub async fn batch(
        &self,
        keyspace: &Option<String>,
        statements: &[(Parsed, Params)],
        consistency: Consistency,
        timestamp: Option<i64>,
        logged: BatchKind,
    ) -> Result<Outcome, CqlError> {
        let mut mutation = Mutation::new();
        for (p, params) in statements {
            if !matches!(
                p.statement,
                Statement::Insert { .. } | Statement::Update { .. } | Statement::Delete { .. }
            ) {
                return Err(CqlError::Invalid("Invalid statement in batch: only UPDATE, INSERT and DELETE statements are allowed.".into()));
            }
            let binds = Binds::new(&p.binds, params)?;
            let mut params = params.clone();
            params.timestamp = params.timestamp.or(timestamp);
            let ts = self.timestamp(&Using::default(), &binds, &params)?;
            self.mutation(keyspace, &p.statement, &binds, ts, &mut mutation)?;
        }
        self.write_batch(mutation, consistency, logged).await?;
        Ok(Outcome::Void)
    }

    /// A batch's cells: logged ones through the batchlog ([`crate::batchlog`]).
    async fn write_batch(
        &self,
        mutation: Mutation,
        cl: Consistency,
        kind: BatchKind,
    ) -> Result<(), CqlError> {
        match kind {
            BatchKind::Logged => self.write_logged(mutation, cl).await,
            BatchKind::Unlogged => self.write_as(mutation, cl, WriteType::UnloggedBatch).await,
        }
    }

    /// Levels a read cannot use. Whether enough replicas are up is checked
    /// per token range as the read goes (`coordinator`).
    pub(crate) fn read_check(&self, cl: Consistency, keyspace: &str) -> Result<(), CqlError> {
        match cl {
            Consistency::Any => Err(CqlError::Invalid(
                "ANY ConsistencyLevel is only supported for writes".into(),
            )),
            Consistency::EachQuorum if !crate::system::is_system_keyspace(keyspace) => {
                Err(CqlError::Invalid(
                    "EACH_QUORUM ConsistencyLevel is only supported for writes".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    fn timestamp(
        &self,
        using: &Using,
        binds: &Binds<'_>,
        params: &Params,
    ) -> Result<i64, CqlError> {
        if let Some(t) = &using.timestamp {
            let v = self.term_value(t, &CqlType::Bigint, binds)?;
            let Some(Some(b)) = v else {
                return Err(CqlError::Invalid("Invalid null value of timestamp".into()));
            };
            let ts = i64::from_be_bytes(
                b.try_into()
                    .map_err(|_| CqlError::Invalid("bad timestamp".into()))?,
            );
            self.hlc.observe(ts);
            return Ok(ts);
        }
        if let Some(ts) = params.timestamp {
            self.hlc.observe(ts);
            return Ok(ts);
        }
        Ok(self.hlc.now())
    }

    fn ttl(&self, t: &TableSchema, using: &Using, binds: &Binds<'_>) -> Result<i32, CqlError> {
        match &using.ttl {
            None => Ok(t.default_ttl),
            Some(term) => match self.term_value(term, &CqlType::Int, binds)? {
                Some(Some(b)) => {
                    let ttl = i32::from_be_bytes(
                        b.try_into()
                            .map_err(|_| CqlError::Invalid("bad ttl".into()))?,
                    );
                    if ttl < 0 {
                        return Err(CqlError::Invalid(format!(
                            "A TTL must be greater or equal to 0, but was {ttl}"
                        )));
                    }
                    if ttl > 630_720_000 {
                        return Err(CqlError::Invalid(format!(
                            "ttl is too large. requested ({ttl}) maximum (630720000)"
                        )));
                    }
                    Ok(ttl)
                }
                _ => Ok(0),
            },
        }
    }

    /// A term's bytes for a column of type `ty`: Some(None) for null, None
    /// for an unset bind marker.
    pub(crate) fn term_value(
        &self,
        term: &Term,
        ty: &CqlType,
        binds: &Binds<'_>,
    ) -> Result<Option<Option<Vec<u8>>>, CqlError> {
        match term {
            Term::Lit(l) => types::encode_literal(ty, l).map(Some).map_err(CqlError::Invalid),
            Term::Bind(i) => match binds.get(*i)? {
                Bound::Unset => Ok(None),
                Bound::Null => Ok(Some(None)),
                Bound::Value(b) => {
                    types::validate(ty, b).map_err(|e| {
                        CqlError::Invalid(format!("Invalid value for {}: {e}", binds.name(*i)))
                    })?;
                    Ok(Some(Some(b.clone())))
                }
            },
            Term::Func(f, args) => self.function(f, args, ty).map(|v| Some(Some(v))),
            Term::Op(..) | Term::Column(_) => Err(CqlError::Invalid(
                "collection appends and removals (SET c = c + ...) are not supported; write the whole collection".into(),
            )),
        }
    }

    fn function(&self, f: &str, args: &[Term], ty: &CqlType) -> Result<Vec<u8>, CqlError> {
        let now = self.hlc.now();
        let v = match (f, args) {
            ("now", []) => self.timeuuid(now).to_vec(),
            ("uuid", []) => uuid::Uuid::new_v4().as_bytes().to_vec(),
            ("currenttimestamp", []) => (now / 1000).to_be_bytes().to_vec(),
            ("currenttimeuuid", []) => self.timeuuid(now).to_vec(),
            ("totimestamp", [Term::Func(g, a)])
                if (g == "now" || g == "currenttimeuuid") && a.is_empty() =>
            {
                (now / 1000).to_be_bytes().to_vec()
            }
            ("currentdate", []) => (((now / 86_400_000_000) + (1i64 << 31)) as u32)
                .to_be_bytes()
                .to_vec(),
            _ => return Err(CqlError::Invalid(format!("Unknown function {f} called"))),
        };
        types::validate(ty, &v).map_err(|_| {
            CqlError::Invalid(format!(
                "Type error: {f}() cannot be passed as argument of type {ty}"
            ))
        })?;
        Ok(v)
    }

    /// The rows a write's WHERE names: every combination of its partition
    /// key and clustering values (= or IN).
    pub(crate) fn key_values(
        &self,
        t: &TableSchema,
        wheres: &[parser::Relation],
        binds: &Binds<'_>,
        cols: &[Col],
        need_all: bool,
    ) -> Result<Vec<Vec<Vec<u8>>>, CqlError> {
        let mut combos: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
        for c in cols {
            let rel = wheres
                .iter()
                .find(|r| matches!(&r.lhs, parser::Lhs::Column(n) if *n == c.name));
            let Some(rel) = rel else {
                if need_all {
                    return Err(CqlError::Invalid(format!(
                        "Some {} key parts are missing: {}",
                        if c.kind == ColumnKind::PartitionKey {
                            "partition"
                        } else {
                            "clustering"
                        },
                        c.name
                    )));
                }
                break;
            };
            let vals = self.relation_values(rel, c, binds)?;
            let _ = t;
            let mut next = Vec::new();
            for combo in &combos {
                for v in &vals {
                    let mut x = combo.clone();
                    x.push(v.clone());
                    next.push(x);
                }
            }
            combos = next;
            if combos.len() > 65_535 {
                return Err(CqlError::Invalid(
                    "too many key combinations in IN restrictions".into(),
                ));
            }
        }
        Ok(combos)
    }

    /// The values an = or IN relation on key column `c` gives.
    pub(crate) fn relation_values(
        &self,
        rel: &parser::Relation,
        c: &Col,
        binds: &Binds<'_>,
    ) -> Result<Vec<Vec<u8>>, CqlError> {
        let null = || {
            CqlError::Invalid(format!(
                "Invalid null value in condition for column {}",
                c.name
            ))
        };
        match rel.op {
            Op::Eq => match self.term_value(&rel.rhs[0], &c.ty, binds)? {
                Some(Some(v)) => Ok(vec![v]),
                None => Err(CqlError::Invalid(format!("Invalid unset value for column {}", c.name))),
                Some(None) => Err(null()),
            },
            Op::In if rel.in_marker => {
                let list_ty = CqlType::List(Box::new(c.ty.clone()));
                match self.term_value(&rel.rhs[0], &list_ty, binds)? {
                    Some(Some(b)) => {
                        let items = types::elements(&b, 1).map_err(CqlError::Invalid)?;
                        let mut out: Vec<Vec<u8>> = items
                            .into_iter()
                            .filter_map(|i| i[0].map(|x| x.to_vec()))
                            .collect();
                        out.sort_by_key(|a| types::order_key(&c.ty, a));
                        out.dedup();
                        Ok(out)
                    }
                    _ => Err(null()),
                }
            }
            Op::In => {
                let mut out = Vec::new();
                for term in &rel.rhs {
                    match self.term_value(term, &c.ty, binds)? {
                        Some(Some(v)) => out.push(v),
                        _ => return Err(null()),
                    }
                }
                out.sort_by_key(|a| types::order_key(&c.ty, a));
                out.dedup();
                Ok(out)
            }
            _ => Err(CqlError::Invalid(format!(
                "Only EQ and IN relation are supported on the partition key (unless you use the token() function or allow filtering) for column {}",
                c.name
            ))),
        }
    }

    /// Adds the cells one INSERT, UPDATE or DELETE writes to `m`.
    fn mutation(
        &self,
        keyspace: &Option<String>,
        s: &Statement,
        binds: &Binds<'_>,
        ts: i64,
        m: &mut Mutation,
    ) -> Result<Arc<TableSchema>, CqlError> {
        let now_secs = ts.max(0) / 1_000_000;
        let now_secs = now_secs.max(self.hlc.now() / 1_000_000);
        match s {
            Statement::Insert {
                table,
                columns,
                values,
                using,
                ..
            } => {
                let t = self.table(keyspace, table)?;
                check_writable(&t)?;
                let ttl = self.ttl(&t, using, binds)?;
                let mut pk = Vec::new();
                let mut ck = Vec::new();
                let mut regular = Vec::new();
                for c in t.all() {
                    let pos = columns.iter().position(|n| *n == c.name);
                    match c.kind {
                        ColumnKind::PartitionKey | ColumnKind::Clustering => {
                            let Some(pos) = pos else {
                                return Err(CqlError::Invalid(format!(
                                    "Some {} key parts are missing: {}",
                                    if c.kind == ColumnKind::PartitionKey {
                                        "partition"
                                    } else {
                                        "clustering"
                                    },
                                    c.name
                                )));
                            };
                            let v = match self.term_value(&values[pos], &c.ty, binds)? {
                                Some(Some(v)) => v,
                                _ => {
                                    return Err(CqlError::Invalid(format!(
                                        "Invalid null value in condition for column {}",
                                        c.name
                                    )))
                                }
                            };
                            if c.kind == ColumnKind::PartitionKey {
                                pk.push(v);
                            } else {
                                ck.push(v);
                            }
                        }
                        ColumnKind::Regular => {
                            if let Some(pos) = pos {
                                regular.push((c.id, self.term_value(&values[pos], &c.ty, binds)?));
                            }
                        }
                    }
                }
                for n in columns {
                    t.column(n)?;
                }
                let pkb = t.partition_bytes(&pk);
                check_key_size(&pkb)?;
                let row = cell::row_prefix(&t.partition_prefix(&pkb), &t.clustering_bytes(&ck));
                let mk = |v: Vec<u8>| {
                    if ttl > 0 {
                        Cell::expiring(ts, v, ttl, now_secs)
                    } else {
                        Cell::live(ts, v)
                    }
                };
                m.push((cell::cell_key(&row, cell::ROW_MARKER), mk(Vec::new())));
                for (id, v) in regular {
                    match v {
                        None => {}
                        Some(None) => {
                            m.push((cell::cell_key(&row, id), Cell::tombstone(ts, now_secs)))
                        }
                        Some(Some(v)) => m.push((cell::cell_key(&row, id), mk(v))),
                    }
                }
                Ok(t)
            }
            Statement::Update {
                table,
                using,
                set,
                wheres,
                ..
            } => {
                let t = self.table(keyspace, table)?;
                check_writable(&t)?;
                let ttl = self.ttl(&t, using, binds)?;
                check_where_columns(&t, wheres, true)?;
                let pks = self.key_values(&t, wheres, binds, &t.partition_key, true)?;
                let cks = self.key_values(&t, wheres, binds, &t.clustering, true)?;
                let mut cells = Vec::new();
                for (name, term) in set {
                    let c = t.column(name)?;
                    if c.kind != ColumnKind::Regular {
                        return Err(CqlError::Invalid(format!(
                            "PRIMARY KEY part {name} found in SET part"
                        )));
                    }
                    cells.push((c.id, self.term_value(term, &c.ty, binds)?));
                }
                for pk in &pks {
                    let pkb = t.partition_bytes(pk);
                    check_key_size(&pkb)?;
                    let prefix = t.partition_prefix(&pkb);
                    for ck in &cks {
                        let row = cell::row_prefix(&prefix, &t.clustering_bytes(ck));
                        for (id, v) in &cells {
                            match v {
                                None => {}
                                Some(None) => m.push((
                                    cell::cell_key(&row, *id),
                                    Cell::tombstone(ts, now_secs),
                                )),
                                Some(Some(v)) => m.push((
                                    cell::cell_key(&row, *id),
                                    if ttl > 0 {
                                        Cell::expiring(ts, v.clone(), ttl, now_secs)
                                    } else {
                                        Cell::live(ts, v.clone())
                                    },
                                )),
                            }
                        }
                    }
                }
                Ok(t)
            }
            Statement::Delete {
                table,
                columns,
                using,
                wheres,
                ..
            } => {
                let t = self.table(keyspace, table)?;
                check_writable(&t)?;
                if using.ttl.is_some() {
                    return Err(CqlError::Invalid(
                        "Cannot provide custom TTL for a DELETE".into(),
                    ));
                }
                check_where_columns(&t, wheres, true)?;
                let pks = self.key_values(&t, wheres, binds, &t.partition_key, true)?;
                let cks = self.key_values(&t, wheres, binds, &t.clustering, false)?;
                let full = cks.first().is_some_and(|c| c.len() == t.clustering.len());
                let none = cks.first().is_some_and(|c| c.is_empty());
                if !full && !none {
                    return Err(CqlError::Invalid("Range deletions (a clustering prefix) are not supported; name the whole primary key or only the partition key".into()));
                }
                let mut ids = Vec::new();
                for n in columns {
                    let c = t.column(n)?;
                    if c.kind != ColumnKind::Regular {
                        return Err(CqlError::Invalid(format!("Invalid identifier {n} for deletion (should not be a PRIMARY KEY part)")));
                    }
                    ids.push(c.id);
                }
                if none && !columns.is_empty() && !t.clustering.is_empty() {
                    return Err(CqlError::Invalid(format!(
                        "Some clustering keys are missing: {}",
                        t.clustering
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                for pk in &pks {
                    let pkb = t.partition_bytes(pk);
                    let prefix = t.partition_prefix(&pkb);
                    if none && columns.is_empty() {
                        m.push((
                            cell::partition_deletion_key(&prefix),
                            Cell::tombstone(ts, now_secs),
                        ));
                        continue;
                    }
                    for ck in &cks {
                        let row = cell::row_prefix(&prefix, &t.clustering_bytes(ck));
                        if ids.is_empty() {
                            m.push((
                                cell::cell_key(&row, cell::ROW_DELETION),
                                Cell::tombstone(ts, now_secs),
                            ));
                        }
                        for id in &ids {
                            m.push((cell::cell_key(&row, *id), Cell::tombstone(ts, now_secs)));
                        }
                    }
                }
                Ok(t)
            }
            _ => Err(CqlError::Invalid("not a modification statement".into())),
        }
    }

    async fn modify(
        &self,
        keyspace: &Option<String>,
        s: &Statement,
        binds: &Binds<'_>,
        params: &Params,
        _unused: Option<()>,
    ) -> Result<Outcome, CqlError> {
        let (using, condition) = match s {
            Statement::Insert {
                using,
                if_not_exists,
                ..
            } => (
                using,
                if *if_not_exists {
                    Condition::IfNotExists
                } else {
                    Condition::None
                },
            ),
            Statement::Update {
                using, condition, ..
            }
            | Statement::Delete {
                using, condition, ..
            } => (using, condition.clone()),
            _ => unreachable!("modify takes writes"),
        };
        let ts = self.timestamp(using, binds, params)?;
        let mut m = Mutation::new();
        let t = self.mutation(keyspace, s, binds, ts, &mut m)?;
        if condition == Condition::None {
            self.write(m, params.consistency).await?;
            return Ok(Outcome::Void);
        }
        crate::read::compare_and_set(self, &t, s, &condition, binds, params, m).await
    }

    pub(crate) fn lwt_lock(&self, partition: &[u8]) -> &tokio::sync::Mutex<()> {
        stripe(&self.lwt, partition)
    }

    async fn truncate(&self, t: &TableSchema, _params: &Params) -> Result<(), CqlError> {
        // A partition tombstone for every partition present now, read from
        // and written to every replica (Cassandra's TRUNCATE needs every
        // node up too).
        let mut m = Mutation::new();
        let ts = self.hlc.now();
        let now_secs = ts / 1_000_000;
        let mut last: Vec<u8> = Vec::new();
        let end = cell::prefix_end(&t.id);
        let mut start = t.id.to_vec();
        loop {
            let (cells, resume) = self
                .read_cells(
                    &start,
                    &end,
                    None,
                    Consistency::All,
                    crate::coordinator::CHUNK_MAX,
                )
                .await?;
            for (k, _) in cells {
                if let Some(p) = cell::partition_prefix_len(&k) {
                    if k[..p] != last[..] {
                        last = k[..p].to_vec();
                        m.push((
                            cell::partition_deletion_key(&last),
                            Cell::tombstone(ts, now_secs),
                        ));
                    }
                }
            }
            match resume {
                Some(next) if next < end => start = next,
                _ => break,
            }
        }
        self.write(m, Consistency::All).await
    }

    /// Prepares a statement: its bind markers' types and the partition key's
    /// markers (for token-aware drivers).
    pub fn prepare(
        &self,
        keyspace: &Option<String>,
        query: &str,
    ) -> Result<(Vec<u8>, Arc<Prepared>), CqlError> {
        let parsed = parser::parse(query).map_err(CqlError::Syntax)?;
        let mut binds: Vec<Option<ColumnSpec>> = vec![None; parsed.binds.len()];
        let mut pk_indexes = Vec::new();
        let mut result = None;
        let table_of = |q: &parser::QName| self.table(keyspace, q);
        let spec = |t: &TableSchema, name: &str, ty: CqlType| ColumnSpec {
            keyspace: t.keyspace.clone(),
            table: t.name.clone(),
            name: name.to_string(),
            ty,
        };
        let mut fill = |t: &TableSchema,
                        term: &Term,
                        name: &str,
                        ty: &CqlType,
                        binds: &mut Vec<Option<ColumnSpec>>| {
            if let Term::Bind(i) = term {
                binds[*i] = Some(spec(t, name, ty.clone()));
            }
        };
        let mut visit =
            |s: &Statement, binds: &mut Vec<Option<ColumnSpec>>| -> Result<(), CqlError> {
                match s {
                    Statement::Insert {
                        table,
                        columns,
                        values,
                        using,
                        ..
                    } => {
                        let t = table_of(table)?;
                        for (n, v) in columns.iter().zip(values) {
                            let c = t.column(n)?;
                            fill(&t, v, n, &c.ty, binds);
                        }
                        using_binds(&t, using, binds, &mut fill);
                    }
                    Statement::Update {
                        table,
                        using,
                        set,
                        wheres,
                        condition,
                    } => {
                        let t = table_of(table)?;
                        using_binds(&t, using, binds, &mut fill);
                        for (n, v) in set {
                            let c = t.column(n)?;
                            fill(&t, v, n, &c.ty, binds);
                        }
                        where_binds(&t, wheres, binds, &mut fill)?;
                        cond_binds(&t, condition, binds, &mut fill)?;
                    }
                    Statement::Delete {
                        table,
                        using,
                        wheres,
                        condition,
                        ..
                    } => {
                        let t = table_of(table)?;
                        using_binds(&t, using, binds, &mut fill);
                        where_binds(&t, wheres, binds, &mut fill)?;
                        cond_binds(&t, condition, binds, &mut fill)?;
                    }
                    Statement::Select {
                        table,
                        wheres,
                        limit,
                        per_partition_limit,
                        ..
                    } => {
                        let t = table_of(table)?;
                        where_binds(&t, wheres, binds, &mut fill)?;
                        for (l, name) in [
                            (limit, "[limit]"),
                            (per_partition_limit, "[per_partition_limit]"),
                        ] {
                            if let Some(l) = l {
                                fill(&t, l, name, &CqlType::Int, binds);
                            }
                        }
                    }
                    _ => {}
                }
                Ok(())
            };
        match &parsed.statement {
            Statement::Batch { statements, .. } => {
                for s in statements {
                    visit(s, &mut binds)?;
                }
            }
            s => visit(s, &mut binds)?,
        }
        if let Statement::Select { table, .. } = &parsed.statement {
            let t = self.table(keyspace, table)?;
            result = Some(crate::read::result_columns(&t, &parsed.statement)?);
        }
        // The partition key's markers, when every key column is one.
        if let Statement::Insert {
            table,
            columns,
            values,
            ..
        } = &parsed.statement
        {
            let t = table_of(table)?;
            pk_indexes = pk_markers(&t, |name| {
                columns
                    .iter()
                    .position(|c| c == name)
                    .and_then(|i| match values[i] {
                        Term::Bind(b) => Some(b),
                        _ => None,
                    })
            });
        }
        if let Statement::Update { table, wheres, .. }
        | Statement::Delete { table, wheres, .. }
        | Statement::Select { table, wheres, .. } = &parsed.statement
        {
            if let Ok(t) = table_of(table) {
                pk_indexes = pk_markers(&t, |name| {
                    wheres
                        .iter()
                        .find_map(|r| match (&r.lhs, r.op, r.rhs.first()) {
                            (parser::Lhs::Column(n), Op::Eq, Some(Term::Bind(b))) if n == name => {
                                Some(*b)
                            }
                            _ => None,
                        })
                });
            }
        }
        let binds: Vec<ColumnSpec> = binds
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                b.unwrap_or(ColumnSpec {
                    keyspace: keyspace.clone().unwrap_or_default(),
                    table: String::new(),
                    name: format!("bind{i}"),
                    ty: CqlType::Blob,
                })
            })
            .collect();
        let mut id = md5_like(query.as_bytes());
        if let Some(k) = keyspace {
            id = md5_like(&[query.as_bytes(), b"\0", k.as_bytes()].concat());
        }
        let p = Arc::new(Prepared {
            query: query.to_string(),
            keyspace: keyspace.clone(),
            parsed,
            binds,
            pk_indexes,
            result,
        });
        let mut cache = self.prepared.lock().expect("prepared lock");
        if cache.len() >= PREPARED_MAX {
            cache.clear();
        }
        cache.insert(id.to_vec(), p.clone());
        Ok((id.to_vec(), p))
    }
}

fn pk_markers(t: &TableSchema, marker_of: impl Fn(&str) -> Option<usize>) -> Vec<i16> {
    let idx: Vec<Option<usize>> = t.partition_key.iter().map(|c| marker_of(&c.name)).collect();
    if idx.iter().all(|i| i.is_some()) {
        idx.into_iter()
            .map(|i| i.expect("checked") as i16)
            .collect()
    } else {
        Vec::new()
    }
}

type Fill<'a> = dyn FnMut(&TableSchema, &Term, &str, &CqlType, &mut Vec<Option<ColumnSpec>>) + 'a;

fn using_binds(
    t: &TableSchema,
    u: &Using,
    binds: &mut Vec<Option<ColumnSpec>>,
    fill: &mut Fill<'_>,
) {
    if let Some(x) = &u.ttl {
        fill(t, x, "[ttl]", &CqlType::Int, binds);
    }
    if let Some(x) = &u.timestamp {
        fill(t, x, "[timestamp]", &CqlType::Bigint, binds);
    }
}

fn where_binds(
    t: &TableSchema,
    wheres: &[parser::Relation],
    binds: &mut Vec<Option<ColumnSpec>>,
    fill: &mut Fill<'_>,
) -> Result<(), CqlError> {
    for r in wheres {
        match &r.lhs {
            parser::Lhs::Column(n) => {
                let c = t.column(n)?;
                let ty = if r.in_marker {
                    CqlType::List(Box::new(c.ty.clone()))
                } else {
                    c.ty.clone()
                };
                for term in &r.rhs {
                    fill(t, term, n, &ty, binds);
                }
            }
            parser::Lhs::Token(_) => {
                for term in &r.rhs {
                    fill(t, term, "partition key token", &CqlType::Bigint, binds);
                }
            }
        }
    }
    Ok(())
}

fn cond_binds(
    t: &TableSchema,
    c: &Condition,
    binds: &mut Vec<Option<ColumnSpec>>,
    fill: &mut Fill<'_>,
) -> Result<(), CqlError> {
    if let Condition::Columns(cs) = c {
        for (n, _, term) in cs {
            let col = t.column(n)?;
            fill(t, term, n, &col.ty, binds);
        }
    }
    Ok(())
}

/// A 16-byte digest for prepared ids (stable per query, as Cassandra's MD5).
fn md5_like(b: &[u8]) -> [u8; 16] {
    let a = crc32c_of(b, 0);
    let c = crc32c_of(b, 1);
    let d = crc32c_of(b, 2);
    let e = crc32c_of(b, 3);
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a.to_be_bytes());
    out[4..8].copy_from_slice(&c.to_be_bytes());
    out[8..12].copy_from_slice(&d.to_be_bytes());
    out[12..].copy_from_slice(&e.to_be_bytes());
    out
}

fn crc32c_of(b: &[u8], seed: u8) -> u32 {
    // FNV-1a per seed: stable and cheap; collisions only cost a re-prepare.
    let mut h: u32 = 0x811c_9dc5 ^ (seed as u32).wrapping_mul(0x9e37_79b9);
    for x in b {
        h ^= *x as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn check_writable(t: &TableSchema) -> Result<(), CqlError> {
    if crate::system::is_system_keyspace(&t.keyspace) {
        return Err(CqlError::Unauthorized(format!(
            "{} keyspace is not user-modifiable",
            t.keyspace
        )));
    }
    Ok(())
}

fn check_key_size(pk: &[u8]) -> Result<(), CqlError> {
    if pk.len() > 65_535 {
        return Err(CqlError::Invalid(format!(
            "Key length of {} is longer than maximum of 65535",
            pk.len()
        )));
    }
    Ok(())
}

fn check_where_columns(
    t: &TableSchema,
    wheres: &[parser::Relation],
    write: bool,
) -> Result<(), CqlError> {
    for r in wheres {
        match &r.lhs {
            parser::Lhs::Column(n) => {
                let c = t.column(n)?;
                if write && c.kind == ColumnKind::Regular {
                    return Err(CqlError::Invalid(format!("Non PRIMARY KEY columns found in where clause: {n} ")));
                }
                if write && !matches!(r.op, Op::Eq | Op::In) {
                    return Err(CqlError::Invalid(format!("Invalid operator {:?} for PRIMARY KEY part {n}", r.op)));
                }
            }
            parser::Lhs::Token(_) if write => {
                return Err(CqlError::Invalid("The token function cannot be used in WHERE clauses for UPDATE and DELETE statements".into()))
            }
            parser::Lhs::Token(_) => {}
        }
    }
    Ok(())
}

/// Bound values by marker position.
pub struct Binds<'a> {
    names: &'a [Option<String>],
    values: Vec<Bound>,
}

impl<'a> Binds<'a> {
    pub fn new(names: &'a [Option<String>], params: &Params) -> Result<Binds<'a>, CqlError> {
        let values = match &params.named {
            Some(named) => names
                .iter()
                .map(|n| {
                    let n = n.as_deref().unwrap_or("");
                    named
                        .get(n)
                        .cloned()
                        .ok_or_else(|| CqlError::Invalid(format!("No value for bind variable {n}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => params.values.clone(),
        };
        if values.len() != names.len() {
            return Err(CqlError::Invalid(format!(
                "There were {} markers(?) in CQL but {} bound variables",
                names.len(),
                values.len()
            )));
        }
        Ok(Binds { names, values })
    }

    fn get(&self, i: usize) -> Result<&Bound, CqlError> {
        self.values
            .get(i)
            .ok_or_else(|| CqlError::Invalid(format!("no value for bind marker {i}")))
    }

    fn name(&self, i: usize) -> String {
        self.names
            .get(i)
            .cloned()
            .flatten()
            .unwrap_or_else(|| format!("bind marker {i}"))
    }
}

fn keyspace_options(
    options: &[(String, Term)],
    current: Option<&keel_meta::Keyspace>,
) -> Result<(std::collections::BTreeMap<String, String>, bool), CqlError> {
    let mut replication = current.map(|k| k.replication.clone());
    let mut durable = current.is_none_or(|k| k.durable_writes);
    for (name, v) in options {
        match (name.as_str(), v) {
            ("replication", Term::Lit(Literal::Map(m))) => {
                let mut r = std::collections::BTreeMap::new();
                for (k, v) in m {
                    let (Literal::Str(k), v) = (k, v) else {
                        return Err(CqlError::Syntax(
                            "replication options are 'name': value pairs".into(),
                        ));
                    };
                    let v = match v {
                        Literal::Str(s) | Literal::Number(s) => s.clone(),
                        _ => {
                            return Err(CqlError::Config(format!(
                                "bad value for replication option {k}"
                            )))
                        }
                    };
                    r.insert(k.clone(), v);
                }
                replication = Some(check_replication(r)?);
            }
            ("durable_writes", Term::Lit(Literal::Bool(b))) => durable = *b,
            ("durable_writes", Term::Lit(Literal::Str(s))) => {
                durable = s.eq_ignore_ascii_case("true")
            }
            _ => return Err(CqlError::Syntax(format!("Unknown property '{name}'"))),
        }
    }
    let replication = replication
        .ok_or_else(|| CqlError::Config("Missing mandatory option 'replication'".into()))?;
    Ok((replication, durable))
}

/// Cassandra's replication strategies and their options.
fn check_replication(
    mut r: std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, CqlError> {
    let class = r
        .get("class")
        .cloned()
        .ok_or_else(|| CqlError::Config("Missing replication strategy class".into()))?;
    let short = class.rsplit('.').next().unwrap_or(&class).to_string();
    let rf_ok = |v: &str| v.parse::<u32>().ok().filter(|n| *n <= 100).is_some();
    match short.as_str() {
        "SimpleStrategy" => {
            let rf = r.get("replication_factor").ok_or_else(|| {
                CqlError::Config(
                    "SimpleStrategy requires a replication_factor strategy option.".into(),
                )
            })?;
            if !rf_ok(rf) {
                return Err(CqlError::Config(format!(
                    "Replication factor must be non-negative integer; found {rf}"
                )));
            }
            if let Some(k) = r
                .keys()
                .find(|k| *k != "class" && *k != "replication_factor")
            {
                return Err(CqlError::Config(format!(
                    "Unrecognized strategy option {{{k}}} passed to SimpleStrategy for keyspace"
                )));
            }
            r.insert(
                "class".into(),
                "org.apache.cassandra.locator.SimpleStrategy".into(),
            );
        }
        "NetworkTopologyStrategy" => {
            for (k, v) in &r {
                if k != "class" && !rf_ok(v) {
                    return Err(CqlError::Config(format!(
                        "Replication factor must be non-negative integer; found {v}"
                    )));
                }
            }
            r.insert(
                "class".into(),
                "org.apache.cassandra.locator.NetworkTopologyStrategy".into(),
            );
        }
        "LocalStrategy" => {
            return Err(CqlError::Config(
                "Unable to use given strategy class: LocalStrategy is reserved for internal use."
                    .into(),
            ))
        }
        _ => {
            return Err(CqlError::Config(format!(
                "Unable to find replication strategy class '{class}'"
            )))
        }
    }
    Ok(r)
}

fn table_columns(
    columns: &[(String, String)],
    partition_key: &[String],
    clustering: &[String],
    clustering_order: &[(String, bool)],
) -> Result<Vec<keel_meta::Column>, CqlError> {
    if partition_key.is_empty() {
        return Err(CqlError::Invalid(
            "No PRIMARY KEY specifed for table (exactly one required)".into(),
        ));
    }
    let ty_of = |n: &str| -> Result<CqlType, CqlError> {
        let (_, t) = columns.iter().find(|(c, _)| c == n).ok_or_else(|| {
            CqlError::Invalid(format!("Unknown definition {n} referenced in PRIMARY KEY"))
        })?;
        CqlType::parse(t).map_err(CqlError::Invalid)
    };
    for (i, (c, _)) in clustering_order.iter().enumerate() {
        if clustering.get(i) != Some(c) {
            return Err(CqlError::Invalid(if clustering.contains(c) {
                "The order of columns in the CLUSTERING ORDER directive must match that of the clustering columns".into()
            } else {
                format!("Only clustering key columns can be defined in CLUSTERING ORDER directive: {c} is not a clustering column")
            }));
        }
    }
    let mut out = Vec::new();
    for (i, n) in partition_key.iter().enumerate() {
        let ty = ty_of(n)?;
        if ty.is_collection() {
            return Err(CqlError::Invalid(format!(
                "Invalid non-frozen collection type for PRIMARY KEY component {n}"
            )));
        }
        out.push(keel_meta::Column {
            name: n.clone(),
            cql_type: ty.to_string(),
            kind: ColumnKind::PartitionKey as i32,
            position: i as i32,
            ..Default::default()
        });
    }
    for (i, n) in clustering.iter().enumerate() {
        let ty = ty_of(n)?;
        if ty.is_collection() {
            return Err(CqlError::Invalid(format!(
                "Invalid non-frozen collection type for PRIMARY KEY component {n}"
            )));
        }
        if !ty.orderable() {
            return Err(CqlError::Invalid(format!(
                "clustering column {n} of type {ty} is not supported yet"
            )));
        }
        out.push(keel_meta::Column {
            name: n.clone(),
            cql_type: ty.to_string(),
            kind: ColumnKind::Clustering as i32,
            position: i as i32,
            reversed: clustering_order.get(i).is_some_and(|(_, d)| *d),
            ..Default::default()
        });
    }
    for (n, t) in columns {
        if partition_key.contains(n) || clustering.contains(n) {
            continue;
        }
        let ty = CqlType::parse(t).map_err(CqlError::Invalid)?;
        out.push(keel_meta::Column {
            name: n.clone(),
            cql_type: ty.to_string(),
            kind: ColumnKind::Regular as i32,
            position: -1,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Table options Keel honours or keeps (others are refused, as Cassandra
/// refuses unknown properties).
const TABLE_OPTIONS: &[&str] = &[
    "gc_grace_seconds",
    "default_time_to_live",
    "comment",
    "bloom_filter_fp_chance",
    "caching",
    "compaction",
    "compression",
    "crc_check_chance",
    "speculative_retry",
    "additional_write_policy",
    "memtable_flush_period_in_ms",
    "read_repair",
    "min_index_interval",
    "max_index_interval",
    "cdc",
    "extensions",
];

fn table_options(
    options: &[(String, Term)],
) -> Result<std::collections::BTreeMap<String, String>, CqlError> {
    let mut out = std::collections::BTreeMap::new();
    for (name, v) in options {
        if !TABLE_OPTIONS.contains(&name.as_str()) {
            return Err(CqlError::Syntax(format!("Unknown property '{name}'")));
        }
        let s = match v {
            Term::Lit(Literal::Str(s) | Literal::Number(s)) => s.clone(),
            Term::Lit(Literal::Bool(b)) => b.to_string(),
            Term::Lit(Literal::Map(_)) => continue,
            _ => {
                return Err(CqlError::Syntax(format!(
                    "Invalid value for property '{name}'"
                )))
            }
        };
        if matches!(name.as_str(), "gc_grace_seconds" | "default_time_to_live") {
            let n: i64 = s
                .parse()
                .map_err(|_| CqlError::Config(format!("Invalid value for {name}: {s}")))?;
            if !(0..=i32::MAX as i64).contains(&n) {
                return Err(CqlError::Config(format!(
                    "{name} must be greater than or equal to 0 (got {n})"
                )));
            }
        }
        out.insert(name.clone(), s);
    }
    Ok(out)
}

/// Parses a statement, answering with Cassandra's syntax error.
pub fn parse(query: &str) -> Result<Parsed, CqlError> {
    parser::parse(query).map_err(CqlError::Syntax)
}

/// Keeps the engine in line with the schema: each table's gc_grace_seconds,
/// and dropped tables' data forgotten (compaction removes it).
pub async fn follow_schema(engine: Arc<Engine>, mut image: watch::Receiver<Arc<Image>>) {
    loop {
        let img = image.borrow_and_update().clone();
        for ks in img.keyspaces.values() {
            for t in ks.tables.values() {
                let grace = t
                    .options
                    .get("gc_grace_seconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(keel_table::engine::GC_GRACE_DEFAULT);
                engine.set_gc_grace(&t.id, grace);
            }
        }
        for id in &img.dropped_table_ids {
            engine.drop_table(id);
        }
        if image.changed().await.is_err() {
            return;
        }
    }
}
