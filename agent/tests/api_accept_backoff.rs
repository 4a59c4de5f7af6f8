//! The API server out of file descriptors: with connections waiting in the backlog and a soft
//! RLIMIT_NOFILE that leaves no room, every accept fails with EMFILE. The server must back off
//! and log at most once a second instead of spinning, and serve again once descriptors are
//! back. Its own test binary, because it lowers this process's open-files limit.

use skiff_agent::api::client::Client;
use skiff_agent::api::server::{self, Handler, Limits, Reply};
use skiff_agent::api::{Request, Response};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const FAILED: &str = "api socket accept failed";

/// A log writer that counts the accept-failure lines.
#[derive(Clone)]
struct Counter(Arc<AtomicUsize>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .fetch_add(text.matches(FAILED).count(), Ordering::SeqCst);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_at_emfile_backs_off_and_logs_at_most_once_a_second() {
    let failures = Arc::new(AtomicUsize::new(0));
    let writer = Counter(failures.clone());
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let listener = server::bind(&path).unwrap();
    let handler: Handler = Arc::new(|_| {
        Box::pin(async {
            Reply::One(Response::Ok {
                value: serde_json::json!("ok"),
            })
        })
    });
    // Idle clients waiting in the backlog (they connect before the limit is lowered).
    let waiting: Vec<std::os::unix::net::UnixStream> = (0..50)
        .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
        .collect();
    let (soft, _) = skiff_agent::rlimit::nofile_limit().unwrap();
    // No new descriptor at all: every accept fails with EMFILE.
    skiff_agent::rlimit::set_nofile_soft_limit(0).unwrap();

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(server::serve(
        listener,
        handler,
        Limits::default(),
        cancel.clone(),
        tracker.clone(),
    ));
    // Watch for a bounded window: without the backoff this is tens of thousands of lines.
    let window = Duration::from_millis(2500);
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let logged = failures.load(Ordering::SeqCst);
    assert!(
        logged >= 1,
        "the accepts never failed: the test did not reach EMFILE"
    );
    assert!(
        logged <= 4,
        "{logged} accept-failure lines in {:?}: the accept loop spins",
        started.elapsed()
    );

    // Descriptors back: the server accepts again and answers (within its backoff of 1 s).
    skiff_agent::rlimit::set_nofile_soft_limit(soft).unwrap();
    let call = tokio::task::spawn_blocking(move || Client::call(&path, &Request::Status));
    let answered = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("an answer once descriptors are back")
        .unwrap();
    assert!(matches!(answered, Ok(Response::Ok { .. })), "{answered:?}");
    drop(waiting);
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}
