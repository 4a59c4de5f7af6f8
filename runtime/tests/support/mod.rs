//! Shared helpers for the image integration tests: a store in a temp dir, the busybox test image,
//! an image with a large random layer, and checks of an unpacked busybox rootfs.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use skiff_runtime::image::test_image::{
    self, ArchiveLayer, BuiltImage, LayerEntry, build_busybox_oci_archive,
};
use skiff_runtime::image::{ImageConfig, ImageStore};

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: ImageStore,
}

pub fn new_store() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("skiff.redb")).expect("create redb");
    let store = ImageStore::open(&dir.path().join("images"), skiff_runtime::image::shared(db))
        .expect("open store");
    TestStore { dir, store }
}

pub fn busybox_archive(dir: &Path) -> (PathBuf, BuiltImage) {
    let path = dir.join("busybox.oci.tar");
    let built = build_busybox_oci_archive(&path).expect("build busybox test image");
    (path, built)
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failing run can be replayed by seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An image whose single uncompressed layer holds `data/blob` of `size` random bytes.
pub fn random_layer_archive(dir: &Path, size: usize, seed: u64) -> (PathBuf, BuiltImage, Vec<u8>) {
    let data = random_bytes(size, seed);
    let tar = test_image::layer_tar(&[
        LayerEntry::Dir {
            path: "data",
            mode: 0o755,
        },
        LayerEntry::File {
            path: "data/blob",
            mode: 0o644,
            data: &data,
        },
    ])
    .expect("layer tar");
    let path = dir.join("big.oci.tar");
    let config = ImageConfig {
        cmd: vec!["/data/blob".into()],
        ..ImageConfig::default()
    };
    let built = test_image::write_oci_archive(
        &path,
        "skiff.local/big:1",
        &[ArchiveLayer { tar, gzip: false }],
        &config,
    )
    .expect("write archive");
    (path, built, data)
}

/// The unpacked test image has busybox, its applet links, users and a sticky /tmp.
pub fn check_busybox_rootfs(dirs: &[PathBuf]) {
    assert_eq!(dirs.len(), 1, "busybox test image has one layer: {dirs:?}");
    let root = &dirs[0];
    let busybox = fs::read(root.join("bin/busybox")).expect("bin/busybox");
    assert_eq!(busybox, fs::read("/bin/busybox").expect("host busybox"));
    let mode = fs::metadata(root.join("bin/busybox")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o755);
    for applet in [
        "sh", "ls", "cat", "echo", "sleep", "httpd", "wget", "env", "id", "true",
    ] {
        let link = fs::read_link(root.join("bin").join(applet)).expect(applet);
        assert_eq!(link, Path::new("busybox"), "bin/{applet}");
    }
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nobody:x:65534:65534:"), "{passwd}");
    assert!(
        fs::read_to_string(root.join("etc/group"))
            .unwrap()
            .contains(":65534:")
    );
    assert_eq!(fs::metadata(root.join("etc/hosts")).unwrap().len(), 0);
    let tmp = fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    assert_eq!(tmp.mtime(), test_image::FIXED_MTIME as i64);
}
