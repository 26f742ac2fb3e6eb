//! Helpers of the proxy tests: network-namespace topologies ([`netns`]).
#![allow(dead_code)]

pub mod netns;
