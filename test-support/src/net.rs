//! Network namespaces from the tests' side: `ip`, commands and threads inside a namespace.

use anyhow::{Context, Result, bail};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs `ip` with `args`; fails with its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip`: install iproute2")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with piped output, killing it after `timeout` (then an error).
pub fn output_within(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {cmd:?}"))?;
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.with_context(|| format!("wait for {cmd:?}")),
        Err(_) => {
            crate::proc::kill9(pid);
            bail!("{cmd:?} did not finish within {timeout:?}")
        }
    }
}

/// busybox `wget -q -O - URL` inside `netns` (3 s limit); `None` on failure. Needs
/// busybox-static (busybox's own `wget -T` crashes on Debian 12: coreutils' timeout instead).
pub fn wget_in(netns: &str, url: &str) -> Option<String> {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns", "exec", netns, "timeout", "3", "busybox", "wget", "-q", "-O", "-", url,
    ]);
    let out = output_within(cmd, Duration::from_secs(10)).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` on a new thread that entered `/run/netns/<netns>` (sockets made there stay in it).
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("netns thread")
}
