//! Registry pulls against a real `docker-registry` on 127.0.0.1 (pushed to with skopeo): a full
//! pull, a missing tag, and an interrupted pull that resumes through a cutting TCP proxy.
//! Needs root (mknod, chown), busybox-static, skopeo and docker-registry.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use skiff_runtime::image::testing::TestRegistry;
use skiff_runtime::image::{ImageError, PullOptions, RegistryAuth};
use support::{busybox_archive, check_busybox_rootfs, new_store, random_layer_archive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_the_test_image_from_a_registry() {
    let registry = TestRegistry::start().expect("start docker-registry");
    let t = new_store();
    let (archive, built) = busybox_archive(t.dir.path());
    let reference = registry
        .push_oci_archive(&archive, "skiff/busybox:latest")
        .expect("push with skopeo");
    assert_eq!(
        reference,
        format!("{}/skiff/busybox:latest", registry.host())
    );

    let image = t
        .store
        .pull(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(image.reference, reference);
    assert_eq!(image.digest, built.manifest_digest);
    assert_eq!(image.id, built.config_digest);
    assert_eq!(image.layers, built.diff_ids);
    assert_eq!(image.config.cmd, ["sh"]);
    assert_eq!(t.store.resolve(&reference).unwrap(), Some(image.clone()));
    let store = t.store.clone();
    let pulled = image.clone();
    let dirs = tokio::task::spawn_blocking(move || store.layer_dirs(&pulled))
        .await
        .unwrap()
        .unwrap();
    check_busybox_rootfs(&dirs);

    // Pulling again finds every blob stored and records the same image.
    let again = t
        .store
        .pull(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(again, image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tag_names_the_reference() {
    let registry = TestRegistry::start().expect("start docker-registry");
    let t = new_store();
    let reference = format!("{}/skiff/nothing:here", registry.host());
    let err = t
        .store
        .pull(&reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("pull {reference}: ")),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("manifest unknown"),
        "{message}"
    );
    assert!(t.store.list().unwrap().is_empty());
}

/// A TCP proxy that forwards to `upstream`, records what clients send, counts what the server
/// sends back, and (once) cuts the connection after `cut_after` response bytes.
struct CuttingProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<u8>>>,
    downstream_bytes: Arc<AtomicU64>,
    cut_after: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(upstream: SocketAddr, cut_after: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let downstream_bytes = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicU64::new(cut_after));
        let (log, count, limit) = (requests.clone(), downstream_bytes.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (log, count, limit) = (log.clone(), count.clone(), limit.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, log, count, limit).await;
                    }
                });
            }
        });
        CuttingProxy {
            addr,
            requests,
            downstream_bytes,
            cut_after: cut,
            task,
        }
    }

    fn requests_text(&self) -> String {
        String::from_utf8_lossy(&self.requests.lock().unwrap()).to_lowercase()
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    log: Arc<Mutex<Vec<u8>>>,
    count: Arc<AtomicU64>,
    limit: Arc<AtomicU64>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            log.lock().unwrap().extend_from_slice(&buf[..n]);
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downward = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let before = count.fetch_add(n as u64, Ordering::SeqCst);
            let cut = limit.load(Ordering::SeqCst);
            if before + n as u64 > cut {
                // Forward up to the limit, then drop both sides: the client sees a short body.
                let allowed = cut.saturating_sub(before) as usize;
                let _ = client_write.write_all(&buf[..allowed]).await;
                limit.store(u64::MAX, Ordering::SeqCst);
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // When either direction ends, both sockets drop.
    tokio::select! {
        () = upward => {}
        () = downward => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_pull_resumes_from_the_partial_blob() {
    const LAYER_SIZE: usize = 4 * 1024 * 1024;
    const CUT_AFTER: u64 = 1024 * 1024;
    let seed = 0x5eed_0001;
    eprintln!("random layer seed {seed:#x}");
    let registry = TestRegistry::start().expect("start docker-registry");
    let t = new_store();
    let (archive, built, data) = random_layer_archive(t.dir.path(), LAYER_SIZE, seed);
    registry
        .push_oci_archive(&archive, "skiff/big:1")
        .expect("push with skopeo");
    let proxy = CuttingProxy::start(registry.addr(), CUT_AFTER).await;
    let reference = format!("{}/skiff/big:1", proxy.addr);

    let err = t
        .store
        .pull(&reference, &PullOptions::default())
        .await
        .expect_err("the proxy cuts the first pull");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("pull {reference}: ")),
        "{message}"
    );
    assert!(message.contains("interrupted"), "{message}");
    assert_eq!(
        proxy.cut_after.load(Ordering::SeqCst),
        u64::MAX,
        "cut happened"
    );
    assert_eq!(t.store.resolve(&reference).unwrap(), None);
    let partial = t
        .dir
        .path()
        .join("images/blobs/partial")
        .join(built.layer_digests[0].trim_start_matches("sha256:"));
    let kept = std::fs::metadata(&partial)
        .expect("partial blob kept")
        .len();
    assert!(kept > 0 && kept < LAYER_SIZE as u64, "kept {kept} bytes");

    let first_pass_bytes = proxy.downstream_bytes.swap(0, Ordering::SeqCst);
    proxy.requests.lock().unwrap().clear();
    let image = t
        .store
        .pull(&reference, &PullOptions::default())
        .await
        .unwrap();
    let second_pass_bytes = proxy.downstream_bytes.load(Ordering::SeqCst);
    eprintln!("first pass {first_pass_bytes} bytes, second {second_pass_bytes}, kept {kept}");

    let requests = proxy.requests_text();
    assert!(
        requests.contains(&format!("range: bytes={kept}-")),
        "no resuming range request in:\n{requests}"
    );
    assert!(
        second_pass_bytes < LAYER_SIZE as u64 - kept / 2,
        "second pass moved {second_pass_bytes} bytes for a {LAYER_SIZE} byte layer"
    );
    assert!(!partial.exists(), "partial blob moved into the store");
    assert_eq!(image.layers, built.diff_ids);
    assert_eq!(image.digest, built.manifest_digest);
    let store = t.store.clone();
    let dirs = tokio::task::spawn_blocking(move || store.layer_dirs(&image))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(dirs[0].join("data/blob")).unwrap(), data);

    // A third pull finds every blob stored: only manifests cross the wire.
    proxy.downstream_bytes.store(0, Ordering::SeqCst);
    t.store
        .pull(&reference, &PullOptions::default())
        .await
        .unwrap();
    let third_pass_bytes = proxy.downstream_bytes.load(Ordering::SeqCst);
    assert!(
        third_pass_bytes < 16 * 1024,
        "third pass moved {third_pass_bytes} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_this_platform_from_an_image_index() {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::manifest::{ImageIndexEntry, OciImageIndex, Platform};
    use oci_spec::image::{Arch, Os};

    let registry = TestRegistry::start().expect("start docker-registry");
    let t = new_store();
    let (busybox, busybox_built) = busybox_archive(t.dir.path());
    let (big, big_built, _) = random_layer_archive(t.dir.path(), 64 * 1024, 7);
    registry
        .push_oci_archive(&busybox, "skiff/multi:busybox")
        .unwrap();
    registry.push_oci_archive(&big, "skiff/multi:big").unwrap();

    // This node's platform is the busybox image; the other entry is the random one.
    let (here, elsewhere) = match std::env::consts::ARCH {
        "aarch64" => (Arch::ARM64, Arch::Amd64),
        _ => (Arch::Amd64, Arch::ARM64),
    };
    let entry = |digest: &str, size: u64, architecture: Arch| ImageIndexEntry {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: digest.into(),
        size: size as i64,
        platform: Some(Platform {
            architecture,
            os: Os::Linux,
            os_version: None,
            os_features: None,
            variant: None,
            features: None,
        }),
        annotations: None,
        artifact_type: None,
    };
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some("application/vnd.oci.image.index.v1+json".into()),
        manifests: vec![
            entry(
                &big_built.manifest_digest,
                big_built.manifest_size,
                elsewhere,
            ),
            entry(
                &busybox_built.manifest_digest,
                busybox_built.manifest_size,
                here,
            ),
        ],
        artifact_type: None,
        annotations: None,
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let reference = format!("{}/skiff/multi:index", registry.host());
    client
        .push_manifest_list(
            &reference.parse().unwrap(),
            &oci_client::secrets::RegistryAuth::Anonymous,
            index,
        )
        .await
        .expect("push index");

    let image = t
        .store
        .pull(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(image.reference, reference);
    assert_eq!(image.digest, busybox_built.manifest_digest);
    assert_eq!(image.layers, busybox_built.diff_ids);
    let big_blob = t
        .dir
        .path()
        .join("images/blobs/sha256")
        .join(big_built.layer_digests[0].trim_start_matches("sha256:"));
    assert!(
        !big_blob.exists(),
        "the other platform's layer was not downloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_comes_from_pull_options() {
    let registry = TestRegistry::start_with_basic_auth("skiff", "s3cret").expect("start registry");
    let t = new_store();
    let (archive, built) = busybox_archive(t.dir.path());
    let reference = registry
        .push_oci_archive(&archive, "private/busybox:1")
        .expect("push with credentials");

    let err = t
        .store
        .pull(&reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.starts_with(&format!("pull {reference}: ")), "{err}");
    assert!(err.contains("credentials"), "{err}");

    let wrong = PullOptions {
        auth: [(
            registry.host(),
            RegistryAuth {
                username: "skiff".into(),
                password: "wrong".into(),
            },
        )]
        .into(),
        ..PullOptions::default()
    };
    let err = t.store.pull(&reference, &wrong).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");

    let right = PullOptions {
        auth: [(
            registry.host(),
            RegistryAuth {
                username: "skiff".into(),
                password: "s3cret".into(),
            },
        )]
        .into(),
        ..PullOptions::default()
    };
    let image = t.store.pull(&reference, &right).await.unwrap();
    assert_eq!(image.digest, built.manifest_digest);
    assert!(
        !format!("{right:?}").contains("s3cret"),
        "credentials must not reach logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_both_succeed() {
    let registry = TestRegistry::start().expect("start docker-registry");
    let t = new_store();
    let (archive, built) = busybox_archive(t.dir.path());
    let reference = registry
        .push_oci_archive(&archive, "skiff/busybox:latest")
        .unwrap();
    let opts = PullOptions::default();
    let (a, b) = tokio::join!(
        t.store.pull(&reference, &opts),
        t.store.pull(&reference, &opts)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.layers, built.diff_ids);
    let leftovers: Vec<_> = std::fs::read_dir(t.dir.path().join("images/layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "one layer directory, no temporaries: {leftovers:?}"
    );
    assert_eq!(
        std::fs::read_dir(t.dir.path().join("images/blobs/partial"))
            .unwrap()
            .count(),
        0
    );
}
