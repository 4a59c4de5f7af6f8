//! Reading the manifests directory safely: a listing that either succeeds whole or says why
//! not, and a bounded read of one file that never blocks on a FIFO or device, never reads more
//! than the manifest size cap, and skips files whose fingerprint has not changed.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Enough of a file's metadata to tell that its content may have changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Fingerprint {
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// What looking at one manifest path found.
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// No such file (stat said ENOENT, or a symlink points nowhere): it was removed.
    Gone,
    /// Same fingerprint as the last read: nothing to do.
    Unchanged,
    /// The file's whole content (at most the cap), its fingerprint, and whether a writer had
    /// it open when it was read (so the content may be partial).
    Content(Vec<u8>, Fingerprint, bool),
    /// The file exists but cannot be used now; the reason names the cause (OS error, type,
    /// size). It is not a removal.
    Unusable(String),
}

fn type_name(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Reads `path` if it is a regular file (symlinks followed) of at most `max` bytes whose
/// fingerprint differs from `last`. Opens with O_NONBLOCK so a FIFO swapped in after the type
/// check cannot block, and checks the type again on the open file.
pub fn read_manifest(path: &Path, max: u64, last: Option<Fingerprint>) -> Look {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Look::Gone,
        Err(e) => return Look::Unusable(format!("cannot read it: {e}")),
    };
    if !meta.is_file() {
        return Look::Unusable(format!(
            "{} is not read: manifests must be regular files",
            type_name(&meta.file_type())
        ));
    }
    if last == Some(Fingerprint::of(&meta)) {
        return Look::Unchanged;
    }
    if meta.len() > max {
        return Look::Unusable(skiff_manifests::too_large_message(meta.len()));
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Look::Gone,
        Err(e) => return Look::Unusable(format!("cannot read it: {e}")),
    };
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(m) => {
            return Look::Unusable(format!(
                "{} is not read: manifests must be regular files",
                type_name(&m.file_type())
            ));
        }
        Err(e) => return Look::Unusable(format!("cannot read it: {e}")),
    };
    let mut content = Vec::with_capacity(meta.len().min(max) as usize + 1);
    if let Err(e) = (&file).take(max + 1).read_to_end(&mut content) {
        return Look::Unusable(format!("cannot read it: {e}"));
    }
    if content.len() as u64 > max {
        return Look::Unusable(skiff_manifests::too_large_message(content.len() as u64));
    }
    let writer = open_for_writing(&file);
    Look::Content(content, Fingerprint::of(&meta), writer)
}

/// Whether some process has the file open for writing now, asked of the kernel: a read lease
/// is refused (EAGAIN) while any writer holds the file, and is given back at once. This does
/// not depend on having seen every inotify event (under load a writer's events can be read
/// after the content). Where leases are not available (not root and not the owner, a
/// filesystem without them) it answers false and the events alone decide.
#[allow(unsafe_code)]
fn open_for_writing(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows; F_SETLEASE takes an int argument.
    let set = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) };
    if set == 0 {
        // SAFETY: as above; gives the lease back before anyone can need it broken.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        return false;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

/// A writer that opens a file in the instant a read lease is held makes the kernel send the
/// holder SIGIO, whose default action ends the process: the agent ignores it (the lease is
/// given back at once anyway).
#[allow(unsafe_code)]
pub fn ignore_lease_breaks() {
    // SAFETY: SIG_IGN runs no handler code; setting a disposition is safe from any thread.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGIO,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
}

/// Whether a file name is a manifest (and not an editor's temp or backup file).
pub fn is_manifest_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
        return false;
    }
    let Some(ext) = Path::new(name).extension().and_then(|e| e.to_str()) else {
        return false;
    };
    matches!(ext.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json")
}

/// Every manifest name under `dir` (recursively, skipping hidden directories; symlinked
/// directories are not followed). Fails whole if any directory or entry cannot be read, so a
/// name missing from a successful listing really is gone. A `dir` that does not exist lists
/// nothing.
pub fn list(dir: &Path) -> std::io::Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // A subdirectory removed while we list it: its files are gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", d.display()),
                ));
            }
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if entry.file_type()?.is_dir() {
                if !hidden {
                    stack.push(path);
                }
            } else if is_manifest_name(&path) {
                out.insert(path);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1024;

    #[test]
    fn a_file_a_writer_holds_open_is_read_as_possibly_partial() {
        if !nix::unistd::geteuid().is_root() {
            // Leases need root (CAP_LEASE) for files of other users; the owner may too, but
            // not on every filesystem: the test asserts only where the answer is defined.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        let mut writer = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut writer, b"half").unwrap();
        assert!(
            matches!(read_manifest(&path, MAX, None), Look::Content(b, _, true) if b == b"half")
        );
        drop(writer);
        assert!(matches!(
            read_manifest(&path, MAX, None),
            Look::Content(_, _, false)
        ));
        // A reader that is not a writer is not one.
        let _reader = std::fs::File::open(&path).unwrap();
        assert!(matches!(
            read_manifest(&path, MAX, None),
            Look::Content(_, _, false)
        ));
    }

    #[test]
    fn manifest_names() {
        for ok in ["a.yaml", "b.yml", "c.json", "D.YAML"] {
            assert!(is_manifest_name(Path::new(ok)), "{ok}");
        }
        for no in [
            ".a.yaml.swp",
            ".a.yaml",
            "a.yaml~",
            "#a.yaml#",
            "a.yaml.swp",
            "a.txt",
            "4913",
            "a.yaml.tmp",
        ] {
            assert!(!is_manifest_name(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn reads_regular_files_once_per_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, "one").unwrap();
        let Look::Content(bytes, fp, _) = read_manifest(&path, MAX, None) else {
            panic!("expected content");
        };
        assert_eq!(bytes, b"one");
        assert_eq!(read_manifest(&path, MAX, Some(fp)), Look::Unchanged);
        std::fs::write(&path, "two!").unwrap();
        assert!(
            matches!(read_manifest(&path, MAX, Some(fp)), Look::Content(b, _, _) if b == b"two!")
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read_manifest(&path, MAX, Some(fp)), Look::Gone);
    }

    #[test]
    fn refuses_large_and_special_files_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'a'; MAX as usize + 1]).unwrap();
        let Look::Unusable(why) = read_manifest(&big, MAX, None) else {
            panic!("expected unusable");
        };
        assert!(
            why.contains("1025 bytes") && why.contains("at most 1 MiB"),
            "{why}"
        );
        // A symlink to /dev/zero would never end; a FIFO would block forever.
        let zero = dir.path().join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let Look::Unusable(why) = read_manifest(&zero, MAX, None) else {
            panic!("expected unusable");
        };
        assert!(why.contains("character device"), "{why}");
        let fifo = dir.path().join("fifo.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let Look::Unusable(why) = read_manifest(&fifo, MAX, None) else {
            panic!("expected unusable");
        };
        assert!(why.contains("FIFO"), "{why}");
        let dangling = dir.path().join("dangling.yaml");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert_eq!(read_manifest(&dangling, MAX, None), Look::Gone);
    }

    #[test]
    fn unreadable_is_not_gone() {
        let dir = tempfile::tempdir().unwrap();
        // A path through a regular file fails with ENOTDIR, an error that is not ENOENT.
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let Look::Unusable(why) = read_manifest(&file.join("a.yaml"), MAX, None) else {
            panic!("expected unusable");
        };
        assert!(why.contains("cannot read it"), "{why}");
    }

    #[test]
    fn listing_recurses_and_fails_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::create_dir_all(dir.path().join(".hidden")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "").unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), "").unwrap();
        std::fs::write(dir.path().join(".hidden/c.yaml"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        let listed = list(dir.path()).unwrap();
        let expected: BTreeSet<PathBuf> = [dir.path().join("a.yaml"), dir.path().join("sub/b.yml")]
            .into_iter()
            .collect();
        assert_eq!(listed, expected);
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
        // A listing that cannot open the directory fails rather than returning less.
        assert!(list(&dir.path().join("a.yaml")).is_err());
    }
}
