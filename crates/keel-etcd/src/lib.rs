//! Keel's etcd face: the etcd v3 API on Keel's Raft quorum.
//!
//! [`store::Store`] is the replicated state machine (MVCC on redb, leases,
//! members, alarms); [`server`] serves etcd's gRPC services (tonic, etcd's own
//! .proto files) and turns each write into a Raft proposal and each
//! linearizable read into a ReadIndex barrier; [`http`] adds etcd's `/health`,
//! `/version` and `/metrics` on the same client port.
//!
//! Architecture Invariant: `store` opens no socket and reads no clock for its
//! replicated state: replicas apply the same entries to the same result.

pub mod auth;
pub mod backup;
pub mod cluster;
pub mod error;
pub mod gateway;
pub mod http;
pub mod jwt;
pub mod quorum;
pub mod server;
pub mod store;

#[allow(clippy::all, missing_docs)]
pub mod pb {
    pub mod authpb {
        include!("pb/authpb.rs");
        include!("pb/authpb.serde.rs");
    }
    pub mod mvccpb {
        include!("pb/mvccpb.rs");
        include!("pb/mvccpb.serde.rs");
    }
    pub mod etcdserverpb {
        include!("pb/etcdserverpb.rs");
        include!("pb/etcdserverpb.serde.rs");
    }
    pub mod v3lockpb {
        include!("pb/v3lockpb.rs");
        include!("pb/v3lockpb.serde.rs");
    }
    pub mod v3electionpb {
        include!("pb/v3electionpb.rs");
        include!("pb/v3electionpb.serde.rs");
    }
    pub mod keelpb {
        include!("pb/keelpb.rs");
    }
}

pub use error::EtcdError;
