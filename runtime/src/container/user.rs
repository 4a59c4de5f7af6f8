//! Resolves a user string (`1000`, `1000:1000`, `nobody`, `app:staff`) against the rootfs
//! `/etc/passwd` and `/etc/group`.

use std::path::Path;

/// Numeric identity the container process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads `<rootfs>/etc/<name>`, refusing symlinks (they could point outside the rootfs).
fn read_etc(rootfs: &Path, name: &str) -> String {
    let etc = rootfs.join("etc");
    let file = etc.join(name);
    let is_plain =
        |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink());
    if !is_plain(&etc) || !is_plain(&file) {
        return String::new();
    }
    std::fs::read_to_string(file).unwrap_or_default()
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A `user` (`name`, `uid`, `uid:gid`, `name:group`) the image cannot resolve.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("user {user:?}: {source}")]
    BadUid {
        user: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("group {0:?} not found in the image's /etc/group")]
    UnknownGroup(String),
}

/// Resolves `user` using the rootfs databases. Empty means root.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, UserError> {
    resolve_with(
        user,
        &read_etc(rootfs, "passwd"),
        &read_etc(rootfs, "group"),
    )
}

fn resolve_with(user: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.uid == uid),
        Err(_) => Some(
            users
                .iter()
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::UnknownUser(user_part.to_string()))?,
        ),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user_part
            .parse::<u32>()
            .map_err(|source| UserError::BadUid {
                user: user_part.to_string(),
                source,
            })?,
    };
    let gid = match group_part {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
        },
        _ => entry.map_or(0, |e| e.gid),
    };
    let mut additional_gids: Vec<u32> = match (entry, group_part) {
        (Some(e), None) => groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == &e.name) && g.gid != gid)
            .map(|g| g.gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1001:\nstaff:x:50:app,other\n";

    fn r(user: &str) -> Result<ResolvedUser, UserError> {
        resolve_with(user, PASSWD, GROUP)
    }

    #[test]
    fn table() {
        let u = |uid, gid, extra: &[u32]| {
            Ok(ResolvedUser {
                uid,
                gid,
                additional_gids: extra.to_vec(),
            })
        };
        assert_eq!(r(""), u(0, 0, &[]));
        assert_eq!(r("1000"), u(1000, 1001, &[50]));
        assert_eq!(r("1000:1000"), u(1000, 1000, &[]));
        assert_eq!(r("nobody"), u(65534, 65534, &[]));
        assert_eq!(r("app:staff"), u(1000, 50, &[]));
        assert_eq!(r("4242"), u(4242, 0, &[]));
        assert_eq!(r("4242:7"), u(4242, 7, &[]));
        assert!(r("ghost").is_err());
        assert!(r("app:ghosts").is_err());
    }
}
