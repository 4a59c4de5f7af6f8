//! The watcher against a real directory with real inotify events.

use super::*;
use std::io::Write;

const DEADLINE: Duration = Duration::from_secs(10);

struct Watched {
    dir: tempfile::TempDir,
    rx: mpsc::Receiver<FileEvent>,
    cancel: CancellationToken,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Watched {
    fn start(setup: impl FnOnce(&Path), rescan: Duration) -> Watched {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        spawn(
            WatchConfig {
                dir: dir.path().to_path_buf(),
                debounce: Duration::from_millis(100),
                rescan,
                max_file_bytes: 4096,
            },
            tx,
            cancel.clone(),
        )
        .unwrap();
        Watched { dir, rx, cancel }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn next(&mut self) -> FileEvent {
        tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .expect("no watcher event within the deadline")
            .expect("watcher stopped")
    }

    /// Whether any event arrives within `wait` (used to show that nothing is sent).
    async fn quiet_for(&mut self, wait: Duration) -> Option<FileEvent> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

#[tokio::test]
async fn first_scan_sends_files_then_the_listing_and_repeats_nothing() {
    let mut w = Watched::start(
        |d| std::fs::write(d.join("first.yaml"), "a").unwrap(),
        Duration::from_millis(50),
    );
    assert_eq!(
        w.next().await,
        FileEvent::Present {
            path: w.path("first.yaml"),
            content: b"a".to_vec(),
            writing: false
        }
    );
    assert_eq!(
        w.next().await,
        FileEvent::Listed {
            paths: [w.path("first.yaml")].into_iter().collect()
        }
    );
    // Many rescans later, an unchanged file has not been sent again.
    assert_eq!(w.quiet_for(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn debounced_events_partial_writes_and_removal() {
    let mut w = Watched::start(|_| {}, Duration::from_secs(3600));
    assert!(matches!(w.next().await, FileEvent::Listed { paths } if paths.is_empty()));
    // An editor's swap file is ignored.
    std::fs::write(w.path(".web.yaml.swp"), "junk").unwrap();
    // A writer that has not closed the file yet: what it wrote so far is marked as partial.
    let mut f = std::fs::File::create(w.path("web.yaml")).unwrap();
    f.write_all(b"comp").unwrap();
    f.flush().unwrap();
    let ev = w.next().await;
    assert_eq!(
        ev,
        FileEvent::Present {
            path: w.path("web.yaml"),
            content: b"comp".to_vec(),
            writing: true
        }
    );
    f.write_all(b"lete").unwrap();
    drop(f);
    // The close brings the whole content, no longer partial (late events may repeat it).
    let mut ev = w.next().await;
    while matches!(&ev, FileEvent::Present { writing: true, .. }) {
        ev = w.next().await;
    }
    assert_eq!(
        ev,
        FileEvent::Present {
            path: w.path("web.yaml"),
            content: b"complete".to_vec(),
            writing: false
        }
    );
    std::fs::remove_file(w.path("web.yaml")).unwrap();
    let mut ev = w.next().await;
    while let FileEvent::Present { content, .. } = &ev {
        assert_eq!(content, b"complete");
        ev = w.next().await;
    }
    assert_eq!(
        ev,
        FileEvent::Removed {
            path: w.path("web.yaml")
        }
    );
}

#[tokio::test]
async fn an_unreadable_file_is_reported_once_and_never_removed() {
    let mut w = Watched::start(
        |d| {
            std::fs::write(d.join("good.yaml"), "a").unwrap();
            std::fs::write(d.join("big.yaml"), vec![b'x'; 5000]).unwrap();
            nix::unistd::mkfifo(
                &d.join("fifo.yaml"),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .unwrap();
        },
        Duration::from_millis(50),
    );
    let mut unreadable = BTreeMap::new();
    loop {
        match w.next().await {
            FileEvent::Unreadable { path, reason } => {
                assert!(unreadable.insert(path, reason).is_none(), "sent twice");
            }
            FileEvent::Listed { paths } => {
                assert_eq!(paths.len(), 3, "{paths:?}");
                break;
            }
            FileEvent::Present { path, .. } => assert_eq!(path, w.path("good.yaml")),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(unreadable[&w.path("big.yaml")].contains("5000 bytes"));
    assert!(unreadable[&w.path("fifo.yaml")].contains("FIFO"));
    // The event path follows the same rule: a file replaced by a FIFO is unusable.
    std::fs::remove_file(w.path("good.yaml")).unwrap();
    nix::unistd::mkfifo(
        &w.path("good.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    loop {
        match w.next().await {
            FileEvent::Removed { path } => {
                // The removal of the regular file may be seen before the FIFO appears; what
                // matters is that the FIFO itself is reported unusable.
                assert_eq!(path, w.path("good.yaml"));
            }
            FileEvent::Unreadable { path, reason } => {
                assert_eq!(path, w.path("good.yaml"));
                assert!(reason.contains("FIFO"), "{reason}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Rescans do not repeat what was said.
    assert_eq!(w.quiet_for(Duration::from_millis(500)).await, None);
}

#[test]
fn opening_and_reading_are_not_changes() {
    use notify::EventKind;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode,
    };
    let cases = [
        (
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            Mark::Nothing,
        ),
        (
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            Mark::Nothing,
        ),
        (EventKind::Access(AccessKind::Read), Mark::Nothing),
        (EventKind::Access(AccessKind::Any), Mark::Nothing),
        (
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            Mark::Complete,
        ),
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            Mark::Complete,
        ),
        (
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            Mark::Written,
        ),
        (EventKind::Modify(ModifyKind::Any), Mark::Written),
        (EventKind::Create(CreateKind::File), Mark::Touched),
        (EventKind::Remove(RemoveKind::File), Mark::Touched),
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            Mark::Touched,
        ),
    ];
    for (kind, mark) in cases {
        assert_eq!(mark_of(&kind), mark, "{kind:?}");
    }
}
