//! Node-to-node rpc over real QUIC on 127.0.0.1 between two nodes of one cluster: round trip with
//! the caller named from its certificate, streaming, large responses, refusal of a foreign CA,
//! malformed and oversized requests counted while the server keeps serving, timeouts, redial.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use skiff_gossip::{
    GossipConfig, GossipDeps, GossipHandle, GossipNode, NodeIdentity, RequestStream,
    ResponseWriter, RpcError, RpcFailure, RpcHandler, RpcOptions, RpcServer, RpcServerOptions,
    create_token, join_cluster, rpc_channel,
};
use tokio::time::Instant;

use common::{new_cluster, wait_until};

/// Answers text commands: `echo:X`, `whoami`, `big:N`, `stream:N`, `forever`, `sleep`, `fail`,
/// `bad`. Counts handlers that were dropped before finishing.
#[derive(Default)]
struct TestHandler {
    cancelled: AtomicU64,
    /// Sessions whose handler began (a caller can go away before the server starts one).
    sessions_begun: AtomicU64,
}

/// Counts its own drop: held across a wait that only cancellation ends.
struct DropNote<'a>(&'a AtomicU64);

impl Drop for DropNote<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl RpcHandler for TestHandler {
    async fn call(
        &self,
        peer: &str,
        request: Vec<u8>,
        response: &mut ResponseWriter,
    ) -> Result<(), RpcFailure> {
        let text = String::from_utf8(request).map_err(|e| RpcFailure::Malformed(e.to_string()))?;
        let (command, arg) = text.split_once(':').unwrap_or((&text, ""));
        match command {
            "echo" => response.send(arg.as_bytes()).await?,
            "whoami" => response.send(peer.as_bytes()).await?,
            "big" => {
                let total: usize = arg
                    .parse()
                    .map_err(|_| RpcFailure::Malformed(text.clone()))?;
                let block: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
                let mut sent = 0;
                while sent < total {
                    let n = block.len().min(total - sent);
                    response.send(&block[..n]).await?;
                    sent += n;
                }
            }
            "stream" => {
                let count: usize = arg
                    .parse()
                    .map_err(|_| RpcFailure::Malformed(text.clone()))?;
                for i in 0..count {
                    response.send(format!("chunk-{i}").as_bytes()).await?;
                }
            }
            "forever" => {
                response.send(b"first").await?;
                let _note = DropNote(&self.cancelled);
                std::future::pending::<()>().await;
            }
            "sleep" => {
                let _note = DropNote(&self.cancelled);
                std::future::pending::<()>().await;
            }
            "fail" => return Err(RpcFailure::Failed("no such pod web-1".into())),
            _ => return Err(RpcFailure::Malformed(format!("unknown command {command}"))),
        }
        Ok(())
    }

    /// `upper`: answers each input chunk in upper case, then `end` when the input ends.
    async fn session(
        &self,
        _peer: &str,
        request: Vec<u8>,
        mut input: RequestStream,
        response: &mut ResponseWriter,
    ) -> Result<(), RpcFailure> {
        if request != b"upper" {
            return Err(RpcFailure::Malformed("unknown session".into()));
        }
        self.sessions_begun.fetch_add(1, Ordering::SeqCst);
        let _note = DropNote(&self.cancelled);
        while let Some(chunk) = input.next_chunk().await? {
            response.send(&chunk.to_ascii_uppercase()).await?;
        }
        response.send(b"end").await
    }
}

struct Served {
    node: GossipHandle,
    server: RpcServer,
    handler: Arc<TestHandler>,
}

async fn serve(identity: &NodeIdentity, listen: SocketAddr, options: RpcServerOptions) -> Served {
    let (sink, connections) = rpc_channel();
    let node = GossipNode::spawn(
        GossipConfig::new(identity.node_name(), listen),
        GossipDeps {
            identity: identity.clone(),
            rpc_sink: Some(sink),
        },
    )
    .await
    .expect("spawn serving node");
    let handler = Arc::new(TestHandler::default());
    let server = RpcServer::spawn(connections, handler.clone(), options);
    Served {
        node,
        server,
        handler,
    }
}

async fn client_node(identity: &NodeIdentity) -> GossipHandle {
    let config = GossipConfig::new(identity.node_name(), "127.0.0.1:0".parse().expect("addr"));
    GossipNode::spawn(
        config,
        GossipDeps {
            identity: identity.clone(),
            rpc_sink: None,
        },
    )
    .await
    .expect("spawn calling node")
}

/// alpha serves rpc; bravo (joined to alpha's cluster) calls.
struct Pair {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    alpha_id: NodeIdentity,
    alpha: Served,
    bravo: GossipHandle,
}

async fn pair(options: RpcServerOptions) -> Pair {
    common::init_tracing();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let alpha_id = new_cluster(dir_a.path(), "alpha");
    let alpha = serve(&alpha_id, "127.0.0.1:0".parse().expect("addr"), options).await;
    let token = create_token(dir_a.path(), Duration::from_secs(600)).expect("token");
    let bravo_id = join_cluster(alpha.node.advertise_addr(), &token, "bravo", dir_b.path())
        .await
        .expect("join");
    let bravo = client_node(&bravo_id).await;
    Pair {
        _dirs: (dir_a, dir_b),
        alpha_id,
        alpha,
        bravo,
    }
}

fn with_timeout(after: Duration) -> RpcOptions {
    RpcOptions {
        call_timeout: after,
        ..RpcOptions::default()
    }
}

#[tokio::test]
async fn round_trip_names_the_caller_and_reuses_one_connection() {
    let p = pair(RpcServerOptions::default()).await;
    let client = p.bravo.rpc_client().expect("quic node has an rpc client");
    let addr = p.alpha.node.advertise_addr();
    assert_eq!(
        client.call(addr, b"echo:hello").await.expect("echo"),
        b"hello"
    );
    assert_eq!(client.call(addr, b"echo:").await.expect("empty"), b"");
    assert_eq!(
        client.call(addr, b"whoami").await.expect("whoami"),
        b"bravo"
    );
    let err = client
        .call(addr, b"fail")
        .await
        .expect_err("handler failure");
    assert!(
        matches!(&err, RpcError::Remote { message, .. } if message == "no such pod web-1"),
        "{err}"
    );
    // Concurrent calls share the connection too.
    let calls = (0..20).map(|i| {
        let client = client.clone();
        async move { client.call(addr, format!("echo:{i}").as_bytes()).await }
    });
    for (i, result) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(result.expect("concurrent call"), i.to_string().as_bytes());
    }
    let counters = p.alpha.server.counters();
    assert_eq!(counters.connections, 1, "{counters:?}");
    assert_eq!(counters.completed, 23, "{counters:?}");
    assert_eq!(counters.failed, 1, "{counters:?}");
    p.alpha.server.shutdown().await;
}

#[tokio::test]
async fn streamed_chunks_arrive_in_order_and_dropping_stops_the_handler() {
    let p = pair(RpcServerOptions::default()).await;
    let client = p.bravo.rpc_client().expect("rpc client");
    let addr = p.alpha.node.advertise_addr();
    let mut stream = client.stream(addr, b"stream:50").await.expect("stream");
    let mut got = Vec::new();
    while let Some(chunk) = stream.next_chunk().await.expect("chunk") {
        got.push(String::from_utf8(chunk).expect("utf8"));
    }
    let want: Vec<String> = (0..50).map(|i| format!("chunk-{i}")).collect();
    assert_eq!(got, want);

    let mut endless = client.stream(addr, b"forever").await.expect("stream");
    assert_eq!(
        endless.next_chunk().await.expect("first"),
        Some(b"first".to_vec())
    );
    // Waiting on an idle stream can be abandoned (cancel-safe) without losing the stream.
    let idle = tokio::time::timeout(Duration::from_millis(100), endless.next_chunk()).await;
    assert!(idle.is_err(), "no second chunk expected");
    drop(endless);
    let handler = p.alpha.handler.clone();
    wait_until(
        "the server dropped the abandoned handler",
        Duration::from_secs(5),
        || std::future::ready(handler.cancelled.load(Ordering::SeqCst) == 1),
    )
    .await;
    assert_eq!(p.alpha.server.counters().abandoned, 1);
    p.alpha.server.shutdown().await;
}

#[tokio::test]
async fn a_session_streams_input_and_answers_both_ways_until_the_input_ends() {
    let p = pair(RpcServerOptions::default()).await;
    let client = p.bravo.rpc_client().expect("rpc client");
    let addr = p.alpha.node.advertise_addr();
    let (mut input, mut answers) = client.session(addr, b"upper").await.expect("session");
    for word in ["one", "two", "three"] {
        input.send(word.as_bytes()).await.expect("input");
        // Each answer arrives while the input is still open.
        let answer = answers.next_chunk().await.expect("answer");
        assert_eq!(answer, Some(word.to_uppercase().into_bytes()));
    }
    input.finish();
    assert_eq!(
        answers.next_chunk().await.expect("end"),
        Some(b"end".to_vec())
    );
    assert_eq!(answers.next_chunk().await.expect("done"), None);

    // A session a handler does not serve is refused; one whose caller goes away is dropped.
    let (_input, mut refused) = client.session(addr, b"nope").await.expect("session");
    assert!(refused.next_chunk().await.is_err());
    let (mut input, answers) = client.session(addr, b"upper").await.expect("session");
    input.send(b"x").await.expect("input");
    drop(answers);
    let handler = p.alpha.handler.clone();
    let server = &p.alpha.server;
    // Abandoned, and every session handler that began has been dropped (under load the
    // caller's stop can reach the server before it started the handler at all).
    wait_until(
        "the server dropped the abandoned session",
        Duration::from_secs(5),
        || {
            std::future::ready(
                server.counters().abandoned == 1
                    && handler.cancelled.load(Ordering::SeqCst)
                        == handler.sessions_begun.load(Ordering::SeqCst),
            )
        },
    )
    .await;
    // Plain calls still work on the same connection.
    assert_eq!(client.call(addr, b"echo:hi").await.expect("call"), b"hi");
    p.alpha.server.shutdown().await;
}

#[tokio::test]
async fn large_responses_arrive_whole_and_the_size_limit_holds() {
    let p = pair(RpcServerOptions::default()).await;
    let client = p.bravo.rpc_client().expect("rpc client");
    let addr = p.alpha.node.advertise_addr();
    let total = 20 * 1024 * 1024 + 17;
    let body = client
        .call(addr, format!("big:{total}").as_bytes())
        .await
        .expect("big");
    assert_eq!(body.len(), total);
    assert!(
        body.chunks(100_000)
            .all(|c| c.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8))
    );

    let small = RpcOptions {
        max_response_bytes: 1_000_000,
        ..RpcOptions::default()
    };
    let err = client
        .call_with(addr, b"big:5000000", small)
        .await
        .expect_err("over the limit");
    assert!(
        matches!(
            err,
            RpcError::ResponseTooLarge {
                limit: 1_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        client.call(addr, b"echo:still").await.expect("echo"),
        b"still"
    );
    p.alpha.server.shutdown().await;
}

#[tokio::test]
async fn a_node_of_another_cluster_is_refused_both_ways() {
    let p = pair(RpcServerOptions::default()).await;
    let dir_m = tempfile::tempdir().expect("tempdir");
    let mallory_id = new_cluster(dir_m.path(), "mallory");
    let mallory = serve(
        &mallory_id,
        "127.0.0.1:0".parse().expect("addr"),
        Default::default(),
    )
    .await;
    let alpha_addr = p.alpha.node.advertise_addr();
    let failed_before = p
        .alpha
        .node
        .transport_counters()
        .expect("quic")
        .failed_handshakes;

    let mallory_client = mallory.node.rpc_client().expect("rpc client");
    let err = mallory_client
        .call_with(alpha_addr, b"whoami", with_timeout(Duration::from_secs(5)))
        .await
        .expect_err("foreign certificate must be refused");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    let alpha_node = &p.alpha.node;
    wait_until(
        "alpha counted the failed handshake",
        Duration::from_secs(5),
        || {
            std::future::ready(
                alpha_node
                    .transport_counters()
                    .expect("quic")
                    .failed_handshakes
                    > failed_before,
            )
        },
    )
    .await;
    assert_eq!(
        p.alpha.server.counters().connections,
        0,
        "never reached the rpc server"
    );

    // Our client does not trust a server from another CA either.
    let client = p.bravo.rpc_client().expect("rpc client");
    let err = client
        .call_with(
            mallory.node.advertise_addr(),
            b"whoami",
            with_timeout(Duration::from_secs(5)),
        )
        .await
        .expect_err("foreign server must be refused");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert_eq!(mallory.server.counters().calls, 0);
    p.alpha.server.shutdown().await;
    mallory.server.shutdown().await;
}

/// Writes a raw request stream and returns how the server answered it.
async fn raw_request(conn: &quinn::Connection, body: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    // A write may fail once the server stops the stream; the answer below is what matters.
    let _ = send.write_all(body).await;
    let _ = send.finish();
    recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_counted_and_serving_continues() {
    let options = RpcServerOptions {
        max_request_bytes: 64 * 1024,
        ..RpcServerOptions::default()
    };
    let p = pair(options).await;
    let addr = p.alpha.node.advertise_addr();
    let transport = p.bravo.quic_transport().expect("quic").clone();
    let conn = transport
        .connect_rpc(addr)
        .await
        .expect("raw rpc connection");

    // Garbage, a truncated frame, a frame of the wrong kind: each reset, none fatal.
    for body in [
        &b"garbage"[..],
        &[1, 0, 0, 0, 9, b'x'][..],
        &[2, 0, 0, 0, 1, b'x'][..],
        &[][..],
    ] {
        let answer = raw_request(&conn, body).await;
        assert!(answer.is_err(), "malformed request answered: {answer:?}");
    }
    // Over the size limit.
    let mut big = vec![1u8, 0, 2, 0, 0];
    big.resize(5 + 128 * 1024, b'a');
    let answer = raw_request(&conn, &big).await;
    assert!(answer.is_err(), "oversized request answered: {answer:?}");
    let server = &p.alpha.server;
    wait_until(
        "malformed and oversized requests counted",
        Duration::from_secs(5),
        || {
            let c = server.counters();
            std::future::ready(c.malformed_requests == 4 && c.oversized_requests == 1)
        },
    )
    .await;

    // Through the client: the handler's own Malformed, and an oversized request.
    let client = p.bravo.rpc_client().expect("rpc client");
    let err = client
        .call(addr, b"bogus")
        .await
        .expect_err("handler refuses");
    assert!(matches!(err, RpcError::Refused { .. }), "{err}");
    let err = client
        .call(addr, &vec![b'e'; 100 * 1024])
        .await
        .expect_err("too large");
    assert!(matches!(err, RpcError::Refused { .. }), "{err}");
    assert_eq!(server.counters().malformed_requests, 5);
    assert_eq!(server.counters().oversized_requests, 2);

    // The same raw connection and the client both still get answers.
    assert_eq!(
        raw_request(&conn, &[1, 0, 0, 0, 6, b'e', b'c', b'h', b'o', b':', b'k']).await,
        Ok(vec![2, 0, 0, 0, 1, b'k'])
    );
    assert_eq!(client.call(addr, b"echo:ok").await.expect("echo"), b"ok");
    p.alpha.server.shutdown().await;
}

#[tokio::test]
async fn calls_time_out_and_the_server_drops_the_abandoned_handler() {
    let p = pair(RpcServerOptions::default()).await;
    let client = p.bravo.rpc_client().expect("rpc client");
    let addr = p.alpha.node.advertise_addr();
    let started = Instant::now();
    let err = client
        .call_with(addr, b"sleep", with_timeout(Duration::from_millis(300)))
        .await
        .expect_err("must time out");
    let took = started.elapsed();
    assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    assert!(err.is_unreachable());
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let handler = p.alpha.handler.clone();
    wait_until(
        "the sleeping handler was dropped",
        Duration::from_secs(5),
        || std::future::ready(handler.cancelled.load(Ordering::SeqCst) == 1),
    )
    .await;

    // Nobody listens here: the dial is bounded by the same deadline.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let silent_addr = silent.local_addr().expect("addr");
    let started = Instant::now();
    let err = client
        .call_with(
            silent_addr,
            b"echo:x",
            with_timeout(Duration::from_millis(500)),
        )
        .await
        .expect_err("nobody answers");
    assert!(err.is_unreachable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        client.call(addr, b"echo:alive").await.expect("echo"),
        b"alive"
    );
    p.alpha.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_cuts_streams_visibly_and_a_restarted_peer_is_redialled() {
    let p = pair(RpcServerOptions::default()).await;
    let client = p.bravo.rpc_client().expect("rpc client");
    let addr = p.alpha.node.advertise_addr();
    assert_eq!(client.call(addr, b"whoami").await.expect("call"), b"bravo");
    let mut endless = client.stream(addr, b"forever").await.expect("stream");
    assert_eq!(
        endless.next_chunk().await.expect("first"),
        Some(b"first".to_vec())
    );

    let Served { node, server, .. } = p.alpha;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("server shutdown waits for its tasks and returns");
    let cut = endless.next_chunk().await;
    assert!(cut.is_err(), "a cut stream must not look complete: {cut:?}");
    node.shutdown().await;
    wait_until("alpha's port free again", Duration::from_secs(10), || {
        std::future::ready(std::net::UdpSocket::bind(addr).is_ok())
    })
    .await;

    // The same node comes back on the same address: the client re-dials.
    let again = serve(&p.alpha_id, addr, RpcServerOptions::default()).await;
    let answer = client
        .call_with(addr, b"echo:back", with_timeout(Duration::from_secs(5)))
        .await
        .expect("call after the peer restarted");
    assert_eq!(answer, b"back");
    again.server.shutdown().await;
}
