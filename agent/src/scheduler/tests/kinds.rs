//! DaemonSets, bare Pods, workloads built from manifests, and determinism.

use std::collections::BTreeSet;

use skiff_manifests::{Object, Valid, parse_file};

use super::*;

fn edge_daemon_set() -> Workload {
    selecting(daemon_set("agent"), &[("role", "edge")])
}

fn ds_name(node: &str) -> String {
    skiff_manifests::daemon_set_pod_name("agent", &PodSuffix::for_node(node))
}

#[test]
fn a_daemon_set_runs_one_pod_on_every_matching_node() {
    let edge = [("role", "edge")];
    let nodes = vec![
        labelled("a", &edge),
        labelled("b", &edge),
        node("c"),
        with(labelled("d", &edge), |n| n.cordoned = true),
        with(labelled("e", &edge), |n| {
            n.condition = NodeCondition::NotReady { since_ms: 0 }
        }),
    ];
    let mut sim = Sim::new(nodes, vec![edge_daemon_set()]);
    sim.step();
    let expected = vec![
        (ds_name("a"), "a".to_string()),
        (ds_name("b"), "b".to_string()),
    ];
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sim.pairs(), expected_sorted);
    assert!(
        sim.out.pending.is_empty(),
        "cordoned or not ready nodes are not owed a pod"
    );
    assert_eq!(
        sim.out.assignments[0].owner,
        Owner {
            kind: Kind::DaemonSet,
            name: "agent".into()
        }
    );

    // A node joining (or getting the label) gets its pod; nothing else moves.
    sim.all_running();
    sim.input.nodes.push(labelled("f", &edge));
    sim.node("c").labels.insert("role".into(), "edge".into());
    sim.step();
    assert_eq!(
        sim.counts("DaemonSet/agent"),
        counts(&[("a", 1), ("b", 1), ("c", 1), ("f", 1)])
    );
    assert!(expected.iter().all(|p| sim.pairs().contains(p)));

    // Losing the label, draining or leaving removes it; nothing is placed elsewhere instead.
    sim.node("a").labels.clear();
    sim.node("b").draining = true;
    sim.node("c").condition = NodeCondition::Left;
    sim.step();
    assert_eq!(sim.counts("DaemonSet/agent"), counts(&[("f", 1)]));
    assert_eq!(sim.out.drained, ["b"]);
}

#[test]
fn a_daemon_set_template_change_is_made_in_place_node_by_node() {
    let hashes = |sim: &Sim| -> Vec<String> {
        let table = sim.out.assignments.iter();
        table.map(|a| a.template_hash.clone()).collect()
    };
    // (max unavailable, nodes updated per pass while the updated ones are not ready yet)
    for (share, per_pass) in [
        (Share::Count(1), 1),
        (Share::Count(2), 2),
        (Share::Percent(50), 2),
        (Share::Percent(10), 1),
        (Share::Count(9), 4),
    ] {
        let nodes = vec![node("a"), node("b"), node("c"), node("d")];
        let mut ds = daemon_set("agent");
        ds.kind = WorkloadKind::DaemonSet {
            max_unavailable: share,
        };
        let mut sim = Sim::new(nodes, vec![ds]);
        sim.step();
        sim.all_running();
        sim.step();
        let before = sim.pairs();
        sim.input.workloads[0].template_hash = "h2".into();
        let mut updated = 0;
        while updated < 4 {
            sim.step();
            assert_eq!(
                sim.pairs(),
                before,
                "{share:?}: same names on the same nodes"
            );
            let now = hashes(&sim).iter().filter(|h| *h == "h2").count();
            assert_eq!(now, (updated + per_pass).min(4), "{share:?}");
            // Not ready yet: the next pass updates no further node.
            sim.step();
            assert_eq!(hashes(&sim).iter().filter(|h| *h == "h2").count(), now);
            sim.all_running();
            updated = now;
        }
        // A node whose old pod does not serve is updated at once, whatever the budget.
        sim.input.workloads[0].template_hash = "h3".into();
        for r in &mut sim.input.reported {
            r.ready = false;
        }
        sim.step();
        assert!(hashes(&sim).iter().all(|h| h == "h3"), "{share:?}");
    }
}

#[test]
fn a_daemon_set_pod_without_room_is_pending_per_node() {
    let nodes = vec![
        node("a"),
        sized("b", 4000, 32 * MI, 110),
        sized("c", 4000, 8 * GI, 0),
    ];
    let mut sim = Sim::new(nodes, vec![daemon_set("agent")]);
    sim.step();
    assert_eq!(sim.counts("DaemonSet/agent"), counts(&[("a", 1)]));
    assert_eq!(
        sim.reasons(),
        [(
            "DaemonSet/default/agent".to_string(),
            2,
            "1/3 matching nodes: 1 too many pods, 1 insufficient memory".to_string()
        )]
    );
}

#[test]
fn daemon_set_pods_get_distinct_names_even_when_node_suffixes_collide() {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut clash = None;
    for i in 0..200_000 {
        let name = format!("n{i}");
        let suffix = PodSuffix::for_node(&name).to_string();
        if let Some(first) = seen.insert(suffix, name.clone()) {
            clash = Some((first, name));
            break;
        }
    }
    let Some((first, second)) = clash else {
        panic!("no two node names share a suffix in 200000 tries")
    };
    let mut sim = Sim::new(vec![node(&first), node(&second)], vec![daemon_set("agent")]);
    sim.step();
    let names: BTreeSet<&str> = sim
        .out
        .assignments
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names.len(), 2, "{:?}", sim.out.assignments);
    assert!(names.contains("agent-s1"));
    sim.all_running();
    let before = sim.pairs();
    sim.step();
    assert_eq!(sim.pairs(), before);
}

#[test]
fn a_bare_pod_gets_one_node_and_keeps_it() {
    let mut sim = Sim::new(
        vec![node("a"), node("b")],
        vec![asking(deployment("busy", 1), 1000, GI), bare_pod("tool")],
    );
    sim.input.previous = vec![entry("busy", "busy-h1-x", "h1", "a")];
    sim.step();
    assert_eq!(
        sim.counts("Pod/tool"),
        counts(&[("b", 1)]),
        "the emptier node"
    );
    let tool = sim
        .out
        .assignments
        .iter()
        .find(|a| a.name == "tool")
        .cloned();
    assert_eq!(
        tool.map(|a| a.owner),
        Some(Owner {
            kind: Kind::Pod,
            name: "tool".into()
        })
    );
    sim.all_running();
    sim.input.nodes.push(node("c"));
    sim.step();
    assert_eq!(sim.counts("Pod/tool"), counts(&[("b", 1)]));
    // A changed Pod is replaced where it is (same name, new hash).
    sim.input.workloads[1].template_hash = "h2".into();
    sim.step();
    assert_eq!(sim.counts("Pod/tool"), counts(&[("b", 1)]));
    assert!(
        sim.out
            .assignments
            .iter()
            .any(|a| a.name == "tool" && a.template_hash == "h2")
    );
    // Its node leaves: it moves at once.
    sim.node("b").condition = NodeCondition::Left;
    sim.step();
    assert_eq!(sim.counts("Pod/tool"), counts(&[("c", 1)]));
}

#[test]
fn a_bare_pod_on_a_draining_node_moves_when_another_node_has_room() {
    let mut sim = Sim::new(
        vec![node("a"), with(node("b"), |n| n.cordoned = true)],
        vec![bare_pod("tool")],
    );
    sim.step();
    sim.all_running();
    assert_eq!(sim.counts("Pod/tool"), counts(&[("a", 1)]));
    sim.node("a").draining = true;
    sim.step();
    assert_eq!(
        sim.counts("Pod/tool"),
        counts(&[("a", 1)]),
        "nowhere to go: it stays"
    );
    assert_eq!(
        sim.reasons(),
        [(
            "Pod/default/tool".to_string(),
            1,
            "0/2 nodes: 1 draining, 1 cordoned".to_string()
        )]
    );
    assert!(sim.out.drained.is_empty());
    sim.node("b").cordoned = false;
    sim.step();
    assert_eq!(sim.counts("Pod/tool"), counts(&[("b", 1)]));
    assert_eq!(sim.out.drained, ["a"]);
}

#[test]
fn deleted_workloads_lose_their_pods_and_unknown_owners_are_ignored() {
    let mut sim = Sim::new(
        vec![node("a")],
        vec![deployment("web", 2), daemon_set("agent")],
    );
    sim.step();
    sim.all_running();
    sim.input.workloads.remove(0);
    sim.step();
    assert_eq!(sim.out.assignments.len(), 1);
    assert_eq!(sim.out.assignments[0].owner.kind, Kind::DaemonSet);
}

#[test]
fn the_same_input_in_any_order_gives_the_same_output() {
    let mut sim = Sim::new(
        vec![
            node("a"),
            labelled("b", &[("role", "edge")]),
            node("c"),
            with(node("d"), |n| n.cordoned = true),
        ],
        vec![
            deployment("web", 5),
            deployment("api", 3),
            edge_daemon_set(),
            bare_pod("tool"),
            asking(deployment("huge", 1), 99_000, MI),
        ],
    );
    sim.step();
    sim.all_running();
    sim.input.workloads[0] = deployment("web", 7);
    let mut reversed = sim.input.clone();
    reversed.nodes.reverse();
    reversed.workloads.reverse();
    reversed.previous.reverse();
    reversed.reported.reverse();
    let run = |input: &SchedInput| {
        let mut n = 0;
        let mut suffix = || {
            n += 1;
            PodSuffix::from_seed(n)
        };
        schedule(input, 5, &mut suffix)
    };
    let out = run(&sim.input);
    assert_eq!(run(&reversed), out);
    assert_eq!(out.pending.len(), 1);
    assert_eq!(out.pending[0].owner.to_string(), "Deployment/default/huge");
    let json = serde_json::to_value(&out.assignments[0]).unwrap_or_default();
    let fields: BTreeSet<&str> = json
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        BTreeSet::from(["namespace", "name", "owner", "template_hash", "node"])
    );
    assert_eq!(
        out.by_node().values().map(Vec::len).sum::<usize>(),
        out.assignments.len()
    );
}

fn objects(yaml: &str) -> Vec<Valid<Object>> {
    parse_file("test.yaml", yaml.as_bytes())
        .into_result()
        .unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn workloads_come_from_deployments_daemon_sets_and_pods() {
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 4\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      nodeSelector: {role: edge}\n      initContainers: [{name: i, image: x, resources: {requests: {cpu: '1', memory: 10Mi}}}]\n      containers:\n        - {name: a, image: x, resources: {requests: {cpu: 200m, memory: 64Mi}}}\n        - {name: b, image: x, resources: {requests: {cpu: 300m, memory: 64Mi}}}\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: edge}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template: {metadata: {labels: {app: agent}}, spec: {containers: [{name: c, image: x}]}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: tool, namespace: nowhere}\nspec: {containers: [{name: c, image: x}]}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: edge}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n";
    let objects = objects(yaml);
    let (workloads, blocked) = workloads_from_objects(&objects);
    assert_eq!(workloads.len(), 2);
    let web = &workloads[0];
    assert_eq!(
        web.kind,
        WorkloadKind::Deployment {
            replicas: 4,
            max_unavailable: 1,
            max_surge: 1,
            min_ready_ms: 0,
            recreate: false,
            paused: false,
        }
    );
    assert_eq!(
        web.requests,
        Resources {
            cpu_millis: 1000,
            memory_bytes: 128 * MI
        }
    );
    assert_eq!(
        web.node_selector.get("role").map(String::as_str),
        Some("edge")
    );
    let Object::Deployment(d) = objects[0].get() else {
        panic!("deployment")
    };
    assert_eq!(web.template_hash, d.pod_template_hash());
    assert_eq!(
        (workloads[1].kind.clone(), workloads[1].namespace.as_str()),
        (
            WorkloadKind::DaemonSet {
                max_unavailable: Share::Count(1)
            },
            "edge"
        )
    );
    assert_eq!(
        blocked,
        [Pending {
            owner: "Pod/nowhere/tool".parse().unwrap(),
            count: 1,
            reason: "namespace \"nowhere\" not found".into()
        }]
    );
    let pod = objects
        .iter()
        .find_map(|o| Workload::from_object(o).filter(|w| w.kind == WorkloadKind::Pod));
    assert_eq!(
        pod.map(|w| w.template_hash),
        Some(objects[2].content_hash())
    );
    assert_eq!(Workload::from_object(&objects[4]), None);

    let recreate = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: r}\nspec:\n  replicas: 3\n  strategy: {type: Recreate}\n  selector: {matchLabels: {app: r}}\n  template: {metadata: {labels: {app: r}}, spec: {containers: [{name: c, image: x}]}}\n";
    let w = Workload::from_object(&self::objects(recreate)[0]).map(|w| w.kind);
    assert_eq!(
        w,
        Some(WorkloadKind::Deployment {
            replicas: 3,
            max_unavailable: 3,
            max_surge: 0,
            min_ready_ms: 0,
            recreate: true,
            paused: false,
        })
    );
}

#[test]
fn daemon_sets_claim_their_room_before_deployments() {
    let mut sim = Sim::new(
        vec![sized("a", 4000, 8 * GI, 1)],
        vec![deployment("aaa", 1), daemon_set("zzz")],
    );
    sim.step();
    assert_eq!(sim.counts("DaemonSet/zzz"), counts(&[("a", 1)]));
    assert_eq!(
        sim.reasons(),
        [(
            "Deployment/default/aaa".to_string(),
            1,
            "0/1 nodes: 1 too many pods".to_string()
        )]
    );
}
