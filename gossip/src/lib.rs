//! skiff-gossip: placeholder, filled in by its owner.
