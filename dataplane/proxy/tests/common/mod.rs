//! Helpers of the proxy tests: the network-namespace topologies the datapath
//! tests use, included from there so there is one copy.
#![allow(dead_code)]

#[path = "../../../datapath/tests/common/netns.rs"]
pub mod netns;
