//! Content hashes and pod-template hashes are stable under key order and formatting, ignore
//! what does not change the pod, and change when the pod changes; Deployment pods are named and
//! labelled like Kubernetes'.

use rand::SeedableRng;
use skiff_manifests::{Deployment, Object, POD_TEMPLATE_HASH_LABEL, PodSuffix, Valid, parse_file};

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, team: edge}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, tier: frontend}
      annotations: {note: hello}
    spec:
      containers:
        - name: httpd
          image: skiff.local/busybox:latest
          env: [{name: A, value: '1'}, {name: B, value: '2'}]
          resources: {limits: {cpu: 500m, memory: 64Mi}}
";

fn deployment(yaml: &str) -> Valid<Deployment> {
    let objects = parse_file("web.yaml", yaml.as_bytes())
        .into_result()
        .unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
    Valid::<Deployment>::try_from(objects[0].clone())
        .unwrap_or_else(|o| panic!("not a deployment: {o:?}"))
}

fn object(yaml: &str) -> Valid<Object> {
    parse_file("web.yaml", yaml.as_bytes())
        .into_result()
        .unwrap_or_else(|e| panic!("{e:?}\n{yaml}"))
        .remove(0)
}

#[test]
fn template_hash_has_the_kubernetes_shape_and_is_stable() {
    let web = deployment(WEB);
    let hash = web.pod_template_hash();
    assert_eq!(hash.len(), 10);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{hash}"
    );
    assert_eq!(
        deployment(WEB).pod_template_hash(),
        hash,
        "same input, same hash"
    );
}

#[test]
fn key_order_flow_style_and_spelled_out_defaults_do_not_change_hashes() {
    let reordered = "kind: Deployment
apiVersion: apps/v1
spec:
  template:
    spec:
      restartPolicy: Always
      terminationGracePeriodSeconds: 30
      containers:
        - resources:
            limits:
              memory: 64Mi
              cpu: 500m
          env:
            - value: '1'
              name: A
            - {value: '2', name: B}
          imagePullPolicy: Always
          image: skiff.local/busybox:latest
          name: httpd
    metadata:
      annotations: {note: hello}
      labels: {tier: frontend, app: web}
  selector:
    matchLabels: {app: web}
  replicas: 2
metadata:
  labels: {team: edge, app: web}
  namespace: default
  name: web
";
    assert_eq!(
        deployment(reordered).pod_template_hash(),
        deployment(WEB).pod_template_hash()
    );
    assert_eq!(object(reordered).content_hash(), object(WEB).content_hash());
    let json = serde_json::to_string(&object(WEB)).unwrap_or_default();
    let from_json = parse_file("web.json", json.as_bytes())
        .into_result()
        .unwrap_or_default();
    assert_eq!(from_json[0].content_hash(), object(WEB).content_hash());
}

#[test]
fn replicas_strategy_and_deployment_metadata_do_not_change_the_template_hash() {
    let base = deployment(WEB);
    let variants = [
        WEB.replace("replicas: 2", "replicas: 5"),
        WEB.replace(
            "labels: {app: web, team: edge}",
            "labels: {app: web, team: core}",
        ),
        WEB.replace(
            "  replicas: 2\n",
            "  replicas: 2\n  strategy: {type: Recreate}\n",
        ),
    ];
    for variant in &variants {
        assert_eq!(
            deployment(variant).pod_template_hash(),
            base.pod_template_hash(),
            "{variant}"
        );
        assert_ne!(
            object(variant).content_hash(),
            object(WEB).content_hash(),
            "{variant}"
        );
    }
}

#[test]
fn pod_changes_change_the_template_hash() {
    let base = deployment(WEB).pod_template_hash();
    let variants = [
        WEB.replace("busybox:latest", "busybox:1.36"),
        WEB.replace("tier: frontend", "tier: backend"),
        WEB.replace("note: hello", "note: bye"),
        WEB.replace("cpu: 500m", "cpu: 250m"),
        WEB.replace("value: '2'", "value: '3'"),
        WEB.replace(
            "{name: A, value: '1'}, {name: B, value: '2'}",
            "{name: B, value: '2'}, {name: A, value: '1'}",
        ),
    ];
    for variant in &variants {
        assert_ne!(deployment(variant).pod_template_hash(), base, "{variant}");
    }
}

#[test]
fn deployment_pods_are_named_and_labelled_like_kubernetes() {
    let web = deployment(WEB);
    let hash = web.pod_template_hash();
    let suffix = PodSuffix::from_seed(7);
    let pod = web.new_pod(&suffix);
    assert_eq!(pod.metadata.name, format!("web-{hash}-{suffix}"));
    assert_eq!(pod.metadata.namespace, "default");
    assert_eq!(
        pod.metadata.labels.get(POD_TEMPLATE_HASH_LABEL),
        Some(&hash)
    );
    assert_eq!(
        pod.metadata.labels.get("tier").map(String::as_str),
        Some("frontend")
    );
    assert_eq!(
        pod.metadata.annotations.get("note").map(String::as_str),
        Some("hello")
    );
    assert!(web.spec.selector.matches(&pod.metadata.labels));
    assert_eq!(pod.spec, web.spec.template.spec);

    // The generated pod passes validation on its own.
    let again = Valid::<Object>::from_json(&Valid::<Object>::from(pod.clone()).to_json());
    assert_eq!(
        again.ok().map(|o| o.key().to_string()),
        Some(format!("Pod default/{}", pod.metadata.name))
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let a = PodSuffix::random(&mut rng);
    let b = PodSuffix::random(&mut rng);
    assert_ne!(a, b);
}
