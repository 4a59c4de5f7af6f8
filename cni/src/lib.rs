//! skiff-cni: placeholder, filled in by its owner.
