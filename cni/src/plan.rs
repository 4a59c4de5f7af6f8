//! The pure setup, teardown and gc planner: observed state in, a list of idempotent actions out.
//! No IO here; the executor (`NetlinkNetwork`, `FakeNetwork`) observes and applies.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Where the pod end of the veth stands, seen from inside the pod namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodIface {
    /// Not inside the pod (or the pod namespace does not exist).
    #[default]
    Absent,
    /// Moved in but not yet renamed.
    TempName,
    /// Renamed to eth0; `configured` = up, addressed and routed.
    Eth0 { configured: bool },
}

/// The host end of the veth, seen from the node namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLinkState {
    /// On the bridge and up.
    pub attached: bool,
}

/// What exists for one pod right now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedPod {
    /// The IPAM record exists and matches the request (ports, names).
    pub record_current: bool,
    /// The pod has an IPAM record at all (teardown must release it).
    pub record_exists: bool,
    /// The namespace file is a mounted namespace.
    pub netns: bool,
    /// The namespace file exists (mounted or a leftover).
    pub netns_file: bool,
    pub host_link: Option<HostLinkState>,
    /// The pod end still sits in the node namespace under its temporary name.
    pub temp_peer_in_node: bool,
    pub pod_iface: PodIface,
    /// hosts and resolv.conf hold what they should.
    pub files_current: bool,
    /// Any of the two files exists.
    pub files_exist: bool,
    /// The nftables host port elements equal the request.
    pub ports_current: bool,
    /// Some nftables host port element points at the pod's address.
    pub ports_exist: bool,
}

/// One idempotent step on one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Lease an address and record the pod (first, so everything later is findable).
    Allocate,
    CreateNetns,
    /// Delete the host end (the pod end goes with it).
    DeleteHostLink,
    /// Create the pair with the pod end (temporary name) already inside the pod namespace.
    CreateVeth,
    /// Move a pod end found in the node namespace (left by older versions) into the pod.
    MovePeerToNetns,
    AttachHostLink,
    ConfigurePodIface,
    WriteFiles,
    PublishPorts,
    UnpublishPorts,
    RemoveNetns,
    RemoveFiles,
    /// Free the address and forget the pod (last, for the same reason).
    Release,
}

/// Steps that bring one pod from `observed` to fully wired.
pub fn plan_setup(observed: &ObservedPod) -> Vec<Action> {
    use Action::*;
    let mut actions = Vec::new();
    if !observed.record_current {
        actions.push(Allocate);
    }
    let fresh_veth = [CreateVeth, AttachHostLink, ConfigurePodIface];
    if !observed.netns {
        // Without its namespace the pod end is gone; a host end left over is stale.
        if observed.host_link.is_some() || observed.temp_peer_in_node {
            actions.push(DeleteHostLink);
        }
        actions.push(CreateNetns);
        actions.extend(fresh_veth);
    } else {
        match (
            observed.host_link,
            observed.temp_peer_in_node,
            observed.pod_iface,
        ) {
            (None, false, _) => actions.extend(fresh_veth),
            (None, true, _) => {
                actions.push(DeleteHostLink);
                actions.extend(fresh_veth);
            }
            (Some(_), true, _) => {
                actions.extend([MovePeerToNetns, AttachHostLink, ConfigurePodIface])
            }
            (Some(_), false, PodIface::Absent) => {
                actions.push(DeleteHostLink);
                actions.extend(fresh_veth);
            }
            (Some(host), false, iface) => {
                if !host.attached {
                    actions.push(AttachHostLink);
                }
                if iface != (PodIface::Eth0 { configured: true }) {
                    actions.push(ConfigurePodIface);
                }
            }
        }
    }
    if !observed.files_current {
        actions.push(WriteFiles);
    }
    if !observed.ports_current {
        actions.push(PublishPorts);
    }
    actions
}

/// Steps that remove everything of one pod; the record goes last.
pub fn plan_teardown(observed: &ObservedPod) -> Vec<Action> {
    use Action::*;
    let mut actions = Vec::new();
    if observed.ports_exist {
        actions.push(UnpublishPorts);
    }
    if observed.host_link.is_some() || observed.temp_peer_in_node {
        actions.push(DeleteHostLink);
    }
    if observed.netns_file {
        actions.push(RemoveNetns);
    }
    if observed.files_exist {
        actions.push(RemoveFiles);
    }
    if observed.record_exists {
        actions.push(Release);
    }
    actions
}

/// What the node holds, for gc.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedNode {
    /// Pod ids with an IPAM record.
    pub recorded_pods: BTreeSet<String>,
    /// Host link names with our prefix, and the names the recorded pods own.
    pub links: BTreeSet<String>,
    pub owned_links: BTreeSet<String>,
    /// Namespace files with our netns prefix, and the ones recorded pods own.
    pub netns_files: BTreeSet<String>,
    pub owned_netns: BTreeSet<String>,
    /// Addresses nftables host ports point at, and the recorded pods' addresses.
    pub published_ips: BTreeSet<Ipv4Addr>,
    pub leased_ips: BTreeSet<Ipv4Addr>,
}

/// One gc step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GcAction {
    /// Tear down a recorded pod nobody expects.
    TeardownPod(String),
    /// Delete a link with our prefix that no recorded pod owns.
    DeleteLink(String),
    /// Remove a namespace with our prefix that no recorded pod owns.
    RemoveNetns(String),
    /// Remove host port elements pointing at an address nobody leases.
    UnpublishIp(Ipv4Addr),
}

/// Orphans: recorded pods not in `known`, and resources with our prefixes owned by no record.
/// Resources of pods being torn down are not listed twice.
pub fn plan_gc(known: &BTreeSet<String>, node: &ObservedNode) -> Vec<GcAction> {
    let mut actions: Vec<GcAction> = node
        .recorded_pods
        .difference(known)
        .cloned()
        .map(GcAction::TeardownPod)
        .collect();
    actions.extend(
        node.links
            .difference(&node.owned_links)
            .cloned()
            .map(GcAction::DeleteLink),
    );
    actions.extend(
        node.netns_files
            .difference(&node.owned_netns)
            .cloned()
            .map(GcAction::RemoveNetns),
    );
    actions.extend(
        node.published_ips
            .difference(&node.leased_ips)
            .copied()
            .map(GcAction::UnpublishIp),
    );
    actions
}

#[cfg(test)]
mod tests {
    use super::Action::*;
    use super::*;

    fn done() -> ObservedPod {
        ObservedPod {
            record_current: true,
            record_exists: true,
            netns: true,
            netns_file: true,
            host_link: Some(HostLinkState { attached: true }),
            temp_peer_in_node: false,
            pod_iface: PodIface::Eth0 { configured: true },
            files_current: true,
            files_exist: true,
            ports_current: true,
            ports_exist: true,
        }
    }

    #[test]
    fn setup_table() {
        let attached = Some(HostLinkState { attached: true });
        let detached = Some(HostLinkState { attached: false });
        let nothing = ObservedPod {
            ports_current: true, // a pod without host ports
            ..ObservedPod::default()
        };
        let cases: Vec<(&str, ObservedPod, Vec<Action>)> = vec![
            ("fully wired", done(), vec![]),
            (
                "nothing yet",
                nothing.clone(),
                vec![
                    Allocate,
                    CreateNetns,
                    CreateVeth,
                    AttachHostLink,
                    ConfigurePodIface,
                    WriteFiles,
                ],
            ),
            (
                "crash after allocate",
                ObservedPod {
                    record_current: true,
                    record_exists: true,
                    ..nothing.clone()
                },
                vec![
                    CreateNetns,
                    CreateVeth,
                    AttachHostLink,
                    ConfigurePodIface,
                    WriteFiles,
                ],
            ),
            (
                "crash after veth creation",
                ObservedPod {
                    netns: true,
                    host_link: detached,
                    temp_peer_in_node: true,
                    ..done()
                },
                vec![MovePeerToNetns, AttachHostLink, ConfigurePodIface],
            ),
            (
                "crash after move",
                ObservedPod {
                    host_link: detached,
                    pod_iface: PodIface::TempName,
                    ..done()
                },
                vec![AttachHostLink, ConfigurePodIface],
            ),
            (
                "eth0 not configured",
                ObservedPod {
                    host_link: attached,
                    pod_iface: PodIface::Eth0 { configured: false },
                    ..done()
                },
                vec![ConfigurePodIface],
            ),
            (
                "netns lost, host link stale",
                ObservedPod {
                    netns: false,
                    pod_iface: PodIface::Absent,
                    ..done()
                },
                vec![
                    DeleteHostLink,
                    CreateNetns,
                    CreateVeth,
                    AttachHostLink,
                    ConfigurePodIface,
                ],
            ),
            (
                "host link without a peer",
                ObservedPod {
                    pod_iface: PodIface::Absent,
                    ..done()
                },
                vec![
                    DeleteHostLink,
                    CreateVeth,
                    AttachHostLink,
                    ConfigurePodIface,
                ],
            ),
            (
                "ports changed",
                ObservedPod {
                    record_current: false,
                    ports_current: false,
                    ..done()
                },
                vec![Allocate, PublishPorts],
            ),
            (
                "files lost",
                ObservedPod {
                    files_current: false,
                    ..done()
                },
                vec![WriteFiles],
            ),
        ];
        for (name, observed, want) in cases {
            assert_eq!(plan_setup(&observed), want, "{name}");
        }
    }

    #[test]
    fn teardown_table() {
        let cases: Vec<(&str, ObservedPod, Vec<Action>)> = vec![
            (
                "fully wired",
                done(),
                vec![
                    UnpublishPorts,
                    DeleteHostLink,
                    RemoveNetns,
                    RemoveFiles,
                    Release,
                ],
            ),
            ("already gone", ObservedPod::default(), vec![]),
            (
                "crash after veth creation",
                ObservedPod {
                    record_exists: true,
                    netns_file: true,
                    temp_peer_in_node: true,
                    host_link: Some(HostLinkState { attached: false }),
                    ..ObservedPod::default()
                },
                vec![DeleteHostLink, RemoveNetns, Release],
            ),
            (
                "only the record",
                ObservedPod {
                    record_exists: true,
                    ..ObservedPod::default()
                },
                vec![Release],
            ),
        ];
        for (name, observed, want) in cases {
            assert_eq!(plan_teardown(&observed), want, "{name}");
        }
    }

    #[test]
    fn gc_table() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        let node = ObservedNode {
            recorded_pods: set(&["a", "b"]),
            links: set(&["ska", "skb", "skx", "skxp"]),
            owned_links: set(&["ska", "skb", "skap", "skbp"]),
            netns_files: set(&["p-a", "p-b", "p-x"]),
            owned_netns: set(&["p-a", "p-b"]),
            published_ips: [ip("198.18.5.2"), ip("198.18.5.9")].into(),
            leased_ips: [ip("198.18.5.2"), ip("198.18.5.3")].into(),
        };
        assert_eq!(
            plan_gc(&set(&["a"]), &node),
            vec![
                GcAction::TeardownPod("b".into()),
                GcAction::DeleteLink("skx".into()),
                GcAction::DeleteLink("skxp".into()),
                GcAction::RemoveNetns("p-x".into()),
                GcAction::UnpublishIp(ip("198.18.5.9")),
            ]
        );
        assert_eq!(plan_gc(&set(&["a", "b"]), &ObservedNode::default()), vec![]);
    }
}
