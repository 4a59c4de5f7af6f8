//! The rules for manifest files as a table of event sequences: a half-written, broken,
//! shrinking or unreadable file never deletes before it has settled.

use super::*;
use std::path::PathBuf;

const SETTLE: Millis = 2_000;

const CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n";
const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: busybox}]\n";

struct Bed {
    _dir: tempfile::TempDir,
    store: Store,
    sources: Sources,
    events: Events,
    path: PathBuf,
}

impl Bed {
    /// A source file `web.yaml` whose last good version declares a ConfigMap and a Deployment.
    fn new() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("skiff.redb")).unwrap();
        let mut bed = Bed {
            sources: Sources::load(&store, SETTLE).unwrap(),
            store,
            events: Events::default(),
            path: dir.path().join("web.yaml"),
            _dir: dir,
        };
        let full = format!("{CONFIG}---\n{DEPLOY}");
        assert!(bed.present(&full, false, 0));
        assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
        bed
    }

    fn present(&mut self, content: &str, writing: bool, now: Millis) -> bool {
        let changed = self.sources.on_file_event(
            FileEvent::Present {
                path: self.path.clone(),
                content: content.as_bytes().to_vec(),
                writing,
            },
            &mut self.events,
            now,
        );
        self.sources.write_unwritten(&self.store).expect("store");
        changed
    }

    fn settle(&mut self, now: Millis) -> bool {
        let changed = self.sources.settle_due(&mut self.events, now);
        self.sources.write_unwritten(&self.store).expect("store");
        changed
    }

    fn declared(&self) -> Vec<String> {
        self.sources
            .merged
            .objects
            .keys()
            .map(|k| format!("{}/{}", k.kind, k.name))
            .collect()
    }

    fn count(&self, reason: &str) -> usize {
        self.events.iter().filter(|e| e.reason == reason).count()
    }
}

#[test]
fn a_file_rewritten_slowly_never_loses_what_it_declares() {
    let mut bed = Bed::new();
    // `cat > web.yaml` over a slow link: the first document, then 3 s, then the second. The
    // writer keeps the file open throughout.
    assert!(!bed.present(CONFIG, true, 10_000));
    for t in [10_500, 12_000, 12_999] {
        assert!(!bed.settle(t));
        assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
    }
    let full = format!("{CONFIG}---\n{DEPLOY}");
    // Still open when the last bytes land, then closed.
    assert!(!bed.present(&full, true, 13_000));
    assert!(
        !bed.present(&full, false, 13_010),
        "the same content as before"
    );
    assert!(!bed.settle(60_000));
    assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
    assert_eq!(bed.count("ManifestRemoved"), 0);
}

#[test]
fn a_shrunk_file_deletes_only_after_it_settles() {
    let mut bed = Bed::new();
    // Closed with only the ConfigMap: held for the settle time, then acted on.
    assert!(!bed.present(CONFIG, false, 10_000));
    assert!(!bed.settle(11_999));
    assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
    assert!(bed.settle(12_000));
    assert_eq!(bed.declared(), ["ConfigMap/cfg"]);
    // A file that grows is acted on at once.
    let full = format!("{CONFIG}---\n{DEPLOY}");
    assert!(bed.present(&full, false, 12_100));
    assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
}

#[test]
fn a_changed_version_restarts_the_settle_clock() {
    let mut bed = Bed::new();
    assert!(!bed.present(CONFIG, false, 10_000));
    let other = CONFIG.replace("a: b", "a: c");
    assert!(!bed.present(&other, false, 11_500));
    assert!(!bed.settle(12_500), "quiet for 1 s only");
    assert!(bed.settle(13_500));
    assert_eq!(bed.declared(), ["ConfigMap/cfg"]);
}

#[test]
fn a_writer_that_never_closes_is_acted_on_after_the_hold() {
    let mut bed = Bed::new();
    let with_more = format!(
        "{CONFIG}---\n{DEPLOY}---\n{}",
        CONFIG.replace("cfg", "more")
    );
    assert!(!bed.present(&with_more, true, 10_000));
    assert!(!bed.settle(10_000 + WRITER_HOLD_MS - 1));
    assert_eq!(bed.declared().len(), 2);
    assert!(bed.settle(10_000 + WRITER_HOLD_MS));
    assert_eq!(bed.declared().len(), 3);
}

#[test]
fn a_trickled_broken_file_gives_one_set_of_events_once_settled() {
    let mut bed = Bed::new();
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: [";
    // Byte by byte, each version quiet for a moment only.
    for (i, end) in (20..broken.len()).enumerate() {
        bed.present(&broken[..end], false, 10_000 + i as Millis * 10);
        bed.settle(10_000 + i as Millis * 10 + 5);
    }
    assert_eq!(bed.count("InvalidManifest"), 0);
    let last = 10_000 + (broken.len() as Millis) * 10;
    bed.present(broken, false, last);
    assert!(
        !bed.settle(last + SETTLE),
        "a broken version keeps the last good one"
    );
    assert_eq!(bed.count("ManifestRejected"), 1);
    assert!(bed.count("InvalidManifest") >= 1);
    assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
}

#[test]
fn unreadable_keeps_the_last_good_version_with_one_event() {
    let mut bed = Bed::new();
    for t in [10_000, 10_500, 11_000] {
        assert!(!bed.sources.on_file_event(
            FileEvent::Unreadable {
                path: bed.path.clone(),
                reason: "cannot read it: Too many open files (os error 24)".into(),
            },
            &mut bed.events,
            t,
        ));
    }
    assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
    let unreadable: Vec<_> = bed
        .events
        .iter()
        .filter(|e| e.reason == "ManifestUnreadable")
        .collect();
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].count, 1);
    assert!(unreadable[0].message.contains("web.yaml"));
    assert!(unreadable[0].message.contains("os error 24"));
    assert!(
        unreadable[0]
            .message
            .contains("last good version keeps running")
    );
}

#[test]
fn the_first_listing_removes_files_deleted_while_the_agent_was_down() {
    let mut bed = Bed::new();
    // The store remembers web.yaml; restart with a listing that lacks it.
    let mut sources = Sources::load(&bed.store, SETTLE).unwrap();
    assert_eq!(sources.merged.objects.len(), 2);
    let other = bed.path.with_file_name("other.yaml");
    assert!(sources.on_file_event(
        FileEvent::Listed {
            paths: [other].into_iter().collect()
        },
        &mut bed.events,
        20_000,
    ));
    assert!(sources.merged.objects.is_empty());
    // Written once the loop has handed the change on.
    assert_eq!(bed.store.files().unwrap().len(), 1);
    assert_eq!(sources.write_unwritten(&bed.store).unwrap(), 1);
    assert!(bed.store.files().unwrap().is_empty());
}

#[test]
fn a_pending_version_is_dropped_when_the_file_goes_back() {
    let mut bed = Bed::new();
    assert!(!bed.present(CONFIG, false, 10_000));
    let full = format!("{CONFIG}---\n{DEPLOY}");
    assert!(!bed.present(&full, false, 10_500));
    assert!(!bed.settle(20_000));
    assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
}

#[test]
fn a_document_of_an_unsupported_kind_keeps_the_whole_file_at_its_last_good_version() {
    let mut bed = Bed::new();
    // A changed ConfigMap beside a kind skiff does not have (a Job, before it does).
    let next = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{a: changed}}\n---\n{DEPLOY}---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: fast}}\n"
    );
    bed.present(&next, false, 10_000);
    assert!(
        !bed.settle(10_000 + SETTLE),
        "nothing of the new version applies"
    );
    assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
    let (_, cfg) = bed
        .sources
        .merged
        .objects
        .iter()
        .find(|(k, _)| k.name == "cfg")
        .map(|(_, v)| v)
        .unwrap();
    let json = String::from_utf8(cfg.to_json()).unwrap();
    assert!(
        json.contains("\"a\":\"b\""),
        "the last good ConfigMap: {json}"
    );
    let refused: Vec<_> = bed
        .events
        .iter()
        .filter(|e| e.reason == "InvalidManifest")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].message.contains("document 3: kind"),
        "the event names the refused document: {}",
        refused[0].message
    );
    assert_eq!(bed.count("ManifestRejected"), 1);
}

#[test]
fn a_node_port_outside_the_nodes_range_is_an_error_of_the_file() {
    let svc = |port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: np}}\nspec:\n  type: NodePort\n  ports: [{{port: 80, nodePort: {port}}}]\n"
        )
    };
    let mut bed = Bed::new();
    // Default range: 8080 is refused once the broken version settles; the last good stays.
    let full = format!("{CONFIG}---\n{DEPLOY}---\n{}", svc(8080));
    assert!(!bed.present(&full, false, 10_000));
    assert!(!bed.settle(12_000));
    assert_eq!(bed.declared(), ["ConfigMap/cfg", "Deployment/web"]);
    let invalid: Vec<&str> = bed
        .events
        .iter()
        .filter(|e| e.reason == "InvalidManifest")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(
        invalid[0].contains("web.yaml")
            && invalid[0].contains(
                "spec.ports[0].nodePort: must be in the node port range 30000-32767 (got 8080"
            ),
        "{invalid:?}"
    );
    // A node whose range holds it takes the same file at once.
    bed.sources =
        std::mem::take(&mut bed.sources).with_node_port_range("8000-8999".parse().unwrap());
    let again = format!("{CONFIG}---\n{DEPLOY}---\n{}\n", svc(8080));
    assert!(bed.present(&again, false, 13_000));
    assert_eq!(
        bed.declared(),
        ["ConfigMap/cfg", "Deployment/web", "Service/np"]
    );
}
