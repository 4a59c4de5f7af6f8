//! Starting the node loop after a (re)start: loading sources and pod records from the store,
//! re-adopting the containers that kept running, removing containers and network namespaces
//! that belong to no pod, and what pod networking's repair pass needs to know.

use super::Core;
use super::Sources;
use crate::config::AgentConfig;
use crate::events::Events;
use crate::pod::{Millis, PodRecord};
use crate::reconciler::backoff::Backoff;
use crate::store::Store;
use skiff_cni::PodNetwork;
use skiff_runtime::container::{ContainerRuntime, ContainerState};
use skiff_runtime::image::ImageStore;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::watch;

impl<N: PodNetwork + 'static> Core<N> {
    /// Loads sources and pods from the store, checks what survived (re-adoption), and removes
    /// containers and namespaces that belong to no pod.
    pub fn load(
        config: AgentConfig,
        store: Store,
        images: ImageStore,
        runtime: Arc<dyn ContainerRuntime>,
        network: Option<Arc<N>>,
        clock: crate::pod::Clock,
    ) -> anyhow::Result<Core<N>> {
        let sources = Sources::load(&store, config.manifest_settle.as_millis() as Millis)?
            .with_node_port_range(config.service_node_port_range);
        let pods: Vec<PodRecord> = store.pods()?;
        let now = clock();
        let image_state = super::images::present_images(&images)?;
        let mut core = Core {
            crash: Backoff {
                base: config.crash_backoff_base,
                max: config.crash_backoff_max,
                reset_after: config.crash_backoff_reset,
            },
            pull: Backoff {
                base: config.image_pull_backoff_base,
                max: config.crash_backoff_max,
                reset_after: config.crash_backoff_reset,
            },
            sandbox: Backoff {
                base: config.sandbox_backoff_base,
                max: config.crash_backoff_max,
                reset_after: config.crash_backoff_reset,
            },
            objects: Arc::new(BTreeMap::new()),
            first_seen: Arc::new(BTreeMap::new()),
            pods: pods
                .into_iter()
                .map(|p| (p.uid.clone(), Arc::new(p)))
                .collect(),
            image_state,
            in_flight: HashSet::new(),
            probing: Default::default(),
            dirty: BTreeSet::new(),
            events: Events::default(),
            started_at: now,
            desired_changed: true,
            log_space: (0, false),
            volume_check: (0, false),
            store_watch: Default::default(),
            writer: None,
            forgotten: BTreeSet::new(),
            unreleased: BTreeSet::new(),
            failing: HashMap::new(),
            observing: false,
            observe_again: false,
            exit_watched: BTreeSet::new(),
            declared: watch::channel(Arc::new(BTreeMap::new())).0,
            assigned: None,
            pending: Arc::default(),
            service_links: Arc::default(),
            reports: watch::channel(Arc::new(BTreeMap::new())).0,
            report_cache: HashMap::new(),
            volume_marks: HashMap::new(),
            config,
            store,
            images,
            runtime,
            network,
            clock,
            sources,
        };
        core.refresh_declared();
        core.adopt();
        // The first snapshot the API serves should not claim containers that died meanwhile.
        let read = super::read_states(core.runtime.as_ref(), core.observation_targets());
        core.on_observation(read, now);
        Ok(core)
    }

    /// After a restart: sandboxes whose namespace vanished (reboot) are made again; containers
    /// and namespaces that belong to no pod are removed.
    fn adopt(&mut self) {
        let mut known: HashSet<String> = HashSet::new();
        let mut adopted = 0;
        for pod in self.pods.values_mut().map(Arc::make_mut) {
            for c in pod
                .status
                .init_containers
                .iter()
                .chain(pod.status.containers.iter())
            {
                if let Some(i) = &c.current {
                    known.insert(i.id.clone());
                    if matches!(
                        self.runtime.state(&i.id),
                        Ok(ContainerState::Running { .. })
                    ) {
                        adopted += 1;
                    }
                }
            }
            known.extend(pod.status.pending_removal.iter().cloned());
            if pod.status.sandbox_ready && !pod.plan.host_network {
                let ns = self
                    .config
                    .netns_dir
                    .join(format!("{}{}", self.config.netns_prefix, pod.uid));
                if !ns.exists() {
                    pod.status.sandbox_ready = false;
                    self.dirty.insert(pod.uid.clone());
                }
            }
        }
        if adopted > 0 {
            tracing::info!("re-adopted {adopted} running container(s)");
        }
        match self.runtime.list() {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !known.contains(id)) {
                    tracing::info!("removing orphaned container {id}");
                    if let Err(e) = self.runtime.remove(&id) {
                        tracing::warn!("remove orphaned container {id}: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list containers: {e}"),
        }
        let prefix = &self.config.netns_prefix;
        if self.network.is_some() {
            // Pod networking's gc (run at start-up) owns namespaces, links and leases.
        } else if let Ok(names) = skiff_cni::list_netns(&self.config.netns_dir, prefix) {
            for name in names {
                let uid = name.trim_start_matches(prefix.as_str());
                if !self.pods.contains_key(uid) {
                    tracing::info!("removing orphaned network namespace {name}");
                    let _ = skiff_cni::remove_netns(&self.config.netns_dir, &name);
                }
            }
        }
    }

    /// Uids of every pod on the node (for pod networking's gc).
    pub fn pod_uids(&self) -> std::collections::BTreeSet<String> {
        self.pods.keys().cloned().collect()
    }

    /// Network requests of the pods whose networked sandbox was made and that still run
    /// (for the repair pass at start).
    pub fn wired_pod_requests(&self) -> Vec<skiff_cni::PodNetRequest> {
        self.pods
            .values()
            .filter(|p| p.status.sandbox_ready && !p.plan.host_network)
            .filter(|p| p.deleting_since.is_none() && p.status.network.is_some())
            .map(|p| super::execute::pod_net_request(&self.config, p))
            .collect()
    }

    /// Network requests and addresses of every pod that holds an address (to re-lease them
    /// after the store was rebuilt).
    pub fn leased_pod_requests(&self) -> Vec<(skiff_cni::PodNetRequest, std::net::Ipv4Addr)> {
        self.pods
            .values()
            .filter(|p| !p.plan.host_network)
            .filter_map(|p| {
                let ip = p.status.network.as_ref()?.ip.parse().ok()?;
                Some((super::execute::pod_net_request(&self.config, p), ip))
            })
            .collect()
    }
}
