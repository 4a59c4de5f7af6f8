//! `skiff logs`, `skiff describe pod` and `skiff exec` on any node of a two-node cluster reach
//! the node that runs the pod (rpc over mutual-TLS QUIC): the same answers on both nodes,
//! `-c`/`--tail`/`-f` included, exec's output streams, input and exit code, the remote node's
//! errors passed through, and "not found" for a pod nowhere.
//! Real agents (gossip on 127.0.0.1), real containers; run as root.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{AgentOptions, SKIFF, TEST_IMAGE, TestAgent, WAIT, all_running, items};

fn pod() -> String {
    let c = |name: &str, script: &str| {
        format!(
            "  - name: {name}\n    image: {TEST_IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: talk\nspec:\n  containers:\n{}{}",
        c(
            "first",
            "trap 'exit 0' TERM; for i in $(seq 1 10); do echo first $i; done; sleep 100000 & wait"
        ),
        c(
            "ticker",
            "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
        ),
    )
}

fn gossip_addr(agent: &TestAgent) -> String {
    let nodes = agent.get_json(&["nodes"]);
    items(&nodes)
        .iter()
        .find(|n| n["metadata"]["name"] == agent.node_name.as_str())
        .and_then(|n| n["status"]["gossipAddress"].as_str().map(str::to_string))
        .expect("own node listed with its gossip address")
}

fn ready_nodes(agent: &TestAgent) -> usize {
    items(&agent.get_json(&["nodes"]))
        .iter()
        .filter(|n| n["status"]["phase"] == "Ready")
        .count()
}

/// The node running pod `talk`, as the node itself lists it (running, `spec.nodeName` its own).
fn runner(agents: &[&TestAgent]) -> Option<usize> {
    agents.iter().position(|a| {
        a.pods().iter().any(|p: &Value| {
            p["metadata"]["name"] == "talk"
                && p["spec"]["nodeName"] == a.node_name.as_str()
                && all_running(p)
        })
    })
}

fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

/// `logs -f` on `agent`: waits for `count` new ticks, then stops the command.
fn follow_ticks(agent: &TestAgent, count: usize) -> Vec<u64> {
    let mut child = Command::new(SKIFF)
        .arg("--socket")
        .arg(&agent.socket)
        .args(["logs", "talk", "-c", "ticker", "-f", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn skiff logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut got: Vec<u64> = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => got.extend(ticks(&line)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("logs -f on {} gave only {got:?}", agent.node_name);
            }
        }
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "logs -f exited while following"
    );
    let _ = child.kill();
    let _ = child.wait();
    got
}

/// `skiff ARGS` on `agent` with `input` on its stdin: (exit code, stdout).
fn exec_with_input(agent: &TestAgent, args: &[&str], input: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new(SKIFF)
        .arg("--socket")
        .arg(&agent.socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn skiff exec");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write input");
    drop(stdin);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(WAIT)
        .expect("skiff exec ended in time")
        .expect("skiff exec output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `skiff exec -it` run on a terminal of its own (a pty of 33 rows and 101 columns, as a user's
/// shell would give it): what the terminal showed, and the exit code.
fn exec_in_a_terminal(agent: &TestAgent, typed: &str) -> (Option<i32>, String) {
    use nix::pty::{Winsize, openpty};
    use std::io::{Read, Write};
    let size = Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).expect("openpty");
    let slave = |_: ()| Stdio::from(pty.slave.try_clone().expect("dup slave"));
    let mut child = Command::new(SKIFF)
        .arg("--socket")
        .arg(&agent.socket)
        .args(["exec", "-it", "talk", "--", "sh", "-c"])
        .arg("tty; stty size; read x; echo got:$x; exit 3")
        .stdin(slave(()))
        .stdout(slave(()))
        .stderr(slave(()))
        .spawn()
        .expect("spawn skiff exec -it");
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut writer = master.try_clone().expect("dup master");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Until every holder of the terminal's other end is gone (EIO on Linux).
        let mut screen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            screen.extend_from_slice(&buf[..n]);
            let _ = tx.send(String::from_utf8_lossy(&screen).into_owned());
        }
    });
    let mut screen = String::new();
    let deadline = Instant::now() + WAIT;
    // Typed once the shell inside has shown its terminal's size (it waits in `read`).
    while !screen.contains("33 101") && Instant::now() < deadline {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(100)) {
            screen = s;
        }
    }
    writer.write_all(typed.as_bytes()).expect("type");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait skiff exec") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("skiff exec -it did not end in time; the terminal showed: {screen}");
        }
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(50)) {
            screen = s;
        }
    };
    // The rest of the screen: the reader ends once skiff's end of the terminal closed.
    while let Ok(s) = rx.recv_timeout(WAIT) {
        screen = s;
    }
    (status.code(), screen)
}

#[test]
fn logs_and_describe_reach_the_node_running_the_pod() {
    let a = TestAgent::start_with(AgentOptions {
        pod_subnet: "198.18.7.0/24".into(),
        ..AgentOptions::default()
    });
    let token = a.skiff_ok(&["token", "create", "--ttl", "1h"]);
    let token = token.lines().map(str::trim).find(|l| !l.is_empty());
    let join = gossip_addr(&a);
    let b = TestAgent::start_with(AgentOptions {
        pod_subnet: "198.18.9.0/24".into(),
        config: format!(
            "join = [{join:?}]\ntoken = {:?}\n",
            token.expect("token printed")
        ),
        ..AgentOptions::default()
    });
    a.wait_until(WAIT, "both nodes Ready on both", || {
        (ready_nodes(&a) == 2 && ready_nodes(&b) == 2).then_some(())
    });

    a.write_manifest("talk.yaml", &pod());
    let agents = [&a, &b];
    let running_on = a.wait_until(WAIT, "pod talk running on one node", || runner(&agents));
    let (here, there) = (agents[running_on], agents[1 - running_on]);
    eprintln!(
        "talk runs on {}; asking {} as well",
        here.node_name, there.node_name
    );
    // The other node learns where the pod runs from the running node's gossiped report.
    there.wait_until(WAIT, "the other node lists talk on its node", || {
        there
            .pods()
            .iter()
            .any(|p: &Value| {
                p["metadata"]["name"] == "talk" && p["spec"]["nodeName"] == here.node_name.as_str()
            })
            .then_some(())
    });

    // The same logs through the node that does not run the pod.
    let local = here.wait_until(WAIT, "ten lines from the first container", || {
        let out = here.skiff_ok(&["logs", "talk"]);
        out.contains("first 10").then_some(out)
    });
    assert_eq!(there.skiff_ok(&["logs", "talk"]), local);
    assert_eq!(there.skiff_ok(&["logs", "talk", "-c", "first"]), local);
    let tail = there.skiff_ok(&["logs", "talk", "--tail", "3"]);
    assert_eq!(
        tail.lines().collect::<Vec<_>>(),
        ["first 8", "first 9", "first 10"],
        "{tail}"
    );

    // The remote node's own error comes back as it is.
    let out = there.skiff(&["logs", "talk", "-c", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("ticker"), "{err}");

    // Following through the other node: new lines keep arriving, in order.
    let got = follow_ticks(there, 5);
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "lines out of order or missing: {got:?}"
    );

    // describe pod answers the same pod from both nodes.
    let local = here.skiff_ok(&["describe", "pod", "talk"]);
    let remote = there.skiff_ok(&["describe", "pod", "talk"]);
    assert!(
        remote.contains("talk") && remote.contains(&here.node_name),
        "{remote}"
    );
    let uid = |text: &str| {
        text.lines()
            .find(|l| l.to_ascii_lowercase().contains("uid"))
            .map(str::to_string)
    };
    assert!(uid(&remote).is_some(), "no uid in {remote}");
    assert_eq!(uid(&remote), uid(&local), "{local}\n---\n{remote}");

    // exec from both nodes: both streams, the exit code, input with -i, a missing command.
    for agent in agents {
        let out = agent.skiff(&[
            "exec",
            "talk",
            "-c",
            "ticker",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 4",
        ]);
        assert_eq!(out.status.code(), Some(4), "{}: {out:?}", agent.node_name);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        let (code, echoed) = exec_with_input(
            agent,
            &["exec", "-i", "talk", "--", "cat"],
            "hello\nthere\n",
        );
        assert_eq!(
            (code, echoed.as_str()),
            (Some(0), "hello\nthere\n"),
            "{}",
            agent.node_name
        );
        let (code, screen) = exec_in_a_terminal(agent, "hi\n");
        assert_eq!(code, Some(3), "{}: {screen}", agent.node_name);
        assert!(screen.contains("/dev/pts/"), "a terminal inside: {screen}");
        assert!(
            screen.contains("33 101"),
            "the caller's window size: {screen}"
        );
        assert!(
            screen.contains("got:hi"),
            "input through the terminal: {screen}"
        );
        let out = agent.skiff(&["exec", "talk", "--", "no-such-command"]);
        assert_eq!(out.status.code(), Some(127), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command"));
        let out = agent.skiff(&["exec", "talk", "-c", "nope", "--", "true"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
    }

    // A pod that runs nowhere: the usual "not found", from either node.
    for agent in agents {
        for args in [
            &["logs", "ghost"][..],
            &["describe", "pod", "ghost"][..],
            &["exec", "ghost", "--", "true"][..],
        ] {
            let out = agent.skiff(args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("ghost") && err.contains("not found"), "{err}");
        }
    }
}
