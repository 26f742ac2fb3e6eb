//! Protobuf/gRPC definitions shared by Sluice components.
