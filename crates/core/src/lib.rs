//! crsd-core: the vocabulary every other crate shares.
//!
//! It holds the domain types (accounts, instances, nodes, deals, tasks, the product catalog, an instance's spec),
//! the one domain error enum that every dialect renders in its own shape, the validation rules
//! the seeds state (passwords, names, sizes, periods), the injected [`clock::Clock`], id
//! formats and password hashing. It does no I/O: no database, no processes, no HTTP.

pub mod catalog;
pub mod clock;
pub mod error;
pub mod ids;
pub mod model;
pub mod params;
pub mod rules;
pub mod secret;
pub mod spec;
pub mod timefmt;

pub use error::{Error, Result};
