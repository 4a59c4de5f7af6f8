//! Forwarding `describe pod` and `logs` to the node that reports the pod, over real QUIC on
//! 127.0.0.1 between two gossip nodes of one cluster. The serving node's handler answers with
//! canned local replies through the same `write_reply` the agent uses.

use super::*;
use crate::agent::node_request::write_reply;
use skiff_gossip::{
    GossipConfig, GossipDeps, GossipNode, NodeIdentity, RpcServer, RpcServerOptions, create_token,
    join_cluster, rpc_channel,
};
use skiff_gossip::{ResponseWriter, RpcFailure, RpcHandler};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// Stands in for a node's local API: pod `web` exists with container `app`.
#[derive(Default)]
struct FakeNode {
    follows_dropped: Arc<AtomicU64>,
}

struct DropNote(Arc<AtomicU64>);

impl Drop for DropNote {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl RpcHandler for FakeNode {
    async fn call(
        &self,
        _peer: &str,
        request: Vec<u8>,
        response: &mut ResponseWriter,
    ) -> Result<(), RpcFailure> {
        let request: NodeRequest =
            serde_json::from_slice(&request).map_err(|e| RpcFailure::Malformed(e.to_string()))?;
        let not_found = |name: &str| {
            Reply::One(Response::Error {
                message: format!("pod {name:?} not found"),
            })
        };
        let reply = match request {
            NodeRequest::DescribePod { namespace, name } if name == "web" => {
                Reply::One(Response::Ok {
                    value: serde_json::json!({"metadata": {"name": name, "namespace": namespace}}),
                })
            }
            NodeRequest::DescribePod { name, .. } => not_found(&name),
            NodeRequest::Logs { container, .. } if container.as_deref() == Some("nope") => {
                Reply::One(Response::Error {
                    message: "container \"nope\" is not in pod \"web\" (containers: app)".into(),
                })
            }
            NodeRequest::Logs { follow, tail, .. } => {
                let (tx, rx) = mpsc::channel(8);
                // Only a follower is counted when it stops (a plain read ends by itself).
                let note = follow.then(|| DropNote(self.follows_dropped.clone()));
                tokio::spawn(async move {
                    for i in 0..tail.unwrap_or(3) {
                        let text = format!("line {i}");
                        if tx.send(Response::LogLine { text }).await.is_err() {
                            return;
                        }
                    }
                    if follow {
                        // Like the local follower: runs until the reader goes away.
                        let _note = note;
                        tx.closed().await;
                    }
                });
                Reply::Stream(rx)
            }
            NodeRequest::Objects { .. }
            | NodeRequest::Exec { .. }
            | NodeRequest::SetScheduling { .. }
            | NodeRequest::RemoveNode { .. } => {
                return Err(RpcFailure::Failed("not served by this test node".into()));
            }
        };
        write_reply(reply, response).await
    }

    /// `exec` of pod `web`: echoes each stdin line back as stdout, exits 7 at the end of input.
    /// Counts sessions dropped before their input ended.
    async fn session(
        &self,
        _peer: &str,
        request: Vec<u8>,
        mut input: skiff_gossip::RequestStream,
        response: &mut ResponseWriter,
    ) -> Result<(), RpcFailure> {
        let request: NodeRequest =
            serde_json::from_slice(&request).map_err(|e| RpcFailure::Malformed(e.to_string()))?;
        let NodeRequest::Exec { pod, .. } = request else {
            return Err(RpcFailure::Malformed("not exec".into()));
        };
        let line = |r: &Response| {
            let mut b = serde_json::to_vec(r).unwrap();
            b.push(b'\n');
            b
        };
        if pod != "web" {
            let error = Response::Error {
                message: format!("pod {pod:?} not found"),
            };
            return response.send(&line(&error)).await;
        }
        response
            .send(&line(&Response::Ok {
                value: serde_json::Value::Null,
            }))
            .await?;
        let note = DropNote(self.follows_dropped.clone());
        let mut pending = Vec::new();
        while let Some(chunk) = input.next_chunk().await? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let one: Vec<u8> = pending.drain(..=end).collect();
                match serde_json::from_slice::<crate::api::ExecInput>(&one[..end]) {
                    Ok(crate::api::ExecInput::Stdin { data }) => {
                        response.send(&line(&Response::Stdout { data })).await?
                    }
                    Ok(crate::api::ExecInput::StdinEnd) => {
                        std::mem::forget(note);
                        let exit = Response::Exit {
                            code: 7,
                            message: None,
                        };
                        return response.send(&line(&exit)).await;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

async fn wait_until<F: FnMut() -> bool>(what: &str, within: Duration, mut condition: F) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn spawn_node(
    identity: &NodeIdentity,
    seeds: Vec<String>,
    rpc_sink: Option<skiff_gossip::RpcSink>,
) -> GossipHandle {
    let mut config = GossipConfig::new(identity.node_name(), "127.0.0.1:0".parse().unwrap());
    config.seeds = seeds;
    GossipNode::spawn(
        config,
        GossipDeps {
            identity: identity.clone(),
            rpc_sink,
        },
    )
    .await
    .expect("spawn gossip node")
}

async fn collect(reply: Reply) -> Result<Vec<String>, String> {
    match reply {
        Reply::One(Response::Error { message }) => Err(message),
        Reply::One(other) => Err(format!("unexpected single answer {other:?}")),
        Reply::Line(text) => Err(format!("unexpected single answer {text}")),
        Reply::Session { .. } => Err("unexpected session".into()),
        Reply::Stream(mut rx) => {
            let mut lines = Vec::new();
            while let Some(item) = rx.recv().await {
                match item {
                    Response::LogLine { text } => lines.push(text),
                    other => return Err(format!("unexpected stream item {other:?}")),
                }
            }
            Ok(lines)
        }
    }
}

fn logs_request(container: Option<&str>, tail: Option<usize>, follow: bool) -> NodeRequest {
    NodeRequest::Logs {
        namespace: "default".into(),
        pod: "web".into(),
        container: container.map(str::to_string),
        tail,
        follow,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_logs_reach_the_node_that_reports_the_pod() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let alpha_id = NodeIdentity::load_or_create_cluster(dir_a.path(), "alpha").unwrap();
    let (sink, connections) = rpc_channel();
    let alpha = spawn_node(&alpha_id, vec![], Some(sink)).await;
    let fake = Arc::new(FakeNode::default());
    let dropped = fake.follows_dropped.clone();
    let server = RpcServer::spawn(connections, fake, RpcServerOptions::default());
    let token = create_token(dir_a.path(), Duration::from_secs(600)).unwrap();
    let bravo_id = join_cluster(alpha.advertise_addr(), &token, "bravo", dir_b.path())
        .await
        .unwrap();
    let bravo = spawn_node(&bravo_id, vec![alpha.advertise_addr().to_string()], None).await;
    let remote = Remote::from_gossip(&bravo).expect("quic node");

    // Nobody reports the pod yet: the local API's "not found".
    let reply = remote.describe_pod("default", "web").await;
    assert_eq!(collect(reply).await, Err("pod \"web\" not found".into()));

    // alpha reports it (as the node running a pod does); a similar name must not match.
    alpha
        .set_key("pod/default/web", r#"{"uid":"u1","deleting":false}"#)
        .await
        .unwrap();
    alpha.set_key("pod/default/web-2", "{}").await.unwrap();
    let keys = bravo.key_reader();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = keys.keys_with_prefix("pod/default/web").await.len() == 2;
        let listed = bravo.nodes().borrow().iter().any(|n| n.name == "alpha");
        if seen && listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bravo never saw alpha's pod keys"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let located = remote.locate("default", "web").await;
    assert_eq!(located, vec![("alpha".to_string(), alpha.advertise_addr())]);

    match remote.describe_pod("default", "web").await {
        Reply::One(Response::Ok { value }) => assert_eq!(value["metadata"]["name"], "web"),
        Reply::One(other) => panic!("describe answered {other:?}"),
        Reply::Line(text) => panic!("describe answered {text}"),
        Reply::Stream(_) | Reply::Session { .. } => panic!("describe answered with a stream"),
    }

    // exec: input goes there, output comes back, the exit code ends it.
    let exec = |pod: &str| NodeRequest::Exec {
        namespace: "default".into(),
        pod: pod.into(),
        container: None,
        command: vec!["cat".into()],
        tty: false,
    };
    let cancel = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let Reply::Session { mut output, input } = remote
        .exec(exec("web"), "web", "default", cancel.clone(), &tracker)
        .await
    else {
        panic!("exec did not open a session");
    };
    assert!(matches!(output.recv().await, Some(Response::Ok { .. })));
    for word in ["aGk=", "dGhlcmU="] {
        input
            .send(crate::api::ExecInput::Stdin { data: word.into() })
            .await
            .unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), output.recv()).await;
        assert_eq!(
            echoed.expect("in time"),
            Some(Response::Stdout { data: word.into() })
        );
    }
    input.send(crate::api::ExecInput::StdinEnd).await.unwrap();
    assert_eq!(
        output.recv().await,
        Some(Response::Exit {
            code: 7,
            message: None
        })
    );
    // A caller that goes away ends the remote session.
    let Reply::Session { output, input } = remote
        .exec(exec("web"), "web", "default", cancel.clone(), &tracker)
        .await
    else {
        panic!("exec did not open a session");
    };
    drop(input);
    drop(output);
    wait_until("the remote session ended", Duration::from_secs(10), || {
        dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    dropped.store(0, Ordering::SeqCst);

    let cancel = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let lines = collect(
        remote
            .logs(
                logs_request(None, Some(5), false),
                "web",
                "default",
                cancel.clone(),
                &tracker,
            )
            .await,
    )
    .await;
    assert_eq!(lines, Ok((0..5).map(|i| format!("line {i}")).collect()));

    // An error the remote node's API gives comes back as the single answer it was.
    let refused = collect(
        remote
            .logs(
                logs_request(Some("nope"), None, false),
                "web",
                "default",
                cancel.clone(),
                &tracker,
            )
            .await,
    )
    .await;
    assert_eq!(
        refused,
        Err("container \"nope\" is not in pod \"web\" (containers: app)".into())
    );

    // Following: lines arrive, and dropping the local stream stops the remote follower.
    let Reply::Stream(mut rx) = remote
        .logs(
            logs_request(None, Some(2), true),
            "web",
            "default",
            cancel.clone(),
            &tracker,
        )
        .await
    else {
        panic!("follow did not stream");
    };
    for i in 0..2 {
        let item = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(
            item.expect("line in time"),
            Some(Response::LogLine {
                text: format!("line {i}")
            })
        );
    }
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "the remote follower runs while it is read"
    );
    drop(rx);
    wait_until(
        "the remote follower stopped",
        Duration::from_secs(10),
        || dropped.load(Ordering::SeqCst) == 1,
    )
    .await;

    server.shutdown().await;
    bravo.shutdown().await;
    alpha.shutdown().await;
}
