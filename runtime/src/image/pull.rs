//! Registry pull with oci-client: manifests into memory (small), blobs streamed to
//! `blobs/partial/<hex>` and resumed from their length after an interruption, verified, then
//! moved into the store. HTTPS unless the registry is loopback or listed as insecure.

use std::sync::{Arc, Once};

use futures::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWriteExt;

use super::digest::sha256_digest;
use super::manifest::{ACCEPTED_MANIFESTS, ManifestDoc};
use super::reference::{parse_reference, uses_plain_http};
use super::{ImageError, ImageInfo, ImageStore, PullOptions};

/// reqwest is built without a default crypto provider: install ring once, before any client.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn client_for(registry: &str, opts: &PullOptions) -> Client {
    install_crypto_provider();
    let insecure = uses_plain_http(registry, &opts.insecure_registries);
    Client::new(ClientConfig {
        protocol: if insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

fn auth_for(reference: &Reference, opts: &PullOptions) -> OciAuth {
    [reference.registry(), reference.resolve_registry()]
        .iter()
        .find_map(|r| opts.auth.get(*r))
        .map(|a| OciAuth::Basic(a.username.clone(), a.password.clone()))
        .unwrap_or(OciAuth::Anonymous)
}

fn registry_error(reference: &str, registry: &str, source: OciDistributionError) -> ImageError {
    match source {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => ImageError::Unauthorized {
            reference: reference.to_string(),
            registry: registry.to_string(),
            source,
        },
        source => ImageError::Registry {
            reference: reference.to_string(),
            source,
        },
    }
}

impl ImageStore {
    /// Pulls `reference` from its registry, unpacks its layers and records it. Blobs already in
    /// the store are not downloaded again; interrupted downloads continue where they stopped.
    pub async fn pull(&self, reference: &str, opts: &PullOptions) -> Result<ImageInfo, ImageError> {
        let parsed = parse_reference(reference)?;
        let normalized = parsed.whole();
        let registry_error = |source| registry_error(&normalized, parsed.registry(), source);
        let client = client_for(parsed.registry(), opts);
        let auth = auth_for(&parsed, opts);
        client
            .store_auth_if_needed(parsed.resolve_registry(), &auth)
            .await;

        let (mut bytes, mut digest) = client
            .pull_manifest_raw(&parsed, &auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(registry_error)?;
        let mut doc = self.check_manifest(&normalized, &bytes, &digest)?;
        if doc.is_index() {
            let chosen = doc
                .pick_platform(&format!("pull {normalized}"))?
                .digest
                .clone();
            let by_digest = parsed.clone_with_digest(chosen.clone());
            (bytes, digest) = client
                .pull_manifest_raw(&by_digest, &auth, ACCEPTED_MANIFESTS)
                .await
                .map_err(registry_error)?;
            if digest != chosen {
                return Err(ImageError::DigestMismatch {
                    what: format!("pull {normalized}: platform manifest"),
                    expected: chosen,
                    actual: digest,
                });
            }
            doc = self.check_manifest(&normalized, &bytes, &digest)?;
            if doc.is_index() {
                return Err(ImageError::Pull {
                    reference: normalized,
                    reason: "platform entry of the index is another index".into(),
                });
            }
        }
        let (config, layers) = doc.image_parts(&format!("pull {normalized}"))?;
        for descriptor in std::iter::once(config).chain(layers) {
            self.fetch_blob(
                &client,
                &parsed,
                &normalized,
                &descriptor.digest,
                descriptor.size,
            )
            .await?;
        }
        self.inner.blobs.write_bytes(
            &bytes,
            Some(&digest),
            &format!("pull {normalized}: manifest"),
        )?;

        let store = self.clone();
        let references = vec![normalized.clone()];
        let mut infos = tokio::task::spawn_blocking(move || {
            let record = store.record_from_manifest(&digest)?;
            store.commit(&references, &record)
        })
        .await
        .map_err(|e| ImageError::Pull {
            reference: normalized.clone(),
            reason: format!("unpack task failed: {e}"),
        })??;
        infos.pop().ok_or_else(|| ImageError::Pull {
            reference: normalized,
            reason: "nothing recorded".into(),
        })
    }

    /// The manifest must hash to the digest the registry claimed.
    fn check_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<ManifestDoc, ImageError> {
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("pull {reference}: manifest"),
                expected: digest.to_string(),
                actual,
            });
        }
        ManifestDoc::parse(bytes, &format!("pull {reference}: manifest {digest}"))
    }

    fn blob_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .blob_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(digest.to_string()).or_default().clone()
    }

    /// Downloads one blob into `partial/`, continuing from what an earlier attempt left there.
    async fn fetch_blob(
        &self,
        client: &Client,
        image: &Reference,
        reference: &str,
        digest: &str,
        size: u64,
    ) -> Result<(), ImageError> {
        let lock = self.blob_lock(digest);
        let _guard = lock.lock().await;
        if self.inner.blobs.exists(digest)? {
            tracing::debug!(%digest, "blob already stored");
            return Ok(());
        }
        let what = format!("pull {reference}: blob {digest}");
        let partial = self.inner.blobs.partial_path(digest)?;
        let offset = tokio::fs::metadata(&partial)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if offset >= size && offset > 0 {
            return self.inner.blobs.commit_partial(digest, Some(size), &what);
        }
        let response = client
            .pull_blob_stream_partial(image, digest, offset, None)
            .await
            .map_err(|source| registry_error(reference, image.registry(), source))?;
        let (mut stream, mut written, append) = match response {
            BlobResponse::Partial(stream) => (stream, offset, true),
            BlobResponse::Full(stream) => (stream, 0, false),
        };
        if append {
            tracing::info!(%digest, offset, "resuming blob download");
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&partial)
            .await
            .map_err(|e| ImageError::io(format!("open {}", partial.display()), e))?;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    // Keep what arrived: the next pull resumes from it.
                    let _ = file.flush().await;
                    return Err(ImageError::Pull {
                        reference: reference.to_string(),
                        reason: format!(
                            "blob {digest}: download interrupted after {written} of {size} \
                             bytes (pull again to resume): {e}"
                        ),
                    });
                }
            };
            written += chunk.len() as u64;
            if written > size {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(ImageError::SizeMismatch {
                    what,
                    expected: size,
                    actual: written,
                });
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| ImageError::io(format!("write {}", partial.display()), e))?;
        }
        file.flush()
            .await
            .map_err(|e| ImageError::io(format!("write {}", partial.display()), e))?;
        drop(file);
        let blobs = self.inner.blobs.clone();
        let digest = digest.to_string();
        tokio::task::spawn_blocking(move || blobs.commit_partial(&digest, Some(size), &what))
            .await
            .map_err(|e| ImageError::Pull {
                reference: reference.to_string(),
                reason: format!("verify task failed: {e}"),
            })?
    }
}
