pub mod batch_query_builder;
pub mod prepare_flags;
pub mod prepared_query;
pub mod query_flags;
pub mod query_params;
pub mod query_params_builder;
pub mod query_values;
pub mod utils;

pub use crate::query::batch_query_builder::{BatchQueryBuilder, QueryBatch};
pub use crate::query::prepare_flags::PrepareFlags;
pub use crate::query::prepared_query::PreparedQuery;
pub use crate::query::query_flags::QueryFlags;
pub use crate::query::query_params::QueryParams;
pub use crate::query::query_params_builder::QueryParamsBuilder;
pub use crate::query::query_values::QueryValues;
