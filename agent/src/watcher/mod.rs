//! The watched manifests directory: inotify events, debounced, turned into "this file now has
//! these bytes", "this file is gone" or "this file cannot be read now". Editor temp files are
//! ignored. The watcher runs on a thread of its own, so a slow disk, a hung mount or a FIFO
//! never stalls the agent, and it sends only what changed.
//!
//! Rules that keep data safe:
//! - only a successful listing that lacks a name, or a stat that says ENOENT, is a removal; a
//!   file that cannot be read (EMFILE, EIO, EACCES, too large, not a regular file) is reported
//!   as unusable and its last good version stays;
//! - a file a writer still has open (inotify saw a write and no close since) is reported with
//!   `writing: true`, so the receiver can wait for the close before acting on part of it;
//! - a rescan (stat only, files re-read only when their fingerprint moved) repairs missed
//!   events.

mod read;

pub use read::{Fingerprint, Look, ignore_lease_breaks, is_manifest_name, list, read_manifest};

use notify::{RecursiveMode, Watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What changed in the manifests directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileEvent {
    /// The file exists with this content. `writing`: a writer still has it open, so the content
    /// may be partial (the close will bring another event).
    Present {
        path: PathBuf,
        content: Vec<u8>,
        writing: bool,
    },
    /// The file is gone (deleted, renamed away, or no longer a manifest name).
    Removed { path: PathBuf },
    /// The file (or the directory, when `path` is the manifests dir) exists but cannot be read
    /// now: its last good version stays.
    Unreadable { path: PathBuf, reason: String },
    /// The first complete listing: every manifest name present. Files the receiver knew from
    /// before (its store) and that are not listed were removed while the agent was down.
    Listed { paths: BTreeSet<PathBuf> },
}

/// How the watcher behaves.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub dir: PathBuf,
    /// How long a path must be quiet after an event that does not mark it complete.
    pub debounce: Duration,
    /// How often the whole directory is listed and stat'ed to repair missed events.
    pub rescan: Duration,
    /// The largest file read (larger ones are reported unusable, never read).
    pub max_file_bytes: u64,
}

/// What an inotify event says about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// Closed after writing, or renamed into place: the content is whole.
    Complete,
    /// Written to: a writer has it open.
    Written,
    /// Anything else (created, removed, renamed away, attributes).
    Touched,
    /// Opened, read or closed without writing: nothing changed. The watcher's own listings
    /// and reads cause these, so acting on them would rescan the directory in a loop.
    Nothing,
}

fn mark_of(kind: &notify::EventKind) -> Mark {
    use notify::event::{AccessKind, AccessMode, DataChange, ModifyKind, RenameMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write))
        | notify::EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Mark::Complete,
        notify::EventKind::Modify(ModifyKind::Data(DataChange::Any | DataChange::Content))
        | notify::EventKind::Modify(ModifyKind::Any) => Mark::Written,
        notify::EventKind::Access(_) => Mark::Nothing,
        _ => Mark::Touched,
    }
}

/// Watches `config.dir` on a thread until `cancel` fires or the receiver is dropped.
pub fn spawn(
    config: WatchConfig,
    events: mpsc::Sender<FileEvent>,
    cancel: CancellationToken,
) -> notify::Result<()> {
    std::fs::create_dir_all(&config.dir).map_err(notify::Error::io)?;
    ignore_lease_breaks();
    let (raw_tx, raw_rx) = std_mpsc::channel::<(PathBuf, Mark)>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                let mark = mark_of(&event.kind);
                if mark == Mark::Nothing {
                    return;
                }
                for path in event.paths {
                    let _ = raw_tx.send((path, mark));
                }
            }
            Err(e) => tracing::warn!("manifest watcher: {e}"),
        })?;
    watcher.watch(&config.dir, RecursiveMode::Recursive)?;
    std::thread::Builder::new()
        .name("skiff-watcher".into())
        .spawn(move || {
            // The notify watcher lives as long as the thread.
            let _watcher = watcher;
            let mut state = WatchState::new(config, events);
            state.run(&raw_rx, &cancel);
        })
        .map_err(notify::Error::io)?;
    Ok(())
}

/// What the watcher knows of one manifest path.
#[derive(Default)]
struct Known {
    /// The fingerprint of the last content sent (none while a writer has it open or after an
    /// error, so the next look reads it again).
    fingerprint: Option<Fingerprint>,
    /// The last unusable reason sent, so it is not repeated every rescan.
    error: Option<String>,
}

struct WatchState {
    config: WatchConfig,
    events: mpsc::Sender<FileEvent>,
    known: BTreeMap<PathBuf, Known>,
    /// Paths written to with no close since.
    writing: BTreeSet<PathBuf>,
    /// Paths with events, by the time of the last one.
    dirty: BTreeMap<PathBuf, Instant>,
    /// Whether the first complete listing was sent.
    listed: bool,
    /// The last listing error sent, so it is not repeated every rescan.
    dir_error: Option<String>,
}

/// The receiver is gone: the agent is stopping.
struct Closed;

impl WatchState {
    fn new(config: WatchConfig, events: mpsc::Sender<FileEvent>) -> WatchState {
        WatchState {
            config,
            events,
            known: BTreeMap::new(),
            writing: BTreeSet::new(),
            dirty: BTreeMap::new(),
            listed: false,
            dir_error: None,
        }
    }

    fn send(&self, event: FileEvent) -> Result<(), Closed> {
        self.events.blocking_send(event).map_err(|_| Closed)
    }

    fn run(&mut self, raw: &std_mpsc::Receiver<(PathBuf, Mark)>, cancel: &CancellationToken) {
        let mut next_rescan = Instant::now();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if now >= next_rescan {
                if self.rescan().is_err() {
                    return;
                }
                next_rescan = Instant::now() + self.config.rescan;
            }
            // Wake for the next rescan, the next debounced path, or a cancel check.
            let mut wake = next_rescan.min(now + Duration::from_millis(200));
            if let Some(first) = self.dirty.values().min() {
                wake = wake.min(*first + self.config.debounce);
            }
            let mut ready = BTreeSet::new();
            match raw.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(first) => {
                    let mut next = Some(first);
                    while let Some((path, mark)) = next {
                        self.note(path, mark, &mut ready);
                        next = raw.try_recv().ok();
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            let quiet: Vec<PathBuf> = self
                .dirty
                .iter()
                .filter(|(_, at)| now.duration_since(**at) >= self.config.debounce)
                .map(|(p, _)| p.clone())
                .collect();
            for path in quiet {
                self.dirty.remove(&path);
                ready.insert(path);
            }
            for path in ready {
                if self.look(&path).is_err() {
                    return;
                }
            }
        }
    }

    fn note(&mut self, path: PathBuf, mark: Mark, ready: &mut BTreeSet<PathBuf>) {
        match mark {
            Mark::Complete => {
                self.writing.remove(&path);
                self.dirty.remove(&path);
                ready.insert(path);
            }
            Mark::Written => {
                self.writing.insert(path.clone());
                self.dirty.insert(path, Instant::now());
            }
            Mark::Touched => {
                self.dirty.insert(path, Instant::now());
            }
            Mark::Nothing => {}
        }
    }

    /// Looks at one path an event named: a directory's manifests, a manifest file, or a
    /// removed directory's known files.
    fn look(&mut self, path: &Path) -> Result<(), Closed> {
        if path.is_dir() {
            // A directory appeared (or moved in): look at what it holds.
            if let Ok(names) = list(path) {
                for name in names {
                    self.look_file(&name)?;
                }
            }
            return Ok(());
        }
        if is_manifest_name(path) {
            return self.look_file(path);
        }
        // A directory that went away takes its files with it (only when stat says so).
        if matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            let under: Vec<PathBuf> = self
                .known
                .keys()
                .filter(|k| k.starts_with(path) && k.as_path() != path)
                .cloned()
                .collect();
            for gone in under {
                self.known.remove(&gone);
                self.writing.remove(&gone);
                self.send(FileEvent::Removed { path: gone })?;
            }
        }
        Ok(())
    }

    fn look_file(&mut self, path: &Path) -> Result<(), Closed> {
        let last = self.known.get(path).and_then(|k| k.fingerprint);
        match read_manifest(path, self.config.max_file_bytes, last) {
            Look::Gone => {
                self.known.remove(path);
                self.writing.remove(path);
                self.send(FileEvent::Removed {
                    path: path.to_path_buf(),
                })
            }
            Look::Unchanged => Ok(()),
            Look::Content(content, fingerprint, writer) => {
                // A writer the kernel reports counts even if its events are not read yet; the
                // close brings an event that reads the file again.
                if writer {
                    self.writing.insert(path.to_path_buf());
                }
                let writing = self.writing.contains(path);
                self.known.insert(
                    path.to_path_buf(),
                    Known {
                        fingerprint: (!writing).then_some(fingerprint),
                        error: None,
                    },
                );
                self.send(FileEvent::Present {
                    path: path.to_path_buf(),
                    content,
                    writing,
                })
            }
            Look::Unusable(reason) => {
                let known = self.known.entry(path.to_path_buf()).or_default();
                known.fingerprint = None;
                if known.error.as_deref() == Some(reason.as_str()) {
                    return Ok(());
                }
                known.error = Some(reason.clone());
                self.send(FileEvent::Unreadable {
                    path: path.to_path_buf(),
                    reason,
                })
            }
        }
    }

    /// Lists the whole directory; names a successful listing lacks are removed, every listed
    /// file is looked at (read only if its fingerprint moved).
    fn rescan(&mut self) -> Result<(), Closed> {
        let names = match list(&self.config.dir) {
            Ok(names) => names,
            Err(e) => {
                let reason = format!("cannot list the manifests directory: {e}");
                if self.dir_error.as_deref() != Some(reason.as_str()) {
                    self.dir_error = Some(reason.clone());
                    self.send(FileEvent::Unreadable {
                        path: self.config.dir.clone(),
                        reason,
                    })?;
                }
                return Ok(());
            }
        };
        self.dir_error = None;
        let gone: Vec<PathBuf> = self
            .known
            .keys()
            .filter(|k| !names.contains(*k))
            .cloned()
            .collect();
        for path in gone {
            self.known.remove(&path);
            self.writing.remove(&path);
            self.send(FileEvent::Removed { path })?;
        }
        for name in &names {
            // A file with a writer still busy waits for its events, not the rescan.
            if !self.dirty.contains_key(name) {
                self.look_file(name)?;
            }
        }
        if !self.listed {
            self.listed = true;
            self.send(FileEvent::Listed { paths: names })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
