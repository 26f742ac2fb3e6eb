//! Object-metadata machinery every layer above uses: name and label syntax
//! ([`names`]), label and field selectors ([`selectors`]) and typed decoding
//! against the k8s-openapi types ([`typed`]). It depends on nothing else in
//! the crate but [`crate::status`] and the [`crate::kinds::Resource`]
//! description.

pub mod go;
pub mod json;
pub mod names;
pub mod selectors;
pub mod typed;
