//! Keel's tables face on the wire: Cassandra's native protocol (v4, and v3
//! for old clients) so cqlsh and Cassandra's drivers work unchanged; a CQL
//! parser; statements run against the schema on the metadata quorum, and the
//! coordinator sends them to the replicas the ring names (this node's table
//! engine, [`keel_table`], or a peer's over [`internode`]).

pub mod batchlog;
pub mod bootstrap;
pub mod coordinator;
pub mod error;
pub mod exec;
pub mod gossip;
pub mod hints;
pub mod internode;
pub mod parser;
pub mod paxos;
pub mod read;
pub mod repair;
pub mod server;
pub mod system;
pub mod table;

pub use error::CqlError;
pub use exec::{follow_schema, LocalInfo, Node, Proposer};
pub use server::serve;
