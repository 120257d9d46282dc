//! Configuration: the `weir.yaml` file model, its loading with precise error
//! positions, and its validation.

pub mod env;
pub mod load;
pub mod model;
pub mod shadow;
pub mod spans;
pub mod suggest;
pub mod validate;

pub use load::{load_file, load_str, ConfigError, ConfigErrors, Issue, Loaded};
pub use model::FileConfig;
#[cfg(test)]
mod tests;
