//! Archive import: the busybox test image as built, and as converted by skopeo to an OCI archive
//! and a docker archive; layer sharing, removal, lazy unpack and digest checks. Needs root
//! (mknod, chown), busybox-static and skopeo.

mod support;

use std::fs;
use std::io::{Seek, SeekFrom, Write};

use skiff_runtime::image::test_image::{TEST_IMAGE_PATH, TEST_IMAGE_REFERENCE};
use skiff_runtime::image::testing::skopeo_copy;
use skiff_runtime::image::{ImageError, normalize_reference};
use support::{busybox_archive, check_busybox_rootfs, new_store};

#[test]
fn test_image_is_byte_identical_across_builds() {
    let dir = tempfile::tempdir().unwrap();
    let (first, built_first) = busybox_archive(dir.path());
    let second = dir.path().join("again.oci.tar");
    let built_second =
        skiff_runtime::image::test_image::build_busybox_oci_archive(&second).unwrap();
    assert_eq!(fs::read(&first).unwrap(), fs::read(&second).unwrap());
    assert_eq!(built_first, built_second);
    assert_eq!(built_first.reference, TEST_IMAGE_REFERENCE);
}

#[test]
fn imports_the_test_image_as_built() {
    let t = new_store();
    let (archive, built) = busybox_archive(t.dir.path());
    let images = t.store.import_archive(&archive).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.reference, "skiff.local/busybox:latest");
    assert_eq!(image.digest, built.manifest_digest);
    assert_eq!(image.id, built.config_digest);
    assert_eq!(image.layers, built.diff_ids);
    assert_eq!(image.config.cmd, ["sh"]);
    assert_eq!(image.config.env, [TEST_IMAGE_PATH]);
    assert!(image.config.entrypoint.is_empty());
    assert!(image.size > 500_000, "size {}", image.size);

    assert_eq!(
        t.store.resolve("skiff.local/busybox").unwrap().as_ref(),
        Some(image)
    );
    assert_eq!(t.store.list().unwrap(), images);
    check_busybox_rootfs(&t.store.layer_dirs(image).unwrap());
}

#[test]
fn imports_skopeo_oci_and_docker_archives_sharing_layers() {
    let t = new_store();
    let (archive, built) = busybox_archive(t.dir.path());
    let source = format!("oci-archive:{}", archive.display());
    let oci = t.dir.path().join("skopeo.oci.tar");
    let docker = t.dir.path().join("skopeo.docker.tar");
    skopeo_copy(
        &source,
        &format!("oci-archive:{}:skiff.local/busybox:oci", oci.display()),
    )
    .unwrap();
    skopeo_copy(
        &source,
        &format!("docker-archive:{}:busybox:docker", docker.display()),
    )
    .unwrap();

    let from_oci = t.store.import_archive(&oci).unwrap();
    assert_eq!(from_oci.len(), 1);
    assert_eq!(from_oci[0].reference, "skiff.local/busybox:oci");
    assert_eq!(
        from_oci[0].digest, built.manifest_digest,
        "skopeo kept the manifest"
    );
    assert_eq!(from_oci[0].layers, built.diff_ids);

    let from_docker = t.store.import_archive(&docker).unwrap();
    assert_eq!(from_docker.len(), 1);
    assert_eq!(from_docker[0].reference, "docker.io/library/busybox:docker");
    assert_eq!(
        from_docker[0].layers, built.diff_ids,
        "same uncompressed layer"
    );
    assert_eq!(from_docker[0].config.cmd, ["sh"]);

    let oci_dirs = t.store.layer_dirs(&from_oci[0]).unwrap();
    let docker_dirs = t.store.layer_dirs(&from_docker[0]).unwrap();
    assert_eq!(oci_dirs, docker_dirs, "one unpacked directory per layer");
    check_busybox_rootfs(&docker_dirs);
    let refs: Vec<String> = t
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(
        refs,
        [
            "docker.io/library/busybox:docker",
            "skiff.local/busybox:oci"
        ]
    );
}

#[test]
fn remove_keeps_shared_blobs_and_layer_dirs_unpack_lazily() {
    let t = new_store();
    let (archive, built) = busybox_archive(t.dir.path());
    let copy = t.dir.path().join("copy.oci.tar");
    skopeo_copy(
        &format!("oci-archive:{}", archive.display()),
        &format!("oci-archive:{}:skiff.local/other:1", copy.display()),
    )
    .unwrap();
    let first = t.store.import_archive(&archive).unwrap().remove(0);
    let second = t.store.import_archive(&copy).unwrap().remove(0);
    let blob = |digest: &str| {
        t.dir
            .path()
            .join("images/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let layer_blob = blob(&built.layer_digests[0]);
    assert!(layer_blob.is_file());

    assert!(t.store.remove("skiff.local/busybox:latest").unwrap());
    assert!(
        !t.store.remove("skiff.local/busybox:latest").unwrap(),
        "already gone"
    );
    assert_eq!(t.store.resolve(TEST_IMAGE_REFERENCE).unwrap(), None);
    assert!(layer_blob.is_file(), "still used by skiff.local/other:1");

    // A layer directory that vanished is unpacked again from its blob.
    let dirs = t.store.layer_dirs(&second).unwrap();
    fs::remove_dir_all(&dirs[0]).unwrap();
    assert_eq!(t.store.layer_dirs(&first).unwrap(), dirs);
    check_busybox_rootfs(&dirs);

    assert!(t.store.remove("skiff.local/other:1").unwrap());
    assert!(!layer_blob.exists(), "unreferenced blob deleted");
    assert!(t.store.list().unwrap().is_empty());
}

#[test]
fn corrupted_archive_is_refused() {
    let t = new_store();
    let (archive, built) = busybox_archive(t.dir.path());
    // Flip one byte inside the layer blob's content.
    let offset = {
        let mut tar = tar::Archive::new(fs::File::open(&archive).unwrap());
        let wanted = format!(
            "blobs/sha256/{}",
            built.layer_digests[0].trim_start_matches("sha256:")
        );
        tar.entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some(wanted.as_str()))
            .map(|e| e.raw_file_position())
            .expect("layer blob in archive")
    };
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&archive)
        .unwrap();
    file.seek(SeekFrom::Start(offset + 1000)).unwrap();
    file.write_all(&[0x5a; 4]).unwrap();
    drop(file);

    let err = t.store.import_archive(&archive).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("digest mismatch (expected sha256:"),
        "{message}"
    );
    assert!(message.contains(&built.layer_digests[0]), "{message}");
    assert!(t.store.list().unwrap().is_empty());
}

#[test]
fn not_an_archive_says_so() {
    let t = new_store();
    let path = t.dir.path().join("empty.tar");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_path("hello.txt").unwrap();
    header.set_size(2);
    header.set_cksum();
    builder.append(&header, &b"hi"[..]).unwrap();
    fs::write(&path, builder.into_inner().unwrap()).unwrap();
    let err = t.store.import_archive(&path).unwrap_err().to_string();
    assert!(err.contains("neither index.json"), "{err}");
    assert_eq!(
        normalize_reference("busybox").unwrap(),
        "docker.io/library/busybox:latest"
    );
}

#[test]
fn a_file_that_is_no_archive_is_named_but_never_quoted() {
    let t = new_store();
    let secret =
        "root:$y$j9T$c2VjcmV0LWhhc2g$abcdefghijklmnopqrstuvwxyz0123456789:20228:0:99999:7:::";
    let mut text = String::new();
    // Past one 512-byte tar header, as /etc/shadow is: tar then parses the text as a header.
    for user in ["root", "daemon", "bin", "sys", "nobody"].repeat(3) {
        text.push_str(&secret.replacen("root", user, 1));
        text.push('\n');
    }
    for (name, bytes) in [
        ("shadow", text.clone().into_bytes()),
        ("short", secret.as_bytes().to_vec()),
        // A gzip header in front of the same text.
        (
            "shadow.gz",
            [&[0x1f, 0x8b, 0x08, 0x00][..], text.as_bytes()].concat(),
        ),
    ] {
        let path = t.dir.path().join(name);
        fs::write(&path, &bytes).unwrap();
        let err = t.store.import_archive(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{name}: {err}");
        assert!(
            err.contains("not a tar archive (OCI or docker)"),
            "{name}: {err}"
        );
        for leak in ["root:", "daemon:", "c2VjcmV0", "20228", "abcdefghij"] {
            assert!(
                !err.contains(leak),
                "{name}: the error quotes the file: {err}"
            );
        }
    }
}

/// `podman save` (docker-archive, its default) of the test image, with podman's storage in a temp
/// dir so the host's images are untouched. Needs podman.
#[test]
fn imports_a_podman_save_archive() {
    let t = new_store();
    let (archive, built) = busybox_archive(t.dir.path());
    let podman_dir = t.dir.path().join("podman");
    let podman = |args: &[&str]| {
        let output = std::process::Command::new("podman")
            .arg("--root")
            .arg(podman_dir.join("root"))
            .arg("--runroot")
            .arg(podman_dir.join("run"))
            .arg("--tmpdir")
            .arg(podman_dir.join("tmp"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run podman (install podman)");
        assert!(
            output.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let saved = t.dir.path().join("podman-save.tar");
    podman(&["load", "-q", "-i", archive.to_str().unwrap()]);
    podman(&[
        "save",
        "-q",
        "-o",
        saved.to_str().unwrap(),
        "skiff.local/busybox:latest",
    ]);

    let images = t.store.import_archive(&saved).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].reference, "skiff.local/busybox:latest");
    assert_eq!(images[0].layers, built.diff_ids);
    assert_eq!(images[0].config.cmd, ["sh"]);
    check_busybox_rootfs(&t.store.layer_dirs(&images[0]).unwrap());
}

#[test]
fn reopening_clears_leftovers_but_keeps_partial_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let db = skiff_runtime::image::shared(
        redb::Database::create(dir.path().join("skiff.redb")).unwrap(),
    );
    let root = dir.path().join("images");
    let store = skiff_runtime::image::ImageStore::open(&root, db.clone()).unwrap();
    let (archive, built) = busybox_archive(dir.path());
    store.import_archive(&archive).unwrap();
    drop(store);

    // What a crash leaves behind: a half-unpacked layer, a half-written blob, a partial download.
    let stale_layer = root.join("layers/.tmp-0123456789ab-1-0");
    fs::create_dir_all(stale_layer.join("bin")).unwrap();
    let stale_blob = root.join("blobs/tmp/1-0");
    fs::write(&stale_blob, b"half").unwrap();
    let partial = root.join("blobs/partial").join("ab".repeat(32));
    fs::write(&partial, b"first bytes").unwrap();

    let store = skiff_runtime::image::ImageStore::open(&root, db).unwrap();
    assert!(!stale_layer.exists());
    assert!(!stale_blob.exists());
    assert_eq!(fs::read(&partial).unwrap(), b"first bytes");
    let image = store
        .resolve(TEST_IMAGE_REFERENCE)
        .unwrap()
        .expect("still recorded");
    assert_eq!(image.digest, built.manifest_digest);
    check_busybox_rootfs(&store.layer_dirs(&image).unwrap());
}

#[test]
fn images_survive_a_database_that_lost_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let (archive, built) = busybox_archive(dir.path());
    {
        let db = skiff_runtime::image::shared(
            redb::Database::create(dir.path().join("old.redb")).unwrap(),
        );
        let store = skiff_runtime::image::ImageStore::open(&root, db).unwrap();
        store.import_archive(&archive).unwrap();
        store.import_archive(&archive).unwrap();
    }
    // A new, empty database (the node's store was rebuilt): the references come back from the
    // mirror beside the blobs, and the image runs without a pull.
    let db =
        skiff_runtime::image::shared(redb::Database::create(dir.path().join("new.redb")).unwrap());
    let store = skiff_runtime::image::ImageStore::open(&root, db.clone()).unwrap();
    let image = store
        .resolve(TEST_IMAGE_REFERENCE)
        .unwrap()
        .expect("reloaded from the mirror");
    assert_eq!(image.digest, built.manifest_digest);
    check_busybox_rootfs(&store.layer_dirs(&image).unwrap());
    // A removed image stays removed across the same kind of loss.
    assert!(store.remove(TEST_IMAGE_REFERENCE).unwrap());
    drop(store);
    let db = skiff_runtime::image::shared(
        redb::Database::create(dir.path().join("newer.redb")).unwrap(),
    );
    let store = skiff_runtime::image::ImageStore::open(&root, db).unwrap();
    assert!(store.list().unwrap().is_empty());
}
