//! The busybox test image as an OCI archive (see `skiff_test_support::image`), looked up once
//! per test binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use skiff_test_support::image::TEST_IMAGE;

/// The archive (built into `CARGO_TARGET_TMPDIR` when `SKIFF_TEST_IMAGE` is not set).
pub fn test_image_archive() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        skiff_test_support::image::test_image_archive(
            Path::new(super::SKIFF),
            Path::new(env!("CARGO_TARGET_TMPDIR")),
        )
        .unwrap_or_else(|e| panic!("the test image: {e:#}"))
    })
    .clone()
}
