//! skiff-manifests: placeholder, filled in by its owner.
