//! The Kubernetes-compatible API server on etcd.
