//! Containers: OCI bundles, the per-container shim, logs, exit status.
