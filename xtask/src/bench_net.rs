//! `cargo xtask bench`, pod networking (issue 3): setup and teardown time of one pod's network
//! (namespace, veth, address, routes), p50/p95 over N pods, skiff's `cni` crate beside Debian's
//! containernetworking-plugins `bridge` + `host-local` doing the same job in the same run.
//!
//! Both sides include namespace creation in setup and its removal in teardown, made the same
//! way (skiff-cni's `create_netns`: a thread that unshares and bind-mounts, no fork). skiff's
//! side runs `cni/examples/pod_bench.rs` in release mode (its own node namespace and temp netns
//! dir); the CNI side runs here, its plugins exec'd from a thread that entered a node namespace
//! made by the bench, with `ipMasq` off (skiff masquerades with one rule per node, not per pod).
//! Each side warms up (bridge created) before timing. Addresses in 198.18.0.0/15; everything
//! the bench made is removed afterwards, also on failure (guards).

use anyhow::{Context, Result, bail};
use skiff_cni::netns::{list_netns_files, unmount_netns_dir};
use skiff_cni::{create_netns, remove_netns};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::percentile;

const PODS: usize = 100;
const PLUGINS: &str = "/usr/lib/cni";
/// The CNI side's pod subnet (skiff's example uses 198.18.16.0/22).
const CNI_SUBNET: &str = "198.18.24.0/22";

/// Runs both sides and prints the table. `--net-pods N` changes the pod count.
pub fn run(args: &[String]) -> Result<()> {
    let pods = args
        .iter()
        .position(|a| a == "--net-pods")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(PODS);
    let skiff = skiff_side(pods).context("skiff side of the pod network bench")?;
    let cni = cni_side(pods).context("CNI plugins side of the pod network bench")?;
    print_table(pods, &skiff, &cni);
    Ok(())
}

/// p50/p95 in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    setup: (f64, f64),
    teardown: (f64, f64),
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn figures(setup: &[Duration], teardown: &[Duration]) -> Figures {
    Figures {
        setup: (ms(percentile(setup, 50.0)), ms(percentile(setup, 95.0))),
        teardown: (
            ms(percentile(teardown, 50.0)),
            ms(percentile(teardown, 95.0)),
        ),
    }
}

/// skiff: the cni crate's own benchmark example, built in release mode.
fn skiff_side(pods: usize) -> Result<Figures> {
    let mut cmd = crate::util::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "skiff-cni",
        "--example",
        "pod_bench",
        "--",
    ])
    .arg(pods.to_string())
    .arg("--json")
    .current_dir(crate::root())
    .stderr(Stdio::inherit());
    eprintln!("xtask: running {cmd:?}");
    let out = cmd.output().context("cannot run the pod_bench example")?;
    if !out.status.success() {
        bail!("pod_bench failed with {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("pod_bench printed no JSON: {text}"))?;
    let v: serde_json::Value = serde_json::from_str(line).context("pod_bench JSON")?;
    let get = |k: &str, p: &str| {
        v[k][p]
            .as_f64()
            .with_context(|| format!("pod_bench: no {k}.{p}"))
    };
    Ok(Figures {
        setup: (get("setup_ms", "p50")?, get("setup_ms", "p95")?),
        teardown: (get("teardown_ms", "p50")?, get("teardown_ms", "p95")?),
    })
}

/// Removes the CNI side's namespaces (the node namespace takes the bridge and veths with it)
/// and its temp dir.
struct CniBed {
    tmp: PathBuf,
    netns_dir: PathBuf,
}

impl Drop for CniBed {
    fn drop(&mut self) {
        for name in list_netns_files(&self.netns_dir, "").unwrap_or_default() {
            let _ = remove_netns(&self.netns_dir, &name);
        }
        let _ = unmount_netns_dir(&self.netns_dir);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

fn cni_config(tmp: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "skiffbench",
        "type": "bridge",
        "bridge": "skcnib0",
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "subnet": CNI_SUBNET,
            "dataDir": tmp.join("ipam"),
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    })
    .to_string()
}

/// One plugin call (`ADD` or `DEL`) for pod `id` in namespace `netns`.
fn plugin(command: &str, id: &str, netns: &Path, config: &str) -> Result<()> {
    let mut child = Command::new(Path::new(PLUGINS).join("bridge"))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", PLUGINS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("cannot run {PLUGINS}/bridge (install containernetworking-plugins)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(config.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "bridge {command} {id}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The CNI side: a node namespace, then per pod `create_netns` + `bridge ADD` (setup) and
/// `bridge DEL` + `remove_netns` (teardown), the plugins started from a thread inside the node
/// namespace (a child inherits its thread's namespaces).
fn cni_side(pods: usize) -> Result<Figures> {
    let tmp = std::env::temp_dir().join(format!("skiff-bench-cni-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let bed = CniBed {
        netns_dir: tmp.join("netns"),
        tmp: tmp.clone(),
    };
    let node = create_netns(&bed.netns_dir, "node")?;
    let config = cni_config(&tmp);
    let netns_dir = bed.netns_dir.clone();
    let worker = std::thread::spawn(move || -> Result<(Vec<Duration>, Vec<Duration>)> {
        let file = std::fs::File::open(&node)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .context("cannot enter the bench's node namespace")?;
        let up = |i: usize, setup: &mut Vec<Duration>| -> Result<()> {
            let (id, name) = (format!("bench-{i}"), format!("pod-{i}"));
            let t = Instant::now();
            let ns = create_netns(&netns_dir, &name)?;
            plugin("ADD", &id, &ns, &config)?;
            setup.push(t.elapsed());
            Ok(())
        };
        let down = |i: usize, teardown: &mut Vec<Duration>| -> Result<()> {
            let (id, name) = (format!("bench-{i}"), format!("pod-{i}"));
            let t = Instant::now();
            plugin("DEL", &id, &netns_dir.join(&name), &config)?;
            remove_netns(&netns_dir, &name)?;
            teardown.push(t.elapsed());
            Ok(())
        };
        // Warm-up: the first ADD creates the bridge (skiff's side calls ensure_bridge first).
        let (mut setup, mut teardown) = (Vec::new(), Vec::new());
        up(pods, &mut Vec::new())?;
        down(pods, &mut Vec::new())?;
        for i in 0..pods {
            up(i, &mut setup)?;
        }
        for i in 0..pods {
            down(i, &mut teardown)?;
        }
        Ok((setup, teardown))
    });
    let (setup, teardown) = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the CNI bench thread panicked"))??;
    drop(bed);
    Ok(figures(&setup, &teardown))
}

fn print_table(pods: usize, skiff: &Figures, cni: &Figures) {
    println!(
        "\n== pod network setup/teardown (namespace, veth, address, routes), {pods} pods, namespace creation/removal timed on both sides =="
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>10}",
        "", "setup p50", "setup p95", "tdown p50", "tdown p95"
    );
    for (name, f) in [
        ("skiff cni (NetlinkNetwork, release)", skiff),
        ("CNI bridge + host-local (Debian plugins)", cni),
    ] {
        println!(
            "{:<44} {:>7.2} ms {:>7.2} ms {:>7.2} ms {:>7.2} ms",
            name, f.setup.0, f.setup.1, f.teardown.0, f.teardown.1
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "ratios skiff/CNI: setup p50 {:.2}x, p95 {:.2}x; teardown p50 {:.2}x, p95 {:.2}x",
        ratio(skiff.setup.0, cni.setup.0),
        ratio(skiff.setup.1, cni.setup.1),
        ratio(skiff.teardown.0, cni.teardown.0),
        ratio(skiff.teardown.1, cni.teardown.1)
    );
    let met = skiff.setup.0 < 10.0 && skiff.setup.0 < cni.setup.0;
    println!(
        "target: setup p50 under 10 ms and faster than the CNI plugins: {}",
        if met { "met" } else { "NOT met" }
    );
    println!("(pod start latency vs runc/podman: see the pod start section of this bench)");
}
