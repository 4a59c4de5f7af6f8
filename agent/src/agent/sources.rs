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
    /// Hash of the content last seen (good or bad), so repeats are not re-parsed.
    seen: String,
    /// Objects of the last good version.
    objects: Vec<Valid<Object>>,
}

/// Every source and the merged desired objects.
#[derive(Default)]
pub struct Sources {
    sources: BTreeMap<Source, SourceState>,
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
    /// Loads the last good files and API objects from the store.
    pub fn load(store: &Store) -> Result<Sources, StoreError> {
        let mut s = Sources::default();
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

    fn remerge(&mut self) {
        let by_source: BTreeMap<Source, Vec<Valid<Object>>> = self
            .sources
            .iter()
            .map(|(k, v)| (k.clone(), v.objects.clone()))
            .collect();
        self.merged = merge(&by_source);
    }

    /// Applies a watcher event; returns whether the desired objects changed.
    pub fn on_file_event(
        &mut self,
        event: FileEvent,
        store: &Store,
        events: &mut Events,
        now: Millis,
    ) -> bool {
        let changed = match event {
            FileEvent::Present { path, content } => {
                self.file_present(&path.display().to_string(), &content, store, events, now)
            }
            FileEvent::Removed { path } => {
                self.file_removed(&path.display().to_string(), store, events, now)
            }
            FileEvent::Snapshot { files } => {
                let mut changed = false;
                let present: Vec<String> = files.keys().map(|p| p.display().to_string()).collect();
                let gone: Vec<String> = self
                    .sources
                    .keys()
                    .filter(|s| !s.starts_with(API_SOURCE_PREFIX) && !present.contains(s))
                    .cloned()
                    .collect();
                for path in gone {
                    changed |= self.file_removed(&path, store, events, now);
                }
                for (path, content) in files {
                    changed |= self.file_present(
                        &path.display().to_string(),
                        &content,
                        store,
                        events,
                        now,
                    );
                }
                changed
            }
        };
        if changed {
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
        changed
    }

    fn file_present(
        &mut self,
        path: &str,
        content: &[u8],
        store: &Store,
        events: &mut Events,
        now: Millis,
    ) -> bool {
        let h = hash(content);
        if self.sources.get(path).is_some_and(|s| s.seen == h) {
            return false;
        }
        let name = display_name(path);
        let parsed = skiff_manifests::parse_file(&name, content);
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
        if let Err(e) = store.put_file(path, content) {
            events.record(
                now,
                true,
                "StoreFailed",
                "Manifest",
                "",
                &name,
                &e.to_string(),
            );
        }
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

    fn file_removed(
        &mut self,
        path: &str,
        store: &Store,
        events: &mut Events,
        now: Millis,
    ) -> bool {
        if self.sources.remove(path).is_none() {
            return false;
        }
        if let Err(e) = store.delete_file(path) {
            events.record(
                now,
                true,
                "StoreFailed",
                "Manifest",
                "",
                &display_name(path),
                &e.to_string(),
            );
        }
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
                self.sources.insert(
                    source,
                    SourceState {
                        seen: h,
                        objects: vec![object],
                    },
                );
            }
            None => {
                if self.sources.remove(&source).is_none() {
                    return Ok(false);
                }
                store.delete_applied(&source)?;
            }
        }
        self.remerge();
        Ok(true)
    }
}
