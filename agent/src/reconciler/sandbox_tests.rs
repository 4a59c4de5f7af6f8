//! Tables for the files of object volumes (ConfigMap, Secret, downwardAPI, projected) and for
//! the one-step writer (no root needed).

use super::*;
use crate::reconciler::container::format_map;
use std::collections::BTreeMap;

fn objects(yaml: &str) -> Objects {
    skiff_manifests::parse_file("o.yaml", yaml.as_bytes())
        .objects()
        .into_iter()
        .map(|o| (o.key(), o.clone()))
        .collect()
}

/// The pod of `volumes` (YAML under `volumes:`), with a container `c` limited to 500m/64Mi.
fn pod(volumes: &str) -> Valid<Pod> {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n  labels: {{app: web, tier: front}}\n  annotations: {{note: \"two\\nlines\", q: \"say \\\"hi\\\"\"}}\nspec:\n  containers:\n  - name: c\n    image: i\n    resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}\n  volumes:\n{volumes}"
    );
    let parsed = skiff_manifests::parse_file("p.yaml", yaml.as_bytes());
    assert!(parsed.is_ok(), "{:?}", parsed.errors());
    Valid::<Pod>::try_from(parsed.objects()[0].clone()).unwrap()
}

const OBJECTS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: shop}\ndata: {a: one, b: two}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: shop}\nstringData: {pw: hunter2}\n";

/// (path, text, mode) of each file, or the error.
type Files = Result<Vec<(String, String, u32)>, String>;

fn files_of(pod: &Valid<Pod>, objects: &Objects) -> Files {
    let downward = Downward::of_pod(pod.get(), "uid-1", (2000, 1 << 30));
    volume_files(&pod.spec.volumes[0].source, "shop", objects, &downward)
        .map(|files| {
            files
                .into_iter()
                .map(|f| (f.path, String::from_utf8(f.bytes).unwrap(), f.mode))
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn f(path: &str, text: &str, mode: u32) -> (String, String, u32) {
    (path.to_string(), text.to_string(), mode)
}

#[test]
fn volume_files_table() {
    let objects = objects(OBJECTS);
    let cases: Vec<(&str, Files)> = vec![
        (
            "  - {name: v, configMap: {name: app}}\n",
            Ok(vec![f("a", "one", 0o644), f("b", "two", 0o644)]),
        ),
        (
            "  - {name: v, configMap: {name: app, items: [{key: b, path: x/b, mode: 0400}]}}\n",
            Ok(vec![f("x/b", "two", 0o400)]),
        ),
        (
            "  - {name: v, configMap: {name: gone}}\n",
            Err("configmap \"gone\" not found".into()),
        ),
        (
            "  - {name: v, configMap: {name: gone, optional: true}}\n",
            Ok(vec![]),
        ),
        (
            "  - {name: v, configMap: {name: app, items: [{key: zz, path: z}]}}\n",
            Err("key \"zz\" not found".into()),
        ),
        (
            "  - {name: v, secret: {secretName: creds, defaultMode: 0400}}\n",
            Ok(vec![f("pw", "hunter2", 0o400)]),
        ),
        (
            "  - name: v\n    downwardAPI:\n      items:\n      - {path: name, fieldRef: {fieldPath: metadata.name}}\n      - {path: ns, fieldRef: {fieldPath: metadata.namespace}}\n      - {path: uid, fieldRef: {fieldPath: metadata.uid}}\n      - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n      - {path: app, fieldRef: {fieldPath: \"metadata.labels['app']\"}}\n      - {path: missing, fieldRef: {fieldPath: \"metadata.labels['nope']\"}}\n      - {path: notes, fieldRef: {fieldPath: metadata.annotations}}\n      - {path: cpu, resourceFieldRef: {containerName: c, resource: limits.cpu, divisor: 1m}}\n      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}, mode: 0400}\n      - {path: req, resourceFieldRef: {containerName: c, resource: requests.cpu}}\n",
            Ok(vec![
                f("app", "web", 0o644),
                f("cpu", "500", 0o644),
                f("labels", "app=\"web\"\ntier=\"front\"", 0o644),
                f("mem", "64", 0o400),
                f("missing", "", 0o644),
                f("name", "web", 0o644),
                f("notes", "note=\"two\\nlines\"\nq=\"say \\\"hi\\\"\"", 0o644),
                f("ns", "shop", 0o644),
                // A request defaults to the limit; cpu is rounded up to whole cores.
                f("req", "1", 0o644),
                f("uid", "uid-1", 0o644),
            ]),
        ),
        (
            "  - name: v\n    downwardAPI: {items: [{path: x, resourceFieldRef: {containerName: other, resource: limits.cpu}}]}\n",
            Err("resourceFieldRef limits.cpu: no container named \"other\" in the pod".into()),
        ),
        (
            "  - name: v\n    projected:\n      defaultMode: 0440\n      sources:\n      - configMap: {name: app, items: [{key: a, path: conf/a}]}\n      - secret: {name: creds, items: [{key: pw, path: pw, mode: 0400}]}\n      - secret: {name: absent, optional: true}\n      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}\n",
            Ok(vec![
                f("conf/a", "one", 0o440),
                f("name", "web", 0o440),
                f("pw", "hunter2", 0o400),
            ]),
        ),
        (
            "  - name: v\n    projected: {sources: [{secret: {name: absent}}]}\n",
            Err("secret \"absent\" not found".into()),
        ),
        (
            "  - name: v\n    projected: {sources: [{configMap: {name: app, items: [{key: a, path: x}]}}, {configMap: {name: app, items: [{key: b, path: x}]}}]}\n",
            Err("path \"x\" is given by two sources".into()),
        ),
        ("  - {name: v, emptyDir: {}}\n", Ok(vec![])),
    ];
    for (volumes, want) in cases {
        assert_eq!(files_of(&pod(volumes), &objects), want, "{volumes}");
    }
}

#[test]
fn format_map_quotes_as_go_does() {
    let map: BTreeMap<String, String> = [
        ("b", "plain"),
        ("a", "tab\there \\ \"q\" \u{1}"),
        ("c", "ünï"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        format_map(&map),
        "a=\"tab\\there \\\\ \\\"q\\\" \\x01\"\nb=\"plain\"\nc=\"ünï\""
    );
    assert_eq!(format_map(&BTreeMap::new()), "");
}

fn file(path: &str, text: &str) -> VolumeFile {
    VolumeFile {
        path: path.into(),
        bytes: text.as_bytes().to_vec(),
        mode: 0o644,
    }
}

fn read(dir: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(path)).ok()
}

#[test]
fn write_files_swaps_the_version_in_one_step_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(write_files(&dir, &[file("a", "1"), file("conf/b", "2")]).unwrap());
    assert_eq!(read(&dir, "a").as_deref(), Some("1"));
    assert_eq!(read(&dir, "conf/b").as_deref(), Some("2"));
    // Readers go through links into `..data`.
    assert_eq!(
        std::fs::read_link(dir.join("a")).unwrap(),
        Path::new("..data/a")
    );
    let first = std::fs::read_link(dir.join("..data")).unwrap();
    // The same files again: nothing is written.
    assert!(!write_files(&dir, &[file("conf/b", "2"), file("a", "1")]).unwrap());
    assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);
    // A change: a new version, `a` changed, `conf` gone, `c` new; the old version removed.
    assert!(write_files(&dir, &[file("a", "one"), file("c", "3")]).unwrap());
    let second = std::fs::read_link(dir.join("..data")).unwrap();
    assert_ne!(second, first);
    assert_eq!(read(&dir, "a").as_deref(), Some("one"));
    assert_eq!(read(&dir, "c").as_deref(), Some("3"));
    assert!(std::fs::symlink_metadata(dir.join("conf")).is_err());
    assert!(!dir.join(&first).exists());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want = vec![
        "..data".to_string(),
        second.to_string_lossy().into_owned(),
        "a".into(),
        "c".into(),
    ];
    want.sort();
    assert_eq!(names, want);
    // A mode change alone is a change.
    let mut strict = file("a", "one");
    strict.mode = 0o400;
    assert!(write_files(&dir, &[strict, file("c", "3")]).unwrap());
    let mode = std::fs::metadata(dir.join("a"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400);
    // Everything gone (an optional object deleted): an empty version, no links left.
    assert!(write_files(&dir, &[]).unwrap());
    assert!(std::fs::symlink_metadata(dir.join("a")).is_err());
    assert!(std::fs::symlink_metadata(dir.join("c")).is_err());
}

#[test]
fn write_files_takes_over_files_written_before_the_data_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a"), "old").unwrap();
    std::fs::write(dir.join("sub/b"), "old").unwrap();
    assert!(write_files(&dir, &[file("a", "new"), file("sub/b", "new")]).unwrap());
    assert_eq!(read(&dir, "a").as_deref(), Some("new"));
    assert_eq!(read(&dir, "sub/b").as_deref(), Some("new"));
    assert!(
        std::fs::symlink_metadata(dir.join("sub"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn volume_inputs_name_every_object_a_volume_reads() {
    let pod = pod(
        "  - {name: a, configMap: {name: app}}\n  - {name: b, secret: {secretName: creds}}\n  - {name: c, emptyDir: {}}\n  - name: d\n    projected: {sources: [{configMap: {name: other}}, {downwardAPI: {items: [{path: n, fieldRef: {fieldPath: metadata.name}}]}}]}\n",
    );
    let objects = objects(OBJECTS);
    let inputs = volume_inputs(pod.get(), |k| objects.get(k).map(|o| o.content_hash()));
    let names: Vec<(String, bool)> = inputs
        .iter()
        .map(|(k, h)| (format!("{}/{}", k.kind.as_str(), k.name), h.is_some()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("ConfigMap/app".to_string(), true),
            ("Secret/creds".to_string(), true),
            ("ConfigMap/other".to_string(), false),
        ]
    );
}

#[test]
fn memory_volumes_are_sized_by_their_limit_and_the_pods_memory() {
    const MI: u64 = 1024 * 1024;
    let cases = [
        (None, None, None),
        (Some(8 * MI), None, Some(8 * MI)),
        (None, Some(64 * MI), Some(64 * MI)),
        (Some(8 * MI), Some(64 * MI), Some(8 * MI)),
        (Some(128 * MI), Some(64 * MI), Some(64 * MI)),
    ];
    for (limit, memory, want) in cases {
        assert_eq!(
            memory_volume_size(limit, memory),
            want,
            "{limit:?} {memory:?}"
        );
    }
    let limited = pod("  - {name: m, emptyDir: {medium: Memory}}\n");
    assert_eq!(pod_memory_limit(&limited), Some(64 * MI));
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: i, resources: {limits: {memory: 1Mi}}}\n  - {name: b, image: i}\n";
    let parsed = skiff_manifests::parse_file("p.yaml", yaml.as_bytes());
    let partly = Valid::<Pod>::try_from(parsed.objects()[0].clone()).unwrap();
    assert_eq!(
        pod_memory_limit(&partly),
        None,
        "one container without a limit"
    );
}

#[test]
fn disk_usage_counts_blocks_once_and_not_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vol");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a"), vec![1u8; 256 * 1024]).unwrap();
    std::fs::write(root.join("sub/b"), vec![1u8; 128 * 1024]).unwrap();
    std::fs::hard_link(root.join("a"), root.join("a2")).unwrap();
    let outside = dir.path().join("big");
    std::fs::write(&outside, vec![1u8; 1024 * 1024]).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let used = disk_usage(&root);
    assert!(used >= 384 * 1024, "{used}");
    assert!(
        used < 512 * 1024,
        "a hard link counts once, a symlink's target not at all: {used}"
    );
    assert_eq!(disk_usage(&dir.path().join("missing")), 0);
}
