//! Kubernetes helpers shared by every Sluice binary that needs them: one
//! implementation of each concept, so the scheduler, the controllers and the
//! node agree (issue 12: quantities were parsed in three places and
//! disagreed).
//!
//! - [`quantity`]: `resource.Quantity` strings as integers, as Go's
//!   `MilliValue`/`Value` compute them;
//! - [`qos`]: a pod's QoS class from its containers' requests and limits.
//!
//! Dependency rule: this crate depends on no other Sluice crate and does no
//! I/O, so any crate may use it.

pub mod qos;
pub mod quantity;
