//! Cassandra's error codes, and the one mapping to the protocol's error body.

use cassandra_protocol::consistency::Consistency;
use cassandra_protocol::frame::message_error::{
    AlreadyExistsError, ErrorBody, ErrorType, ReadTimeoutError, UnavailableError, UnpreparedError,
    WriteTimeoutError, WriteType,
};
use cassandra_protocol::frame::{FromCursor, Version};
use cassandra_protocol::types::CBytesShort;

/// Why a request failed, as Cassandra tells a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CqlError {
    /// 0x2000 SyntaxException.
    #[error("{0}")]
    Syntax(String),
    /// 0x2200 InvalidRequest.
    #[error("{0}")]
    Invalid(String),
    /// 0x2300 ConfigurationException.
    #[error("{0}")]
    Config(String),
    /// 0x2100 Unauthorized.
    #[error("{0}")]
    Unauthorized(String),
    /// 0x2400 AlreadyExists (table empty for a keyspace).
    #[error("{message}")]
    AlreadyExists {
        keyspace: String,
        table: String,
        message: String,
    },
    /// 0x2500 Unprepared.
    #[error("Prepared query with ID {} not found (either the query was not prepared on this host (maybe the host has been restarted?) or you have prepared too many queries and it has been evicted from the internal cache)", hex(.0))]
    Unprepared(Vec<u8>),
    /// 0x1000 Unavailable: fewer live replicas than the consistency level needs.
    #[error("Cannot achieve consistency level {}", cl_name(*.cl))]
    Unavailable {
        cl: Consistency,
        required: i32,
        alive: i32,
    },
    /// 0x1100 WriteTimeout.
    #[error("Operation timed out - received only {received} responses.")]
    WriteTimeout {
        cl: Consistency,
        received: i32,
        block_for: i32,
        write_type: WriteType,
    },
    /// 0x1200 ReadTimeout.
    #[error("Operation timed out - received only {received} responses.")]
    ReadTimeout {
        cl: Consistency,
        received: i32,
        block_for: i32,
        data_present: bool,
    },
    /// 0x000A ProtocolError.
    #[error("{0}")]
    Protocol(String),
    /// 0x0000 ServerError.
    #[error("{0}")]
    Server(String),
}

/// A consistency level as Cassandra names it (`LOCAL_QUORUM`).
pub fn cl_name(cl: Consistency) -> String {
    let mut out = String::new();
    for (i, ch) in format!("{cl:?}").chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl CqlError {
    pub fn body(&self) -> ErrorBody {
        let ty = match self {
            CqlError::Syntax(_) => ErrorType::Syntax,
            CqlError::Invalid(_) => ErrorType::Invalid,
            CqlError::Config(_) => ErrorType::Config,
            CqlError::Unauthorized(_) => ErrorType::Unauthorized,
            CqlError::AlreadyExists {
                keyspace, table, ..
            } => ErrorType::AlreadyExists(AlreadyExistsError {
                ks: keyspace.clone(),
                table: table.clone(),
            }),
            CqlError::Unprepared(id) => ErrorType::Unprepared(UnpreparedError {
                id: CBytesShort::new(id.clone()),
            }),
            CqlError::Unavailable {
                cl,
                required,
                alive,
            } => ErrorType::Unavailable(UnavailableError {
                cl: *cl,
                required: *required,
                alive: *alive,
            }),
            CqlError::WriteTimeout {
                cl,
                received,
                block_for,
                write_type,
            } => ErrorType::WriteTimeout(WriteTimeoutError {
                cl: *cl,
                received: *received,
                block_for: *block_for,
                write_type: write_type.clone(),
                contentions: None,
            }),
            CqlError::ReadTimeout {
                cl,
                received,
                block_for,
                data_present,
            } => {
                // `data_present` has no setter: build it the way a client reads it.
                let mut b = Vec::with_capacity(11);
                b.extend_from_slice(&i16::from(*cl).to_be_bytes());
                b.extend_from_slice(&received.to_be_bytes());
                b.extend_from_slice(&block_for.to_be_bytes());
                b.push(*data_present as u8);
                match ReadTimeoutError::from_cursor(&mut std::io::Cursor::new(&b[..]), Version::V4)
                {
                    Ok(e) => ErrorType::ReadTimeout(e),
                    Err(_) => ErrorType::Server,
                }
            }
            CqlError::Protocol(_) => ErrorType::Protocol,
            CqlError::Server(_) => ErrorType::Server,
        };
        ErrorBody {
            message: self.to_string(),
            ty,
        }
    }
}

impl From<keel_meta::MetaError> for CqlError {
    fn from(e: keel_meta::MetaError) -> CqlError {
        use keel_meta::MetaError as M;
        match e {
            M::KeyspaceExists(k) => CqlError::AlreadyExists {
                message: format!("Keyspace {k} already exists"),
                keyspace: k,
                table: String::new(),
            },
            M::TableExists(k, t) => CqlError::AlreadyExists {
                message: format!("Object {k}.{t} already exists"),
                keyspace: k,
                table: t,
            },
            M::Unauthorized(m) => CqlError::Unauthorized(m),
            M::UnknownKeyspace(_) | M::UnknownTable(..) => CqlError::Invalid(e.to_string()),
            other => CqlError::Invalid(other.to_string()),
        }
    }
}
