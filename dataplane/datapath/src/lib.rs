//! Loads and programs the eBPF datapath (Service load balancing, routing).
