//! Unpacked layers really work as overlayfs lowerdirs: whiteouts hide lower files, opaque
//! directories hide lower directory contents. Needs root (mount, mknod, trusted xattrs).

mod support;

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use skiff_runtime::image::ImageConfig;
use skiff_runtime::image::test_image::{ArchiveLayer, LayerEntry, layer_tar, write_oci_archive};
use support::new_store;

/// Unmounts on drop, even when an assertion failed.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn file(path: &str) -> LayerEntry<'_> {
    LayerEntry::File {
        path,
        mode: 0o644,
        data: path.as_bytes(),
    }
}

fn dir(path: &str) -> LayerEntry<'_> {
    LayerEntry::Dir { path, mode: 0o755 }
}

#[test]
fn whiteouts_and_opaque_dirs_apply_through_overlayfs() {
    let t = new_store();
    let bottom = layer_tar(&[
        dir("a"),
        file("a/x"),
        file("a/y"),
        file("b"),
        dir("c"),
        file("c/z"),
        dir("d"),
        file("d/kept"),
    ])
    .unwrap();
    let top = layer_tar(&[
        dir("a"),
        file("a/.wh.x"),
        file(".wh.b"),
        dir("c"),
        file("c/.wh..wh..opq"),
        file("c/new"),
        file("e"),
    ])
    .unwrap();
    let archive = t.dir.path().join("two.oci.tar");
    write_oci_archive(
        &archive,
        "skiff.local/two-layers:1",
        &[
            ArchiveLayer {
                tar: bottom,
                gzip: true,
            },
            ArchiveLayer {
                tar: top,
                gzip: false,
            },
        ],
        &ImageConfig::default(),
    )
    .unwrap();
    let image = t.store.import_archive(&archive).unwrap().remove(0);
    let layers = t.store.layer_dirs(&image).unwrap();
    assert_eq!(layers.len(), 2);

    // overlayfs lists lowerdirs top first; layer_dirs is bottom to top.
    let lowerdir = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let merged = t.dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(format!("lowerdir={lowerdir}").as_str()),
    )
    .expect("mount overlay");
    let _guard = Mounted(merged.clone());

    let exists = |p: &str| std::fs::symlink_metadata(merged.join(p)).is_ok();
    // (path, visible in the merged view)
    let table = [
        ("a/x", false),
        ("a/y", true),
        ("b", false),
        ("c/z", false),
        ("c/new", true),
        ("d/kept", true),
        ("e", true),
        ("a/.wh.x", false),
        ("c/.wh..wh..opq", false),
    ];
    for (path, visible) in table {
        assert_eq!(exists(path), visible, "{path}");
    }
    assert_eq!(
        std::fs::read(merged.join("c/new")).unwrap(),
        b"c/new",
        "contents come from the top layer"
    );
    assert!(
        Path::new(&layers[0]).join("b").is_file(),
        "bottom layer untouched"
    );
}
