//! The Kafka wire-protocol front of a Keel node.
//!
//! Layers, as in tokio's mini-redis: [`server`] owns sockets and framing (a length
//! prefix, bounded); [`frame`] parses the request header and rejects what cannot be
//! answered; [`handlers`] decode typed requests with the `kafka-protocol` crate and
//! call `keel-broker`; [`error`] is the one place broker errors become Kafka codes.
//! [`client`] is a small pipelined client used by `keel bench` and the tests.
//!
//! Architecture Invariant: protocol types from `kafka-protocol` do not leak into
//! `keel-broker` or `keel-storage`; this crate translates at its edge.

pub mod client;
pub mod error;
pub mod frame;
pub mod handlers;
pub mod metrics;
pub mod quotas;
pub mod replication;
pub mod server;
pub mod versions;

pub use server::{serve, ServerConfig};
