//! Test support (feature `testing`): a real `docker-registry` (Debian package docker-registry)
//! on 127.0.0.1 with its storage in a temporary directory, stopped and removed on drop, and a
//! `skopeo` push helper. Used by this crate's tests and by the agent's.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the registry binary; `SKIFF_DOCKER_REGISTRY` overrides it.
pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// A running registry. Dropping it kills the process and deletes its storage.
#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    credentials: Option<(String, String)>,
}

impl TestRegistry {
    /// Starts a registry on a free loopback port and waits (up to 20 s) until `GET /v2/`
    /// answers 200.
    pub fn start() -> io::Result<Self> {
        Self::start_inner(None)
    }

    /// Like [`TestRegistry::start`], but every request needs HTTP basic auth with these
    /// credentials (htpasswd, bcrypt via python3's `crypt`). Pushes use them too.
    pub fn start_with_basic_auth(username: &str, password: &str) -> io::Result<Self> {
        Self::start_inner(Some((username.to_string(), password.to_string())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> io::Result<Self> {
        let binary =
            std::env::var("SKIFF_DOCKER_REGISTRY").unwrap_or_else(|_| DOCKER_REGISTRY.into());
        let dir = std::env::temp_dir().join(format!(
            "skiff-registry-{}-{}",
            std::process::id(),
            crate::image::blobs::unique_suffix()
        ));
        std::fs::create_dir_all(dir.join("data"))?;
        let htpasswd = match &credentials {
            Some((username, password)) => {
                let path = dir.join("htpasswd");
                std::fs::write(&path, format!("{username}:{}\n", bcrypt(password)?))?;
                Some(path)
            }
            None => None,
        };
        // The port is free now; the registry binds it a moment later. A clash shows up as an
        // early exit, and we try another port.
        let mut last_error = None;
        for _ in 0..3 {
            let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                registry_config(&dir.join("data"), addr, htpasswd.as_deref()),
            )?;
            let log = std::fs::File::create(dir.join("registry.log"))?;
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("start {binary}: {e} (install docker-registry)"),
                    )
                })?;
            let mut registry = TestRegistry {
                child,
                dir: dir.clone(),
                addr,
                credentials: credentials.clone(),
            };
            match registry.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return Ok(registry),
                Err(e) => {
                    registry.stop();
                    last_error = Some(e);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last_error.unwrap_or_else(|| io::Error::other("registry did not start")))
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>` as a registry host for image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The registry's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "docker-registry exited with {status}: {}",
                    self.log()
                )));
            }
            // 401 is the answer of a registry that wants credentials: it is up.
            if matches!(http_status(self.addr, "/v2/"), Ok(200 | 401)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("docker-registry on {} not ready: {}", self.addr, self.log()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pushes an OCI archive to `<this registry>/<repository_tag>` with skopeo
    /// (`repository_tag` like `skiff/busybox:latest`), keeping every digest as in the archive
    /// (skopeo would otherwise compress uncompressed layers). Returns the pushed reference.
    pub fn push_oci_archive(&self, archive: &Path, repository_tag: &str) -> io::Result<String> {
        let destination = format!("docker://{}/{repository_tag}", self.addr);
        let source = format!("oci-archive:{}", archive.display());
        let mut args = vec!["--preserve-digests".to_string()];
        if let Some((username, password)) = &self.credentials {
            args.push(format!("--dest-creds={username}:{password}"));
        }
        args.extend([source, destination]);
        skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(format!("{}/{repository_tag}", self.addr))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `skopeo copy --insecure-policy --dest-tls-verify=false SOURCE DESTINATION`.
pub fn skopeo_copy(source: &str, destination: &str) -> io::Result<()> {
    skopeo(&[source, destination])
}

fn skopeo(args: &[&str]) -> io::Result<()> {
    let output = Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--dest-tls-verify=false", "-q"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("run skopeo: {e} (install skopeo)")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "skopeo copy {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

fn registry_config(data: &Path, addr: SocketAddr, htpasswd: Option<&Path>) -> String {
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n",
        data.display()
    );
    if let Some(path) = htpasswd {
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
            path.display()
        ));
    }
    config
}

/// A bcrypt hash for htpasswd (the registry accepts only bcrypt), made by python3's `crypt`.
fn bcrypt(password: &str) -> io::Result<String> {
    let output = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
            password,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("run python3 for bcrypt: {e}")))?;
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || !hash.starts_with("$2") {
        return Err(io::Error::other(format!(
            "python3 could not make a bcrypt hash: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(hash)
}

/// Status code of a plain `GET` over HTTP/1.0.
fn http_status(addr: SocketAddr, path: &str) -> io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected answer {line:?}")))
}
