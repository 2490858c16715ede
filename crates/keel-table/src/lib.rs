//! Keel's tables face below the wire protocol: CQL's types and values, cells
//! and their keys, hybrid logical clock timestamps, and the LSM storage
//! engine each node keeps its replicas in. No socket is opened here.

pub mod cell;
pub mod engine;
pub mod hlc;
pub mod types;

pub use cell::Cell;
pub use engine::{Engine, EngineConfig, Mutation, SyncMode};
pub use hlc::Hlc;
pub use types::{CqlType, Literal};
