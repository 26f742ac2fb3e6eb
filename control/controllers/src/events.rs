//! Events the controllers record: `sluice_kube::events`, the one recorder
//! every component shares (core/v1 Events, written in the background,
//! identical repeats counted as client-go's correlator does).

pub use sluice_kube::events::{object_reference, EventRecorder, EventType};
