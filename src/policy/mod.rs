//! Per-route policies compiled from the file: one small module per kind.

pub mod headers;
pub mod rewrite;
