//! The CLI's view of a Kafka cluster: a bootstrap connection, one connection per
//! broker as needed, API versions negotiated with each, and requests routed to
//! partition leaders and group coordinators. It works against Keel and against
//! any Kafka-compatible broker.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FindCoordinatorRequest, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use keel_kafka::client::Connection;

/// GETs `path` from a Keel node's admin HTTP listener at `addr`, as JSON.
pub async fn admin_json(addr: &str, path: &str) -> Result<serde_json::Value> {
    admin_request(
        addr,
        hyper::Method::GET,
        path,
        std::time::Duration::from_secs(5),
    )
    .await
}

/// Sends `method path` to a Keel node's admin HTTP listener at `addr` and
/// reads the answer as JSON, waiting at most `wait`.
pub async fn admin_request(
    addr: &str,
    method: hyper::Method,
    path: &str,
    wait: std::time::Duration,
) -> Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let get = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, addr)
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{status}: {}", String::from_utf8_lossy(&body).trim());
        }
        Ok(serde_json::from_slice(&body)?)
    };
    tokio::time::timeout(wait, get)
        .await
        .map_err(|_| anyhow!("no answer in {} s", wait.as_secs()))?
        .with_context(|| format!("{method} http://{addr}{path}"))
}

pub fn st(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn topic_name(v: &str) -> TopicName {
    TopicName(st(v))
}

/// A Kafka error code as a short message naming the action; `Ok` for 0.
pub fn check(code: i16, what: &str) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    let e = ResponseError::try_from_code(code)
        .map_or_else(|| format!("error code {code}"), |e| format!("{e}"));
    bail!("{what}: {e}")
}

fn api_of<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown API key {}", R::KEY))
}

struct Node {
    conn: Connection,
    versions: HashMap<i16, (i16, i16)>,
}

async fn open(addr: &str) -> Result<Node> {
    let conn = Connection::connect(addr).await.map_err(|e| {
        let cause = e.root_cause().to_string();
        anyhow!(
            "cannot reach a broker at {addr} ({cause}): is Keel running? Start one with `keel dev`, \
             or point --brokers / KEEL_BROKERS at a running broker"
        )
    })?;
    let resp = conn
        .call(
            &ApiVersionsRequest::default()
                .with_client_software_name(st("keel-cli"))
                .with_client_software_version(st(env!("CARGO_PKG_VERSION"))),
            3,
        )
        .await
        .with_context(|| format!("ask {addr} for its API versions"))?;
    check(resp.error_code, "ApiVersions")?;
    let versions = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect();
    Ok(Node { conn, versions })
}

pub struct Cluster {
    bootstrap: String,
    nodes: HashMap<i32, Node>,
    first: Node,
    brokers: BTreeMap<i32, String>,
}

impl Cluster {
    /// Connects to the first reachable of the comma-separated bootstrap addresses.
    pub async fn connect(brokers: &str) -> Result<Cluster> {
        let mut last = None;
        for addr in brokers.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match open(addr).await {
                Ok(first) => {
                    return Ok(Cluster {
                        bootstrap: addr.to_string(),
                        nodes: HashMap::new(),
                        first,
                        brokers: BTreeMap::new(),
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("--brokers is empty: give HOST:PORT")))
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The version to use for `api` on a node: the highest both sides know, up to
    /// `want`.
    fn version_on(node: &Node, api: ApiKey, want: i16) -> Result<i16> {
        let Some(&(lo, hi)) = node.versions.get(&(api as i16)) else {
            bail!("the broker does not support {api:?}");
        };
        let v = want.min(hi);
        if v < lo {
            bail!("the broker needs {api:?} v{lo}+, this CLI speaks up to v{want}");
        }
        Ok(v)
    }

    /// Sends `req` to the bootstrap broker.
    pub async fn call<R: Request>(&self, req: &R, want: i16) -> Result<R::Response> {
        let v = Self::version_on(&self.first, api_of::<R>()?, want)?;
        self.first.conn.call(req, v).await
    }

    /// Sends `req` to broker `id` (the bootstrap connection if it is that broker).
    pub async fn call_node<R: Request>(
        &mut self,
        id: i32,
        req: &R,
        want: i16,
    ) -> Result<R::Response> {
        if !self.nodes.contains_key(&id) {
            if self.brokers.is_empty() {
                self.metadata(None).await?;
            }
            let addr = self
                .brokers
                .get(&id)
                .cloned()
                .ok_or_else(|| anyhow!("broker {id} is not in the cluster's metadata"))?;
            if addr == self.bootstrap {
                let v = Self::version_on(&self.first, api_of::<R>()?, want)?;
                return self.first.conn.call(req, v).await;
            }
            self.nodes.insert(id, open(&addr).await?);
        }
        let node = &self.nodes[&id];
        let v = Self::version_on(node, api_of::<R>()?, want)?;
        node.conn.call(req, v).await
    }

    /// Sends `req` to broker `id` without waiting for a response (acks=0).
    pub async fn call_oneway_node<R: Request>(
        &mut self,
        id: i32,
        req: &R,
        want: i16,
    ) -> Result<()> {
        // Make sure the connection exists, then send on it.
        if !self.nodes.contains_key(&id)
            && self.brokers.get(&id).map(String::as_str) != Some(self.bootstrap.as_str())
        {
            if self.brokers.is_empty() {
                self.metadata(None).await?;
            }
            let addr = self
                .brokers
                .get(&id)
                .cloned()
                .ok_or_else(|| anyhow!("broker {id} is not in the cluster's metadata"))?;
            if addr != self.bootstrap {
                self.nodes.insert(id, open(&addr).await?);
            }
        }
        let node = self.nodes.get(&id).unwrap_or(&self.first);
        let v = Self::version_on(node, api_of::<R>()?, want)?;
        node.conn.send_oneway(req, v).await
    }

    /// Metadata for `topics` (all when `None`); never creates a topic.
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        });
        req.allow_auto_topic_creation = false;
        let resp = self.call(&req, 12).await?;
        self.brokers = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        Ok(resp)
    }

    /// One topic's metadata; a clear error when it does not exist.
    pub async fn topic(&mut self, name: &str) -> Result<MetadataResponseTopic> {
        let resp = self.metadata(Some(&[name.to_string()])).await?;
        let t = resp
            .topics
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the broker said nothing about topic {name:?}"))?;
        if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
            bail!("topic {name:?} does not exist (see `keel topic list`)");
        }
        check(t.error_code, &format!("topic {name:?}"))?;
        Ok(t)
    }

    /// The broker coordinating `group`.
    pub async fn coordinator(&mut self, group: &str) -> Result<i32> {
        let resp = self
            .call(&FindCoordinatorRequest::default().with_key(st(group)), 3)
            .await?;
        check(
            resp.error_code,
            &format!("find the coordinator of group {group:?}"),
        )?;
        if self.brokers.is_empty() {
            self.metadata(None).await?;
        }
        Ok(resp.node_id.0)
    }
}
