//! CustomResourceDefinition schemas (WIP).
pub mod cel;
pub mod crd;
pub mod defaulting;
pub mod field;
pub mod formats;
pub mod pruning;
pub mod schema;
pub mod structural;
pub mod validation;
