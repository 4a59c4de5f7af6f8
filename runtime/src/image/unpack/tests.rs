//! Unit tables for layer extraction: whiteout and opaque conversion, entry kinds, metadata, and
//! refusal of paths that escape the layer. Needs root (mknod, chown, trusted xattrs).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::*;
use crate::image::digest::sha256_digest;

/// One tar entry, written with raw header bytes so tests can build hostile names.
struct Entry<'a> {
    path: &'a str,
    kind: EntryType,
    data: &'a [u8],
    link: &'a str,
    mode: u32,
    uid: u64,
    device: (u32, u32),
}

fn entry(path: &str, kind: EntryType) -> Entry<'_> {
    Entry {
        path,
        kind,
        data: b"",
        link: "",
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        device: (0, 0),
    }
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry {
        data,
        ..entry(path, EntryType::Regular)
    }
}

fn link<'a>(path: &'a str, kind: EntryType, target: &'a str) -> Entry<'a> {
    Entry {
        link: target,
        ..entry(path, kind)
    }
}

fn build_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = Header::new_gnu();
        {
            let old = header.as_old_mut();
            old.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
            old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        header.set_entry_type(e.kind);
        header.set_size(e.data.len() as u64);
        header.set_mode(e.mode);
        header.set_uid(e.uid);
        header.set_gid(e.uid);
        header.set_mtime(1_600_000_000);
        header.set_device_major(e.device.0).unwrap();
        header.set_device_minor(e.device.1).unwrap();
        header.set_cksum();
        builder.append(&header, e.data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Writes the tar as a blob file and unpacks it; returns the layer directory.
fn unpack(dir: &Path, tar: &[u8], compression: Compression) -> Result<PathBuf, ImageError> {
    let diff_id = sha256_digest(tar);
    let blob = dir.join("blob");
    let bytes = match compression {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(tar).unwrap();
            enc.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 3).unwrap(),
    };
    fs::write(&blob, bytes).unwrap();
    let layers = dir.join("layers");
    fs::create_dir_all(&layers).unwrap();
    unpack_layer(File::open(&blob).unwrap(), compression, &diff_id, &layers)
}

fn is_whiteout(path: &Path) -> bool {
    let meta = fs::symlink_metadata(path).unwrap();
    meta.file_type().is_char_device() && meta.rdev() == 0 && meta.uid() == 0 && meta.gid() == 0
}

fn opaque(path: &Path) -> Option<Vec<u8>> {
    xattr::get(path, "trusted.overlay.opaque").unwrap()
}

#[test]
fn whiteouts_become_overlay_form() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = build_tar(&[
        entry("etc/", EntryType::Directory),
        entry("etc/.wh.shadow", EntryType::Regular),
        entry(".wh.opt", EntryType::Regular),
        entry("var/lib/", EntryType::Directory),
        entry("var/lib/.wh..wh..opq", EntryType::Regular),
        file("var/lib/kept", b"k"),
        entry("usr/.wh..wh..opq", EntryType::Regular),
        entry(".wh..wh.plnk", EntryType::Regular),
        file("home/replaced", b"old"),
        entry("home/.wh.replaced", EntryType::Regular),
    ]);
    let dir = unpack(tmp.path(), &tar, Compression::None).unwrap();

    // (path, whiteout device?, opaque?)
    let table = [
        ("etc/shadow", true, false),
        ("opt", true, false),
        ("home/replaced", true, false),
        ("var/lib", false, true),
        ("usr", false, true),
        ("etc", false, false),
    ];
    for (path, whiteout, is_opaque) in table {
        let full = dir.join(path);
        assert_eq!(is_whiteout(&full), whiteout, "{path}: whiteout");
        assert_eq!(
            opaque(&full).as_deref() == Some(b"y".as_slice()),
            is_opaque,
            "{path}: opaque"
        );
    }
    for gone in [
        "etc/.wh.shadow",
        ".wh.opt",
        "var/lib/.wh..wh..opq",
        ".wh..wh.plnk",
        "..wh..plnk",
    ] {
        assert!(
            fs::symlink_metadata(dir.join(gone)).is_err(),
            "{gone} exists"
        );
    }
    assert_eq!(fs::read(dir.join("var/lib/kept")).unwrap(), b"k");
}

#[test]
fn entry_kinds_and_metadata_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = build_tar(&[
        entry("bin/", EntryType::Directory),
        Entry {
            mode: 0o4755,
            uid: 1000,
            ..file("bin/tool", b"#!/bin/sh\n")
        },
        link("bin/alias", EntryType::Symlink, "tool"),
        link("bin/absolute", EntryType::Symlink, "/etc/passwd"),
        link("bin/hard", EntryType::Link, "bin/tool"),
        link("bin/hard-dot", EntryType::Link, "./bin/tool"),
        Entry {
            device: (1, 3),
            mode: 0o666,
            ..entry("dev/null", EntryType::Char)
        },
        Entry {
            device: (7, 0),
            ..entry("dev/loop0", EntryType::Block)
        },
        entry("run/fifo", EntryType::Fifo),
        Entry {
            mode: 0o1777,
            ..entry("tmp/", EntryType::Directory)
        },
        file("./dotted", b"d"),
        file("/absolute-inside", b"a"),
    ]);
    let dir = unpack(tmp.path(), &tar, Compression::None).unwrap();

    let tool = fs::symlink_metadata(dir.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!((tool.uid(), tool.gid()), (1000, 1000));
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(tool.nlink(), 3, "two hardlinks share the inode");
    assert_eq!(
        fs::read_link(dir.join("bin/alias")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        fs::read_link(dir.join("bin/absolute")).unwrap(),
        Path::new("/etc/passwd")
    );
    let null = fs::symlink_metadata(dir.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    assert!(
        fs::symlink_metadata(dir.join("dev/loop0"))
            .unwrap()
            .file_type()
            .is_block_device()
    );
    assert!(
        fs::symlink_metadata(dir.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let tmpdir = fs::metadata(dir.join("tmp")).unwrap();
    assert_eq!(tmpdir.mode() & 0o7777, 0o1777);
    assert_eq!(tmpdir.mtime(), 1_600_000_000, "directory mtime set last");
    assert_eq!(fs::read(dir.join("dotted")).unwrap(), b"d");
    assert_eq!(fs::read(dir.join("absolute-inside")).unwrap(), b"a");
}

#[test]
fn escaping_entries_are_refused() {
    // (name, entries): every one must fail and leave nothing behind outside or inside.
    let cases: Vec<(&str, Vec<Entry<'_>>)> = vec![
        ("dotdot", vec![file("../escaped", b"x")]),
        ("nested dotdot", vec![file("a/../../escaped", b"x")]),
        (
            "write through symlink",
            vec![
                link("link", EntryType::Symlink, ".."),
                file("link/escaped", b"x"),
            ],
        ),
        (
            "whiteout through symlink",
            vec![
                link("link", EntryType::Symlink, "/"),
                entry("link/.wh.escaped", EntryType::Regular),
            ],
        ),
        (
            "hardlink outside",
            vec![link("h", EntryType::Link, "../../../etc/passwd")],
        ),
        (
            "hardlink absolute",
            vec![link("h", EntryType::Link, "/etc/passwd")],
        ),
        (
            "hardlink through symlink",
            vec![
                link("etc", EntryType::Symlink, "/etc"),
                link("h", EntryType::Link, "etc/passwd"),
            ],
        ),
    ];
    for (name, entries) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let err = unpack(tmp.path(), &build_tar(&entries), Compression::None)
            .expect_err(name)
            .to_string();
        assert!(err.contains("layer sha256:"), "{name}: {err}");
        assert!(!tmp.path().join("escaped").exists(), "{name}: escaped");
        assert!(!Path::new("/escaped").exists(), "{name}: escaped to /");
        let left: Vec<_> = fs::read_dir(tmp.path().join("layers")).unwrap().collect();
        assert!(left.is_empty(), "{name}: left {left:?}");
    }
}

#[test]
fn compressions_unpack_alike_and_diff_id_is_checked() {
    let tar = build_tar(&[
        file("a/b", b"same bytes"),
        link("c", EntryType::Symlink, "a/b"),
    ]);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = unpack(tmp.path(), &tar, compression).unwrap();
        assert_eq!(fs::read(dir.join("a/b")).unwrap(), b"same bytes");
        assert_eq!(dir.file_name().unwrap().len(), 64, "{compression:?}");
    }

    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("blob"), &tar).unwrap();
    let layers = tmp.path().join("layers");
    fs::create_dir(&layers).unwrap();
    let wrong = sha256_digest(b"not this layer");
    let err = unpack_layer(
        File::open(tmp.path().join("blob")).unwrap(),
        Compression::None,
        &wrong,
        &layers,
    )
    .unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert_eq!(
        fs::read_dir(&layers).unwrap().count(),
        0,
        "no half layer left"
    );
}

#[test]
fn media_types_and_magic_select_compression() {
    let table = [
        ("application/vnd.oci.image.layer.v1.tar", Compression::None),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Gzip,
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::Zstd,
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Gzip,
        ),
    ];
    for (media_type, want) in table {
        assert_eq!(Compression::from_media_type(media_type).unwrap(), want);
        assert_eq!(
            Compression::from_media_type(want.oci_media_type()).unwrap(),
            want
        );
    }
    assert!(Compression::from_media_type("application/octet-stream").is_err());
    assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
    assert_eq!(
        Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
        Compression::Zstd
    );
    assert_eq!(Compression::sniff(b"etc/passwd"), Compression::None);
}
