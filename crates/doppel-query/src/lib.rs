//! Doppel's fleet query language: a SQL `WHERE`-like filter over twins.
//!
//! ```text
//! reported.temperature > 30 AND tags.site IN ('berlin', 'paris') AND NOT delta IS EMPTY
//! ```
//!
//! The crate is pure: [`parse`] turns text into a [`Query`], [`Query::matches`] evaluates it
//! against anything that implements [`Fields`], and [`Query::required`] tells an index which
//! equalities every match must satisfy. It knows nothing of how twins are stored, so the engine
//! (and later the edge agent) can evaluate queries over their own representations. The language
//! itself is described for users in `docs/QUERY.md`.
//!
//! ```
//! use doppel_query::{Path, parse};
//!
//! let query = parse("tags.site IN ('berlin', 'paris') and reported.temperature > 30")?;
//! assert_eq!(
//!     query.to_string(),
//!     "tags.site IN ('berlin', 'paris') AND reported.temperature > 30"
//! );
//! let required = query.required();
//! assert_eq!(required[0].0, Path::Tag("site".into()));
//! # Ok::<(), doppel_query::QueryError>(())
//! ```

mod error;
mod eval;
mod expr;
pub mod limits;
mod parser;
mod path;
mod plan;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod testing;

pub use error::QueryError;
pub use eval::{Fields, values_equal};
pub use expr::{CompareOp, Expr, Query};
pub use parser::{parse, parse_order, parse_path};
pub use path::{CONNECTION_STATUSES, Direction, Order, Path};
