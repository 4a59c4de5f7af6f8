//! The command line: `skiff agent` and the client commands that talk to an agent over its socket.

pub mod commands;
pub mod exec;
pub mod output;
pub mod rollout;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// skiff: a daemonless, node-first container orchestrator for edge fleets.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, long_about = None)]
pub struct Cli {
    /// The agent's API socket [default: /run/skiff/skiff.sock]
    #[arg(long, global = true, env = "SKIFF_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent (a lone agent is a working single-node cluster)
    Agent(Box<AgentArgs>),
    /// List objects: pods, deployments, daemonsets, jobs, cronjobs, nodes, services, endpoints, events, namespaces, configmaps, secrets
    Get(GetArgs),
    /// Show one object in detail, with its recent events
    Describe(DescribeArgs),
    /// Print a container's logs
    Logs(LogsArgs),
    /// Run a command in a container of a pod on any node; exits with the command's code
    Exec(ExecArgs),
    /// Validate manifests and hand them to the agent
    Apply(ApplyArgs),
    /// Delete what a manifest declares, or one object by kind and name
    Delete(DeleteArgs),
    /// Make an object from another: `create job NAME --from=cronjob/NAME` runs a CronJob now
    #[command(subcommand)]
    Create(CreateCommand),
    /// Cluster summary: nodes, leader and term, workloads' health
    Status,
    /// Images in the node's store
    #[command(subcommand)]
    Image(ImageCommand),
    /// Join tokens for new nodes
    #[command(subcommand)]
    Token(TokenCommand),
    /// Cluster nodes: `node remove NAME` forgets a replaced device so its name can join again
    #[command(subcommand)]
    Node(NodeCommand),
    /// Set or remove labels of this agent's node: KEY=VALUE to set, KEY- to remove
    Label(LabelArgs),
    /// Set or remove taints of this agent's node: KEY[=VALUE]:EFFECT to set (NoSchedule,
    /// PreferNoSchedule, NoExecute), KEY:EFFECT- or KEY- to remove
    Taint(TaintArgs),
    /// Mark a node unschedulable
    Cordon { node: String },
    /// Mark a node schedulable again
    Uncordon { node: String },
    /// Cordon a node and move its pods elsewhere; waits until none is left there
    Drain {
        node: String,
        /// How long to wait for the pods to move
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Follow, pause, resume, restart, list and undo rollouts: `rollout status deployment/NAME`
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Set a Deployment's replica count cluster-wide: `scale deployment/NAME --replicas N`
    Scale(ScaleArgs),
    /// Developer tools used by `cargo xtask` (not a stable interface)
    #[command(subcommand, hide = true)]
    Dev(DevCommand),
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Replace every pod of a Deployment or DaemonSet as a rolling update (a new
    /// restartedAt annotation in its template)
    Restart {
        /// deployment/NAME or daemonset/NAME
        target: String,
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Hold a Deployment's rollout: template changes wait, the pods it has are kept
    Pause {
        /// deployment/NAME (or: deployment NAME)
        target: String,
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Let a paused Deployment roll out its template again
    Resume {
        /// deployment/NAME (or: deployment NAME)
        target: String,
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// The revisions of a Deployment's or DaemonSet's pod template kept cluster-wide
    /// (revisionHistoryLimit old ones beside the current one)
    History {
        /// deployment/NAME or daemonset/NAME
        target: String,
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Show this revision's pod template
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Bring back an older pod template (by default the previous revision) as a new revision.
    /// An object declared by a manifest file is rolled back too: the file then differs (an
    /// event says so) and its next change wins again
    Undo {
        /// deployment/NAME or daemonset/NAME
        target: String,
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The revision to go back to (0: the previous one)
        #[arg(long = "to-revision")]
        to_revision: Option<u64>,
    },
    /// Wait until the rollout is done; fail when the Deployment reports its progress deadline
    /// exceeded (progressDeadlineSeconds without progress), or after --timeout
    Status {
        /// deployment/NAME (or: deployment NAME)
        target: String,
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Give up after this long whatever the progress (e.g. 5m)
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Print where it stands once instead of waiting
        #[arg(short = 'w', long = "watch", default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
    },
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// deployment/NAME (or: deployment NAME)
    pub target: String,
    pub name: Option<String>,
    #[arg(long)]
    pub replicas: u32,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// A TOML config file; flags given here override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's name [default: the hostname]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Persistent state: local store, images, pod volumes and logs [default: /var/lib/skiff]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The watched manifests directory [default: /etc/skiff/manifests]
    #[arg(long, value_name = "DIR")]
    pub manifests_dir: Option<PathBuf>,
    /// Where the agent serves the CLI [default: /run/skiff/skiff.sock]
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,
    /// Volatile state cleared by a reboot: container state [default: /run/skiff]
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Gossip listen address (QUIC) [default: 0.0.0.0:7946]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The address other nodes reach this one on [default: the listen address]
    #[arg(long, value_name = "ADDR:PORT")]
    pub advertise: Option<SocketAddr>,
    /// A peer of an existing cluster to join (repeatable)
    #[arg(long, value_name = "ADDR:PORT")]
    pub join: Vec<String>,
    /// The join token printed by `skiff token create` on a cluster node (visible in `ps`:
    /// prefer --token-file)
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the join token from this file (surrounding whitespace is ignored)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Parent cgroup of all pods, absolute [default: /skiff]
    #[arg(long, value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Where pod network namespaces are bind-mounted [default: /run/netns]
    #[arg(long, value_name = "DIR")]
    pub netns_dir: Option<PathBuf>,
    /// Name prefix of this agent's network namespaces [default: skiff-]
    #[arg(long, value_name = "PREFIX")]
    pub netns_prefix: Option<String>,
    /// First crash-restart and image-pull retry delay in milliseconds, doubled up to 5 minutes
    /// [default: 10000]
    #[arg(long, value_name = "MS")]
    pub crash_backoff_base_ms: Option<u64>,
    /// First delay before a pod's sandbox (volumes, network) that could not be made is tried
    /// again, in milliseconds, doubled up to 5 minutes [default: 1000]
    #[arg(long, value_name = "MS")]
    pub sandbox_backoff_base_ms: Option<u64>,
    /// How long a node may be NotReady before its pods are placed on other nodes, in
    /// milliseconds [default: 1000]
    #[arg(long, value_name = "MS")]
    pub eviction_delay_ms: Option<u64>,
    /// Most processes one pod may run (its cgroup's pids.max); 0 means no limit [default: 4096]
    #[arg(long, value_name = "N")]
    pub pod_pids_limit: Option<u64>,
    /// Most pods the scheduler places on this node [default: 110]
    #[arg(long, value_name = "N")]
    pub max_pods: Option<u32>,
    /// Gossip timings: lan (a dead node is NotReady everywhere within about 2.6 s, about
    /// 0.4 KB/s per node at rest) or wan (slow or lossy links such as LTE) [default: lan]
    #[arg(long, value_name = "PROFILE", value_enum)]
    pub gossip_profile: Option<crate::config::GossipProfileName>,
    /// How long a manifest file that is broken, or declares fewer objects than before, must
    /// be quiet before it is acted on, in milliseconds [default: 2000]
    #[arg(long, value_name = "MS")]
    pub manifest_settle_ms: Option<u64>,
    /// Pod logs here instead of in the data dir (e.g. a separate partition)
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Rebuild a missing, empty or unopenable local store: re-adopt the running containers from
    /// the run dir (an unopenable file is moved aside, never deleted); objects come back from
    /// the manifests dir and the cluster
    #[arg(long)]
    pub recover_store: bool,
    /// This node's pod subnet [default: 10.42.0.0/24]
    #[arg(long, value_name = "CIDR")]
    pub pod_subnet: Option<ipnet::Ipv4Net>,
    /// The cluster's pod range, not masqueraded between nodes [default: 10.42.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
    /// Where Services' ClusterIPs come from; must not overlap the cluster CIDR
    /// [default: 10.43.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub service_cidr: Option<ipnet::Ipv4Net>,
    /// The node ports NodePort Services get (and a pinned nodePort must be in), FIRST-LAST;
    /// the same on every node, not holding the gossip port [default: 30000-32767]
    #[arg(long, value_name = "FIRST-LAST")]
    pub service_node_port_range: Option<skiff_manifests::NodePortRange>,
    /// The cluster DNS domain: Services are NAME.NAMESPACE.svc.DOMAIN
    /// [default: cluster.local]
    #[arg(long, value_name = "DOMAIN")]
    pub cluster_domain: Option<String>,
    /// The node's resolvers: the node's DNS relays names outside the cluster domain to them,
    /// and pods with dnsPolicy Default get them [default: /etc/resolv.conf]
    #[arg(long, value_name = "PATH")]
    pub resolv_conf: Option<PathBuf>,
    /// The node bridge pods attach to [default: skiff0]
    #[arg(long, value_name = "NAME")]
    pub bridge: Option<String>,
    /// Do not masquerade pod traffic leaving the cluster range
    #[arg(long)]
    pub no_masquerade: bool,
    /// Run the node side of pod networking inside this network namespace (for test beds)
    #[arg(long, value_name = "PATH")]
    pub node_netns: Option<PathBuf>,
    /// No pod networking: each pod gets a network namespace with loopback only
    #[arg(long)]
    pub no_pod_network: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// pods, deployments, daemonsets, nodes, services, endpoints, events, namespaces, configmaps, secrets, jobs, cronjobs
    pub kind: String,
    /// Only this object
    pub name: Option<String>,
    /// Namespace [default: default]
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// pod, node, service, job or cronjob
    pub kind: String,
    pub name: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// A Job from a CronJob's job template, run at once (as kubectl's)
    Job {
        name: String,
        /// cronjob/NAME
        #[arg(long)]
        from: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A pod name (or pod/NAME), or job/NAME for the Job's newest pod
    pub pod: String,
    /// The container (default: the pod's only or first container)
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing new lines
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example: skiff exec -it web-7d9c -- sh")]
pub struct ExecArgs {
    pub pod: String,
    /// The container (default: the pod's first container)
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass this terminal's input to the command
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (needs -i and a terminal here)
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The command and its arguments, after --
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A manifest file or a directory of them
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Parse and validate only; print what would change
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Delete what these manifest files declare
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// KIND NAME, e.g. `deployment web`
    pub target: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// Only `node` (or `nodes`, `no`)
    pub kind: String,
    /// The node: the agent's own (a node is the only writer of its metadata)
    pub name: String,
    /// KEY=VALUE to set, KEY- to remove
    #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
    pub changes: Vec<String>,
    /// Change labels that already have another value
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct TaintArgs {
    /// Only `node` (or `nodes`, `no`)
    pub kind: String,
    /// The node: the agent's own (a node is the only writer of its metadata)
    pub name: String,
    /// KEY[=VALUE]:EFFECT to set, KEY:EFFECT- or KEY- to remove
    #[arg(required = true, value_name = "KEY[=VALUE]:EFFECT|KEY[:EFFECT]-")]
    pub changes: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI or docker archive (skopeo copy, podman save)
    Import { file: PathBuf },
    /// Pull an image from a registry
    Pull { reference: String },
    /// List images
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a join token for a new node
    Create {
        /// How long the token can be used, e.g. 30m, 24h, 7d (at most 365d)
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// List join tokens: id, state, creation and expiry (never the secret)
    List,
    /// Revoke a join token by its id (as `token list` shows it)
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Forget a replaced or dead device on every node and free its name for joining
    Remove {
        name: String,
        /// Remove a node that is still Ready: it is cut off at once (its key is refused); to
        /// bring that device back, delete tls/ in its data dir and join it again
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Write the busybox test image as an OCI archive
    BuildTestImage {
        #[arg(long)]
        out: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn contract_spellings_parse() {
        for line in [
            "skiff agent --data-dir /tmp/d --manifests-dir /tmp/m --api-socket /tmp/s --cgroup-parent /x",
            "skiff --socket /tmp/s get pods -o wide",
            "skiff get deployments -A -o json",
            "skiff get pods web -n prod -o yaml",
            "skiff describe pod web",
            "skiff logs web -c app -f --tail 10",
            "skiff apply -f a.yaml --dry-run",
            "skiff delete -f a.yaml",
            "skiff delete deployment web -n prod",
            "skiff status",
            "skiff image import x.tar",
            "skiff image pull 127.0.0.1:5000/a:b",
            "skiff image ls",
            "skiff token create",
            "skiff token create --ttl 7d",
            "skiff token list",
            "skiff token revoke 0011223344556677",
            "skiff node remove n1",
            "skiff node remove n1 --force",
            "skiff agent --join 198.18.0.1:7946 --token-file /etc/skiff/token",
            "skiff label node n1 zone=a disk- --overwrite",
            "skiff cordon n1",
            "skiff drain n1",
        ] {
            let words: Vec<&str> = line.split_whitespace().collect();
            Cli::try_parse_from(words).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn token_and_token_file_are_exclusive() {
        let words = "skiff agent --token skiff1.x --token-file /t".split_whitespace();
        let err = Cli::try_parse_from(words).expect_err("both given");
        assert!(err.to_string().contains("cannot be used with"), "{err}");
    }
}
