//! Rule tables for node affinity, taints and tolerations, pod affinity and anti-affinity and
//! topology spread, with the pending reasons that name the constraint.

use super::*;
use crate::scheduler::NodeTaint;
use skiff_manifests::model::pod::{Taint, TaintEffect};

/// A Deployment of `replicas` pods labelled `app: NAME` whose pod spec has `spec` (YAML lines
/// under `spec:` at 6 spaces), as the leader builds it from a manifest.
fn deploy(name: &str, replicas: u32, spec: &str) -> Workload {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{spec}      containers: [{{name: c, image: i, resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}}}]\n"
    );
    let parsed = skiff_manifests::parse_file("d.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}\n{yaml}", parsed.errors());
    let mut w = Workload::from_object(parsed.objects()[0]).expect("a workload");
    // Unbounded surge, as the other tables.
    if let WorkloadKind::Deployment { max_surge, .. } = &mut w.kind {
        *max_surge = replicas;
    }
    w
}

/// A table row: the pod spec lines, the pods per node wanted, the pending reason wanted.
type Case = (
    &'static str,
    Vec<(&'static str, usize)>,
    Option<&'static str>,
);

fn tainted(name: &str, key: &str, value: &str, effect: TaintEffect, added_ms: u64) -> SchedNode {
    with(node(name), |n| {
        n.taints.push(NodeTaint {
            taint: Taint {
                key: key.into(),
                value: value.into(),
                effect,
            },
            added_ms,
        })
    })
}

fn zoned(name: &str, zone: &str) -> SchedNode {
    labelled(
        name,
        &[
            ("kubernetes.io/hostname", name),
            ("topology.kubernetes.io/zone", zone),
        ],
    )
}

fn hosts(names: &[&str]) -> Vec<SchedNode> {
    names
        .iter()
        .map(|n| labelled(n, &[("kubernetes.io/hostname", n)]))
        .collect()
}

#[test]
fn required_node_affinity_table() {
    let nodes = || {
        vec![
            labelled("n1", &[("disk", "ssd"), ("cores", "2")]),
            labelled("n2", &[("disk", "hdd"), ("cores", "8")]),
            labelled("n3", &[("cores", "16")]),
        ]
    };
    let affinity = |terms: &str| {
        format!(
            "      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            nodeSelectorTerms:\n{terms}"
        )
    };
    let cases: Vec<Case> = vec![
        (
            "            - matchExpressions: [{key: disk, operator: In, values: [ssd]}]\n",
            vec![("n1", 3)],
            None,
        ),
        (
            "            - matchExpressions: [{key: disk, operator: NotIn, values: [ssd]}]\n",
            vec![("n2", 2), ("n3", 1)],
            None,
        ),
        (
            "            - matchExpressions: [{key: disk, operator: Exists}]\n",
            vec![("n1", 2), ("n2", 1)],
            None,
        ),
        (
            "            - matchExpressions: [{key: disk, operator: DoesNotExist}]\n",
            vec![("n3", 3)],
            None,
        ),
        (
            "            - matchExpressions: [{key: cores, operator: Gt, values: [\"4\"]}]\n",
            vec![("n2", 2), ("n3", 1)],
            None,
        ),
        (
            "            - matchExpressions: [{key: cores, operator: Lt, values: [\"4\"]}]\n",
            vec![("n1", 3)],
            None,
        ),
        // Terms are ORed, expressions within a term ANDed.
        (
            "            - matchExpressions: [{key: disk, operator: In, values: [hdd]}, {key: cores, operator: Gt, values: [\"10\"]}]\n            - matchFields: [{key: metadata.name, operator: In, values: [n3]}]\n",
            vec![("n3", 3)],
            None,
        ),
        (
            "            - matchExpressions: [{key: gpu, operator: Exists}]\n",
            vec![],
            Some("0/3 nodes: 3 didn't match node affinity"),
        ),
    ];
    for (terms, want, pending) in cases {
        let mut sim = Sim::new(nodes(), vec![deploy("web", 3, &affinity(terms))]);
        sim.step();
        assert_eq!(sim.counts("web"), counts(&want), "{terms}");
        let reasons = sim.reasons();
        match pending {
            None => assert!(reasons.is_empty(), "{terms}: {reasons:?}"),
            Some(text) => assert_eq!(reasons[0].2, text, "{terms}"),
        }
    }
}

#[test]
fn preferred_node_affinity_goes_first_to_the_heaviest_match() {
    let spec = "      affinity:\n        nodeAffinity:\n          preferredDuringSchedulingIgnoredDuringExecution:\n          - {weight: 10, preference: {matchExpressions: [{key: disk, operator: In, values: [hdd]}]}}\n          - {weight: 80, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}\n";
    let nodes = vec![
        labelled("n1", &[("disk", "hdd")]),
        labelled("n2", &[("disk", "ssd")]),
        node("n3"),
    ];
    let mut sim = Sim::new(nodes, vec![deploy("web", 1, spec)]);
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("n2", 1)]));
    // A preference, not a requirement: a full node is skipped.
    sim.node("n2").allocatable.pods = 0;
    sim.input.previous.clear();
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("n1", 1)]));
}

#[test]
fn taints_and_tolerations_table() {
    let nodes = || {
        vec![
            tainted("n1", "dedicated", "edge", TaintEffect::NoSchedule, 0),
            tainted("n2", "dedicated", "edge", TaintEffect::NoExecute, 0),
            tainted("n3", "slow", "", TaintEffect::PreferNoSchedule, 0),
        ]
    };
    let cases: Vec<Case> = vec![
        // Nothing tolerated: only the PreferNoSchedule node, used even so.
        ("", vec![("n3", 2)], None),
        (
            // The PreferNoSchedule node comes last, after spreading over tolerated nodes.
            "      tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]\n",
            vec![("n1", 2)],
            None,
        ),
        (
            "      tolerations: [{key: dedicated, operator: Exists}]\n",
            vec![("n1", 1), ("n2", 1)],
            None,
        ),
        (
            "      tolerations: [{operator: Exists}]\n",
            vec![("n1", 1), ("n2", 1)],
            None,
        ),
        (
            "      tolerations: [{key: dedicated, operator: Equal, value: cloud}]\n",
            vec![("n3", 2)],
            None,
        ),
    ];
    for (spec, want, pending) in cases {
        let mut sim = Sim::new(nodes(), vec![deploy("web", 2, spec)]);
        sim.step();
        assert_eq!(sim.counts("web"), counts(&want), "{spec}");
        assert_eq!(
            sim.reasons().first().map(|r| r.2.as_str()),
            pending,
            "{spec}"
        );
    }
    let mut sim = Sim::new(
        vec![
            tainted("n1", "dedicated", "edge", TaintEffect::NoSchedule, 0),
            tainted("n2", "dedicated", "edge", TaintEffect::NoExecute, 0),
        ],
        vec![deploy("web", 1, "")],
    );
    sim.step();
    assert_eq!(
        sim.reasons()[0].2,
        "0/2 nodes: 2 had untolerated taint",
        "the reason names the taint"
    );
}

#[test]
fn a_no_execute_taint_puts_out_the_pods_that_do_not_tolerate_it_after_their_seconds() {
    let tolerating = "      tolerations: [{key: maintenance, operator: Exists, effect: NoExecute, tolerationSeconds: 60}]\n";
    let mut sim = Sim::new(
        hosts(&["n1", "n2"]),
        vec![deploy("plain", 2, ""), deploy("patient", 2, tolerating)],
    );
    sim.step();
    sim.all_running();
    assert_eq!(sim.counts("plain"), counts(&[("n1", 1), ("n2", 1)]));
    let now = sim.now_ms;
    sim.node("n1").taints.push(NodeTaint {
        taint: Taint {
            key: "maintenance".into(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
        },
        added_ms: now,
    });
    sim.step();
    assert_eq!(sim.counts("plain"), counts(&[("n2", 2)]), "put out at once");
    assert_eq!(
        sim.counts("patient").get("n1"),
        Some(&1),
        "stays for its 60 s"
    );
    sim.all_running();
    sim.now_ms += 61_000;
    sim.step();
    assert_eq!(
        sim.counts("patient"),
        counts(&[("n2", 2)]),
        "out after 60 s"
    );
}

#[test]
fn required_pod_anti_affinity_spreads_one_per_host_and_names_the_reason() {
    let spec = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: db}}}\n";
    let mut sim = Sim::new(hosts(&["n1", "n2", "n3"]), vec![deploy("db", 4, spec)]);
    sim.step();
    assert_eq!(sim.counts("db"), counts(&[("n1", 1), ("n2", 1), ("n3", 1)]));
    assert_eq!(
        sim.reasons(),
        vec![(
            "Deployment/default/db".to_string(),
            1,
            "0/3 nodes: 3 didn't match pod anti-affinity".to_string()
        )]
    );
}

#[test]
fn a_placed_pods_anti_affinity_keeps_others_away() {
    // `db` refuses hosts that run `web`; `web` has no rule of its own, yet avoids db's hosts.
    let spec = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: web}}}\n";
    let mut sim = Sim::new(
        hosts(&["n1", "n2", "n3"]),
        vec![deploy("db", 1, spec), deploy("web", 3, "")],
    );
    sim.step();
    let db_node = sim.counts("db").into_keys().next().expect("db placed");
    assert!(
        !sim.counts("web").contains_key(&db_node),
        "{:?}",
        sim.pairs()
    );
    assert_eq!(sim.counts("web").values().sum::<usize>(), 3);
}

#[test]
fn required_pod_affinity_follows_its_target_zone_and_the_first_of_a_group_goes_anywhere() {
    let follow = "      affinity:\n        podAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - {topologyKey: topology.kubernetes.io/zone, labelSelector: {matchLabels: {app: cache}}}\n";
    let nodes = vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let pin = "      nodeSelector: {kubernetes.io/hostname: b1}\n";
    let mut sim = Sim::new(
        nodes.clone(),
        vec![deploy("cache", 1, pin), deploy("web", 2, follow)],
    );
    sim.step();
    assert_eq!(sim.counts("web"), counts(&[("b1", 2)]), "{:?}", sim.pairs());
    // Without any cache pod the web pods have nowhere to go.
    let mut alone = Sim::new(nodes.clone(), vec![deploy("web", 1, follow)]);
    alone.step();
    assert_eq!(
        alone.reasons()[0].2,
        "0/3 nodes: 3 didn't match pod affinity"
    );
    // A group that selects itself: the first pod goes anywhere, the rest follow its zone.
    let own = "      affinity:\n        podAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - {topologyKey: topology.kubernetes.io/zone, labelSelector: {matchLabels: {app: pack}}}\n";
    let mut pack = Sim::new(nodes, vec![deploy("pack", 3, own)]);
    pack.step();
    let zones: BTreeSet<char> = pack
        .counts("pack")
        .keys()
        .map(|n| n.chars().next().unwrap())
        .collect();
    assert_eq!(zones.len(), 1, "{:?}", pack.pairs());
    assert_eq!(pack.counts("pack").values().sum::<usize>(), 3);
}

#[test]
fn topology_spread_do_not_schedule_keeps_the_skew_and_schedule_anyway_prefers_it() {
    let spread = |when: &str| {
        format!(
            "      topologySpreadConstraints:\n      - {{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: {when}, labelSelector: {{matchLabels: {{app: web}}}}}}\n"
        )
    };
    // Zone a has two nodes, zone b one: without the constraint 4 pods would go 3/1 by node.
    let nodes = || vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let mut sim = Sim::new(nodes(), vec![deploy("web", 4, &spread("DoNotSchedule"))]);
    sim.step();
    let c = sim.counts("web");
    let zone_a = c.get("a1").unwrap_or(&0) + c.get("a2").unwrap_or(&0);
    assert_eq!(
        (zone_a, *c.get("b1").unwrap_or(&0)),
        (2, 2),
        "{:?}",
        sim.pairs()
    );
    // Zone b full: DoNotSchedule leaves the rest pending with the reason, ScheduleAnyway not.
    let full_b = || {
        let mut n = nodes();
        n[2].allocatable.pods = 1;
        n
    };
    let mut strict = Sim::new(full_b(), vec![deploy("web", 4, &spread("DoNotSchedule"))]);
    strict.step();
    assert_eq!(strict.counts("web").values().sum::<usize>(), 3);
    assert_eq!(strict.reasons()[0].1, 1);
    assert!(
        strict.reasons()[0]
            .2
            .contains("didn't match pod topology spread constraints"),
        "{:?}",
        strict.reasons()
    );
    let mut lenient = Sim::new(full_b(), vec![deploy("web", 4, &spread("ScheduleAnyway"))]);
    lenient.step();
    assert_eq!(lenient.counts("web").values().sum::<usize>(), 4);
    assert!(lenient.reasons().is_empty());
}
