//! In-process clusters (paused time, fake runtime): `rollout history` and `rollout undo` asked
//! of a node that did not declare the Deployment, the undo replicated to every node and kept
//! until the declaration changes again, and the opt-in automatic rollback of a rollout that
//! exceeds its progress deadline.

mod sim;

use sim::{Sim, SimOptions, image_of, wait_until};
use skiff_agent::cluster::{ClusterCommand, HistoryView, UndoDone};
use skiff_manifests::{Kind, ObjectKey, Valid};
use std::time::Duration;
use tokio::sync::oneshot;

fn web_key() -> ObjectKey {
    ObjectKey::new(Kind::Deployment, "default", "web")
}

/// A Deployment `web` of 2 replicas of `image`, with extra annotations and spec lines.
fn web(image: &str, annotations: &str, spec: &str) -> Valid<skiff_manifests::Object> {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations: {{{annotations}}}\nspec:\n  replicas: 2\n{spec}  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n"
    );
    let parsed = skiff_manifests::parse_file("sim.yaml", yaml.as_bytes());
    assert!(parsed.errors().is_empty(), "{:?}", parsed.errors());
    parsed.objects().into_iter().next().cloned().expect("web")
}

async fn history(sim: &Sim, i: usize) -> Result<HistoryView, String> {
    let (reply, rx) = oneshot::channel();
    sim.node(i)
        .commands
        .send(ClusterCommand::History {
            key: web_key(),
            reply,
        })
        .await
        .expect("cluster task");
    rx.await.expect("answer")
}

async fn undo(sim: &Sim, i: usize, to: Option<u64>) -> Result<UndoDone, String> {
    let (reply, rx) = oneshot::channel();
    sim.node(i)
        .commands
        .send(ClusterCommand::Undo {
            key: web_key(),
            to_revision: to,
            reply,
        })
        .await
        .expect("cluster task");
    rx.await.expect("answer")
}

/// (revision, image) of each revision, oldest first.
fn revisions(view: &HistoryView) -> Vec<(u64, String)> {
    view.revisions
        .iter()
        .map(|r| {
            let image = r
                .template
                .pointer("/spec/containers/0/image")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            (r.revision, image.to_string())
        })
        .collect()
}

fn revs(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|(n, i)| (*n, i.to_string())).collect()
}

async fn everyone_holds(sim: &Sim, image: &str) {
    let everyone = sim.alive();
    wait_until(
        &format!("every node to hold web with {image}"),
        Duration::from_secs(10),
        || {
            std::future::ready(
                everyone
                    .iter()
                    .all(|i| sim.holds(*i, &web_key(), |o| image_of(o).as_deref() == Some(image))),
            )
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_undo_on_any_node_reaches_every_node_and_the_files_next_change_wins() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let v1 = web("app:v1", "kubernetes.io/change-cause: first", "");
    let v2 = web("app:v2", "kubernetes.io/change-cause: second", "");
    sim.declare(0, std::slice::from_ref(&v1));
    everyone_holds(&sim, "app:v1").await;
    sim.declare(0, std::slice::from_ref(&v2));
    everyone_holds(&sim, "app:v2").await;
    // Every node has the same history, with the change causes.
    for i in 0..3 {
        let view = history(&sim, i).await.expect("history");
        assert_eq!(
            revisions(&view),
            revs(&[(1, "app:v1"), (2, "app:v2")]),
            "node {i}"
        );
        assert_eq!(view.revisions[0].cause.as_deref(), Some("first"));
    }
    // Node 2, which declared nothing, rolls back: revision 1 comes back as revision 3.
    let done = undo(&sim, 2, None).await.expect("undo");
    assert_eq!((done.from_revision, done.revision), (1, 3));
    assert_eq!(done.declared, "node-000:/manifests/web.yaml", "{done:?}");
    everyone_holds(&sim, "app:v1").await;
    wait_until("v1 pods running", Duration::from_secs(20), || {
        std::future::ready(sim.running("Deployment", "web").len() == 2)
    })
    .await;
    let events = sim.node(2).events.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| e.reason == "RolledBack"
            && e.message
                .contains("manifest file /manifests/web.yaml on node node-000 now differs")),
        "{events:?}"
    );
    let view = history(&sim, 1).await.expect("history");
    assert_eq!(revisions(&view), revs(&[(2, "app:v2"), (3, "app:v1")]));
    // What cannot be done is said.
    assert!(
        undo(&sim, 1, Some(9))
            .await
            .unwrap_err()
            .contains("revision 9")
    );
    assert!(
        undo(&sim, 1, Some(3))
            .await
            .unwrap_err()
            .contains("already matches")
    );
    // The file, unchanged, does not undo the rollback, even after its node restarts.
    sim.declare(0, std::slice::from_ref(&v2));
    sim.kill_agent(0).await;
    sim.restart(0).await;
    sim.settle().await;
    everyone_holds(&sim, "app:v1").await;
    // Its next change wins again.
    sim.declare(0, &[web("app:v3", "", "")]);
    everyone_holds(&sim, "app:v3").await;
    let view = history(&sim, 2).await.expect("history");
    assert_eq!(
        revisions(&view),
        revs(&[(2, "app:v2"), (3, "app:v1"), (4, "app:v3")])
    );
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_rollout_past_its_deadline_rolls_back_by_itself_when_asked_to() {
    let mut sim = Sim::start(3, SimOptions::default()).await;
    sim.settle().await;
    let auto = "skiff.dev/auto-rollback: \"true\"";
    let deadline = "  progressDeadlineSeconds: 3\n";
    sim.declare(0, &[web("app:v1", auto, deadline)]);
    everyone_holds(&sim, "app:v1").await;
    wait_until("v1 available", Duration::from_secs(20), || {
        std::future::ready(
            sim.running("Deployment", "web").len() == 2
                && sim.reported(1, "web").values().all(|(_, r)| r.ready),
        )
    })
    .await;
    // The new revision's pods never turn ready: after the deadline the leader rolls back.
    sim.declare(0, &[web("app:unready-v2", auto, deadline)]);
    everyone_holds(&sim, "app:unready-v2").await;
    let took = wait_until("the automatic rollback", Duration::from_secs(30), || {
        std::future::ready(sim.holds(2, &web_key(), |o| image_of(o).as_deref() == Some("app:v1")))
    })
    .await;
    assert!(
        took >= Duration::from_secs(3),
        "rolled back before the deadline ({took:?})"
    );
    let view = history(&sim, 2).await.expect("history");
    assert_eq!(
        revisions(&view),
        revs(&[(2, "app:unready-v2"), (3, "app:v1")])
    );
    assert!(
        view.revisions[1]
            .cause
            .as_deref()
            .is_some_and(|c| c.starts_with("auto-rollback")),
        "{view:?}"
    );
    // Exactly one node (the leader) made the rollback; it recorded the event.
    let made: Vec<usize> = (0..3)
        .filter(|i| {
            sim.node(*i)
                .events
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.reason == "RolledBack" && e.warning)
        })
        .collect();
    assert_eq!(made, vec![0], "the leader node-000 rolls back");
    // The v1 pods run again and nothing rolls back a second time.
    wait_until("v1 pods back", Duration::from_secs(20), || {
        std::future::ready(
            sim.running("Deployment", "web").len() == 2
                && sim.reported(1, "web").values().all(|(_, r)| r.ready),
        )
    })
    .await;
    sim.stop().await;
}
