//! skiff-agent: the daemon and the CLI.
pub fn placeholder() {}
