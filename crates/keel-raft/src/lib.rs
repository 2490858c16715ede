//! Keel's Raft quorum.
//!
//! The consensus algorithm is raft-rs (`raft` 0.7, TiKV's port of etcd's raft):
//! a pure state machine with pre-vote, check-quorum, joint consensus, learners,
//! snapshots and ReadIndex. This crate drives it: [`node::Node`] owns the
//! `RawNode` on one thread (tick, step, persist, send, apply, advance), [`wal`]
//! keeps the log fsynced on disk, and [`transport`] carries messages between
//! nodes over TCP. What the log means is the [`StateMachine`]'s business.
//!
//! Architecture Invariant: nothing here knows what an entry holds; the state
//! machine knows nothing of sockets or threads.

pub mod node;
pub mod transport;
pub mod wal;

pub use node::{Node, NodeConfig, NodeStatus, ProposeError, Role};
pub use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, HardState};
pub use transport::{Faults, PeerTls, TcpTransport};

/// What a replicated state machine must do for the node.
///
/// Calls come from the node's thread, one at a time, in log order. `apply`
/// must be deterministic: every replica applies the same entries to the same
/// state and gets the same output.
pub trait StateMachine: Send + 'static {
    /// What a proposer is told once its entry is applied.
    type Output: Send + 'static;

    /// The last applied index and its term, and the membership at that index.
    fn applied(&self) -> (u64, u64, ConfState);

    /// Applies a normal entry (`data` may be empty: a new leader's no-op).
    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Self::Output;

    /// Applies a membership change; `cs` is the membership after it, and
    /// `context` what the proposer attached.
    fn apply_conf_change(
        &mut self,
        index: u64,
        term: u64,
        cc: &ConfChangeV2,
        cs: &ConfState,
        context: &[u8],
    ) -> Self::Output;

    /// Ends a batch of applies: what was applied becomes visible to readers.
    fn finish_batch(&mut self);

    /// Makes everything applied durable if it is due (or `force`), and returns
    /// the highest index known durable: the log may be compacted up to it.
    fn persist(&mut self, force: bool) -> Result<u64, Error>;

    /// The whole state at the applied index, for a follower too far behind.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot taken at `index`, durably.
    fn restore(&mut self, index: u64, term: u64, cs: &ConfState, data: &[u8]) -> Result<(), Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("corrupt raft log: {0}")]
    Corrupt(String),
    #[error("encode raft record: {0}")]
    Codec(String),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("state machine: {0}")]
    StateMachine(String),
}

impl Error {
    pub fn io(what: &'static str, source: std::io::Error) -> Error {
        Error::Io { what, source }
    }
    fn codec(e: protobuf::ProtobufError) -> Error {
        Error::Codec(e.to_string())
    }
}
