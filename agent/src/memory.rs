//! Keeping the agent small on small devices: glibc keeps freed heap in its arenas, so a burst
//! of work (unpacking an image, a thousand Services applied at once, a large `get -o json`)
//! would otherwise stay in the agent's RSS for good.
#![allow(unsafe_code)]

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Quiet time after a burst of work before freed heap is handed back to the system.
const TRIM_AFTER: Duration = Duration::from_secs(2);
/// A trim waits at most this long for quiet (a client that polls every few milliseconds).
const TRIM_AT_MOST_AFTER: Duration = Duration::from_secs(10);

/// One malloc arena for the whole agent, without fast bins. Each arena keeps its own free
/// pages among the ones still in use, so with more arenas a burst leaves more of them behind;
/// the agent's threads are seldom busy at once. Fast bins keep small freed chunks apart
/// instead of merging them with their free neighbours, so the long-lived objects a burst
/// makes (a thousand Services applied at once) land in holes scattered among the burst's
/// garbage; without them the heap left after a burst is smaller (measured: about 0.4 MB less
/// of small free chunks with 1,000 Services). Call first thing in the agent, before it starts
/// threads.
pub fn limit_arenas() {
    // SAFETY: mallopt only changes allocator tunables; called before the agent starts threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

/// The glibc tunables the agent runs with: no per-thread caches of freed chunks. Each thread
/// that frees memory keeps up to 7 chunks of every small size for itself, and malloc_trim
/// cannot hand those back; with a dozen threads that is about a megabyte that stays resident
/// after a burst of work, and it keeps the chunks around them from coalescing. With one arena
/// and few busy threads the agent's allocations take the arena's lock instead, which costs
/// little next to what they do.
pub const TUNABLES: &str = "glibc.malloc.tcache_count=0";

/// Starts the agent again with [`TUNABLES`] in `GLIBC_TUNABLES` unless they are set already
/// (glibc reads them only when a process starts). Keeps the caller's own tunables; leaves
/// alone one that sets the cache size itself. Returns only when the agent is to run as it
/// is (the setting is in force, or the exec failed: then with a warning on stderr). Call
/// first thing, before any thread exists.
pub fn run_with_tunables() {
    use std::os::unix::process::CommandExt;
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains("glibc.malloc.tcache_count") {
        return;
    }
    let tunables = if current.is_empty() {
        TUNABLES.to_string()
    } else {
        format!("{current}:{TUNABLES}")
    };
    let mut args = std::env::args_os();
    let Some(argv0) = args.next() else { return };
    // The binary's own path, so that the process keeps its name (`pidof skiff`); /proc's link
    // when the file is gone (replaced while it ran).
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| "/proc/self/exe".into());
    let error = std::process::Command::new(exe)
        .arg0(argv0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    eprintln!("skiff agent: running without allocator tunables ({TUNABLES}): {error}");
}

/// Returns freed heap memory to the system now (blocking: call it off the async workers).
pub fn release_free_memory() {
    // SAFETY: malloc_trim walks the allocator's free lists under its own locks; it has no
    // preconditions on the caller.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn bursts() -> &'static Notify {
    static BURSTS: OnceLock<Notify> = OnceLock::new();
    BURSTS.get_or_init(Notify::new)
}

/// Says that a burst of work just ended (a Service sync, an API answer): [`trimmer`] hands the
/// freed heap back once the agent has been quiet for a moment.
pub fn trim_soon() {
    bursts().notify_one();
}

/// Trims the heap 2 s after the last [`trim_soon`] (at most 10 s after the first of a stream
/// of them), until `cancel`.
pub async fn trimmer(cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            () = bursts().notified() => {}
        }
        let latest = tokio::time::Instant::now() + TRIM_AT_MOST_AFTER;
        loop {
            let quiet = tokio::time::sleep(TRIM_AFTER);
            tokio::select! {
                _ = cancel.cancelled() => return,
                () = bursts().notified() => {
                    if tokio::time::Instant::now() < latest {
                        continue;
                    }
                }
                () = quiet => {}
            }
            break;
        }
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}
