//! Where desired objects come from: manifest files (last good version kept while a file is
//! broken) and objects applied through the API. Turns file events into source changes and
//! reports every problem as an event naming the file.

use crate::desired::{API_SOURCE_PREFIX, Merged, Source, merge};
use crate::events::Events;
use crate::pod::Millis;
use crate::store::{Store, StoreError};
use crate::watcher::FileEvent;
use sha2::{Digest, Sha256};
use skiff_manifests::{Object, Valid};
use std::collections::BTreeMap;
use std::path::Path;

/// One source's state.
#[derive(Clone, Debug)]
struct SourceState {
    /// Hash of the content last acted on (good or bad), so repeats are not re-parsed.
    seen: String,
    /// Objects of the last good version.
    objects: Vec<Valid<Object>>,
}

/// A file version not acted on yet: a writer still has it open, or it is broken or declares
/// fewer objects than the last good version and has not been quiet for the settle time.
#[derive(Clone, Debug)]
struct Pending {
    content: Vec<u8>,
    hash: String,
    /// When this content was first seen (the file has been quiet since).
    since: Millis,
    writing: bool,
}

/// How long a file a writer keeps open (with no close) is held before it is acted on anyway.
pub const WRITER_HOLD_MS: Millis = 30_000;

/// Every source and the merged desired objects.
#[derive(Default)]
pub struct Sources {
    sources: BTreeMap<Source, SourceState>,
    pending: BTreeMap<Source, Pending>,
    /// The last unreadable reason recorded per path, so a lasting problem is one event.
    unreadable: BTreeMap<Source, String>,
    /// How long a broken or shrinking version must be quiet before it is acted on.
    settle: Millis,
    /// The node's `--service-node-port-range`: a file pinning a node port outside it is an
    /// error (checked when a file is acted on, not when the last good versions are loaded).
    node_ports: skiff_manifests::NodePortRange,
    /// Files acted on whose new content (or removal: `None`) is not in the store yet (the node
    /// loop writes them after handing the change on, and again once a store that refused
    /// writes is back): handed to the store writer by [`Sources::take_unwritten`].
    unwritten: BTreeMap<Source, Option<Vec<u8>>>,
    pub merged: Merged,
}

fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn display_name(source: &str) -> String {
    Path::new(source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| source.to_string())
}

impl Sources {
    /// Loads the last good files and API objects from the store. `settle`: how long a file
    /// that is broken, or declares less than before, must be quiet before it is acted on.
    pub fn load(store: &Store, settle: Millis) -> Result<Sources, StoreError> {
        let mut s = Sources {
            settle,
            ..Sources::default()
        };
        for (path, content) in store.files()?.into_iter().chain(store.applied()?) {
            let parsed = skiff_manifests::parse_file(&display_name(&path), &content);
            s.sources.insert(
                path,
                SourceState {
                    seen: hash(&content),
                    objects: parsed.objects().into_iter().cloned().collect(),
                },
            );
        }
        s.remerge();
        Ok(s)
    }

    /// Checks pinned node ports against `range` from now on.
    pub fn with_node_port_range(mut self, range: skiff_manifests::NodePortRange) -> Sources {
        self.node_ports = range;
        self
    }

    /// A file as it would be acted on: parsed, validated, node ports checked.
    fn parse(&self, name: &str, content: &[u8]) -> skiff_manifests::ParsedFile {
        crate::desired::parse_checked(name, content, Some(self.node_ports))
    }

    fn remerge(&mut self) {
        self.merged = merge(self.sources.iter().map(|(k, v)| (k, &v.objects)));
    }

    /// Applies a watcher event; returns whether the desired objects changed.
    /// What it changes is written to the store through [`Sources::take_unwritten`], which the
    /// node loop calls after it has handed the new declarations on.
    pub fn on_file_event(&mut self, event: FileEvent, events: &mut Events, now: Millis) -> bool {
        let changed = match event {
            FileEvent::Present {
                path,
                content,
                writing,
            } => {
                let path = path.display().to_string();
                self.unreadable.remove(&path);
                self.file_seen(&path, content, writing, events, now)
            }
            FileEvent::Removed { path } => {
                let path = path.display().to_string();
                self.unreadable.remove(&path);
                self.pending.remove(&path);
                self.file_removed(&path, events, now)
            }
            FileEvent::Unreadable { path, reason } => {
                let path = path.display().to_string();
                if self.unreadable.get(&path) != Some(&reason) {
                    let kept = if self.sources.contains_key(&path) {
                        "the last good version keeps running"
                    } else {
                        "nothing from this file runs until it can be read"
                    };
                    events.record(
                        now,
                        true,
                        "ManifestUnreadable",
                        "Manifest",
                        "",
                        &display_name(&path),
                        &format!("{path}: {reason}; {kept}"),
                    );
                    tracing::warn!("manifest {path}: {reason}; {kept}");
                    self.unreadable.insert(path, reason);
                }
                false
            }
            FileEvent::Listed { paths } => {
                let present: std::collections::BTreeSet<String> =
                    paths.iter().map(|p| p.display().to_string()).collect();
                let gone: Vec<String> = self
                    .sources
                    .keys()
                    .filter(|s| !s.starts_with(API_SOURCE_PREFIX) && !present.contains(*s))
                    .cloned()
                    .collect();
                let mut changed = false;
                for path in gone {
                    self.pending.remove(&path);
                    changed |= self.file_removed(&path, events, now);
                }
                changed
            }
        };
        if changed {
            self.after_change(events, now);
        }
        changed
    }

    /// Acts on held versions whose wait is over; returns whether the desired objects changed.
    pub fn settle_due(&mut self, events: &mut Events, now: Millis) -> bool {
        let due: Vec<Source> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.since) >= self.hold_ms(p.writing))
            .map(|(s, _)| s.clone())
            .collect();
        let mut changed = false;
        for source in due {
            if let Some(p) = self.pending.remove(&source) {
                changed |= self.act_on(&source, &p.content, p.hash, events, now);
            }
        }
        if changed {
            self.after_change(events, now);
        }
        changed
    }

    /// How long a held version waits: the settle time, or longer while a writer has it open.
    fn hold_ms(&self, writing: bool) -> Millis {
        if writing {
            WRITER_HOLD_MS.max(self.settle)
        } else {
            self.settle
        }
    }

    fn after_change(&mut self, events: &mut Events, now: Millis) {
        self.remerge();
        for (source, message) in &self.merged.conflicts {
            events.record(
                now,
                true,
                "DuplicateObject",
                "Manifest",
                "",
                &display_name(source),
                message,
            );
        }
    }

    /// A file's current content: acted on at once when it is whole, valid and declares at
    /// least what the last good version did; otherwise held (see [`Pending`]).
    fn file_seen(
        &mut self,
        path: &str,
        content: Vec<u8>,
        writing: bool,
        events: &mut Events,
        now: Millis,
    ) -> bool {
        let h = hash(&content);
        if self.sources.get(path).is_some_and(|s| s.seen == h) {
            // Back to what is in force (a writer put the same bytes back): nothing to do.
            self.pending.remove(path);
            return false;
        }
        let since = match self.pending.get(path) {
            Some(p) if p.hash == h => p.since,
            _ => now,
        };
        let hold = writing || {
            let parsed = self.parse(&display_name(path), &content);
            !parsed.is_ok() || self.drops_objects(path, &parsed.objects())
        };
        if hold && now.saturating_sub(since) < self.hold_ms(writing) {
            self.pending.insert(
                path.to_string(),
                Pending {
                    content,
                    hash: h,
                    since,
                    writing,
                },
            );
            return false;
        }
        self.pending.remove(path);
        self.act_on(path, &content, h, events, now)
    }

    /// Whether `objects` leaves out something the last good version of `path` declared.
    fn drops_objects(&self, path: &str, objects: &[&Valid<Object>]) -> bool {
        let Some(state) = self.sources.get(path) else {
            return false;
        };
        let now: std::collections::BTreeSet<_> = objects.iter().map(|o| o.key()).collect();
        state.objects.iter().any(|o| !now.contains(&o.key()))
    }

    fn act_on(
        &mut self,
        path: &str,
        content: &[u8],
        h: String,
        events: &mut Events,
        now: Millis,
    ) -> bool {
        if self.sources.get(path).is_some_and(|s| s.seen == h) {
            return false;
        }
        let name = display_name(path);
        let parsed = self.parse(&name, content);
        for w in parsed.warnings() {
            events.record(
                now,
                true,
                "UnknownField",
                "Manifest",
                "",
                &name,
                &w.to_string(),
            );
        }
        let errors = parsed.errors();
        if !errors.is_empty() {
            for e in &errors {
                events.record(
                    now,
                    true,
                    "InvalidManifest",
                    "Manifest",
                    "",
                    &name,
                    &e.to_string(),
                );
            }
            let kept = match self.sources.get_mut(path) {
                Some(s) => {
                    s.seen = h;
                    "the last good version keeps running"
                }
                None => {
                    self.sources.insert(
                        path.to_string(),
                        SourceState {
                            seen: h,
                            objects: Vec::new(),
                        },
                    );
                    "nothing from this file runs until it is fixed"
                }
            };
            events.record(
                now,
                true,
                "ManifestRejected",
                "Manifest",
                "",
                &name,
                &format!("{path}: {} problem(s); {kept}", errors.len()),
            );
            return false;
        }
        self.unwritten
            .insert(path.to_string(), Some(content.to_vec()));
        let objects: Vec<Valid<Object>> = parsed.objects().into_iter().cloned().collect();
        events.record(
            now,
            false,
            "ManifestApplied",
            "Manifest",
            "",
            &name,
            &format!("{path}: {} object(s)", objects.len()),
        );
        self.sources
            .insert(path.to_string(), SourceState { seen: h, objects });
        true
    }

    fn file_removed(&mut self, path: &str, events: &mut Events, now: Millis) -> bool {
        if self.sources.remove(path).is_none() {
            return false;
        }
        self.unwritten.insert(path.to_string(), None);
        events.record(
            now,
            false,
            "ManifestRemoved",
            "Manifest",
            "",
            &display_name(path),
            &format!("{path} removed: deleting what it declared"),
        );
        true
    }

    /// Takes the file contents to write (for the store writer, which keeps what fails).
    pub fn take_unwritten(&mut self) -> BTreeMap<Source, Option<Vec<u8>>> {
        std::mem::take(&mut self.unwritten)
    }

    /// Writes the file contents the store did not take when they were acted on (tests; the
    /// agent hands them to its store writer with [`Sources::take_unwritten`]); returns how
    /// many were written. Stops at the first error (the rest wait for the next call).
    #[cfg(test)]
    pub fn write_unwritten(&mut self, store: &Store) -> Result<usize, StoreError> {
        let mut written = 0;
        while let Some((path, content)) = self.unwritten.pop_first() {
            let api = path.starts_with(API_SOURCE_PREFIX);
            let result = match &content {
                Some(bytes) if api => store.put_applied(&path, bytes),
                Some(bytes) => store.put_file(&path, bytes),
                None if api => store.delete_applied(&path),
                None => store.delete_file(&path),
            };
            if let Err(e) = result {
                self.unwritten.insert(path, content);
                return Err(e);
            }
            written += 1;
        }
        Ok(written)
    }

    /// The source that declares `key`, if any.
    pub fn source_of(&self, key: &skiff_manifests::ObjectKey) -> Option<&Source> {
        self.merged.objects.get(key).map(|(s, _)| s)
    }

    /// Sets (or with `None` removes) an object applied through the API; returns whether the
    /// desired objects changed.
    pub fn set_api_object(
        &mut self,
        key: &skiff_manifests::ObjectKey,
        object: Option<Valid<Object>>,
        store: &Store,
    ) -> Result<bool, StoreError> {
        let source = format!(
            "{API_SOURCE_PREFIX}{}/{}/{}",
            key.kind, key.namespace, key.name
        );
        match object {
            Some(object) => {
                let bytes = object.to_json();
                let h = hash(&bytes);
                if self.sources.get(&source).is_some_and(|s| s.seen == h) {
                    return Ok(false);
                }
                store.put_applied(&source, &bytes)?;
                // Also through the store writer: it may hold an older write of this source
                // (a deletion the store refused), which must not land after this one.
                self.unwritten.insert(source.clone(), Some(bytes.to_vec()));
                self.sources.insert(
                    source,
                    SourceState {
                        seen: h,
                        objects: vec![object],
                    },
                );
            }
            None => {
                if !self.sources.contains_key(&source) {
                    return Ok(false);
                }
                // A deletion is never refused for want of disk: a store that refuses writes
                // gets it once it is back (the node loop reopens it).
                if let Err(e) = store.delete_applied(&source) {
                    tracing::warn!("{source}: deleted, but not from the store yet: {e}");
                }
                // The store writer's last write of this source is this deletion, whatever it
                // still holds.
                self.unwritten.insert(source.clone(), None);
                self.sources.remove(&source);
            }
        }
        self.remerge();
        Ok(true)
    }
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
