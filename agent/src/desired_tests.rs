//! Tables for desired state: merging sources, and turning this node's assignment into pods to
//! create and delete.

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
        active_deadline: None,
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

use crate::cluster::keys::AssignedPod;
use crate::pod::Owner;

fn assigned(
    namespace: &str,
    name: &str,
    kind: &str,
    owner: &str,
    hash: &str,
    node: &str,
) -> AssignedPod {
    AssignedPod {
        namespace: namespace.into(),
        name: name.into(),
        owner: Owner {
            kind: Kind::from_name(kind).unwrap(),
            name: owner.into(),
        },
        template_hash: hash.into(),
        node: node.into(),
        job: None,
    }
}

fn web_hash(merged: &Merged) -> String {
    let (_, object) = merged.objects.values().next().expect("one object");
    Valid::<Deployment>::try_from(object.clone())
        .expect("deployment")
        .pod_template_hash()
}

fn changes(merged: &Merged, table: &[AssignedPod], records: &[PodRecord]) -> PodChanges {
    let refs: Vec<&PodRecord> = records.iter().collect();
    assigned_changes(&merged.objects, table, &refs, "n1")
}

#[test]
fn an_assigned_deployment_pod_is_built_with_the_assigned_name() {
    let merged = objects(&[("web.yaml", &deployment(2, "busybox:1"))]);
    let hash = web_hash(&merged);
    let name = format!("web-{hash}-abcde");
    let table = [
        assigned("default", &name, "Deployment", "web", &hash, "n1"),
        assigned(
            "default",
            &format!("web-{hash}-xyzzy"),
            "Deployment",
            "web",
            &hash,
            "n2",
        ),
    ];
    let c = changes(&merged, &table, &[]);
    assert_eq!(c.create.len(), 1, "only this node's pod");
    assert_eq!(c.create[0].pod.metadata.name, name);
    assert_eq!(c.create[0].spec_hash, hash);
    assert_eq!(
        c.create[0].owner,
        Some(Owner {
            kind: Kind::Deployment,
            name: "web".into()
        })
    );
    assert!(c.delete.is_empty() && c.blocked.is_empty());
}

#[test]
fn assigned_pods_are_kept_and_unassigned_ones_deleted() {
    let merged = objects(&[("web.yaml", &deployment(1, "busybox:1"))]);
    let hash = web_hash(&merged);
    let name = format!("web-{hash}-abcde");
    let table = [assigned("default", &name, "Deployment", "web", &hash, "n1")];
    let first = changes(&merged, &table, &[]);
    let kept = record(&first.create[0], "kept", 0);
    let mut extra = record(&first.create[0], "extra", 0);
    extra.name = format!("web-{hash}-zzzzz");
    let c = changes(&merged, &table, &[kept.clone(), extra]);
    assert!(c.create.is_empty());
    assert_eq!(c.delete, vec!["extra".to_string()]);
    // Moved to another node: deleted here.
    let moved = [assigned("default", &name, "Deployment", "web", &hash, "n2")];
    assert_eq!(
        changes(&merged, &moved, &[kept]).delete,
        vec!["kept".to_string()]
    );
}

#[test]
fn an_evicted_workload_pod_is_replaced_and_an_evicted_bare_pod_stays() {
    let merged = objects(&[
        ("web.yaml", &deployment(1, "busybox:1")),
        ("solo.yaml", &pod("busybox:1")),
    ]);
    let hash = web_hash(&objects(&[("web.yaml", &deployment(1, "busybox:1"))]));
    let name = format!("web-{hash}-abcde");
    let solo_hash = merged
        .objects
        .values()
        .find(|(_, o)| o.key().kind == Kind::Pod)
        .expect("solo")
        .1
        .content_hash();
    let table = [
        assigned("default", &name, "Deployment", "web", &hash, "n1"),
        assigned("default", "solo", "Pod", "solo", &solo_hash, "n1"),
    ];
    let first = changes(&merged, &table, &[]);
    assert_eq!(first.create.len(), 2);
    let mut records: Vec<PodRecord> = first
        .create
        .iter()
        .enumerate()
        .map(|(i, new)| record(new, &format!("u{i}"), 0))
        .collect();
    for r in &mut records {
        r.status.failure = Some(crate::pod::PodFailure {
            reason: "Evicted".into(),
            message: "Usage of EmptyDir volume \"v\" exceeds the limit \"1Mi\".".into(),
        });
    }
    let web_uid = records
        .iter()
        .find(|r| r.owner.is_some())
        .unwrap()
        .uid
        .clone();
    let c = changes(&merged, &table, &records);
    assert_eq!(c.delete, vec![web_uid.clone()], "the Deployment's pod goes");
    assert!(c.create.is_empty(), "its replacement waits for the name");
    let bare: Vec<PodRecord> = records.into_iter().filter(|r| r.owner.is_none()).collect();
    let c = changes(&merged, &table, &bare);
    assert!(c.delete.is_empty(), "an evicted bare Pod stays, Failed");
    assert_eq!(c.create.len(), 1);
    assert_eq!(c.create[0].pod.metadata.name, name);
}

#[test]
fn a_changed_pod_is_recreated_only_once_its_name_is_free() {
    let v1 = objects(&[("solo.yaml", &pod("busybox:1"))]);
    let v2 = objects(&[("solo.yaml", &pod("busybox:2"))]);
    let hash = |m: &Merged| m.objects.values().next().expect("pod").1.content_hash();
    let first = changes(
        &v1,
        &[assigned("default", "solo", "Pod", "solo", &hash(&v1), "n1")],
        &[],
    );
    assert_eq!(first.create.len(), 1);
    assert_eq!(first.create[0].owner, None, "a bare pod has no owner");
    let mut old = record(&first.create[0], "old", 0);
    let table = [assigned("default", "solo", "Pod", "solo", &hash(&v2), "n1")];
    let c = changes(&v2, &table, std::slice::from_ref(&old));
    assert_eq!((c.create.len(), c.delete), (0, vec!["old".to_string()]));
    old.deleting_since = Some(1);
    let c = changes(&v2, &table, std::slice::from_ref(&old));
    assert_eq!((c.create.len(), c.delete.len()), (0, 0), "still stopping");
    assert_eq!(
        changes(&v2, &table, &[]).create.len(),
        1,
        "created once the old record is gone"
    );
}

#[test]
fn an_assignment_for_a_version_not_here_yet_waits() {
    let merged = objects(&[("web.yaml", &deployment(1, "busybox:1"))]);
    let table = [
        assigned(
            "default",
            "web-0123456789-abcde",
            "Deployment",
            "web",
            "0123456789",
            "n1",
        ),
        assigned("default", "gone", "Pod", "gone", "ffff", "n1"),
    ];
    let c = changes(&merged, &table, &[]);
    assert!(c.create.is_empty());
    assert_eq!(c.blocked.len(), 2, "{:?}", c.blocked);
    assert!(
        c.blocked
            .iter()
            .any(|(_, why)| why.contains("assigned version"))
    );
    assert!(
        c.blocked
            .iter()
            .any(|(_, why)| why.contains("waiting for the object"))
    );
}

#[test]
fn a_daemon_set_pod_is_named_for_this_node() {
    let yaml = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: a}\n  template:\n    metadata:\n      labels: {app: a}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";
    let merged = objects(&[("ds.yaml", yaml)]);
    let (_, object) = merged.objects.values().next().expect("ds");
    let ds = Valid::<skiff_manifests::model::workloads::DaemonSet>::try_from(object.clone())
        .expect("daemonset");
    let name = ds.pod_name("n1");
    let table = [assigned(
        "default",
        &name,
        "DaemonSet",
        "agent",
        &ds.pod_template_hash(),
        "n1",
    )];
    let c = changes(&merged, &table, &[]);
    assert_eq!(c.create.len(), 1);
    assert_eq!(c.create[0].pod.metadata.name, name);
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
