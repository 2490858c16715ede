//! keel-cql against a real table engine and a schema applied as the quorum
//! would apply it (records on an `Image`, without Raft).

mod protocol;
mod queries;

use std::sync::{Arc, Mutex};

use keel_cql::exec::{Bound, Outcome, Params, Rows};
use keel_cql::{LocalInfo, Node, Proposer};
use keel_meta::{Image, Record};
use keel_table::{Engine, EngineConfig};
use tokio::sync::watch;

/// A node whose metadata quorum is a local image.
pub struct Local {
    pub node: Arc<Node>,
    pub engine: Arc<Engine>,
    pub dir: tempfile::TempDir,
    pub keyspace: Option<String>,
}

pub fn local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(EngineConfig::new(dir.path().join("table"))).unwrap();
    let engine = Arc::new(engine);
    let (tx, rx) = watch::channel(Arc::new(Image::default()));
    let tx = Arc::new(Mutex::new((tx, 0u64)));
    let propose: Proposer = Arc::new(move |rec: Record| {
        let tx = tx.clone();
        Box::pin(async move {
            let mut g = tx.lock().unwrap();
            g.1 += 1;
            let index = g.1;
            let mut img = (**g.0.borrow()).clone();
            let r = img.apply(index, rec);
            if r.is_ok() {
                g.0.send_replace(Arc::new(img));
            }
            Ok(r)
        })
    });
    let node = Arc::new(Node::new(
        engine.clone(),
        rx,
        propose,
        LocalInfo {
            node_id: 1,
            cql_host: "127.0.0.1".into(),
            cql_port: 9042,
            datacenter: "datacenter1".into(),
            rack: "rack1".into(),
            cluster_name: "Test".into(),
            max_hint_window: std::time::Duration::from_secs(3 * 3600),
            gossip_interval: keel_cql::gossip::DEFAULT_INTERVAL,
            phi_convict_threshold: keel_cql::gossip::DEFAULT_PHI_CONVICT,
        },
    ));
    Local {
        node,
        engine,
        dir,
        keyspace: None,
    }
}

impl Local {
    /// Runs one statement with `params`.
    pub async fn run_with(
        &mut self,
        q: &str,
        params: Params,
    ) -> Result<Outcome, keel_cql::CqlError> {
        let parsed = keel_cql::exec::parse(q)?;
        let out = self.node.execute(&self.keyspace, &parsed, &params).await?;
        if let Outcome::SetKeyspace(k) = &out {
            self.keyspace = Some(k.clone());
        }
        Ok(out)
    }

    pub async fn run(&mut self, q: &str) -> Result<Outcome, keel_cql::CqlError> {
        self.run_with(q, Params::default()).await
    }

    /// Runs `q`, which must succeed.
    pub async fn ok(&mut self, q: &str) -> Outcome {
        match self.run(q).await {
            Ok(o) => o,
            Err(e) => panic!("{q}: {e}"),
        }
    }

    /// The rows `q` returns.
    pub async fn rows(&mut self, q: &str) -> Rows {
        match self.ok(q).await {
            Outcome::Rows(r) => r,
            o => panic!("{q}: not rows: {o:?}"),
        }
    }

    /// The message of the error `q` must fail with.
    pub async fn err(&mut self, q: &str) -> String {
        match self.run(q).await {
            Ok(o) => panic!("{q}: expected an error, got {o:?}"),
            Err(e) => e.to_string(),
        }
    }
}

/// Rows as text: ints, bigints and text shown as themselves, null as "null".
pub fn show(rows: &Rows) -> Vec<String> {
    rows.rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&rows.columns)
                .map(|(v, c)| match v {
                    None => "null".to_string(),
                    Some(b) => match c.ty {
                        keel_table::CqlType::Int => {
                            i32::from_be_bytes(b[..4].try_into().unwrap()).to_string()
                        }
                        keel_table::CqlType::Bigint => {
                            i64::from_be_bytes(b[..8].try_into().unwrap()).to_string()
                        }
                        keel_table::CqlType::Boolean => (b[0] != 0).to_string(),
                        _ => String::from_utf8_lossy(b).to_string(),
                    },
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

pub fn int(v: i32) -> Bound {
    Bound::Value(v.to_be_bytes().to_vec())
}
