//! skiff-tests: multi-node scenarios and shared test helpers.
