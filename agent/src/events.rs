//! Events, as `skiff get events` shows them: what happened to which object, deduplicated
//! (a repeat of the same reason and message bumps the count) and bounded in number.

use crate::pod::{Millis, rfc3339};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;

/// Kept events (oldest dropped first).
pub const MAX_EVENTS: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    /// `Pod`, `Deployment`, `Manifest` (a file), `Image`, `Node`.
    pub object_kind: String,
    pub namespace: String,
    pub object_name: String,
    pub message: String,
    pub first_seen: Millis,
    pub last_seen: Millis,
    pub count: u32,
}

/// An event made outside the node loop (the cluster task, an API request), for the loop to
/// record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub object_kind: String,
    pub namespace: String,
    pub object_name: String,
    pub message: String,
}

/// A bounded, deduplicating event log. Events are shared with the published copies
/// ([`Events::shared`]), which are rebuilt only after a change.
#[derive(Clone, Debug, Default)]
pub struct Events {
    items: VecDeque<Arc<Event>>,
    shared: Option<Arc<Vec<Arc<Event>>>>,
}

impl Events {
    /// Records a [`Note`].
    pub fn note(&mut self, now: Millis, n: &Note) {
        self.record(
            now,
            n.warning,
            &n.reason,
            &n.object_kind,
            &n.namespace,
            &n.object_name,
            &n.message,
        );
    }

    /// Records an event; the same object, reason and message as a recent one bumps its count.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        now: Millis,
        warning: bool,
        reason: &str,
        object_kind: &str,
        namespace: &str,
        object_name: &str,
        message: &str,
    ) {
        let object = if namespace.is_empty() {
            format!("{object_kind} {object_name}")
        } else {
            format!("{object_kind} {namespace}/{object_name}")
        };
        if warning {
            tracing::warn!("{object}: {reason}: {message}");
        } else {
            tracing::info!("{object}: {reason}: {message}");
        }
        self.shared = None;
        if let Some(e) = self.items.iter_mut().rev().take(50).find(|e| {
            e.reason == reason
                && e.object_kind == object_kind
                && e.namespace == namespace
                && e.object_name == object_name
                && e.message == message
        }) {
            let e = Arc::make_mut(e);
            e.count += 1;
            e.last_seen = now;
            return;
        }
        if self.items.len() >= MAX_EVENTS {
            self.items.pop_front();
        }
        self.items.push_back(Arc::new(Event {
            warning,
            reason: reason.to_string(),
            object_kind: object_kind.to_string(),
            namespace: namespace.to_string(),
            object_name: object_name.to_string(),
            message: message.to_string(),
            first_seen: now,
            last_seen: now,
            count: 1,
        }));
    }

    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.items.iter().map(|e| &**e)
    }

    /// The events, oldest first, as a list to publish: the same list until the next change.
    pub fn shared(&mut self) -> Arc<Vec<Arc<Event>>> {
        self.shared
            .get_or_insert_with(|| Arc::new(self.items.iter().cloned().collect()))
            .clone()
    }
}

impl Event {
    /// Kubernetes' Event shape (v1).
    pub fn to_json(&self, index: usize) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{}.{index}", self.object_name),
                "namespace": self.namespace,
                "creationTimestamp": rfc3339(self.first_seen),
            },
            "involvedObject": {
                "kind": self.object_kind,
                "namespace": self.namespace,
                "name": self.object_name,
            },
            "type": if self.warning { "Warning" } else { "Normal" },
            "reason": self.reason,
            "message": self.message,
            "count": self.count,
            "firstTimestamp": rfc3339(self.first_seen),
            "lastTimestamp": rfc3339(self.last_seen),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_and_old_events_dropped() {
        let mut e = Events::default();
        e.record(1, true, "BackOff", "Pod", "default", "p", "m");
        e.record(2, true, "BackOff", "Pod", "default", "p", "m");
        e.record(3, false, "Started", "Pod", "default", "p", "m");
        let v: Vec<&Event> = e.iter().collect();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].count, v[0].first_seen, v[0].last_seen), (2, 1, 2));
        for i in 0..(MAX_EVENTS as u64 + 10) {
            e.record(i, false, "R", "Pod", "default", &format!("p{i}"), "m");
        }
        assert_eq!(e.iter().count(), MAX_EVENTS);
        assert_eq!(e.iter().next().unwrap().object_name, "p10");
        assert_eq!(
            v_json(&e)["involvedObject"]["kind"],
            serde_json::json!("Pod")
        );
    }

    fn v_json(e: &Events) -> Value {
        e.iter().next().unwrap().to_json(0)
    }
}
