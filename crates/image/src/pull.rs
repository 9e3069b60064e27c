//! Pulling from a registry: the OCI distribution API (and Docker Registry v2), spoken by the
//! oci-client crate (bearer tokens, basic auth, HTTPS against the system's roots). lab asks
//! for raw manifests and blobs and checks every digest itself, resolves indexes to this
//! host's platform, and unpacks layers through the store as an import does.
//!
//! Plain HTTP is used only for loopback registries and those named in
//! `$LAB_INSECURE_REGISTRIES` (comma-separated `host:port`), Docker's rule. Extra CA
//! certificates (PEM) come from `/etc/lab/certs.d/<host:port>/*.crt` (Docker's
//! `certs.d` layout) and `$LAB_REGISTRY_CA`. Credentials come from `$REGISTRY_AUTH_FILE`,
//! else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (their `auths`).

use crate::digest::Digest;
use crate::oci::{self, Compression, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::store::{ImageInfo, Store};
use crate::{Error, Result};
use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use std::path::{Path, PathBuf};

/// How many layers download at once.
const PARALLEL: usize = 4;

/// How far a pull is: bytes of its layers here (downloaded, or already in the store) of
/// all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullProgress<'a> {
    /// The image, as people write it.
    pub image: &'a str,
    pub done: u64,
    pub total: u64,
}

/// Told how far a pull is, as it goes.
pub type Progress<'a> = &'a (dyn Fn(&PullProgress) + Sync);

/// Why a pull failed, in the terms the user acts on.
fn pull_error(image: &Reference, e: oci_client::errors::OciDistributionError) -> Error {
    use oci_client::errors::OciDistributionError as E;
    let why = match &e {
        E::ImageManifestNotFoundError(_) => "not found".to_string(),
        E::AuthenticationFailure(m) => format!("unauthorized ({m})"),
        E::UnauthorizedError { .. } => {
            "unauthorized (check the credentials in ~/.docker/config.json or $REGISTRY_AUTH_FILE)".into()
        }
        E::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope.errors.iter().map(|x| format!("{:?}: {}", x.code, x.message)).collect();
            let text = codes.join("; ");
            if text.contains("Unknown") {
                format!("not found ({text})")
            } else if text.contains("Unauthorized") || text.contains("Denied") {
                format!("unauthorized ({text})")
            } else {
                text
            }
        }
        E::ServerError { code: 404, .. } => "not found".into(),
        E::ServerError { code: 401 | 403, .. } => "unauthorized".into(),
        E::RequestError(r) if r.is_connect() || r.is_timeout() => format!("unreachable ({})", source_chain(r)),
        E::RequestError(r) => source_chain(r),
        E::UnsupportedMediaTypeError(m) => format!("unsupported media type {m}"),
        E::DigestError(d) => format!("digest mismatch, the blob is corrupt or tampered with ({d})"),
        other => other.to_string(),
    };
    Error::Pull { image: image.familiar(), registry: image.registry.clone(), why }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut s = e.source();
    while let Some(inner) = s {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        s = inner.source();
    }
    out
}

/// The registries plain HTTP may be used for: loopback ones, and those the user names.
fn insecure(reference: &Reference) -> bool {
    reference.is_loopback()
        || std::env::var("LAB_INSECURE_REGISTRIES")
            .map(|v| v.split(',').any(|r| r.trim() == reference.registry))
            .unwrap_or(false)
}

/// Extra CA certificates for `registry`.
fn certificates(registry: &str) -> Vec<Certificate> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new("/etc/lab/certs.d").join(registry))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    if let Some(extra) = std::env::var_os("LAB_REGISTRY_CA") {
        files.push(PathBuf::from(extra));
    }
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .map(|data| Certificate { encoding: CertificateEncoding::Pem, data })
        .collect()
}

/// The credentials for `registry` in Docker's config file, if any.
pub fn credentials(registry: &str) -> Result<RegistryAuth> {
    let path = match (std::env::var_os("REGISTRY_AUTH_FILE"), std::env::var_os("DOCKER_CONFIG")) {
        (Some(f), _) => PathBuf::from(f),
        (None, Some(d)) => PathBuf::from(d).join("config.json"),
        (None, None) => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".docker/config.json")
        }
    };
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let auths = config.get("auths").and_then(|a| a.as_object());
    let keys = [registry.to_string(), format!("https://{registry}"), format!("http://{registry}")];
    let hub = ["https://index.docker.io/v1/".to_string(), "index.docker.io".into()];
    let entry = auths.and_then(|a| {
        keys.iter()
            .chain(if registry == crate::reference::DOCKER_HUB { hub.iter() } else { [].iter() })
            .find_map(|k| a.get(k))
    });
    let Some(encoded) = entry.and_then(|e| e.get("auth")).and_then(|a| a.as_str()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let bad = || Error::Invalid(format!("{}: the auth of {registry} is not base64 of user:password", path.display()));
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, pass) = text.split_once(':').ok_or_else(bad)?;
    Ok(RegistryAuth::Basic(user.to_string(), pass.to_string()))
}

impl Store {
    /// Pulls `reference` into the store unless it has it (by digest, or by tag when `always`
    /// is false). Returns the full reference stored.
    pub async fn pull(&self, reference: &Reference, always: bool, progress: Progress<'_>) -> Result<String> {
        if !always || reference.digest.is_some() {
            if let Some(image) = self.resolve(reference)? {
                return Ok(image.reference);
            }
        }
        let client_for = |plain: bool| {
            let protocol = if plain {
                ClientProtocol::HttpsExcept(vec![reference.registry.clone()])
            } else {
                ClientProtocol::Https
            };
            oci_client::Client::new(ClientConfig {
                protocol,
                extra_root_certificates: certificates(&reference.registry),
                platform_resolver: None,
                ..ClientConfig::default()
            })
        };
        let auth = credentials(&reference.registry)?;
        let remote = oci_client::Reference::try_from(reference.to_string().as_str())
            .map_err(|e| Error::Reference { reference: reference.to_string(), why: e.to_string() })?;
        let err = |e| pull_error(reference, e);
        let accepted = [oci::OCI_MANIFEST, oci::DOCKER_MANIFEST, oci::OCI_INDEX, oci::DOCKER_LIST];
        let familiar = reference.familiar();
        // HTTPS first; plain HTTP only where it may be used, if HTTPS does not connect (as
        // Docker does for insecure registries).
        let mut client = client_for(false);
        let first = client.pull_manifest_raw(&remote, &auth, &accepted).await;
        let (mut bytes, _) = match first {
            Err(oci_client::errors::OciDistributionError::RequestError(_)) if insecure(reference) => {
                client = client_for(true);
                client.pull_manifest_raw(&remote, &auth, &accepted).await.map_err(err)?
            }
            other => other.map_err(err)?,
        };
        let mut digest = Digest::of(&bytes);
        if let Some(want) = &reference.digest {
            crate::store::check(&format!("the manifest of {}", reference.familiar()), want, &digest)?;
        }
        // An index or manifest list: this host's platform's manifest, by digest.
        if let Ok(index) = serde_json::from_slice::<Index>(&bytes) {
            if !index.manifests.is_empty() && serde_json::from_slice::<Manifest>(&bytes).is_err() {
                let (os, arch) = oci::host_platform();
                let pick = index
                    .manifests
                    .iter()
                    .find(|m| m.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch))
                    .ok_or_else(|| Error::Pull {
                        image: reference.familiar(),
                        registry: reference.registry.clone(),
                        why: format!("it has no image for {os}/{arch}"),
                    })?;
                let by_digest = remote.clone_with_digest(pick.digest.to_string());
                let (b, _) = client.pull_manifest_raw(&by_digest, &auth, &accepted).await.map_err(err)?;
                digest = Digest::of(&b);
                crate::store::check(
                    &format!("the {os}/{arch} manifest of {}", reference.familiar()),
                    &pick.digest,
                    &digest,
                )?;
                bytes = b;
            }
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("the manifest of {}: {e}", reference.familiar())))?;
        let mut config_bytes = Vec::new();
        client.pull_blob(&remote, manifest.config.digest.as_str(), &mut config_bytes).await.map_err(err)?;
        crate::store::check(
            &format!("the config of {}", reference.familiar()),
            &manifest.config.digest,
            &Digest::of(&config_bytes),
        )?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::Invalid(format!("the config of {}: {e}", reference.familiar())))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::Invalid(format!(
                "image {}: its manifest has {} layers, its config {}",
                reference.familiar(),
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        // Layers: those the store lacks, several at once, each through the same unpacking
        // (and digest checks) as an import.
        let total: u64 = manifest.layers.iter().map(|l| l.size).sum();
        let done = std::sync::atomic::AtomicU64::new(0);
        let tell = |n: u64| {
            let now = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
            progress(&PullProgress { image: &familiar, done: now, total });
        };
        tell(0);
        let fetch = manifest.layers.iter().zip(&config.rootfs.diff_ids).map(|(layer, diff_id)| {
            let (client, remote, store, tell) = (&client, &remote, self, &tell);
            async move {
                let what = format!("layer {} of {}", layer.digest, reference.familiar());
                let compression = Compression::of_layer(&layer.media_type).ok_or_else(|| {
                    Error::UnsupportedMediaType { what: what.clone(), media_type: layer.media_type.clone() }
                })?;
                if store.layer_dir(diff_id).is_dir() {
                    tell(layer.size);
                    return Ok::<u64, Error>(0);
                }
                // Unpacked as it arrives: the download and the unpacking (on a thread of its
                // own) overlap, and nothing is written but the layer itself.
                let mut blob = client
                    .pull_blob_stream(remote, layer.digest.as_str())
                    .await
                    .map_err(|e| pull_error(reference, e))?;
                let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(32);
                let store = store.clone();
                let (what2, digest, diff) = (what.clone(), layer.digest.clone(), diff_id.clone());
                let unpacking = tokio::task::spawn_blocking(move || {
                    store.add_layer(
                        &what2,
                        ChannelReader { rx, chunk: bytes::Bytes::new() },
                        compression,
                        Some(&digest),
                        &diff,
                    )
                });
                let mut received = 0u64;
                while let Some(chunk) = futures::StreamExt::next(&mut blob.stream).await {
                    match &chunk {
                        Ok(b) => {
                            received += b.len() as u64;
                            tell(b.len() as u64);
                        }
                        // After the whole body, oci-client's own digest check: ours, on the
                        // same bytes, says it in lab's terms.
                        Err(_) if received == layer.size => break,
                        Err(_) => {}
                    }
                    // The unpacking stopped (it failed): its error says why.
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                unpacking.await.map_err(|e| Error::Invalid(format!("unpacking {what}: {e}")))?
            }
        });
        use futures::stream::{StreamExt, TryStreamExt};
        let _: Vec<u64> = futures::stream::iter(fetch).buffer_unordered(PARALLEL).try_collect().await?;
        self.put_blob(&digest, &bytes)?;
        self.put_blob(&manifest.config.digest, &config_bytes)?;
        let size = config.rootfs.diff_ids.iter().map(|d| crate::store::size_of(&self.layer_dir(d))).sum();
        let name = Reference { digest: None, ..reference.clone() };
        let name = if reference.tag.is_none() { format!("{}@{digest}", name.name()) } else { name.to_string() };
        let info = ImageInfo {
            manifest: digest,
            config: manifest.config.digest.clone(),
            layers: config.rootfs.diff_ids.clone(),
            size,
        };
        self.record(&name, info)?;

        Ok(name)
    }
}

/// A blocking reader of what an async download sends it.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with-colon");
        std::fs::write(&file, format!(r#"{{"auths": {{"localhost:5000": {{"auth": "{auth}"}}, "https://index.docker.io/v1/": {{"auth": "{auth}"}}}}}}"#)).unwrap();
        // One test changes the process's environment: nothing else here reads it.
        std::env::set_var("REGISTRY_AUTH_FILE", &file);
        let basic = |r: RegistryAuth| match r {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        };
        assert_eq!(basic(credentials("localhost:5000").unwrap()), Some(("alice".into(), "s3cret:with-colon".into())));
        assert_eq!(basic(credentials("docker.io").unwrap()), Some(("alice".into(), "s3cret:with-colon".into())));
        assert!(matches!(credentials("ghcr.io").unwrap(), RegistryAuth::Anonymous));
        std::fs::write(&file, r#"{"auths": {"ghcr.io": {"auth": "not base64!"}}}"#).unwrap();
        assert!(credentials("ghcr.io").unwrap_err().to_string().contains("not base64"));
        std::env::set_var("REGISTRY_AUTH_FILE", dir.path().join("missing.json"));
        assert!(matches!(credentials("ghcr.io").unwrap(), RegistryAuth::Anonymous));
        std::env::remove_var("REGISTRY_AUTH_FILE");
    }
}
