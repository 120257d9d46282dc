//! Configuration: the `weir.yaml` file model, its loading with precise error
//! positions, and its validation.

pub mod env;
pub mod load;
pub mod model;
mod model_ops;
pub mod shadow;
pub mod spans;
pub mod suggest;
pub mod validate;
mod validate_upstream;

pub use load::{load_file, load_str, ConfigError, ConfigErrors, Issue, Loaded};
pub use model::FileConfig;
#[cfg(test)]
mod tests;
