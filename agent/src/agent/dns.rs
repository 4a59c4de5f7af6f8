//! The node's DNS server for its pods: UDP and TCP on port 53 of the bridge gateway (each pod's
//! resolver), answering the cluster domain from this node's Service table
//! ([`crate::services::dns`]) and relaying every other query to the node's own resolvers.
//! No DNAT and no ClusterIP: pods ask their own node, which keeps answering while it is cut
//! off from the others.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::ClusterState;
use crate::services::dns::{Answer, answer_with_pods};

/// How long an upstream resolver has to answer a relayed query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP client has to send its query.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often binding is tried again while the gateway address is not there yet.
const BIND_RETRY: Duration = Duration::from_secs(1);
/// At most this many TCP clients are served at once; a connection beyond them is closed at
/// once (UDP is served all the same).
const TCP_CLIENTS: usize = 64;
/// At most this many UDP queries are being relayed at once (dnsmasq's `dns-forward-max`
/// default); one more gets SERVFAIL at once rather than a socket and a task of its own.
const RELAYS_IN_FLIGHT: usize = 150;
/// How long accepting waits after an error (out of file descriptors) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the UDP loop waits for a query before it looks whether it should stop.
const UDP_CANCEL_CHECK: Duration = Duration::from_millis(250);

/// The resolvers a query outside the cluster domain goes to: the node's, from its
/// resolv.conf, without the gateway itself.
pub fn upstreams(resolv_conf: &str, gateway: Ipv4Addr) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()?
                .parse::<IpAddr>()
                .ok()
        })
        .filter(|ip| *ip != IpAddr::V4(gateway))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// What every query needs besides the table.
struct Settings {
    /// The node's resolvers, for names outside the cluster domain.
    upstreams: Upstreams,
    /// The cluster domain.
    domain: String,
}

/// The node's resolvers as its resolv.conf lists them now: read again when the file changes
/// (DHCP, a VPN, systemd-resolved rewrite it while the agent runs).
pub struct Upstreams {
    path: std::path::PathBuf,
    gateway: Ipv4Addr,
    /// The file's modification time when last read, and what it listed.
    read: std::sync::Mutex<(Option<std::time::SystemTime>, Vec<SocketAddr>)>,
}

impl Upstreams {
    pub fn new(path: impl Into<std::path::PathBuf>, gateway: Ipv4Addr) -> Upstreams {
        let upstreams = Upstreams {
            path: path.into(),
            gateway,
            read: std::sync::Mutex::new((None, Vec::new())),
        };
        upstreams.current();
        upstreams
    }

    /// The resolvers now (a stat per call; the file is read again only when it changed).
    pub fn current(&self) -> Vec<SocketAddr> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        if read.0.is_none() || read.0 != modified {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            *read = (modified, upstreams(&text, self.gateway));
        }
        read.1.clone()
    }
}

/// Runs `server` (the future of [`run`]) on a thread of its own, in a single-threaded
/// runtime, so that answers never wait behind the agent's other tasks on a shared worker (in
/// the services bench, the p99 at 5,000 queries/s moved between 1x and 2.9x dnsmasq's while on
/// the agent's runtime); UDP queries are read by a blocking loop on that runtime's blocking
/// thread. The returned future, for the owner's tracker, ends when the thread does (after
/// `run`'s `cancel`).
pub fn on_own_thread(
    server: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("skiff-dns".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .thread_name("skiff-dns")
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(server),
                Err(e) => tracing::error!("cluster DNS: cannot start its runtime: {e}"),
            }
            drop(done_tx);
        });
    if let Err(e) = &spawned {
        tracing::error!("cluster DNS: cannot start its thread: {e}");
    }
    async move {
        // Sender dropped: the thread ended (or never started).
        let _ = done_rx.await;
    }
}

/// Serves DNS for `domain` on `gateway`:53 until `cancel`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    net: Arc<skiff_cni::NetlinkNetwork>,
    gateway: Ipv4Addr,
    upstreams: Upstreams,
    domain: String,
    state: watch::Receiver<Arc<ClusterState>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let addr = SocketAddr::new(IpAddr::V4(gateway), 53);
    let mut warned = false;
    let (udp, tcp) = loop {
        let bound = match net.bind_in_node_netns(addr).await {
            // UDP is read by a blocking loop of its own (`serve_udp`).
            Ok((u, t)) => u
                .set_nonblocking(false)
                .and_then(|()| u.set_read_timeout(Some(UDP_CANCEL_CHECK)))
                .and_then(|()| Ok((Arc::new(u), TcpListener::from_std(t)?)))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match bound {
            Ok(sockets) => break sockets,
            Err(e) => {
                if !warned {
                    tracing::info!("cluster DNS waits for {addr} ({e}); trying again every second");
                    warned = true;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(BIND_RETRY) => {}
        }
    };
    tracing::info!("cluster DNS on {addr} (udp, tcp)");
    let settings = Arc::new(Settings { upstreams, domain });
    let udp_loop = {
        let (settings, state, cancel, tracker) = (
            settings.clone(),
            state.clone(),
            cancel.clone(),
            tracker.clone(),
        );
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            serve_udp(&udp, &state, &settings, &cancel, &tracker, &runtime)
        })
    };
    let clients = Arc::new(tokio::sync::Semaphore::new(TCP_CLIENTS));
    let (mut refused, mut failed) = (Tally::new(1000), Tally::new(100));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = tcp.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: the error comes back at once, so wait
                        // rather than spin; told once per 100 in a row.
                        failed.warn(|_| {
                            format!("cluster DNS: tcp accept: {e}; trying again in {ACCEPT_BACKOFF:?}")
                        });
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        }
                        continue;
                    }
                };
                failed.reset();
                let Ok(permit) = clients.clone().try_acquire_owned() else {
                    refused.warn(|n| format!(
                        "cluster DNS: {TCP_CLIENTS} tcp clients already; a new connection is closed ({n} so far)"
                    ));
                    drop(stream);
                    continue;
                };
                let (settings, state) = (settings.clone(), state.clone());
                tracker.spawn(async move {
                    let _ = tokio::time::timeout(
                        TCP_TIMEOUT,
                        serve_tcp(stream, &state, &settings),
                    )
                    .await;
                    drop(permit);
                });
            }
        }
    }
    let _ = udp_loop.await;
}

/// Answers UDP queries until `cancel`, in a blocking loop (a receive, then a send, per query:
/// no readiness round through the runtime). Only relays to the upstream resolvers go to
/// `runtime`. A query that made the answering code panic (a bug) is dropped and logged; the
/// loop goes on with an empty cache rather than leaving the node without DNS.
fn serve_udp(
    udp: &Arc<std::net::UdpSocket>,
    state: &watch::Receiver<Arc<ClusterState>>,
    settings: &Arc<Settings>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
    runtime: &tokio::runtime::Handle,
) {
    let mut buf = vec![0u8; 4096];
    let mut answerer = UdpAnswerer::default();
    let relays = Arc::new(tokio::sync::Semaphore::new(RELAYS_IN_FLIGHT));
    let mut refused = Tally::new(1000);
    while !cancel.is_cancelled() {
        let (len, from) = match udp.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) => {
                use std::io::ErrorKind::*;
                // The read timeout (to look at `cancel`), a signal, or an ICMP error of an
                // earlier send: read again. Anything else waits a little, not to spin on it.
                if !matches!(
                    e.kind(),
                    WouldBlock | TimedOut | Interrupted | ConnectionRefused | ConnectionReset
                ) {
                    tracing::warn!("cluster DNS: udp receive: {e}");
                    std::thread::sleep(UDP_CANCEL_CHECK);
                }
                continue;
            }
        };
        let query = &buf[..len];
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match answerer.answer(query, state, settings) {
                Handled::Send(bytes) => {
                    let _ = udp.send_to(bytes, from);
                    None
                }
                Handled::Relay(request) => Some(request),
                Handled::Drop => None,
            }
        }));
        match handled {
            Ok(Some(request)) => {
                let Ok(permit) = relays.clone().try_acquire_owned() else {
                    refused.warn(|n| format!(
                        "cluster DNS: {RELAYS_IN_FLIGHT} queries already relayed and not answered yet; SERVFAIL to a new one ({n} so far)"
                    ));
                    if let Some(bytes) = servfail(&request, false) {
                        let _ = udp.send_to(&bytes, from);
                    }
                    continue;
                };
                let query = query.to_vec();
                let (udp, settings) = (udp.clone(), settings.clone());
                tracker.spawn_on(
                    async move {
                        if let Some(bytes) = relayed(&query, &request, &settings, false).await {
                            let _ = udp.send_to(&bytes, from);
                        }
                        drop(permit);
                    },
                    runtime,
                );
            }
            Ok(None) => {}
            Err(_) => {
                tracing::error!(
                    "cluster DNS: a query of {len} bytes from {from} could not be answered (a bug: the answering code panicked); dropped"
                );
                answerer = UdpAnswerer::default();
            }
        }
    }
}

/// A condition that recurs under load (a refused client, a failed accept): warned of the first
/// time and every `every`-th time after, with the count so far.
struct Tally {
    count: u64,
    every: u64,
}

impl Tally {
    fn new(every: u64) -> Tally {
        Tally { count: 0, every }
    }

    /// Counts one more; `message` (given the count) is logged when it is due.
    fn warn(&mut self, message: impl FnOnce(u64) -> String) {
        if self.count.is_multiple_of(self.every) {
            tracing::warn!("{}", message(self.count + 1));
        }
        self.count += 1;
    }

    /// The condition has passed: the next one is warned of again.
    fn reset(&mut self) {
        self.count = 0;
    }
}

/// What the UDP loop does with one datagram.
enum Handled<'a> {
    /// Sends these bytes back.
    Send(&'a [u8]),
    /// Relays the query (parsed here) to the upstream resolvers.
    Relay(Message),
    /// Not a DNS query: nothing is sent.
    Drop,
}

/// The UDP side's answering: names of the cluster answered inline, a name asked before from
/// the same table by copying its kept answer (in buffers kept across queries: it allocates
/// nothing).
#[derive(Default)]
struct UdpAnswerer {
    cache: Answers,
    key: Vec<u8>,
    reply: Vec<u8>,
}

impl UdpAnswerer {
    fn answer<'a>(
        &'a mut self,
        query: &[u8],
        state: &watch::Receiver<Arc<ClusterState>>,
        settings: &Settings,
    ) -> Handled<'a> {
        let plain = self
            .cache
            .key_into(query, &state.borrow().services, &mut self.key);
        if plain && self.cache.reply_into(&self.key, query, &mut self.reply) {
            return Handled::Send(&self.reply);
        }
        match local(query, state, settings, false) {
            Local::Reply(bytes, cacheable) => {
                if plain && cacheable {
                    self.cache.keep(&self.key, &bytes);
                }
                self.reply = bytes;
                Handled::Send(&self.reply)
            }
            Local::Relay(request) => Handled::Relay(request),
            Local::Drop => Handled::Drop,
        }
    }
}

async fn serve_tcp(
    mut stream: TcpStream,
    state: &watch::Receiver<Arc<ClusterState>>,
    upstreams: &Settings,
) -> std::io::Result<()> {
    loop {
        let len = stream.read_u16().await? as usize;
        let mut query = vec![0u8; len];
        stream.read_exact(&mut query).await?;
        let Some(reply) = reply(&query, state, upstreams, true).await else {
            return Ok(());
        };
        stream.write_u16(reply.len() as u16).await?;
        stream.write_all(&reply).await?;
    }
}

/// Encoded answers of the cluster's names for one Service table, by question: a name asked
/// again is answered by copying bytes (its id and question patched in) instead of parsing and
/// encoding. Emptied whenever the table changes; bounded.
#[derive(Default)]
struct Answers {
    /// The table the answers were made from, not kept alive by the cache (a table replaced
    /// while no question comes would otherwise stay in memory beside the new one).
    table: Option<std::sync::Weak<crate::services::ServiceTable>>,
    entries: std::collections::HashMap<Vec<u8>, Vec<u8>>,
}

/// At most this many answers are kept.
const ANSWERS_KEPT: usize = 10_000;

impl Answers {
    /// Writes the key of a plain query (flags, question name in lower case, type and class)
    /// into `key`, after emptying the cache if `table` is new; false when the query is not
    /// plain (one question, no other records).
    fn key_into(
        &mut self,
        query: &[u8],
        table: &Arc<crate::services::ServiceTable>,
        key: &mut Vec<u8>,
    ) -> bool {
        if !self
            .table
            .as_ref()
            .is_some_and(|t| std::ptr::eq(t.as_ptr(), Arc::as_ptr(table)))
        {
            self.entries.clear();
            self.table = Some(Arc::downgrade(table));
        }
        let Some(end) = question_end(query) else {
            return false;
        };
        key.clear();
        key.extend_from_slice(&query[2..4]);
        // The name's labels in lower case (case does not matter in names); type and class as
        // they are.
        key.extend(query[12..end - 4].iter().map(u8::to_ascii_lowercase));
        key.extend_from_slice(&query[end - 4..end]);
        true
    }

    /// Writes the kept answer for `key` into `reply`, with `query`'s id and question; false
    /// when none is kept.
    fn reply_into(&self, key: &[u8], query: &[u8], reply: &mut Vec<u8>) -> bool {
        let (Some(kept), Some(end)) = (self.entries.get(key), question_end(query)) else {
            return false;
        };
        // The kept answer asked the same question (same key), so its question ends at `end` too.
        if kept.len() < end {
            return false;
        }
        reply.clear();
        reply.extend_from_slice(kept);
        reply[..2].copy_from_slice(&query[..2]);
        reply[12..end].copy_from_slice(&query[12..end]);
        true
    }

    fn keep(&mut self, key: &[u8], reply: &[u8]) {
        if self.entries.len() < ANSWERS_KEPT {
            self.entries.insert(key.to_vec(), reply.to_vec());
        }
    }
}

/// Where the question of a plain query ends: a standard query (opcode 0) with exactly one
/// question and no answer, authority or additional records.
fn question_end(query: &[u8]) -> Option<usize> {
    let header = query.get(..12)?;
    let opcode = (header[2] >> 3) & 0x0f;
    let is_query = header[2] & 0x80 == 0;
    if !is_query || opcode != 0 || header[4..12] != [0, 1, 0, 0, 0, 0, 0, 0] {
        return None;
    }
    let mut at = 12;
    loop {
        let len = *query.get(at)? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        // Compression pointers do not appear in a question of a query.
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
    }
    let end = at + 4;
    (end == query.len()).then_some(end)
}

/// What to do with one query's bytes.
enum Local {
    /// Answered here; whether the answer may be kept for the same question (it came from the
    /// Service table alone).
    Reply(Vec<u8>, bool),
    /// Not a name of the cluster: the upstream resolvers' (the parsed request).
    Relay(Message),
    /// Not a DNS query at all (dropped, as resolvers do).
    Drop,
}

/// Answers `query` from the node's Service table when it is a name of the cluster.
fn local(
    query: &[u8],
    state: &watch::Receiver<Arc<ClusterState>>,
    settings: &Settings,
    tcp: bool,
) -> Local {
    let Ok(request) = Message::from_vec(query) else {
        return Local::Drop;
    };
    let (table, pods) = {
        let s = state.borrow();
        (s.services.clone(), s.pods.clone())
    };
    // A pod's address found among the pod reports (for PTR): such an answer is not kept, as
    // pods come and go without the Service table changing.
    let from_pods = std::cell::Cell::new(false);
    let pod_namespace = |ip: Ipv4Addr| {
        let ip = ip.to_string();
        let found = pods
            .iter()
            .filter(|(_, (_, r))| r.status["podIP"].as_str() == Some(ip.as_str()))
            .min_by_key(|(_, (_, r))| r.deleting)
            .map(|((namespace, _), _)| namespace.clone());
        from_pods.set(found.is_some());
        found
    };
    match answer_with_pods(&request, &table, &settings.domain, &pod_namespace) {
        Answer::Local(mut m) => {
            // RFC 6891: a request with an OPT record gets one back, with the size this server
            // takes over UDP.
            if request.edns.is_some() {
                let mut edns = Edns::new();
                edns.set_max_payload(UDP_PAYLOAD).set_version(0);
                m.edns = Some(edns);
            }
            encode(&m, reply_limit(&request, tcp))
                .map_or(Local::Drop, |bytes| Local::Reply(bytes, !from_pods.get()))
        }
        Answer::Forward => Local::Relay(request),
    }
}

/// The largest UDP answer this server sends to a client that allows more than 512 bytes with
/// EDNS (the DNS flag day's size: no IP fragmentation on common paths).
const UDP_PAYLOAD: u16 = 1232;

/// How large the answer to `request` may be: any size over TCP; over UDP, 512 bytes, or what
/// the client's EDNS record allows up to [`UDP_PAYLOAD`].
fn reply_limit(request: &Message, tcp: bool) -> usize {
    if tcp {
        usize::from(u16::MAX)
    } else {
        usize::from(request.max_payload().min(UDP_PAYLOAD))
    }
}

/// The upstream resolvers' reply to `query`, or SERVFAIL when none answers.
async fn relayed(
    query: &[u8],
    request: &Message,
    settings: &Settings,
    tcp: bool,
) -> Option<Vec<u8>> {
    if let Some(bytes) = relay(query, &settings.upstreams.current(), tcp).await {
        return Some(bytes);
    }
    servfail(request, tcp)
}

/// SERVFAIL to `request`.
fn servfail(request: &Message, tcp: bool) -> Option<Vec<u8>> {
    let failed = Message::error_msg(
        request.metadata.id,
        request.metadata.op_code,
        ResponseCode::ServFail,
    );
    encode(&failed, reply_limit(request, tcp))
}

/// The reply to one query's bytes: answered here, relayed, or an error; `None` for bytes that
/// are not a DNS query at all.
async fn reply(
    query: &[u8],
    state: &watch::Receiver<Arc<ClusterState>>,
    settings: &Settings,
    tcp: bool,
) -> Option<Vec<u8>> {
    match local(query, state, settings, tcp) {
        Local::Reply(bytes, _) => Some(bytes),
        Local::Relay(request) => relayed(query, &request, settings, tcp).await,
        Local::Drop => None,
    }
}

/// `local` as wire bytes of at most `limit`: an answer too large keeps the answer records that
/// fit, in order, and is marked truncated (TC), as resolvers do: a client that retries over TCP
/// gets them all, one that does not (musl before 1.2.4) still gets addresses.
fn encode(local: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = local.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut short = local.clone();
    short.metadata.truncation = true;
    short.additionals.clear();
    short.authorities.clear();
    // The answers that fit: the most that encode within `limit` (found by halving).
    let all = std::mem::take(&mut short.answers);
    let (mut fits, mut over) = (0, all.len() + 1);
    while over - fits > 1 {
        let mid = (fits + over) / 2;
        short.answers = all[..mid].to_vec();
        if short.to_vec().ok()?.len() <= limit {
            fits = mid;
        } else {
            over = mid;
        }
    }
    short.answers = all[..fits].to_vec();
    short.to_vec().ok()
}

/// Relays `query` to the first upstream that answers.
async fn relay(query: &[u8], upstreams: &[SocketAddr], tcp: bool) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let attempt = async {
            if tcp {
                let mut s = TcpStream::connect(upstream).await.ok()?;
                s.write_u16(query.len() as u16).await.ok()?;
                s.write_all(query).await.ok()?;
                let len = s.read_u16().await.ok()? as usize;
                let mut out = vec![0u8; len];
                s.read_exact(&mut out).await.ok()?;
                Some(out)
            } else {
                let bind: SocketAddr = if upstream.is_ipv4() {
                    "0.0.0.0:0".parse().ok()?
                } else {
                    "[::]:0".parse().ok()?
                };
                let socket = UdpSocket::bind(bind).await.ok()?;
                socket.connect(upstream).await.ok()?;
                socket.send(query).await.ok()?;
                let mut out = vec![0u8; 4096];
                let len = socket.recv(&mut out).await.ok()?;
                out.truncate(len);
                Some(out)
            }
        };
        if let Ok(Some(bytes)) = tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            return Some(bytes);
        }
    }
    None
}

#[cfg(test)]
#[path = "dns_fuzz_tests.rs"]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings for the cluster domain, with no upstream resolver.
    pub(super) fn settings() -> Settings {
        Settings {
            upstreams: Upstreams::new("/nonexistent/resolv.conf", Ipv4Addr::new(10, 42, 0, 1)),
            domain: crate::services::dns::DEFAULT_DOMAIN.to_string(),
        }
    }

    /// A cluster state with `services` and one running pod `namespace/name` at `ip`.
    pub(super) fn state_with_pod(
        services: crate::services::ServiceTable,
        (namespace, name): (&str, &str),
        ip: &str,
    ) -> ClusterState {
        let report = crate::cluster::keys::PodReport {
            uid: "u".into(),
            owner: None,
            template_hash: String::new(),
            created_ms: 0,
            deleting: false,
            running: true,
            ready: true,
            labels: Default::default(),
            status: serde_json::json!({ "podIP": ip }),
            ports: Vec::new(),
            hostname: None,
            subdomain: None,
        };
        let pods: crate::cluster::service::PodReports = [(
            (namespace.to_string(), name.to_string()),
            ("n1".to_string(), Arc::new(report)),
        )]
        .into();
        ClusterState {
            services: Arc::new(services),
            pods: Arc::new(pods),
            ..ClusterState::default()
        }
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii(name).unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        m.to_vec().unwrap()
    }

    #[test]
    fn a_cached_answer_takes_the_new_query_s_id_and_question() {
        let table = Arc::new(crate::services::ServiceTable::new());
        let mut cache = Answers::default();
        let first = query(7, "web.default.svc.cluster.local.");
        let mut key = Vec::new();
        assert!(cache.key_into(&first, &table, &mut key), "a plain query");
        let Answer::Local(answer) = crate::services::dns::answer(
            &Message::from_vec(&first).unwrap(),
            &table,
            crate::services::dns::DEFAULT_DOMAIN,
        ) else {
            panic!("a cluster name")
        };
        cache.keep(&key, &answer.to_vec().unwrap());
        let again = query(9, "WEB.default.svc.cluster.local.");
        assert!(cache.key_into(&again, &table, &mut key), "same question");
        let mut cached = Vec::new();
        assert!(cache.reply_into(&key, &again, &mut cached), "cached");
        let reply = Message::from_vec(&cached).unwrap();
        assert_eq!(reply.metadata.id, 9);
        assert_eq!(
            reply.queries[0].name().to_ascii(),
            "WEB.default.svc.cluster.local."
        );
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        // A new table empties it.
        let other = Arc::new(crate::services::ServiceTable::new());
        assert!(cache.key_into(&again, &other, &mut key));
        assert!(!cache.reply_into(&key, &again, &mut cached));
        // The cache does not keep a table alive.
        assert_eq!(Arc::strong_count(&other), 1);
        // Not plain: two questions, or a response.
        let mut bad = first.clone();
        bad[5] = 2;
        assert!(question_end(&bad).is_none());
        let mut response = first;
        response[2] |= 0x80;
        assert!(question_end(&response).is_none());
    }

    #[test]
    fn a_large_answer_keeps_what_fits_and_is_marked_truncated() {
        use hickory_proto::rr::{Name, RData, Record, rdata::A};
        let name = Name::from_ascii("db.default.svc.cluster.local.").unwrap();
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.add_query(hickory_proto::op::Query::query(
            name.clone(),
            hickory_proto::rr::RecordType::A,
        ));
        for i in 0..100u8 {
            m.answers.push(Record::from_rdata(
                name.clone(),
                5,
                RData::A(A::new(10, 42, 0, i)),
            ));
        }
        let whole = encode(&m, usize::from(u16::MAX)).unwrap();
        let whole = Message::from_vec(&whole).unwrap();
        assert_eq!(whole.answers.len(), 100);
        assert!(!whole.metadata.truncation);
        for limit in [512usize, 1232] {
            let bytes = encode(&m, limit).unwrap();
            assert!(bytes.len() <= limit, "{limit}: {} bytes", bytes.len());
            let short = Message::from_vec(&bytes).unwrap();
            assert!(short.metadata.truncation, "{limit}: TC");
            let kept = short.answers.len();
            assert!(kept > 0 && kept < 100, "{limit}: {kept} answers");
            // The first ones, in order; one more would not have fitted.
            assert_eq!(short.answers[..], m.answers[..kept]);
            let mut more = short.clone();
            more.answers.push(m.answers[kept].clone());
            assert!(
                more.to_vec().unwrap().len() > limit,
                "{limit}: {kept} is the most"
            );
        }
    }

    #[test]
    fn the_udp_limit_follows_the_client_s_edns_size_up_to_1232() {
        let plain = Message::from_vec(&query(1, "a.default.svc.cluster.local.")).unwrap();
        assert_eq!(reply_limit(&plain, false), 512);
        assert_eq!(reply_limit(&plain, true), 65535);
        for (asked, got) in [(4096u16, 1232usize), (1000, 1000), (100, 512)] {
            let mut m = plain.clone();
            let mut edns = Edns::new();
            edns.set_max_payload(asked);
            m.edns = Some(edns);
            let m = Message::from_vec(&m.to_vec().unwrap()).unwrap();
            assert_eq!(reply_limit(&m, false), got, "asked {asked}");
        }
    }

    #[test]
    fn a_request_with_edns_gets_an_opt_record_back() {
        let (_tx, state) = watch::channel(Arc::new(ClusterState::default()));
        let settings = settings();
        let plain = query(3, "web.default.svc.cluster.local.");
        let mut with_edns = Message::from_vec(&plain).unwrap();
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        with_edns.edns = Some(edns);
        for (bytes, want) in [
            (plain, None),
            (with_edns.to_vec().unwrap(), Some(UDP_PAYLOAD)),
        ] {
            let Local::Reply(reply, _) = local(&bytes, &state, &settings, false) else {
                panic!("answered here")
            };
            let reply = Message::from_vec(&reply).unwrap();
            assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(reply.edns.as_ref().map(Edns::max_payload), want);
        }
    }

    #[test]
    fn a_pod_s_ptr_is_answered_but_not_kept() {
        let state = state_with_pod(Default::default(), ("tools", "shell"), "10.42.0.7");
        let (_tx, state) = watch::channel(Arc::new(state));
        let settings = settings();
        let mut m = Message::query();
        m.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("7.0.42.10.in-addr.arpa.").unwrap(),
            hickory_proto::rr::RecordType::PTR,
        ));
        let Local::Reply(bytes, cacheable) = local(&m.to_vec().unwrap(), &state, &settings, false)
        else {
            panic!("answered here")
        };
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(
            reply.answers[0].data.to_string(),
            "10-42-0-7.tools.pod.cluster.local."
        );
        assert!(!cacheable, "pods change without the Service table");
        // A name of the table alone may be kept.
        let Local::Reply(_, cacheable) = local(
            &query(1, "web.default.svc.cluster.local."),
            &state,
            &settings,
            false,
        ) else {
            panic!("answered here")
        };
        assert!(cacheable);
    }

    #[test]
    fn upstreams_are_read_again_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("skiff-upstreams-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
        let up = Upstreams::new(&path, Ipv4Addr::new(10, 42, 0, 1));
        assert_eq!(up.current(), vec!["192.0.2.1:53".parse().unwrap()]);
        std::fs::write(&path, "nameserver 192.0.2.2\nnameserver 192.0.2.3\n").unwrap();
        // A later modification time, as a rewrite some time after the first one has.
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(
            up.current(),
            vec![
                "192.0.2.2:53".parse::<SocketAddr>().unwrap(),
                "192.0.2.3:53".parse().unwrap()
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn upstreams_are_the_nodes_resolvers_but_the_gateway() {
        let conf = "search example.org\nnameserver 192.0.2.1\nnameserver 10.42.0.1\nnameserver ::1\noptions ndots:1\n";
        assert_eq!(
            upstreams(conf, "10.42.0.1".parse().unwrap()),
            vec![
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
