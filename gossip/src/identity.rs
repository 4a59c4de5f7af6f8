//! A node's cluster identity on disk: the CA certificate, this node's certificate and key, and on
//! the node that created the cluster also the CA key (which lets it sign joiners and issue tokens).
//!
//! Layout under `<data_dir>/tls/`: `ca.pem`, `ca-key.pem` (issuer only), `node.pem`,
//! `node-key.pem`, `tokens.json` (issuer only). Keys and token records are written 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::IdentityError;
use crate::pki;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
const NODE_CERT: &str = "node.pem";
const NODE_KEY: &str = "node-key.pem";
const NODE_NAME: &str = "node-name";

/// Everything a node needs for mutual TLS with its cluster.
pub struct NodeIdentity {
    node_name: String,
    data_dir: PathBuf,
    ca_cert: CertificateDer<'static>,
    node_cert: CertificateDer<'static>,
    node_key: PrivateKeyDer<'static>,
    ca_key_pem: Option<String>,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        Self {
            node_name: self.node_name.clone(),
            data_dir: self.data_dir.clone(),
            ca_cert: self.ca_cert.clone(),
            node_cert: self.node_cert.clone(),
            node_key: self.node_key.clone_key(),
            ca_key_pem: self.ca_key_pem.clone(),
        }
    }
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_name", &self.node_name)
            .field("cluster_id", &self.cluster_id())
            .field("can_issue", &self.can_issue())
            .finish_non_exhaustive()
    }
}

pub(crate) fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

impl NodeIdentity {
    /// Loads the identity stored in `data_dir`, or `None` if this node never created or joined a
    /// cluster there.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, IdentityError> {
        let dir = tls_dir(data_dir);
        if !dir.join(NODE_CERT).exists() {
            return Ok(None);
        }
        let ca_cert = read_cert(&dir.join(CA_CERT))?;
        let node_cert = read_cert(&dir.join(NODE_CERT))?;
        let node_key = read_key(&dir.join(NODE_KEY))?;
        let ca_key_path = dir.join(CA_KEY);
        let ca_key_pem = if ca_key_path.exists() {
            Some(read_string(&ca_key_path)?)
        } else {
            None
        };
        let name_path = dir.join(NODE_NAME);
        let node_name = read_string(&name_path)?.trim().to_string();
        pki::validate_node_name(&node_name).map_err(|_| IdentityError::Parse {
            path: name_path,
            what: "node name",
        })?;
        Ok(Some(Self {
            node_name,
            data_dir: data_dir.to_path_buf(),
            ca_cert,
            node_cert,
            node_key,
            ca_key_pem,
        }))
    }

    /// Starts a new cluster: creates the CA and this node's certificate in `data_dir`.
    /// If an identity already exists there it is loaded instead (its name must match).
    pub fn load_or_create_cluster(data_dir: &Path, node_name: &str) -> Result<Self, IdentityError> {
        pki::validate_node_name(node_name)?;
        if let Some(existing) = Self::load(data_dir)? {
            return existing.expect_name(node_name);
        }
        let ca = pki::new_ca()?;
        let node = pki::issue_node_cert(&ca.cert_pem, &ca.key_pem, node_name)?;
        let dir = tls_dir(data_dir);
        create_private_dir(&dir)?;
        write_file(&dir.join(CA_KEY), ca.key_pem.as_bytes(), 0o600)?;
        write_file(&dir.join(CA_CERT), ca.cert_pem.as_bytes(), 0o644)?;
        write_file(&dir.join(NODE_KEY), node.key_pem.as_bytes(), 0o600)?;
        write_file(&dir.join(NODE_NAME), node_name.as_bytes(), 0o644)?;
        // node.pem last: its presence marks a complete identity.
        write_file(&dir.join(NODE_CERT), node.cert_pem.as_bytes(), 0o644)?;
        Self::load(data_dir)?.ok_or(IdentityError::Parse {
            path: dir.join(NODE_CERT),
            what: "node certificate",
        })
    }

    /// Stores an identity obtained by joining (no CA key) and loads it back.
    pub(crate) fn store_joined(
        data_dir: &Path,
        node_name: &str,
        ca_cert: &[u8],
        node_cert: &[u8],
        node_key_pem: &str,
    ) -> Result<Self, IdentityError> {
        let dir = tls_dir(data_dir);
        create_private_dir(&dir)?;
        write_file(
            &dir.join(CA_CERT),
            pki::to_pem("CERTIFICATE", ca_cert).as_bytes(),
            0o644,
        )?;
        write_file(&dir.join(NODE_KEY), node_key_pem.as_bytes(), 0o600)?;
        write_file(&dir.join(NODE_NAME), node_name.as_bytes(), 0o644)?;
        write_file(
            &dir.join(NODE_CERT),
            pki::to_pem("CERTIFICATE", node_cert).as_bytes(),
            0o644,
        )?;
        Self::load(data_dir)?.ok_or(IdentityError::Parse {
            path: dir.join(NODE_CERT),
            what: "node certificate",
        })
    }

    pub(crate) fn expect_name(self, requested: &str) -> Result<Self, IdentityError> {
        if self.node_name == requested {
            Ok(self)
        } else {
            Err(IdentityError::NameMismatch {
                path: self.data_dir.clone(),
                existing: self.node_name,
                requested: requested.to_string(),
            })
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// SHA-256 of the CA certificate: what join tokens pin.
    pub fn ca_fingerprint(&self) -> [u8; 32] {
        pki::fingerprint(&self.ca_cert)
    }

    /// Cluster id gossiped by chitchat: derived from the CA, so two clusters never mix.
    pub fn cluster_id(&self) -> String {
        format!("skiff-{}", &hex::encode(self.ca_fingerprint())[..16])
    }

    /// True on the node that holds the CA key (it can sign joiners and issue tokens).
    pub fn can_issue(&self) -> bool {
        self.ca_key_pem.is_some()
    }

    /// Says what is wrong if `now` (this node's clock) is outside the validity of this node's
    /// certificate or the CA's: mutual TLS with the other nodes then fails on this node.
    pub fn clock_problem(&self, now: std::time::SystemTime) -> Option<String> {
        let clock = humantime::format_rfc3339_seconds(now);
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for (what, der) in [("node", &self.node_cert), ("cluster CA", &self.ca_cert)] {
            let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
                continue;
            };
            let validity = cert.validity();
            let (from, until) = (validity.not_before, validity.not_after);
            if secs < from.timestamp() {
                return Some(format!(
                    "certificate not valid yet (node clock {clock}, the {what} certificate is \
                     valid from {from}): set this node's clock (NTP or RTC); until then no \
                     other node can be reached"
                ));
            }
            if secs > until.timestamp() {
                return Some(format!(
                    "certificate expired (node clock {clock}, the {what} certificate was valid \
                     until {until}): check this node's clock"
                ));
            }
        }
        None
    }

    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca_cert
    }

    pub(crate) fn node_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.node_cert.clone(), self.ca_cert.clone()]
    }

    pub(crate) fn node_key(&self) -> PrivateKeyDer<'static> {
        self.node_key.clone_key()
    }

    pub(crate) fn ca_pems(&self) -> Option<(String, &str)> {
        let key = self.ca_key_pem.as_deref()?;
        Some((pki::to_pem("CERTIFICATE", &self.ca_cert), key))
    }
}

/// The key of a node that has not joined yet: the one kept by an earlier attempt, else a new
/// one, written (0600) before it is used so that a retry presents the same key.
pub(crate) fn load_or_create_pending_key(data_dir: &Path) -> Result<String, IdentityError> {
    let dir = tls_dir(data_dir);
    let path = dir.join(NODE_KEY);
    if let Ok(pem) = fs::read_to_string(&path)
        && rcgen::KeyPair::from_pem(&pem).is_ok()
    {
        return Ok(pem);
    }
    let pem = pki::new_key_pem()?;
    create_private_dir(&dir)?;
    write_file(&path, pem.as_bytes(), 0o600)?;
    Ok(pem)
}

fn read_string(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    let text = read_string(path)?;
    rustls_pemfile::certs(&mut text.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or(IdentityError::Parse {
            path: path.to_path_buf(),
            what: "certificate",
        })
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let text = read_string(path)?;
    rustls_pemfile::private_key(&mut text.as_bytes())
        .ok()
        .flatten()
        .ok_or(IdentityError::Parse {
            path: path.to_path_buf(),
            what: "private key",
        })
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    let write_err = |source| IdentityError::Write {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(write_err)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(write_err)
}

/// Writes a file atomically (temporary file + rename) with the given mode.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let write_err = |source| IdentityError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_err)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_keeps_keys_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let created = NodeIdentity::load_or_create_cluster(dir.path(), "n1").expect("create");
        assert!(created.can_issue());
        let loaded = NodeIdentity::load(dir.path())
            .expect("load")
            .expect("present");
        assert_eq!(loaded.ca_fingerprint(), created.ca_fingerprint());
        for key in [CA_KEY, NODE_KEY] {
            let mode = fs::metadata(tls_dir(dir.path()).join(key))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let again = NodeIdentity::load_or_create_cluster(dir.path(), "n1").expect("reload");
        assert_eq!(again.cluster_id(), created.cluster_id());
        let err = NodeIdentity::load_or_create_cluster(dir.path(), "other").unwrap_err();
        assert!(
            err.to_string().contains("already holds the identity"),
            "{err}"
        );
    }

    #[test]
    fn a_pending_key_is_kept_for_the_next_attempt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_pending_key(dir.path()).expect("key");
        let mode = fs::metadata(tls_dir(dir.path()).join(NODE_KEY))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_or_create_pending_key(dir.path()).expect("again"),
            first
        );
        assert!(
            NodeIdentity::load(dir.path()).expect("load").is_none(),
            "not joined yet"
        );
        fs::write(tls_dir(dir.path()).join(NODE_KEY), "garbage").expect("write");
        let replaced = load_or_create_pending_key(dir.path()).expect("new key");
        assert_ne!(replaced, first);
    }

    #[test]
    fn a_clock_outside_the_certificates_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = NodeIdentity::load_or_create_cluster(dir.path(), "n1").expect("create");
        let at = |secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(id.clock_problem(at(1_796_000_000)), None, "2026");
        let early = id.clock_problem(at(1_600_000_000)).expect("2020");
        assert!(
            early.starts_with("certificate not valid yet (node clock 2020-09-13T12:26:40Z"),
            "{early}"
        );
        let late = id.clock_problem(at(7_258_118_400)).expect("2200");
        assert!(
            late.starts_with("certificate expired (node clock 2200-"),
            "{late}"
        );
    }

    #[test]
    fn name_mismatch_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        NodeIdentity::load_or_create_cluster(dir.path(), "n1").expect("create");
        let err = NodeIdentity::load_or_create_cluster(dir.path(), "other").unwrap_err();
        assert!(
            err.to_string().contains("already holds the identity"),
            "{err}"
        );
    }
}
