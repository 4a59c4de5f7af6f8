//! Running code inside a network namespace on a dedicated OS thread (never a tokio worker).
//!
//! A netlink socket belongs to the namespace of the thread that created it, and `setns` changes
//! only the calling thread. So every piece of work that must happen inside a namespace gets its
//! own short-lived thread: it enters the namespace, builds a current-thread tokio runtime, opens
//! an rtnetlink connection there, runs the work, and exits. The caller's threads never move.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use rtnetlink::Handle;

use crate::error::CniError;

/// Runs `work` with an rtnetlink handle opened inside `netns` (or the caller's namespace when
/// `None`) on its own OS thread; the caller's task only awaits the result.
pub(crate) async fn netlink_in_netns<T, F, Fut>(
    netns: Option<&Path>,
    work: F,
) -> Result<T, CniError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, CniError>>,
{
    let netns = netns.map(Path::to_path_buf);
    let what = describe(netns.as_deref());
    run_on_thread(what, move || {
        if let Some(path) = &netns {
            enter_netns(path)?;
        }
        with_netlink(work)
    })
    .await
}

/// Runs a blocking closure on a fresh OS thread that first enters `netns` (when given).
/// Used for things that are not netlink: the `nft` tool, sysctls under /proc/sys/net.
pub(crate) async fn blocking_in_netns<T, F>(netns: Option<&Path>, work: F) -> Result<T, CniError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CniError> + Send + 'static,
{
    let netns = netns.map(Path::to_path_buf);
    let what = describe(netns.as_deref());
    run_on_thread(what, move || {
        if let Some(path) = &netns {
            enter_netns(path)?;
        }
        work()
    })
    .await
}

async fn run_on_thread<T, F>(what: String, work: F) -> Result<T, CniError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CniError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skiff-netns".into())
        .spawn(move || {
            // The receiver may be gone if the caller was cancelled; the work is done anyway.
            let _ = tx.send(work());
        })
        .map_err(|e| CniError::io("spawn netns thread for", what.clone(), e))?;
    rx.await.map_err(|_| CniError::ThreadPanicked { what })?
}

/// Moves the calling thread into the network namespace bound at `path`.
pub(crate) fn enter_netns(path: &Path) -> Result<(), CniError> {
    let file = File::open(path).map_err(|e| CniError::io("open network namespace", path, e))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| CniError::sys("setns into", path, e))
}

/// Builds a current-thread runtime on this thread, opens rtnetlink here, and runs `work`.
pub(crate) fn with_netlink<T, F, Fut>(work: F) -> Result<T, CniError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, CniError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| CniError::io("build runtime for netlink in", "netns thread", e))?;
    runtime.block_on(async move {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| CniError::io("open netlink socket in", "netns thread", e))?;
        let driver = tokio::spawn(connection);
        let result = work(handle).await;
        driver.abort();
        result
    })
}

fn describe(netns: Option<&Path>) -> String {
    netns
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| PathBuf::from("current namespace").display().to_string())
}

/// An unconnected, non-blocking TCP socket (IPv4) made in `netns` (the current namespace for
/// `None`): connections made from it leave from that namespace (as the node's probes must).
pub async fn tcp_socket_in(netns: Option<&Path>) -> Result<std::os::fd::OwnedFd, CniError> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let make = || {
        socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| CniError::Sys {
            op: "create a TCP socket",
            path: std::path::PathBuf::from("socket"),
            source: e,
        })
    };
    match netns {
        None => make(),
        Some(_) => blocking_in_netns(netns, make).await,
    }
}
