//! The watched manifests directory: inotify events, debounced, turned into "this file now has
//! these bytes" or "this file is gone". Editor temp files are ignored; a file is read only once
//! writes to it have been quiet for the debounce time, so partial writes are not acted on.

use notify::{RecursiveMode, Watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What changed in the manifests directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileEvent {
    /// The file exists with this content (it may be unchanged: the receiver compares).
    Present { path: PathBuf, content: Vec<u8> },
    /// The file is gone (deleted, renamed away, or no longer a manifest name).
    Removed { path: PathBuf },
    /// A full listing: every manifest file present now (sent at start and on resync).
    Snapshot { files: BTreeMap<PathBuf, Vec<u8>> },
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

/// Whether an event means the file's content is complete: closed after writing, or renamed
/// into place (how editors and `mv` deliver files).
fn is_complete(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    matches!(
        kind,
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write))
            | notify::EventKind::Modify(ModifyKind::Name(RenameMode::To))
    )
}

/// Every manifest file under `dir` (recursively, skipping hidden directories) with its bytes.
pub fn scan(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if file_type.is_dir() && !hidden {
                stack.push(path);
            } else if is_manifest_name(&path) {
                // Follow symlinks (ConfigMap-style mounts); skip what cannot be read now.
                if let Ok(content) = std::fs::read(&path) {
                    out.insert(path, content);
                }
            }
        }
    }
    Ok(out)
}

/// Watches `dir` until `cancel`, sending debounced events. The first event is a `Snapshot`.
pub fn spawn(
    dir: PathBuf,
    debounce: Duration,
    resync: Duration,
    events: mpsc::Sender<FileEvent>,
    cancel: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> notify::Result<()> {
    std::fs::create_dir_all(&dir).map_err(notify::Error::io)?;
    // (path, complete): a closed-after-write or renamed-into-place file is complete and is read
    // at once; any other change waits for the debounce.
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<(PathBuf, bool)>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                let complete = is_complete(&event.kind);
                for path in event.paths {
                    let _ = raw_tx.send((path, complete));
                }
            }
            Err(e) => tracing::warn!("manifest watcher: {e}"),
        })?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    tracker.spawn(async move {
        // Keep the watcher alive as long as the task runs.
        let _watcher = watcher;
        let send_snapshot = |dir: &Path| match scan(dir) {
            Ok(files) => Some(FileEvent::Snapshot { files }),
            Err(e) => {
                tracing::warn!("manifests dir {}: {e}", dir.display());
                None
            }
        };
        if let Some(s) = send_snapshot(&dir)
            && events.send(s).await.is_err()
        {
            return;
        }
        let mut dirty: BTreeSet<PathBuf> = BTreeSet::new();
        let mut ready: BTreeSet<PathBuf> = BTreeSet::new();
        let mut resync_timer = tokio::time::interval(resync);
        resync_timer.tick().await;
        loop {
            let quiet = tokio::time::sleep(debounce);
            tokio::select! {
                // All branches are cancel-safe: mpsc recv, timers.
                _ = cancel.cancelled() => return,
                Some((path, complete)) = raw_rx.recv() => {
                    if complete {
                        dirty.remove(&path);
                        ready.insert(path);
                        // Take whatever else is already queued, then act without waiting.
                        while let Ok((p, c)) = raw_rx.try_recv() {
                            if c { dirty.remove(&p); ready.insert(p); } else if !ready.contains(&p) { dirty.insert(p); }
                        }
                    } else {
                        ready.remove(&path);
                        dirty.insert(path);
                        continue;
                    }
                }
                _ = resync_timer.tick() => {
                    if let Some(s) = send_snapshot(&dir) && events.send(s).await.is_err() { return; }
                    continue;
                }
                _ = quiet, if !dirty.is_empty() => {
                    ready.extend(std::mem::take(&mut dirty));
                }
            }
            for path in std::mem::take(&mut ready) {
                if path.is_dir() {
                    // A directory appeared (or moved in): read what it holds.
                    if let Ok(files) = scan(&path) {
                        for (path, content) in files {
                            if events.send(FileEvent::Present { path, content }).await.is_err() {
                                return;
                            }
                        }
                    }
                    continue;
                }
                let event = if is_manifest_name(&path) {
                    match std::fs::read(&path) {
                        Ok(content) => FileEvent::Present { path, content },
                        Err(_) => FileEvent::Removed { path },
                    }
                } else {
                    continue;
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn debounced_events_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("first.yaml"), "a").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let tracker = tokio_util::task::TaskTracker::new();
        spawn(
            dir.path().to_path_buf(),
            Duration::from_millis(200),
            Duration::from_secs(3600),
            tx,
            cancel.clone(),
            &tracker,
        )
        .unwrap();
        let deadline = Duration::from_secs(10);
        let first = tokio::time::timeout(deadline, rx.recv())
            .await
            .unwrap()
            .unwrap();
        match first {
            FileEvent::Snapshot { files } => {
                assert_eq!(files.len(), 1);
                assert_eq!(files[&dir.path().join("first.yaml")], b"a");
            }
            other => panic!("expected snapshot, got {other:?}"),
        }
        // Repeats for first.yaml may arrive (the receiver ignores unchanged content); skip them.
        let first_path = dir.path().join("first.yaml");
        let mut next = async || loop {
            let ev = tokio::time::timeout(deadline, rx.recv())
                .await
                .unwrap()
                .unwrap();
            if !matches!(&ev, FileEvent::Present { path, .. } if *path == first_path) {
                return ev;
            }
        };
        // An editor's swap file is ignored; the real file is reported once with its final bytes.
        std::fs::write(dir.path().join(".web.yaml.swp"), "junk").unwrap();
        {
            // A writer that has not closed the file yet: its first bytes are not acted on.
            use std::io::Write;
            let mut f = std::fs::File::create(dir.path().join("web.yaml")).unwrap();
            f.write_all(b"comp").unwrap();
            f.flush().unwrap();
            f.write_all(b"lete").unwrap();
        }
        let ev = next().await;
        assert_eq!(
            ev,
            FileEvent::Present {
                path: dir.path().join("web.yaml"),
                content: b"complete".to_vec()
            }
        );
        std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
        // Late inotify events for the same write may repeat the final content; never a part.
        let mut ev = next().await;
        while let FileEvent::Present { content, .. } = &ev {
            assert_eq!(content, b"complete");
            ev = next().await;
        }
        assert_eq!(
            ev,
            FileEvent::Removed {
                path: dir.path().join("web.yaml")
            }
        );
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
