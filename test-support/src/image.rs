//! The busybox test image as an OCI archive: `SKIFF_TEST_IMAGE` when set (`cargo xtask test`
//! sets it), else built once into a cache dir by `skiff dev build-test-image`, safe against
//! parallel tests (each builds to its own temp name, then renames into place).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The reference the archive carries.
pub const TEST_IMAGE: &str = "skiff.local/busybox:latest";

/// The archive: `SKIFF_TEST_IMAGE`, else `<cache_dir>/skiff-busybox-test-image.tar`, built
/// with the `skiff` binary at `skiff` when missing.
pub fn test_image_archive(skiff: &Path, cache_dir: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SKIFF_TEST_IMAGE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("SKIFF_TEST_IMAGE={} does not exist", p.display());
        }
        return Ok(p);
    }
    let path = cache_dir.join("skiff-busybox-test-image.tar");
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("create {}", cache_dir.display()))?;
    let tmp = cache_dir.join(format!(
        "skiff-busybox-test-image.{}.tmp",
        std::process::id()
    ));
    let out = Command::new(skiff)
        .args(["dev", "build-test-image", "--out"])
        .arg(&tmp)
        .output()
        .context("run skiff dev build-test-image")?;
    if !out.status.success() {
        bail!(
            "skiff dev build-test-image failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::rename(&tmp, &path).context("rename the test image into place")?;
    Ok(path)
}
