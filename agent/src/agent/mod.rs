//! The agent service: opens the node's store, image store and runtime, watches the manifests
//! directory, serves the local API, and runs the node loop (`core`). Stopping the agent leaves
//! pods running; a new agent re-adopts them.

mod checks;
mod core;
mod dns;
mod exec;
mod execute;
mod handler;
mod membership;
pub(crate) mod node_request;
mod pending;
pub mod proxy;
mod remote;
mod rpc;
mod sources;
mod status;
mod store_watch;
mod store_writer;

use crate::api;
use crate::cli::AgentArgs;
use crate::cluster;
use crate::config::{AgentConfig, ConfigFile};
use crate::store::Store;
use anyhow::Context;
use skiff_cni::PodNetwork;
use skiff_runtime::container::{ContainerRuntime, ShimRuntime, ShimRuntimeConfig};
use skiff_runtime::image::ImageStore;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::core::{Command, Core, Snapshot};

/// Builds the config from the optional file and the flags (flags win).
pub fn config_from_args(args: AgentArgs) -> anyhow::Result<AgentConfig> {
    let mut config = AgentConfig::default();
    if let Some(path) = &args.config {
        ConfigFile::load(path)?.apply(&mut config);
    }
    macro_rules! flag {
        ($field:ident) => {
            if let Some(v) = args.$field {
                config.$field = v;
            }
        };
    }
    flag!(node_name);
    flag!(data_dir);
    flag!(manifests_dir);
    flag!(api_socket);
    flag!(run_dir);
    flag!(listen);
    flag!(cgroup_parent);
    flag!(netns_dir);
    flag!(netns_prefix);
    if args.pod_subnet.is_some() {
        config.pod_subnet_set = true;
    }
    flag!(pod_subnet);
    flag!(cluster_cidr);
    flag!(service_cidr);
    flag!(service_node_port_range);
    flag!(cluster_domain);
    flag!(resolv_conf);
    flag!(bridge);
    flag!(pod_pids_limit);
    flag!(max_pods);
    flag!(gossip_profile);
    if let Some(ms) = args.eviction_delay_ms {
        config.eviction_delay = Duration::from_millis(ms);
    }
    if args.log_dir.is_some() {
        config.log_dir = args.log_dir;
    }
    if args.recover_store {
        config.recover_store = true;
    }
    if let Some(ms) = args.manifest_settle_ms {
        config.manifest_settle = Duration::from_millis(ms);
    }
    if args.no_masquerade {
        config.masquerade = false;
    }
    if args.no_pod_network {
        config.pod_network = false;
    }
    if args.node_netns.is_some() {
        config.node_netns = args.node_netns;
    }
    if args.advertise.is_some() {
        config.advertise = args.advertise;
    }
    if !args.join.is_empty() {
        config.join = args.join;
    }
    if args.token.is_some() {
        config.token = args.token;
    }
    if let Some(path) = &args.token_file {
        config.token = Some(crate::config::read_token_file(path)?);
    }
    if let Some(ms) = args.crash_backoff_base_ms {
        config.crash_backoff_base = Duration::from_millis(ms);
        config.image_pull_backoff_base = Duration::from_millis(ms);
    }
    if let Some(ms) = args.sandbox_backoff_base_ms {
        config.sandbox_backoff_base = Duration::from_millis(ms);
    }
    config.validate()?;
    Ok(config)
}

/// Timings of the cluster layer from the agent config.
pub fn cluster_timings(config: &AgentConfig) -> cluster::ClusterTimings {
    cluster::ClusterTimings {
        eviction_delay: config.eviction_delay,
        ..cluster::ClusterTimings::default()
    }
}

/// Pod networking settings from the agent config.
pub fn network_config(config: &AgentConfig) -> skiff_cni::NetworkConfig {
    skiff_cni::NetworkConfig {
        bridge: config.bridge.clone(),
        subnet: config.pod_subnet.trunc(),
        gateway: skiff_cni::config::first_host(config.pod_subnet),
        netns_dir: config.netns_dir.clone(),
        netns_prefix: config.netns_prefix.clone(),
        masquerade: config.masquerade,
        cluster_cidr: Some(config.cluster_cidr),
        node_netns: config.node_netns.clone(),
        resolv_conf_source: config.resolv_conf.clone(),
        ..skiff_cni::NetworkConfig::default()
    }
}

/// `skiff agent`: runs until SIGTERM or SIGINT; returns the exit code.
pub fn run_from_args(args: AgentArgs) -> i32 {
    let config = match config_from_args(args) {
        Ok(c) => c,
        Err(e) => {
            crate::cli::output::error(&format!("{e:#}"));
            return 1;
        }
    };
    init_tracing();
    crate::memory::limit_arenas();
    // Many API clients, pods and log files must not run the agent out of file descriptors at
    // a low default soft limit (systemd's is 1024).
    match crate::rlimit::raise_nofile_limit() {
        Ok((soft, hard)) => tracing::debug!("open files limit: {soft} (hard limit {hard})"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(32)
        .thread_name("skiff-agent")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            crate::cli::output::error(&format!("cannot start the async runtime: {e}"));
            return 1;
        }
    };
    let code = match runtime.block_on(run(config)) {
        Ok(()) => 0,
        Err(e) => {
            crate::cli::output::error(&format!("{e:#}"));
            1
        }
    };
    // Blocking work still running (a stuck disk, a container that will not die) must not keep
    // the process alive: dropping the runtime would wait for it.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Runs the agent until SIGTERM or Ctrl-C (tests that run it in-process use [`run_until`]).
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let agent = async {
        let result = run_until(config, cancel.clone()).await;
        cancel.cancel(); // an agent that stopped by itself ends the signal watch
        result
    };
    let ((), result) = tokio::join!(stop_on_signal(cancel.clone()), agent);
    result
}

/// Cancels `cancel` at SIGTERM or Ctrl-C; returns at either, or once `cancel` is cancelled.
async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            return;
        }
    };
    // Every branch is cancel-safe.
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("signal received: stopping the agent (pods keep running)");
    cancel.cancel();
}

/// The free space below which containers stop writing logs on the filesystem of `dir`: 5% of
/// it, at most 50 MiB (0, no floor, if it cannot be read).
pub fn log_free_floor(dir: &std::path::Path) -> u64 {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let total = s.blocks() * s.fragment_size();
            (total / 20).min(50 * 1024 * 1024)
        }
        Err(_) => 0,
    }
}

/// Runs the agent until `cancel`.
pub async fn run_until(mut config: AgentConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    // oci-client uses rustls; the workspace links ring only.
    let _ = rustls::crypto::ring::default_provider().install_default();
    for dir in [&config.data_dir, &config.run_dir, &config.manifests_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Pod volumes (Secrets), bundles with env values, the store and logs live under these:
    // nobody but root may look inside.
    for dir in [
        Some(&config.data_dir),
        Some(&config.run_dir),
        config.log_dir.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    config.log_min_free_bytes = log_free_floor(config.log_dir.as_ref().unwrap_or(&config.data_dir));
    let exe = std::env::current_exe().context("cannot find the skiff binary for the shim")?;
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(ShimRuntime::new(ShimRuntimeConfig {
        state_root: config.containers_state_dir(),
        shim_command: vec![exe.into_os_string(), "shim".into()],
    }));
    let containers = runtime
        .list()
        .with_context(|| format!("cannot list containers in {}", config.run_dir.display()))?
        .len();
    let (store, opened) = Store::open_checked(
        &config.db_path(),
        &config.pod_records_mirror_dir(),
        containers,
        &config.run_dir,
        config.recover_store,
    )?;
    let recovered = matches!(opened, crate::store::Opened::Recovered { .. });
    match &opened {
        crate::store::Opened::Recovered { moved_aside, pods } => tracing::warn!(
            "local store {} rebuilt: {pods} pod record(s) reloaded from {}{}; objects come back from the manifests dir and the cluster",
            config.db_path().display(),
            config.pod_records_mirror_dir().display(),
            moved_aside
                .as_ref()
                .map(|p| format!(", the unopenable file was moved to {}", p.display()))
                .unwrap_or_default()
        ),
        crate::store::Opened::Normal if config.recover_store => {
            tracing::warn!("--recover-store: the local store is intact, nothing to recover")
        }
        crate::store::Opened::Normal => {}
    }
    let db = store.database();
    let images = ImageStore::open(&config.images_dir(), store.database())?;
    let tracker = TaskTracker::new();
    let listener = api::server::bind(&config.api_socket)?;
    let (file_tx, file_rx) = mpsc::channel(256);
    crate::watcher::spawn(
        crate::watcher::WatchConfig {
            dir: config.manifests_dir.clone(),
            debounce: config.manifest_debounce,
            rescan: Duration::from_secs(2),
            max_file_bytes: skiff_manifests::MAX_FILE_BYTES as u64,
        },
        file_tx,
        cancel.clone(),
    )
    .with_context(|| format!("cannot watch {}", config.manifests_dir.display()))?;
    let followed = cluster::follow::Followed::open(db.clone())
        .context("cannot open the followed assignment")?;
    // Peers seen before are seeds too, so a node restarted without --join finds its cluster.
    config.seeds = followed
        .peer_addrs
        .values()
        .map(|a| a.to_string())
        .filter(|a| !config.join.contains(a))
        .collect();
    let (rpc_sink, rpc_connections) = skiff_gossip::rpc_channel();
    let gossip = Arc::new(membership::start(&config, Some(rpc_sink)).await?);
    // The pod subnet: stored, given, or handed out by the leader (a new cluster takes its own).
    // A stop asked for while it waits is a stop (the wait can take up to 30 s).
    let resolved = tokio::select! {
        resolved = cluster::subnets::resolve(
            &config,
            followed.subnet(),
            &gossip,
            Duration::from_secs(30),
        ) => Some(resolved),
        _ = cancel.cancelled() => None,
    };
    let Some(resolved) = resolved else {
        tracing::info!("stopped while waiting for the pod subnet");
        leave_and_stop_gossip(gossip, tokio::time::Instant::now() + SHUTDOWN_DEADLINE).await;
        let _ = std::fs::remove_file(&config.api_socket);
        return Ok(());
    };
    let subnet = resolved?;
    followed.set_subnet(subnet);
    config.pod_subnet = subnet;
    tracing::info!("pod subnet {subnet}");
    let network = if config.pod_network {
        let net = skiff_cni::NetlinkNetwork::new(network_config(&config), store.database())?;
        if let Err(e) = net.ensure_bridge().await {
            tracing::error!("pod network: {e} (pods wait until it works)");
        }
        Some(Arc::new(net))
    } else {
        None
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let mut core = core::Core::load(
        config.clone(),
        store,
        images.clone(),
        runtime.clone(),
        network.clone(),
        crate::pod::wall_clock(),
    )?;
    if let (Some(net), true) = (&network, recovered) {
        // The leases went with the store: the re-adopted pods keep their addresses.
        for (request, ip) in core.leased_pod_requests() {
            match net.restore_lease(&request, ip) {
                Ok(_) => tracing::info!("pod {}: address {ip} re-leased", request.id),
                Err(e) => tracing::warn!("pod {}: cannot re-lease {ip}: {e}", request.id),
            }
        }
    }
    if let Some(net) = &network {
        // Leftovers of pods that no longer exist (a crash between steps, a lost record).
        match net.gc(&core.pod_uids()).await {
            Ok(report) if !report.actions.is_empty() => {
                tracing::info!("pod network: removed {} leftover(s)", report.actions.len())
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("pod network gc: {e}"),
        }
        // Pods left half-wired by a crash between setup steps: setup is idempotent and
        // completes them (an intact pod is left as it is).
        for request in core.wired_pod_requests() {
            if let Err(e) = net.setup_pod(&request).await {
                tracing::warn!("pod network: repair of pod {}: {e}", request.id);
            }
        }
    }
    let served: cluster::Served = Default::default();
    let (desired_tx, desired_rx) = watch::channel(cluster::Desired::default());
    let (state_tx, state_rx) = watch::channel(Arc::new(cluster::ClusterState::default()));
    let cluster_cancel = CancellationToken::new();
    let (cluster_cmd_tx, cluster_cmd_rx) = mpsc::channel(16);
    let (cluster_events_tx, mut cluster_events_rx) = mpsc::unbounded_channel();
    {
        // Events the cluster task makes (rollbacks) are recorded by the node loop.
        let commands = cmd_tx.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            loop {
                let note = tokio::select! {
                    _ = cancel.cancelled() => break,
                    note = cluster_events_rx.recv() => note,
                };
                let Some(note) = note else { break };
                if commands
                    .send(core::Command::RecordEvent(note))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    let cluster_task = {
        let replica = cluster::replica::Replica::open(db.clone(), &config.node_name)
            .context("cannot open the cluster records")?;
        let service = cluster::ClusterService::new(
            gossip.clone(),
            replica,
            followed,
            Arc::new(cluster::fetch::RpcFetcher::new(gossip.clone())),
            cluster::ClusterTimings {
                // A rebuilt store knows no objects and no table yet: wait before judging pods.
                always_wait_grace: recovered,
                startup_grace: if recovered {
                    Duration::from_secs(10)
                } else {
                    cluster::ClusterTimings::default().startup_grace
                },
                ..cluster_timings(&config)
            },
            served.clone(),
        )
        .with_subnet(subnet, config.cluster_cidr)
        .with_service_cidr(config.service_cidr)
        .with_node_port_range(config.service_node_port_range);
        tracker.spawn(service.run(
            cluster::ClusterInputs {
                declared: core.declared(),
                reports: core.reports(),
                commands: cluster_cmd_rx,
            },
            cluster::ClusterOutputs {
                desired: desired_tx,
                state: state_tx,
                events: Some(cluster_events_tx),
            },
            cluster_cancel.clone(),
        ))
    };
    if let Some(net) = network.clone() {
        // Routes to the other nodes' pod subnets follow the cluster's subnet claims.
        let mut state = state_rx.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let mut installed: Option<Vec<skiff_cni::PeerRoute>> = None;
            loop {
                let routes = state.borrow_and_update().routes.clone();
                if installed.as_ref() != Some(&routes) {
                    match net.ensure_peer_routes(&routes).await {
                        Ok(()) => installed = Some(routes),
                        Err(e) => tracing::warn!("routes to other nodes' pods: {e}"),
                    }
                }
                // Both branches are cancel-safe.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    changed = state.changed() => if changed.is_err() { break },
                }
            }
        });
    }
    if let Some(net) = network.clone() {
        // Cluster DNS for this node's pods, on the bridge gateway.
        let gateway = net.config().gateway;
        tracker.spawn(dns::on_own_thread(dns::run(
            net.clone(),
            gateway,
            dns::Upstreams::new(config.resolv_conf.clone(), gateway),
            config.cluster_domain.clone(),
            state_rx.clone(),
            cancel.clone(),
            tracker.clone(),
        )));
    }
    tracker.spawn(crate::memory::trimmer(cancel.clone()));
    if let Some(net) = network.clone() {
        // Services: every node programs every Service (ClusterIP, node ports, endpoints).
        tracker.spawn(proxy::run(
            net,
            config.service_cidr,
            config.node_name.clone(),
            state_rx.clone(),
            cancel.clone(),
        ));
    }
    let (snap_tx, snap_rx) = watch::channel(Arc::new(core.snapshot()));
    let shared = handler::Shared {
        snapshot: snap_rx,
        commands: cmd_tx,
        images,
        config: config.clone(),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        nodes: gossip.nodes(),
        cluster: state_rx,
        node_meta: membership::NodeMeta::new(&config, gossip.metadata_writer()),
        remote: remote::Remote::from_gossip(&gossip),
        remover: Some(gossip.node_remover()),
        runtime: runtime.clone(),
        cluster_commands: Some(cluster_cmd_tx),
    };
    // Other nodes' calls: object bodies from the replica, logs and describe of local pods.
    let rpc_server = skiff_gossip::RpcServer::spawn(
        rpc_connections,
        Arc::new(rpc::AgentRpc::new(shared.clone(), served)),
        skiff_gossip::RpcServerOptions::default(),
    );
    let handler = handler::handler(shared);
    tracker.spawn(api::server::serve(
        listener,
        handler,
        api::server::Limits::default(),
        cancel.clone(),
        tracker.clone(),
    ));
    tracing::info!(
        "agent {} ready: manifests {}, api {}",
        config.node_name,
        config.manifests_dir.display(),
        config.api_socket.display()
    );
    core.run(
        file_rx,
        cmd_rx,
        snap_tx,
        desired_rx,
        cancel.clone(),
        tracker.clone(),
    )
    .await;
    // Every step of the stop has a share of one deadline; a step that overruns is named in the
    // log and left behind, so the agent always exits (containers keep running either way).
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
    cluster_cancel.cancel();
    shutdown_step("the cluster task", deadline, async {
        let _ = cluster_task.await;
    })
    .await;
    shutdown_step(
        "the node-to-node rpc server",
        deadline,
        rpc_server.shutdown(),
    )
    .await;
    leave_and_stop_gossip(gossip, deadline).await;
    cancel.cancel();
    tracker.close();
    shutdown_step(
        &format!("{} task(s) (api connections, pod actions)", tracker.len()),
        deadline,
        tracker.wait(),
    )
    .await;
    let _ = std::fs::remove_file(&config.api_socket);
    Ok(())
}

/// A graceful stop of gossip: tells the cluster this node left (it shows as Left, not
/// NotReady), then stops gossip; each step bounded by `deadline`.
async fn leave_and_stop_gossip(
    gossip: Arc<skiff_gossip::GossipHandle>,
    deadline: tokio::time::Instant,
) {
    shutdown_step("telling peers this node leaves", deadline, async {
        let left = gossip.leave().await;
        tracing::info!(
            "left the cluster ({} of {} live peers told)",
            left.reached,
            left.live_peers
        );
    })
    .await;
    shutdown_step("gossip", deadline, async {
        match Arc::try_unwrap(gossip) {
            Ok(gossip) => gossip.shutdown().await,
            Err(shared) => drop(shared),
        }
    })
    .await;
}

/// How long a stopping agent waits for its tasks in total before it exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Awaits one step of the stop until `deadline`; logs what it was waiting on if it overran.
async fn shutdown_step(
    what: &str,
    deadline: tokio::time::Instant,
    step: impl std::future::Future<Output = ()>,
) {
    let started = tokio::time::Instant::now();
    if tokio::time::timeout_at(deadline, step).await.is_err() {
        tracing::warn!(
            "stopping: gave up waiting on {what} after {:?}; exiting anyway",
            started.elapsed()
        );
    }
}

#[cfg(test)]
mod shutdown_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_step_that_never_ends_is_left_at_the_deadline() {
        let start = tokio::time::Instant::now();
        let deadline = start + SHUTDOWN_DEADLINE;
        shutdown_step(
            "a task stuck on a dead disk",
            deadline,
            std::future::pending(),
        )
        .await;
        assert_eq!(start.elapsed(), SHUTDOWN_DEADLINE);
        // Later steps get what is left of the same deadline, not a new one.
        shutdown_step("another", deadline, std::future::pending()).await;
        assert_eq!(start.elapsed(), SHUTDOWN_DEADLINE);
        // A step that ends in time is waited for.
        let quick = tokio::time::Instant::now();
        shutdown_step("quick", quick + SHUTDOWN_DEADLINE, async {
            tokio::time::sleep(Duration::from_millis(5)).await;
        })
        .await;
        assert_eq!(quick.elapsed(), Duration::from_millis(5));
    }
}

#[cfg(test)]
mod flag_tests {
    use super::*;
    use clap::Parser;

    fn config(line: &str) -> anyhow::Result<AgentConfig> {
        let cli = crate::cli::Cli::try_parse_from(line.split_whitespace()).expect("parses");
        let crate::cli::Command::Agent(args) = cli.command else {
            panic!("not `skiff agent`: {line}");
        };
        config_from_args(*args)
    }

    #[test]
    fn backoff_flags_set_their_own_bases() {
        let c = config("skiff agent --crash-backoff-base-ms 200").expect("valid");
        assert_eq!(c.crash_backoff_base, Duration::from_millis(200));
        assert_eq!(c.image_pull_backoff_base, Duration::from_millis(200));
        assert_eq!(c.sandbox_backoff_base, Duration::from_secs(1));
        let c = config("skiff agent --sandbox-backoff-base-ms 300").expect("valid");
        assert_eq!(c.sandbox_backoff_base, Duration::from_millis(300));
        assert_eq!(c.crash_backoff_base, Duration::from_secs(10));
        let err = config("skiff agent --sandbox-backoff-base-ms 0").expect_err("zero");
        assert!(err.to_string().contains("sandbox-backoff-base-ms"), "{err}");
    }
}
