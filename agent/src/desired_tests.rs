//! Tables for desired state: merging sources and deciding which pods to create and delete.

use super::*;
use crate::pod::{PodRecord, PodRuntime};

fn objects(sources: &[(&str, &str)]) -> Merged {
    let by_source: BTreeMap<Source, Vec<Valid<Object>>> = sources
        .iter()
        .map(|(name, yaml)| {
            let parsed = skiff_manifests::parse_file(name, yaml.as_bytes());
            assert!(parsed.is_ok(), "{:?}", parsed.errors());
            (
                name.to_string(),
                parsed.objects().into_iter().cloned().collect(),
            )
        })
        .collect();
    merge(&by_source)
}

fn deployment(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: c\n        image: {image}\n"
    )
}

fn pod(image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
    )
}

/// What the agent makes of a `NewPod` (uid from a counter, created at `at`).
fn record(new: &NewPod, uid: &str, at: u64) -> PodRecord {
    let plan = crate::pod::PodPlanSpec {
        init_containers: vec![],
        containers: vec![],
        restart_policy: crate::pod::RestartPolicy::Always,
        grace_period: std::time::Duration::from_secs(30),
        host_network: false,
    };
    PodRecord {
        uid: uid.into(),
        namespace: new.pod.metadata.namespace.clone(),
        name: new.pod.metadata.name.clone(),
        owner: new.owner.clone(),
        spec_hash: new.spec_hash.clone(),
        manifest: new.pod.clone().into(),
        status: PodRuntime::for_plan(&plan),
        plan,
        created_at: at,
        deleting_since: None,
    }
}

fn suffixes() -> impl FnMut() -> PodSuffix {
    let mut n = 0;
    move || {
        n += 1;
        PodSuffix::from_seed(n)
    }
}

fn changes(merged: &Merged, records: &[PodRecord]) -> PodChanges {
    let refs: Vec<&PodRecord> = records.iter().collect();
    pod_changes(&merged.objects, &refs, &mut suffixes())
}

#[test]
fn a_new_deployment_gets_its_replicas_named_like_kubernetes() {
    let merged = objects(&[("web.yaml", &deployment(2, "busybox:1"))]);
    let c = changes(&merged, &[]);
    assert_eq!(c.create.len(), 2);
    assert!(c.delete.is_empty());
    for new in &c.create {
        let name = &new.pod.metadata.name;
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len()),
            ("web", 10, 5),
            "{name}"
        );
        assert_eq!(new.owner.as_ref().map(|o| o.name.as_str()), Some("web"));
    }
    assert_ne!(c.create[0].pod.metadata.name, c.create[1].pod.metadata.name);
}

#[test]
fn existing_pods_of_the_same_template_are_kept() {
    let merged = objects(&[("web.yaml", &deployment(2, "busybox:1"))]);
    let first = changes(&merged, &[]);
    let records: Vec<PodRecord> = first
        .create
        .iter()
        .enumerate()
        .map(|(i, n)| record(n, &format!("u{i}"), i as u64))
        .collect();
    assert_eq!(changes(&merged, &records), PodChanges::default());
    // Scaling up adds one; scaling down removes the newest.
    let up = objects(&[("web.yaml", &deployment(3, "busybox:1"))]);
    let c = changes(&up, &records);
    assert_eq!((c.create.len(), c.delete.len()), (1, 0));
    let down = objects(&[("web.yaml", &deployment(1, "busybox:1"))]);
    assert_eq!(changes(&down, &records).delete, vec!["u1".to_string()]);
}

#[test]
fn a_changed_template_replaces_every_pod() {
    let merged = objects(&[("web.yaml", &deployment(2, "busybox:1"))]);
    let records: Vec<PodRecord> = changes(&merged, &[])
        .create
        .iter()
        .enumerate()
        .map(|(i, n)| record(n, &format!("u{i}"), 0))
        .collect();
    let changed = objects(&[("web.yaml", &deployment(2, "busybox:2"))]);
    let c = changes(&changed, &records);
    assert_eq!(c.create.len(), 2);
    assert_eq!(c.delete, vec!["u0".to_string(), "u1".to_string()]);
    // Removing the Deployment deletes its pods and creates nothing.
    let c = changes(&objects(&[]), &records);
    assert_eq!((c.create.len(), c.delete.len()), (0, 2));
}

#[test]
fn a_changed_pod_is_recreated_only_once_its_name_is_free() {
    let merged = objects(&[("solo.yaml", &pod("busybox:1"))]);
    let first = changes(&merged, &[]);
    assert_eq!(first.create.len(), 1);
    let mut old = record(&first.create[0], "old", 0);
    let changed = objects(&[("solo.yaml", &pod("busybox:2"))]);
    let c = changes(&changed, std::slice::from_ref(&old));
    assert_eq!((c.create.len(), c.delete), (0, vec!["old".to_string()]));
    old.deleting_since = Some(1);
    let c = changes(&changed, std::slice::from_ref(&old));
    assert_eq!((c.create.len(), c.delete.len()), (0, 0), "still stopping");
    let c = changes(&changed, &[]);
    assert_eq!(c.create.len(), 1, "created once the old record is gone");
}

#[test]
fn pods_in_an_undeclared_namespace_are_blocked() {
    let yaml = pod("busybox:1").replace("name: solo\n", "name: solo\n  namespace: prod\n");
    let merged = objects(&[("solo.yaml", &yaml)]);
    let c = changes(&merged, &[]);
    assert!(c.create.is_empty());
    assert_eq!(c.blocked.len(), 1);
    assert!(c.blocked[0].1.contains("prod"), "{:?}", c.blocked);
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n";
    let merged = objects(&[("ns.yaml", ns), ("solo.yaml", &yaml)]);
    assert_eq!(changes(&merged, &[]).create.len(), 1);
}

#[test]
fn the_first_declaration_wins_and_the_other_is_reported() {
    let merged = objects(&[("a.yaml", &pod("busybox:1")), ("b.yaml", &pod("busybox:2"))]);
    assert_eq!(merged.objects.len(), 1);
    let (source, _) = merged.objects.values().next().unwrap();
    assert_eq!(source, "a.yaml");
    assert_eq!(merged.conflicts.len(), 1);
    assert_eq!(merged.conflicts[0].0, "b.yaml");
    assert!(merged.conflicts[0].1.contains("a.yaml"));
}
