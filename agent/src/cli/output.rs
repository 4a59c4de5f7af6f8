//! Everything the CLI prints: kubectl-like tables, JSON and YAML. The only place that prints.
#![allow(clippy::print_stdout)]

use super::OutputFormat;
use crate::api::ResourceKind;
use serde_json::Value;
use std::time::{Duration, SystemTime};

pub fn error(message: &str) {
    eprintln!("error: {message}");
}

pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}

pub fn note(message: &str) {
    println!("{message}");
}

pub fn log_line(text: &str) {
    println!("{text}");
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// kubectl's short age: 45s, 3m, 2h, 4d.
pub fn age(since: &str, now: SystemTime) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(since) else {
        return "<unknown>".to_string();
    };
    let d = now.duration_since(t).unwrap_or(Duration::ZERO).as_secs();
    match d {
        0..=119 => format!("{d}s"),
        120..=7199 => format!("{}m", d / 60),
        7200..=172_799 => format!("{}h", d / 3600),
        _ => format!("{}d", d / 86400),
    }
}

/// `7s`, `3m12s`, `2h5m`: how kubectl shows a Job's duration.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Prints rows as left-aligned columns separated by three spaces, like kubectl.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

pub fn print_get(kind: ResourceKind, value: &Value, format: Option<OutputFormat>, all_ns: bool) {
    match format {
        Some(OutputFormat::Json) => {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
            return;
        }
        Some(OutputFormat::Yaml) => {
            print!("{}", skiff_manifests::to_yaml(value).unwrap_or_default());
            return;
        }
        _ => {}
    }
    let wide = format == Some(OutputFormat::Wide);
    let items: Vec<Value> = value
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![value.clone()]);
    if items.is_empty() {
        eprintln!("No resources found");
        return;
    }
    let now = SystemTime::now();
    let ns_col = |item: &Value, row: &mut Vec<String>| {
        if all_ns {
            row.insert(0, str_at(item, "/metadata/namespace").to_string());
        }
    };
    let with_ns = |mut header: Vec<&'static str>| {
        if all_ns {
            header.insert(0, "NAMESPACE");
        }
        header
    };
    match kind {
        ResourceKind::Pods => {
            let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
            if wide {
                header.extend(["IP", "NODE"]);
            }
            let rows = items
                .iter()
                .map(|p| {
                    let statuses = p
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let ready = statuses
                        .iter()
                        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                        .count();
                    let total = p
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .map_or(statuses.len(), Vec::len);
                    let restarts: u64 = statuses
                        .iter()
                        .filter_map(|c| c.get("restartCount").and_then(Value::as_u64))
                        .sum();
                    let mut row = vec![
                        str_at(p, "/metadata/name").to_string(),
                        format!("{ready}/{total}"),
                        pod_display_status(p),
                        restarts.to_string(),
                        age(str_at(p, "/metadata/creationTimestamp"), now),
                    ];
                    if wide {
                        let ip = str_at(p, "/status/podIP");
                        row.push(if ip.is_empty() { "<none>" } else { ip }.to_string());
                        row.push(str_at(p, "/spec/nodeName").to_string());
                    }
                    ns_col(p, &mut row);
                    row
                })
                .collect();
            table(&with_ns(header), rows);
        }
        ResourceKind::DaemonSets => {
            let rows = items
                .iter()
                .map(|d| {
                    let n = |ptr: &str| d.pointer(ptr).and_then(Value::as_u64).unwrap_or(0);
                    let mut row = vec![
                        str_at(d, "/metadata/name").to_string(),
                        n("/status/desiredNumberScheduled").to_string(),
                        n("/status/currentNumberScheduled").to_string(),
                        n("/status/numberReady").to_string(),
                        n("/status/updatedNumberScheduled").to_string(),
                        age(str_at(d, "/metadata/creationTimestamp"), now),
                    ];
                    ns_col(d, &mut row);
                    row
                })
                .collect();
            table(
                &with_ns(vec![
                    "NAME",
                    "DESIRED",
                    "CURRENT",
                    "READY",
                    "UP-TO-DATE",
                    "AGE",
                ]),
                rows,
            );
        }
        ResourceKind::CronJobs => {
            let rows = items
                .iter()
                .map(|c| {
                    let last = str_at(c, "/status/lastScheduleTime");
                    let mut row = vec![
                        str_at(c, "/metadata/name").to_string(),
                        str_at(c, "/spec/schedule").to_string(),
                        match str_at(c, "/spec/timeZone") {
                            "" => "<none>".to_string(),
                            zone => zone.to_string(),
                        },
                        if c.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
                            "True"
                        } else {
                            "False"
                        }
                        .to_string(),
                        c.pointer("/status/active")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len)
                            .to_string(),
                        if last.is_empty() {
                            "<none>".to_string()
                        } else {
                            age(last, now)
                        },
                        age(str_at(c, "/metadata/creationTimestamp"), now),
                    ];
                    ns_col(c, &mut row);
                    row
                })
                .collect();
            table(
                &with_ns(vec![
                    "NAME",
                    "SCHEDULE",
                    "TIMEZONE",
                    "SUSPEND",
                    "ACTIVE",
                    "LAST SCHEDULE",
                    "AGE",
                ]),
                rows,
            );
        }
        ResourceKind::Jobs => {
            let rows = items
                .iter()
                .map(|j| {
                    let n = |ptr: &str| j.pointer(ptr).and_then(Value::as_u64).unwrap_or(0);
                    let condition = str_at(j, "/status/conditions/0/type");
                    let status = match condition {
                        "Complete" => "Complete",
                        "Failed" => "Failed",
                        "Suspended" => "Suspended",
                        _ if n("/status/active") > 0 => "Running",
                        _ => "Pending",
                    };
                    let completions = j
                        .pointer("/spec/completions")
                        .and_then(Value::as_u64)
                        .map_or_else(|| "1".to_string(), |c| c.to_string());
                    let completions = if j.pointer("/spec/completions").is_none()
                        && j.pointer("/spec/parallelism")
                            .and_then(Value::as_u64)
                            .unwrap_or(1)
                            > 1
                    {
                        format!("{}/1 of {}", n("/status/succeeded"), n("/spec/parallelism"))
                    } else {
                        format!("{}/{completions}", n("/status/succeeded"))
                    };
                    let start = str_at(j, "/status/startTime");
                    let end = str_at(j, "/status/conditions/0/lastTransitionTime");
                    let duration = match (
                        humantime::parse_rfc3339_weak(start),
                        humantime::parse_rfc3339_weak(end),
                    ) {
                        (Ok(a), Ok(b)) if !end.is_empty() => {
                            short_duration(b.duration_since(a).unwrap_or(Duration::ZERO))
                        }
                        (Ok(a), _) => {
                            short_duration(now.duration_since(a).unwrap_or(Duration::ZERO))
                        }
                        _ => String::new(),
                    };
                    let mut row = vec![
                        str_at(j, "/metadata/name").to_string(),
                        status.to_string(),
                        completions,
                        duration,
                        age(str_at(j, "/metadata/creationTimestamp"), now),
                    ];
                    ns_col(j, &mut row);
                    row
                })
                .collect();
            table(
                &with_ns(vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]),
                rows,
            );
        }
        ResourceKind::Deployments => {
            let rows = items
                .iter()
                .map(|d| {
                    let n = |ptr: &str| d.pointer(ptr).and_then(Value::as_u64).unwrap_or(0);
                    let mut row = vec![
                        str_at(d, "/metadata/name").to_string(),
                        format!("{}/{}", n("/status/readyReplicas"), n("/spec/replicas")),
                        n("/status/updatedReplicas").to_string(),
                        n("/status/availableReplicas").to_string(),
                        age(str_at(d, "/metadata/creationTimestamp"), now),
                    ];
                    ns_col(d, &mut row);
                    row
                })
                .collect();
            table(
                &with_ns(vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]),
                rows,
            );
        }
        ResourceKind::Events => {
            let rows = items
                .iter()
                .map(|e| {
                    let object = format!(
                        "{}/{}",
                        str_at(e, "/involvedObject/kind").to_ascii_lowercase(),
                        str_at(e, "/involvedObject/name")
                    );
                    let mut row = vec![
                        age(str_at(e, "/lastTimestamp"), now),
                        str_at(e, "/type").to_string(),
                        str_at(e, "/reason").to_string(),
                        object,
                        str_at(e, "/message").to_string(),
                    ];
                    ns_col(e, &mut row);
                    row
                })
                .collect();
            table(
                &with_ns(vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]),
                rows,
            );
        }
        ResourceKind::Services => {
            let mut header = vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ];
            if wide {
                header.push("SELECTOR");
            }
            let rows = items
                .iter()
                .map(|v| {
                    let type_ = str_at(v, "/spec/type");
                    let cluster_ip = match str_at(v, "/spec/clusterIP") {
                        "" => "<none>",
                        ip => ip,
                    };
                    let external = match str_at(v, "/spec/externalName") {
                        "" => "<none>",
                        name => name,
                    };
                    let mut row = vec![
                        str_at(v, "/metadata/name").to_string(),
                        type_.to_string(),
                        cluster_ip.to_string(),
                        external.to_string(),
                        service_ports(v),
                        age(str_at(v, "/metadata/creationTimestamp"), now),
                    ];
                    if wide {
                        row.push(selector_column(v));
                    }
                    ns_col(v, &mut row);
                    row
                })
                .collect();
            table(&with_ns(header), rows);
        }
        ResourceKind::Endpoints => {
            let rows = items
                .iter()
                .map(|v| {
                    let mut row = vec![
                        str_at(v, "/metadata/name").to_string(),
                        endpoints_column(v),
                        age(str_at(v, "/metadata/creationTimestamp"), now),
                    ];
                    ns_col(v, &mut row);
                    row
                })
                .collect();
            table(&with_ns(vec!["NAME", "ENDPOINTS", "AGE"]), rows);
        }
        ResourceKind::Nodes => {
            let mut header = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
            if wide {
                header.extend(["INTERNAL-IP", "LABELS"]);
            }
            let rows = items
                .iter()
                .map(|n| {
                    let mut row = vec![
                        str_at(n, "/metadata/name").to_string(),
                        str_at(n, "/status/phase").to_string(),
                        str_at(n, "/status/roles").to_string(),
                        age(str_at(n, "/metadata/creationTimestamp"), now),
                        str_at(n, "/status/nodeInfo/kubeletVersion").to_string(),
                    ];
                    if wide {
                        row.push(str_at(n, "/status/addresses/0/address").to_string());
                        row.push(labels_column(n));
                    }
                    row
                })
                .collect();
            table(&header, rows);
        }
        _ => {
            let rows = items
                .iter()
                .map(|o| {
                    let mut row = vec![
                        str_at(o, "/metadata/name").to_string(),
                        age(str_at(o, "/metadata/creationTimestamp"), now),
                    ];
                    ns_col(o, &mut row);
                    row
                })
                .collect();
            table(&with_ns(vec!["NAME", "AGE"]), rows);
        }
    }
}

/// `k=v,k2=v2` of an object's labels, `<none>` without any (kubectl's LABELS column).
fn labels_column(object: &Value) -> String {
    let labels: Vec<String> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if labels.is_empty() {
        "<none>".to_string()
    } else {
        labels.join(",")
    }
}

/// kubectl's STATUS column: a waiting or terminated reason when there is one, else the phase.
pub fn pod_display_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".to_string();
    }
    // A pod the node failed as a whole (kubectl shows status.reason first).
    if str_at(pod, "/status/phase") == "Failed"
        && let Some(r) = pod.pointer("/status/reason").and_then(Value::as_str)
    {
        return r.to_string();
    }
    let init = pod
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let init_done = init
        .iter()
        .filter(|c| {
            c.pointer("/state/terminated/exitCode")
                .and_then(Value::as_i64)
                == Some(0)
        })
        .count();
    if init_done < init.len() {
        for c in &init {
            if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str)
                && r != "PodInitializing"
            {
                return format!("Init:{r}");
            }
        }
        return format!("Init:{init_done}/{}", init.len());
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut reason = None;
    for c in &statuses {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = Some(r.to_string());
        } else if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            reason.get_or_insert_with(|| r.to_string());
        }
    }
    let phase = str_at(pod, "/status/phase");
    match reason {
        Some(r) if phase != "Running" || r == "CrashLoopBackOff" => r,
        _ if phase.is_empty() => "Unknown".to_string(),
        _ => phase.to_string(),
    }
}

pub fn print_describe(value: &Value) {
    print!("{}", skiff_manifests::to_yaml(value).unwrap_or_default());
}

pub fn print_changes(value: &Value) {
    if let Some(changes) = value.get("changes").and_then(Value::as_array) {
        for c in changes {
            println!("{}", c.as_str().unwrap_or_default());
        }
    }
    if let Some(warnings) = value.get("warnings").and_then(Value::as_array) {
        for w in warnings {
            eprintln!("warning: {}", w.as_str().unwrap_or_default());
        }
    }
}

pub fn print_status(value: &Value) {
    print!("{}", skiff_manifests::to_yaml(value).unwrap_or_default());
}

pub fn print_images(value: &Value) {
    let items = value
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rows = items
        .iter()
        .map(|i| {
            let digest = str_at(i, "/digest");
            vec![
                str_at(i, "/reference").to_string(),
                digest.chars().take(19).collect(),
                format!(
                    "{:.1}MB",
                    i.get("size").and_then(Value::as_u64).unwrap_or(0) as f64 / 1e6
                ),
            ]
        })
        .collect();
    table(&["IMAGE", "DIGEST", "SIZE"], rows);
}

/// `skiff token list`: one row per token (never a secret).
pub fn print_tokens(value: &Value) {
    let items = value
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rows = items
        .iter()
        .map(|i| {
            vec![
                str_at(i, "/id").to_string(),
                str_at(i, "/state").to_string(),
                str_at(i, "/created").to_string(),
                str_at(i, "/expires").to_string(),
            ]
        })
        .collect();
    table(&["ID", "STATE", "CREATED", "EXPIRES"], rows);
}

/// `80/TCP`, `80:30080/TCP,53/UDP`, or `<none>`.
fn service_ports(v: &Value) -> String {
    let ports: Vec<String> = v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_u64).unwrap_or(0);
                    let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_u64) {
                        Some(np) => format!("{port}:{np}/{protocol}"),
                        None => format!("{port}/{protocol}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    }
}

fn selector_column(v: &Value) -> String {
    let pairs: Vec<String> = v
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, val)| format!("{k}={}", val.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// Ready `ip:port` pairs as kubectl prints them (at most three, then `+ N more...`).
fn endpoints_column(v: &Value) -> String {
    let mut pairs = Vec::new();
    for subset in v
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<u64> = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("port").and_then(Value::as_u64))
            .collect();
        for a in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = a.get("ip").and_then(Value::as_str).unwrap_or_default();
            if ports.is_empty() {
                pairs.push(ip.to_string());
            }
            for port in &ports {
                pairs.push(format!("{ip}:{port}"));
            }
        }
    }
    match pairs.len() {
        0 => "<none>".to_string(),
        n if n > 3 => format!("{} + {} more...", pairs[..3].join(","), n - 3),
        _ => pairs.join(","),
    }
}

/// `rollout history`: the revisions as kubectl lists them, or one revision's pod template.
pub fn print_history(value: &Value, revision: Option<u64>) -> Result<(), String> {
    let object = str_at(value, "/object");
    let revisions = value
        .get("revisions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match revision.filter(|n| *n != 0) {
        Some(n) => {
            let Some(r) = revisions
                .iter()
                .find(|r| r.get("revision").and_then(Value::as_u64) == Some(n))
            else {
                return Err(format!(
                    "unable to find the specified revision {n} of {object}"
                ));
            };
            println!("{object} with revision #{n}");
            if let Some(cause) = r.get("changeCause").and_then(Value::as_str) {
                println!("Change cause: {cause}");
            }
            println!("Pod Template:");
            let template = skiff_manifests::to_yaml(&r["template"]).unwrap_or_default();
            for line in template.lines() {
                println!("  {line}");
            }
        }
        None => {
            println!("{object}");
            let rows = revisions
                .iter()
                .map(|r| {
                    vec![
                        r.get("revision")
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                            .to_string(),
                        r.get("changeCause")
                            .and_then(Value::as_str)
                            .unwrap_or("<none>")
                            .to_string(),
                    ]
                })
                .collect();
            table(&["REVISION", "CHANGE-CAUSE"], rows);
        }
    }
    Ok(())
}

/// `rollout undo`: what came back, and that the declaration now differs.
pub fn print_undo(value: &Value) {
    println!(
        "{} rolled back to revision {} (now revision {})",
        str_at(value, "/object"),
        value
            .get("fromRevision")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        value.get("revision").and_then(Value::as_u64).unwrap_or(0),
    );
    warn(&format!(
        "{} now differs from what runs; its next change wins again",
        str_at(value, "/declared")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_like_kubectl() {
        let now = humantime::parse_rfc3339("2026-01-01T01:00:00Z").unwrap();
        assert_eq!(age("2026-01-01T00:59:15Z", now), "45s");
        assert_eq!(age("2026-01-01T00:50:00Z", now), "10m");
        assert_eq!(age("2025-12-31T00:00:00Z", now), "25h");
        assert_eq!(age("garbage", now), "<unknown>");
    }

    #[test]
    fn status_column_prefers_reasons() {
        let crash = json!({"status": {"phase": "Running", "containerStatuses": [
            {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_display_status(&crash), "CrashLoopBackOff");
        let pending = json!({"status": {"phase": "Pending", "containerStatuses": [
            {"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        assert_eq!(pod_display_status(&pending), "ImagePullBackOff");
        let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [
            {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(pod_display_status(&done), "Completed");
        let evicted = json!({"status": {"phase": "Failed", "reason": "Evicted", "containerStatuses": [
            {"state": {"terminated": {"reason": "Error", "exitCode": 137}}}]}});
        assert_eq!(pod_display_status(&evicted), "Evicted");
        let running = json!({"status": {"phase": "Running", "containerStatuses": [
            {"state": {"running": {}}}]}});
        assert_eq!(pod_display_status(&running), "Running");
        let init = json!({"status": {"phase": "Pending", "initContainerStatuses": [
            {"state": {"running": {}}}]}});
        assert_eq!(pod_display_status(&init), "Init:0/1");
    }
}
