//! The node loop in simulation: the real `Core` (planner, executor, outcome fold, store on a
//! temporary directory) and the real cluster task of a lone node (gossip on chitchat's
//! in-memory transport), with `FakeRuntime` and `FakeNetwork` for containers and networking.
//! Time is tokio's paused clock; the loop's clock and the fake runtime's follow it, so a
//! 40-second crash backoff takes no wall time. Needs no root.

mod sim;

use futures::future::BoxFuture;
use skiff_agent::agent::{Command, Core, Snapshot};
use skiff_agent::cluster::fetch::FetchError;
use skiff_agent::cluster::follow::Followed;
use skiff_agent::cluster::replica::{Replica, StoredRecord};
use skiff_agent::cluster::{
    ClusterInputs, ClusterOutputs, ClusterService, ClusterState, ClusterTimings, Desired, Fetcher,
    Served,
};
use skiff_agent::config::AgentConfig;
use skiff_agent::pod::{Clock, Millis, PodRecord};
use skiff_agent::store::Store;
use skiff_agent::watcher::FileEvent;
use skiff_cni::fake::FakeNetwork;
use skiff_gossip::SimNetwork;
use skiff_gossip::{GossipConfig, GossipNode, GossipProfile};
use skiff_runtime::container::ContainerRuntime;
use skiff_runtime::container::fake::{FakeClock, FakeRuntime};
use skiff_runtime::image::{ImageStore, test_image};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const NODE: &str = "sim-node";
/// Wall clock at simulated time zero.
const WALL_START_MS: Millis = 1_750_000_000_000;
const IMAGE: &str = test_image::TEST_IMAGE_REFERENCE;

/// A lone node's cluster task never fetches (there is nobody to fetch from).
struct NoFetcher;

impl Fetcher for NoFetcher {
    fn fetch(
        &self,
        node: String,
        _keys: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<(String, StoredRecord)>, FetchError>> {
        Box::pin(async move { Err(FetchError::UnknownNode(node)) })
    }
}

/// What survives an agent restart: the directories (store, pod dirs) and the fakes, whose
/// containers and pod networks outlive the agent as real ones do.
struct Disk {
    /// Removed when the node is dropped.
    _dir: tempfile::TempDir,
    store: Store,
    runtime: Arc<FakeRuntime>,
    network: Arc<FakeNetwork>,
    clock: Clock,
    transport: SimNetwork,
    generation: u64,
}

/// One running agent: the node loop and the cluster task.
struct Agent {
    files: mpsc::Sender<FileEvent>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

struct Node {
    disk: Disk,
    agent: Option<Agent>,
    config: AgentConfig,
}

fn config(dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        node_name: NODE.into(),
        data_dir: dir.join("data"),
        manifests_dir: dir.join("manifests"),
        run_dir: dir.join("run"),
        api_socket: dir.join("run/skiff.sock"),
        netns_dir: dir.join("netns"),
        cgroup_parent: "/skiff-sim".into(),
        ..AgentConfig::default()
    }
}

impl Node {
    /// A new node with the test image imported (must run on a paused-time runtime).
    async fn start() -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let origin = Instant::now();
        let clock: Clock = Arc::new(move || WALL_START_MS + origin.elapsed().as_millis() as u64);
        let runtime = Arc::new(FakeRuntime::new());
        let fake_clock = clock.clone();
        runtime.set_clock(FakeClock(Arc::new(move || {
            UNIX_EPOCH + Duration::from_millis(fake_clock())
        })));
        let config = config(dir.path());
        for d in [
            &config.data_dir,
            &config.run_dir,
            &config.manifests_dir,
            &config.netns_dir,
        ] {
            std::fs::create_dir_all(d).expect("create dir");
        }
        let (store, _) = Store::open_checked(
            &config.db_path(),
            &config.pod_records_mirror_dir(),
            0,
            &config.run_dir,
            false,
        )
        .expect("open store");
        let network = Arc::new(
            FakeNetwork::with_db(
                skiff_agent::agent::network_config(&config),
                store.database(),
            )
            .expect("fake network"),
        );
        // The test image's name and config over an empty layer: nothing is executed, and
        // unpacking it needs no privilege (no files to chown).
        let archive = dir.path().join("image.tar");
        let layer = test_image::ArchiveLayer {
            tar: test_image::layer_tar(&[]).expect("empty layer"),
            gzip: true,
        };
        test_image::write_oci_archive(&archive, IMAGE, &[layer], &test_image::busybox_config())
            .expect("build image");
        ImageStore::open(&config.images_dir(), store.database())
            .expect("image store")
            .import_archive(&archive)
            .expect("import image");
        let mut node = Node {
            disk: Disk {
                _dir: dir,
                store,
                runtime,
                network,
                clock,
                transport: SimNetwork::new(),
                generation: 0,
            },
            agent: None,
            config,
        };
        node.boot().await;
        node
    }

    /// Starts the agent on the node's disk: the same store, runtime and network.
    /// (A restarted agent gets the same database handle: what it holds is what the previous
    /// one committed; its memory is gone with the old `Core`.)
    async fn boot(&mut self) {
        self.disk.generation += 1;
        let config = self.config.clone();
        let store = self.disk.store.clone();
        let db = store.database();
        let images = ImageStore::open(&config.images_dir(), db.clone()).expect("image store");
        let mut core = Core::load(
            config.clone(),
            store,
            images,
            self.disk.runtime.clone(),
            Some(self.disk.network.clone()),
            self.disk.clock.clone(),
        )
        .expect("load the node loop");
        let mut gossip_config = GossipConfig::new(NODE, ([198, 18, 9, 1], 7946).into());
        gossip_config.profile = GossipProfile::Lan;
        gossip_config.generation = Some(self.disk.generation);
        gossip_config.metadata = sim::metadata();
        // The previous agent's socket closes a moment after its task is dropped.
        let mut tries = 0;
        let gossip = loop {
            match GossipNode::spawn_simulated(
                gossip_config.clone(),
                "skiff-node-sim",
                &self.disk.transport,
            )
            .await
            {
                Ok(handle) => break Arc::new(handle),
                Err(e) if tries < 100 => {
                    tries += 1;
                    tracing::debug!("gossip cannot start yet: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("spawn gossip: {e}"),
            }
        };
        let service = ClusterService::new(
            gossip,
            Replica::open(db.clone(), NODE).expect("replica"),
            Followed::open(db).expect("followed"),
            Arc::new(NoFetcher),
            ClusterTimings {
                clock: self.disk.clock.clone(),
                ..ClusterTimings::default()
            },
            Served::default(),
        );
        let cancel = CancellationToken::new();
        let (desired_tx, desired_rx) = watch::channel(Desired::default());
        let (state_tx, _state_rx) = watch::channel(Arc::new(ClusterState::default()));
        let cluster = tokio::spawn(service.run(
            ClusterInputs {
                declared: core.declared(),
                reports: core.reports(),
                commands: tokio::sync::mpsc::channel(1).1,
            },
            ClusterOutputs {
                desired: desired_tx,
                state: state_tx,
                events: None,
            },
            cancel.clone(),
        ));
        let (files_tx, files_rx) = mpsc::channel(16);
        // No API here: the command channel is closed from the start.
        let (_, commands_rx) = mpsc::channel::<Command>(1);
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(core.snapshot()));
        let tracker = TaskTracker::new();
        let node_loop = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                core.run(
                    files_rx,
                    commands_rx,
                    snapshot_tx,
                    desired_rx,
                    cancel,
                    tracker.clone(),
                )
                .await;
                tracker.close();
                tracker.wait().await;
            }
        });
        self.agent = Some(Agent {
            files: files_tx,
            snapshot: snapshot_rx,
            cancel,
            tasks: vec![node_loop, cluster],
        });
    }

    /// Stops the agent as SIGTERM does (containers keep running in the fake runtime).
    async fn stop(&mut self) {
        let agent = self.agent.take().expect("agent running");
        agent.cancel.cancel();
        for task in agent.tasks {
            task.await.expect("agent task");
        }
    }

    fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("agent running")
    }

    fn runtime(&self) -> &FakeRuntime {
        &self.disk.runtime
    }

    /// Milliseconds of simulated time since the node was made.
    fn elapsed(&self) -> Millis {
        (self.disk.clock)() - WALL_START_MS
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.config.manifests_dir.join(name)
    }

    /// Drops a manifest file into the watched directory (as the watcher reports it).
    async fn write_manifest(&self, name: &str, yaml: &str) {
        self.agent()
            .files
            .send(FileEvent::Present {
                path: self.manifest_path(name),
                content: yaml.as_bytes().to_vec(),
                writing: false,
            })
            .await
            .expect("node loop running");
    }

    async fn remove_manifest(&self, name: &str) {
        self.agent()
            .files
            .send(FileEvent::Removed {
                path: self.manifest_path(name),
            })
            .await
            .expect("node loop running");
    }

    /// The pod record named `name`, if the node has one.
    fn pod(&self, name: &str) -> Option<PodRecord> {
        self.agent()
            .snapshot
            .borrow()
            .pods
            .iter()
            .find(|p| p.name == name)
            .map(|p| PodRecord::clone(p))
    }

    /// Waits (in simulated time) until `check` holds, at most `within`; panics with `what`.
    async fn until<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl FnMut(&Node) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if Instant::now() > deadline {
                let pods = self
                    .agent
                    .as_ref()
                    .map(|a| a.snapshot.borrow().pods.clone());
                panic!("{what}: not within {within:?} of simulated time; pods: {pods:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The ids the fake runtime started, in order.
    fn started_ids(&self) -> Vec<String> {
        self.runtime().started().into_iter().map(|s| s.id).collect()
    }

    /// The first container's waiting reason and message as `get pods` / `describe` show them.
    fn shown_waiting(&self, name: &str) -> Option<(String, String)> {
        let snapshot = self.agent().snapshot.borrow().clone();
        let record = snapshot.pods.iter().find(|p| p.name == name)?;
        let image = |i: &str| snapshot.image_state(i);
        let ctx = skiff_agent::render::RenderContext {
            node_name: NODE,
            now: (self.disk.clock)(),
            image: &image,
        };
        let json = skiff_agent::render::pod(record, None, &ctx);
        let waiting = &json["status"]["containerStatuses"][0]["state"]["waiting"];
        Some((
            waiting["reason"].as_str()?.to_string(),
            waiting["message"].as_str().unwrap_or_default().to_string(),
        ))
    }

    fn events(&self, reason: &str) -> Vec<String> {
        self.agent()
            .snapshot
            .borrow()
            .events
            .iter()
            .filter(|e| e.reason == reason)
            .map(|e| e.message.clone())
            .collect()
    }
}

/// The container id a pod's `kind` (`c` or `init`) container `index` got on attempt
/// `attempt` (the runtime's naming: `<uid>-<kind><index>-<attempt>`).
fn started_with(ids: &[String], kind_index: &str) -> Vec<String> {
    ids.iter()
        .filter(|id| id.contains(&format!("-{kind_index}-")))
        .cloned()
        .collect()
}

fn pod_yaml(name: &str, extra_spec: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 5\n{extra_spec}  containers:\n{containers}"
    )
}

fn container(name: &str, image: &str) -> String {
    format!(
        "  - name: {name}\n    image: {image}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n"
    )
}

#[tokio::test(start_paused = true)]
async fn a_pod_starts_and_a_crashing_container_restarts_on_kubernetes_backoff() {
    let node = Node::start().await;
    node.write_manifest(
        "crash.yaml",
        &pod_yaml("crash", "", &container("app", IMAGE)),
    )
    .await;
    let mut starts: Vec<Millis> = Vec::new();
    // Four runs that each exit with an error: the delays before runs 2, 3 and 4 are the
    // crash backoff (10 s, 20 s, 40 s).
    for run in 1..=4 {
        let id = node
            .until(
                Duration::from_secs(120),
                &format!("run {run} starts"),
                |n| {
                    let ids = started_with(&n.started_ids(), "c0");
                    (ids.len() == run).then(|| ids[run - 1].clone())
                },
            )
            .await;
        starts.push(node.elapsed());
        let pod = node
            .until(Duration::from_secs(5), "the record shows the run", |n| {
                n.pod("crash").filter(|p| {
                    p.status.containers[0]
                        .current
                        .as_ref()
                        .is_some_and(|i| i.id == id)
                })
            })
            .await;
        assert_eq!(pod.status.containers[0].restart_count as usize, run - 1);
        assert!(node.runtime().exit(&id, 1, false), "run {run} was running");
    }
    let gaps: Vec<Millis> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, backoff) in gaps.iter().zip([10_000, 20_000, 40_000]) {
        // The exit is seen at the next resync (500 ms): the gap is the backoff plus at most
        // one resync and a turn.
        assert!(
            (backoff..backoff + 1_500).contains(gap),
            "restart gaps {gaps:?} are not the 10/20/40 s backoff"
        );
    }
    let pod = node.pod("crash").expect("pod");
    assert_eq!(
        pod.status.containers[0].last.as_ref().map(|t| t.exit_code),
        Some(1)
    );
    assert!(
        !node.events("BackOff").is_empty(),
        "a BackOff event is recorded: {:?}",
        node.agent().snapshot.borrow().events
    );
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_one_after_another_before_the_main_container() {
    let node = Node::start().await;
    let inits = format!(
        "  initContainers:\n{}{}",
        container("first", IMAGE),
        container("second", IMAGE)
    );
    node.write_manifest(
        "init.yaml",
        &pod_yaml("init", &inits, &container("app", IMAGE)),
    )
    .await;
    let first = node
        .until(
            Duration::from_secs(10),
            "the first init container starts",
            |n| started_with(&n.started_ids(), "i0").first().cloned(),
        )
        .await;
    // Nothing else starts while the first init container runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(node.started_ids(), vec![first.clone()]);
    // A failing init container is run again (restartPolicy Always), the second still waits.
    assert!(node.runtime().exit(&first, 2, false));
    let again = node
        .until(
            Duration::from_secs(30),
            "the first init container runs again",
            |n| started_with(&n.started_ids(), "i0").get(1).cloned(),
        )
        .await;
    assert!(started_with(&node.started_ids(), "i1").is_empty());
    assert!(node.runtime().exit(&again, 0, false));
    let second = node
        .until(
            Duration::from_secs(10),
            "the second init container starts",
            |n| started_with(&n.started_ids(), "i1").first().cloned(),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        started_with(&node.started_ids(), "c0").is_empty(),
        "app waits for the second"
    );
    let pod = node.pod("init").expect("pod");
    assert_eq!(pod.phase(), skiff_agent::pod::Phase::Pending);
    assert!(node.runtime().exit(&second, 0, false));
    node.until(Duration::from_secs(10), "the app starts after both", |n| {
        n.pod("init").filter(|p| p.status.containers[0].running())
    })
    .await;
    let ids = node.started_ids();
    assert_eq!(ids.len(), 4, "first twice, second, app: {ids:?}");
    assert!(ids[3].contains("-c0-"));
    let pod = node.pod("init").expect("pod");
    assert_eq!(pod.phase(), skiff_agent::pod::Phase::Running);
    assert!(pod.status.init_containers.iter().all(|c| c.done));
}

#[tokio::test(start_paused = true)]
async fn an_image_that_cannot_be_had_leaves_the_pod_waiting_with_the_reason() {
    let node = Node::start().await;
    let never = "  - name: app\n    image: skiff.local/absent:1\n    imagePullPolicy: Never\n";
    node.write_manifest("never.yaml", &pod_yaml("never", "", never))
        .await;
    let waiting = node
        .until(Duration::from_secs(10), "the pod says why it waits", |n| {
            n.shown_waiting("never")
                .filter(|(reason, _)| reason == "ErrImageNeverPull")
        })
        .await;
    assert!(waiting.1.contains("skiff.local/absent:1"), "{waiting:?}");
    // Nothing is started for it, however long it waits.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(node.started_ids().is_empty(), "{:?}", node.started_ids());

    // A registry that refuses connections: the pull fails and is retried on the pull backoff.
    let unreachable = "  - name: app\n    image: 127.0.0.1:9/absent:1\n";
    node.write_manifest("pull.yaml", &pod_yaml("pull", "", unreachable))
        .await;
    let failed = node
        .until(Duration::from_secs(30), "the pull failure shows", |n| {
            n.shown_waiting("pull")
                .filter(|(reason, _)| reason == "ErrImagePull")
        })
        .await;
    assert!(
        failed.1.contains("127.0.0.1:9"),
        "the message names the registry: {failed:?}"
    );
    let failed_at = node.elapsed();
    // The second failure is shown as a back-off, no sooner than the pull backoff (10 s).
    node.until(Duration::from_secs(60), "the pull is tried again", |n| {
        n.shown_waiting("pull")
            .filter(|(reason, _)| reason == "ImagePullBackOff")
    })
    .await;
    let retried_after = node.elapsed() - failed_at;
    assert!(
        retried_after >= 9_500,
        "the pull was retried {retried_after} ms after it failed; the backoff is 10 s"
    );
    assert!(node.started_ids().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_deleted_pod_that_ignores_sigterm_is_killed_after_its_grace_period() {
    let node = Node::start().await;
    node.write_manifest(
        "grace.yaml",
        &pod_yaml("grace", "", &container("app", IMAGE)),
    )
    .await;
    let id = node
        .until(Duration::from_secs(10), "the pod runs", |n| {
            n.pod("grace")
                .and_then(|p| p.status.containers[0].current.clone())
                .map(|i| i.id)
        })
        .await;
    node.runtime().ignore_sigterm(&id);
    node.remove_manifest("grace.yaml").await;
    let term_at = node
        .until(Duration::from_secs(10), "SIGTERM is sent", |n| {
            n.runtime()
                .signals()
                .iter()
                .any(|(i, s)| i == &id && *s == libc::SIGTERM)
                .then(|| n.elapsed())
        })
        .await;
    let kill_at = node
        .until(Duration::from_secs(30), "SIGKILL follows", |n| {
            n.runtime()
                .signals()
                .iter()
                .any(|(i, s)| i == &id && *s == libc::SIGKILL)
                .then(|| n.elapsed())
        })
        .await;
    let waited = kill_at - term_at;
    assert!(
        (5_000..6_500).contains(&waited),
        "SIGKILL came {waited} ms after SIGTERM; the grace period is 5 s"
    );
    node.until(Duration::from_secs(10), "the pod is gone", |n| {
        (n.pod("grace").is_none() && n.runtime().list().expect("list").is_empty()).then_some(())
    })
    .await;
    assert!(
        node.disk.network.state().netns.is_empty(),
        "its network is torn down: {:?}",
        node.disk.network.state()
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_adopts_running_containers_and_restarts_the_dead() {
    let mut node = Node::start().await;
    node.write_manifest("a.yaml", &pod_yaml("a", "", &container("app", IMAGE)))
        .await;
    node.write_manifest("b.yaml", &pod_yaml("b", "", &container("app", IMAGE)))
        .await;
    let running = |n: &Node, name: &str| {
        n.pod(name)
            .and_then(|p| p.status.containers[0].current.clone())
            .map(|i| (i.id, i.pid))
    };
    let (a, b) = node
        .until(Duration::from_secs(10), "both pods run", |n| {
            Some((running(n, "a")?, running(n, "b")?))
        })
        .await;
    node.stop().await;
    // While the agent is down, b's container dies.
    assert!(node.runtime().exit(&b.0, 137, false));
    node.boot().await;
    // a is adopted: the same container, no new start, no restart counted.
    let adopted = node
        .until(Duration::from_secs(10), "a is back in the records", |n| {
            running(n, "a")
        })
        .await;
    assert_eq!(adopted, a, "a keeps its container and process");
    let b_again = node
        .until(Duration::from_secs(30), "b is started again", |n| {
            running(n, "b").filter(|(id, _)| *id != b.0)
        })
        .await;
    assert_ne!(b_again.0, b.0);
    let ids = node.started_ids();
    assert_eq!(ids.len(), 3, "a once, b twice: {ids:?}");
    let pod_a = node.pod("a").expect("a");
    assert_eq!(pod_a.status.containers[0].restart_count, 0);
    let pod_b = node.pod("b").expect("b");
    assert_eq!(pod_b.status.containers[0].restart_count, 1);
    assert_eq!(
        pod_b.status.containers[0]
            .last
            .as_ref()
            .map(|t| t.exit_code),
        Some(137)
    );
    // The network of both pods was kept (set up once each, not torn down by the restart).
    assert_eq!(node.disk.network.state().netns.len(), 2);
}

/// A Deployment whose template runs `image` and asks for `memory`.
fn deployment_yaml(image: &str, memory: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  strategy:\n    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      terminationGracePeriodSeconds: 5\n      containers:\n      - name: app\n        image: {image}\n        imagePullPolicy: IfNotPresent\n        command: [\"sleep\", \"3600\"]\n        resources:\n          requests: {{memory: {memory}}}\n"
    )
}

#[tokio::test(start_paused = true)]
async fn a_node_running_an_old_revision_pulls_the_new_revisions_image_ahead() {
    let node = Node::start().await;
    node.write_manifest("web.yaml", &deployment_yaml(IMAGE, "16Mi"))
        .await;
    let old = node
        .until(Duration::from_secs(30), "the first revision runs", |n| {
            n.agent()
                .snapshot
                .borrow()
                .pods
                .iter()
                .find(|p| p.owner.is_some() && p.status.containers[0].running())
                .map(|p| p.name.clone())
        })
        .await;
    // The new revision needs more memory than the node has: no pod of it is placed here (the
    // old one keeps serving, maxUnavailable 0), yet its image is fetched ahead. The registry
    // refuses connections, so the pull fails, and that failure shows it was tried.
    let image = "127.0.0.1:9/next:2";
    node.write_manifest("web.yaml", &deployment_yaml(image, "100Ti"))
        .await;
    node.until(Duration::from_secs(30), "the new image pulled ahead", |n| {
        let snapshot = n.agent().snapshot.borrow().clone();
        match snapshot.image_state(image).0 {
            skiff_agent::reconciler::plan::ImageState::Missing => None,
            _ => Some(()),
        }
    })
    .await;
    let pods: Vec<String> = node
        .agent()
        .snapshot
        .borrow()
        .pods
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(pods, [old], "no pod of the new revision on this node");
}
