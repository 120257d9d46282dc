//! Configuration: the `weir.yaml` file model and its parsing with precise
//! error positions. Imports nothing from the runtime; the rules beyond types
//! live in the compiler (`crate::compile`).

pub mod env;
pub mod load;
pub mod model;
mod model_acme;
mod model_cache;
mod model_listen;
mod model_ops;
mod model_policy;
mod model_upstream;
pub mod shadow;
pub mod spans;
pub mod suggest;

pub use load::{parse_file, parse_str, ConfigError, ConfigErrors, Issue, Parsed};
pub use model::FileConfig;
