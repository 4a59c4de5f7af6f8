//! All nftables in one place: our own `ip` table with masquerade for pod egress and a
//! host-port DNAT map (`protocol . hostPort : podIP . containerPort`), driven through the `nft`
//! tool. Per-pod rules are map elements, so they are added and removed one by one; the whole
//! table goes with `delete table`. Run these on a thread inside the node namespace.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::config::{HostPortMapping, NetworkConfig, Protocol};
use crate::error::CniError;

const MAP: &str = "hostports";

/// One element of the host port map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedPort {
    pub protocol: Protocol,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

/// The table text: base chains flushed and refilled, so running it again converges (and a
/// changed masquerade flag takes effect) without touching the map's elements.
pub fn table_script(cfg: &NetworkConfig) -> String {
    let t = &cfg.nft_table;
    let subnet = cfg.subnet;
    let keep = cfg.no_masquerade_to();
    let mut s = format!(
        "add table ip {t}\n\
         add map ip {t} {MAP} {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         add chain ip {t} hostports\n\
         flush chain ip {t} prerouting\n\
         flush chain ip {t} output\n\
         flush chain ip {t} postrouting\n\
         flush chain ip {t} hostports\n\
         add rule ip {t} prerouting fib daddr type local jump hostports\n\
         add rule ip {t} output fib daddr type local jump hostports\n\
         add rule ip {t} hostports dnat ip to meta l4proto . th dport map @{MAP}\n\
         add rule ip {t} postrouting ip saddr {subnet} ip daddr {subnet} ct status dnat masquerade\n"
    );
    if cfg.masquerade {
        s.push_str(&format!(
            "add rule ip {t} postrouting ip saddr {subnet} ip daddr != {keep} masquerade\n"
        ));
    }
    s
}

/// Creates or refreshes our table.
pub fn ensure_table(cfg: &NetworkConfig) -> Result<(), CniError> {
    run_script("ensure table", &table_script(cfg)).map(drop)
}

/// Deletes our table and everything in it. A missing table is fine.
pub fn delete_table(table: &str) -> Result<(), CniError> {
    let script = format!("add table ip {table}\ndelete table ip {table}\n");
    run_script("delete table", &script).map(drop)
}

/// Whether our `ip` table `table` exists (names only: `nft list tables`).
pub fn table_exists(table: &str) -> Result<bool, CniError> {
    let out = Command::new("nft")
        .args(["list", "tables", "ip"])
        .output()
        .map_err(|e| CniError::io("run", "nft", e))?;
    if !out.status.success() {
        return Err(CniError::Nft {
            action: "list tables".to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let wanted = format!("table ip {table}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == wanted))
}

/// The host port map's elements; no table means none.
pub fn list_published(table: &str) -> Result<Vec<PublishedPort>, CniError> {
    let out = Command::new("nft")
        .args(["-j", "list", "map", "ip", table, MAP])
        .output()
        .map_err(|e| CniError::io("run", "nft", e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(Vec::new());
        }
        return Err(CniError::Nft {
            action: "list host ports".into(),
            stderr: stderr.trim().to_owned(),
        });
    }
    Ok(parse_elements(&String::from_utf8_lossy(&out.stdout)))
}

/// Makes the map hold exactly `ports` for `pod_ip`: stale elements of that address are
/// removed and the wanted ones added, in one transaction.
pub fn publish(
    cfg: &NetworkConfig,
    pod_ip: Ipv4Addr,
    ports: &[HostPortMapping],
) -> Result<(), CniError> {
    let t = &cfg.nft_table;
    let current = list_published(t)?;
    let wanted: Vec<PublishedPort> = ports
        .iter()
        .map(|p| PublishedPort {
            protocol: p.protocol,
            host_port: p.host_port,
            pod_ip,
            container_port: p.container_port,
        })
        .collect();
    let mut script = String::new();
    for element in current
        .iter()
        .filter(|e| e.pod_ip == pod_ip && !wanted.contains(e))
    {
        script.push_str(&format!(
            "delete element ip {t} {MAP} {{ {} }}\n",
            key(element)
        ));
    }
    for element in wanted.iter().filter(|w| !current.contains(w)) {
        script.push_str(&format!(
            "add element ip {t} {MAP} {{ {} : {} . {} }}\n",
            key(element),
            element.pod_ip,
            element.container_port
        ));
    }
    if script.is_empty() {
        return Ok(());
    }
    run_script("publish host ports", &script).map(drop)
}

/// Removes every element pointing at `pod_ip`.
pub fn unpublish_ip(table: &str, pod_ip: Ipv4Addr) -> Result<(), CniError> {
    let script: String = list_published(table)?
        .iter()
        .filter(|e| e.pod_ip == pod_ip)
        .map(|e| format!("delete element ip {table} {MAP} {{ {} }}\n", key(e)))
        .collect();
    if script.is_empty() {
        return Ok(());
    }
    run_script("unpublish host ports", &script).map(drop)
}

fn key(e: &PublishedPort) -> String {
    format!("{} . {}", e.protocol, e.host_port)
}

/// Runs an `nft -f -` script (one transaction); returns its output.
pub fn run(action: &str, script: &str) -> Result<String, CniError> {
    run_script(action, script)
}

fn run_script(action: &str, script: &str) -> Result<String, CniError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::io("run", "nft", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| CniError::io("write script to", "nft", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io("wait for", "nft", e))?;
    if !out.status.success() {
        return Err(CniError::Nft {
            action: action.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads `nft -j list map` output: elements are `[{"concat":[proto,port]},{"concat":[ip,port]}]`.
pub fn parse_elements(json: &str) -> Vec<PublishedPort> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let items = value.get("nftables").and_then(|v| v.as_array());
    for item in items.into_iter().flatten() {
        let elems = item
            .get("map")
            .and_then(|m| m.get("elem"))
            .and_then(|e| e.as_array());
        for elem in elems.into_iter().flatten() {
            if let Some(parsed) = parse_element(elem) {
                out.push(parsed);
            }
        }
    }
    out
}

fn parse_element(elem: &serde_json::Value) -> Option<PublishedPort> {
    let pair = elem.as_array()?;
    let k = pair.first()?.get("concat")?.as_array()?;
    let v = pair.get(1)?.get("concat")?.as_array()?;
    let protocol = match k.first()?.as_str()? {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some(PublishedPort {
        protocol,
        host_port: u16::try_from(k.get(1)?.as_u64()?).ok()?,
        pod_ip: v.first()?.as_str()?.parse().ok()?,
        container_port: u16::try_from(v.get(1)?.as_u64()?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"map": {"family": "ip", "name": "hostports", "table": "t", "elem": [[{"concat": ["tcp", 8080]}, {"concat": ["198.18.5.2", 80]}], [{"concat": ["udp", 53]}, {"concat": ["198.18.5.3", 5353]}]]}}]}"#;
        let got = parse_elements(json);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].protocol, Protocol::Tcp);
        assert_eq!(got[0].host_port, 8080);
        assert_eq!(got[1].pod_ip, Ipv4Addr::new(198, 18, 5, 3));
        assert_eq!(got[1].container_port, 5353);
        assert!(parse_elements("not json").is_empty());
    }

    #[test]
    fn masquerade_flag_controls_the_rule() {
        let mut cfg = NetworkConfig::for_subnet("198.18.5.0/24".parse().expect("net"));
        cfg.nft_table = "t".into();
        assert!(table_script(&cfg).contains("ip daddr != 198.18.5.0/24 masquerade"));
        cfg.masquerade = false;
        assert!(!table_script(&cfg).contains("!= 198.18.5.0/24 masquerade"));
    }
}
