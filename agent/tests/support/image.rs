//! The busybox test image as an OCI archive: `SKIFF_TEST_IMAGE` when set (xtask sets it), else
//! built once into the target dir by `skiff dev build-test-image`, safe against parallel tests
//! (each builds to its own temp name, then renames into place).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The reference the archive carries.
pub const TEST_IMAGE: &str = "skiff.local/busybox:latest";

pub fn test_image_archive() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("SKIFF_TEST_IMAGE").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SKIFF_TEST_IMAGE={} does not exist",
                p.display()
            );
            return p;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join("skiff-busybox-test-image.tar");
        if path.is_file() {
            return path;
        }
        let tmp = dir.join(format!(
            "skiff-busybox-test-image.{}.tmp",
            std::process::id()
        ));
        let out = Command::new(super::SKIFF)
            .args(["dev", "build-test-image", "--out"])
            .arg(&tmp)
            .output()
            .expect("run skiff dev build-test-image");
        assert!(
            out.status.success(),
            "skiff dev build-test-image failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &path).expect("rename test image into place");
        path
    })
    .clone()
}
