//! The API server against real unix sockets in a temp dir: idle clients time out (streams do
//! not), an oversized request and invalid UTF-8 get an answer, connections over the cap are
//! refused, and buffering across connections stays within its budget.

use super::*;
use crate::api::client::Client;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A server in a temp dir whose handler answers `Status` with `"ok"` and `Logs` with a stream
/// fed by the test.
struct TestServer {
    _dir: tempfile::TempDir,
    path: PathBuf,
    cancel: CancellationToken,
    tracker: TaskTracker,
    streams: Arc<Mutex<Option<mpsc::Receiver<Response>>>>,
}

impl TestServer {
    fn start(limits: Limits) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = bind(&path).unwrap();
        let streams: Arc<Mutex<Option<mpsc::Receiver<Response>>>> = Arc::default();
        let handler: Handler = {
            let streams = streams.clone();
            Arc::new(move |request| {
                let stream = streams.lock().unwrap().take();
                Box::pin(async move {
                    match (request, stream) {
                        (Request::Logs { .. }, Some(rx)) => Reply::Stream(rx),
                        _ => Reply::One(Response::Ok {
                            value: serde_json::json!("ok"),
                        }),
                    }
                })
            })
        };
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(serve(
            listener,
            handler,
            limits,
            cancel.clone(),
            tracker.clone(),
        ));
        TestServer {
            _dir: dir,
            path,
            cancel,
            tracker,
            streams,
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn small(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    change(&mut limits);
    limits
}

fn status_line() -> Vec<u8> {
    let mut line = serde_json::to_vec(&Request::Status).unwrap();
    line.push(b'\n');
    line
}

/// The next answer line of `stream` (`None` at end of stream).
async fn next_answer(stream: &mut BufReader<UnixStream>) -> Option<Response> {
    let mut line = String::new();
    let deadline = Duration::from_secs(60);
    let n = tokio::time::timeout(deadline, stream.read_line(&mut line))
        .await
        .expect("an answer or the end of the stream")
        .unwrap_or(0);
    (n > 0).then(|| serde_json::from_str(&line).unwrap())
}

fn error_of(response: Option<Response>) -> String {
    match response {
        Some(Response::Error { message }) => message,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

/// The blocking CLI client, off the runtime's threads.
async fn call(path: &Path, request: Request) -> Result<Response, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || Client::call(&path, &request).map_err(|e| e.to_string()))
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_no_request_line_is_answered_and_closed_after_the_deadline() {
    let server = TestServer::start(Limits::default());
    let started = tokio::time::Instant::now();
    let mut idle = BufReader::new(UnixStream::connect(&server.path).await.unwrap());
    // Half a line does not count as a request.
    idle.get_mut().write_all(b"{\"op\":").await.unwrap();
    let message = error_of(next_answer(&mut idle).await);
    assert!(
        message.contains("no complete request line within 10s"),
        "{message}"
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!(
        next_answer(&mut idle).await,
        None,
        "closed after the answer"
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_outlives_the_request_deadline() {
    let server = TestServer::start(Limits::default());
    let (tx, rx) = mpsc::channel(4);
    *server.streams.lock().unwrap() = Some(rx);
    let mut client = BufReader::new(UnixStream::connect(&server.path).await.unwrap());
    let logs = Request::Logs {
        pod: "web".into(),
        namespace: None,
        container: None,
        follow: true,
        tail: None,
    };
    let mut line = serde_json::to_vec(&logs).unwrap();
    line.push(b'\n');
    client.get_mut().write_all(&line).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    tx.send(Response::LogLine {
        text: "late".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        next_answer(&mut client).await,
        Some(Response::LogLine {
            text: "late".into()
        })
    );
    drop(tx);
    assert_eq!(next_answer(&mut client).await, Some(Response::End));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_answered_request_too_large_while_the_client_still_writes() {
    let server = TestServer::start(small(|l| l.max_request_bytes = 1024 * 1024));
    // Three times the limit: the client is still writing when the server answers and closes.
    let apply = Request::Apply {
        files: vec![crate::api::ApplyFile {
            name: "big.yaml".into(),
            content: "x".repeat(3 * 1024 * 1024),
        }],
        dry_run: true,
    };
    let answer = call(&server.path, apply).await;
    assert_eq!(
        answer,
        Ok(Response::Error {
            message: "request too large (max 1 MiB)".into()
        })
    );
    // A request within the limit is still served.
    assert!(matches!(
        call(&server.path, Request::Status).await,
        Ok(Response::Ok { .. })
    ));
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_is_answered_not_dropped() {
    let server = TestServer::start(Limits::default());
    let mut client = BufReader::new(UnixStream::connect(&server.path).await.unwrap());
    client
        .get_mut()
        .write_all(b"{\"op\":\"status\xff\xfe\"}\n")
        .await
        .unwrap();
    let message = error_of(next_answer(&mut client).await);
    assert_eq!(
        message,
        "malformed request: not valid UTF-8 (bad byte at offset 13)"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_with_an_answer_until_a_slot_frees() {
    let server = TestServer::start(small(|l| l.max_connections = 2));
    let first = UnixStream::connect(&server.path).await.unwrap();
    let _second = UnixStream::connect(&server.path).await.unwrap();
    // Accepts are in order: the two idle connections hold both slots before the third.
    let refused = call(&server.path, Request::Status).await;
    match refused {
        Ok(Response::Error { message }) => assert_eq!(
            message,
            "the agent is serving too many connections (2); try again shortly"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match call(&server.path, Request::Status).await {
            Ok(Response::Ok { .. }) => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "no slot freed after the idle client left: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn buffering_past_the_budget_is_refused_and_the_budget_comes_back() {
    let server = TestServer::start(small(|l| l.max_buffered_bytes = 64 * 1024));
    // 100 KiB without a newline: within the request limit, past the budget.
    let mut hog = BufReader::new(UnixStream::connect(&server.path).await.unwrap());
    let mut head = b"{\"op\":\"apply\",\"files\":[{\"name\":\"a\",\"content\":\"".to_vec();
    head.resize(100 * 1024, b'x');
    hog.get_mut().write_all(&head).await.unwrap();
    let message = error_of(next_answer(&mut hog).await);
    assert_eq!(
        message,
        "the agent is buffering 64 KiB of requests already; try again shortly"
    );
    // Its share went back: a small request is served.
    let mut client = BufReader::new(UnixStream::connect(&server.path).await.unwrap());
    client.get_mut().write_all(&status_line()).await.unwrap();
    assert!(matches!(
        next_answer(&mut client).await,
        Some(Response::Ok { .. })
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_held_budget_share_refuses_another_request_until_it_is_released() {
    let limits = small(|l| l.max_buffered_bytes = 64 * 1024);
    let budget = Arc::new(Semaphore::new(limits.max_buffered_bytes));
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join("s")).unwrap();
    let client = UnixStream::connect(dir.path().join("s")).await.unwrap();
    let (server_side, _) = listener.accept().await.unwrap();
    let (mut read, _write) = server_side.into_split();
    // Another connection holds 60 KiB of the budget.
    let held = budget.clone().try_acquire_many_owned(60 * 1024).unwrap();
    let (_, mut client_write) = client.into_split();
    let mut line = vec![b'x'; 20 * 1024];
    line.push(b'\n');
    client_write.write_all(&line).await.unwrap();
    let outcome = read_request(&mut read, &limits, &budget).await.unwrap();
    assert!(matches!(outcome, ReadOutcome::Busy));
    drop(held);
    assert_eq!(budget.available_permits(), 64 * 1024, "nothing kept");
}
