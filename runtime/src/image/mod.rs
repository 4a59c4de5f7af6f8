//! Images: content store, archive import, registry pull, layer unpack.
