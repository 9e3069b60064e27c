//! The image store: content-addressed, on disk, shared by every lab.
//!
//! ```text
//! /var/lib/lab/images/        0700
//!   images.json               name -> manifest, config, layers (written whole, renamed in)
//!   blobs/sha256/<hex>        manifests and configs, as their digests name them
//!   layers/sha256/<hex>/fs    a layer unpacked, named by its diff id (digest of its tar)
//!   tmp/                      work in progress; nothing here is ever taken for complete
//! ```
//!
//! A layer is unpacked into `tmp/` and renamed into `layers/` only once its digests check
//! out, so a pull killed half-way leaves nothing that looks complete; two imports or pulls of
//! the same layer at once take turns on its lock in `tmp/`, and the second finds the first's
//! work done. Changes to `images.json` hold `lock` (flock).

use crate::digest::{Digest, Hashing};
use crate::oci::{self, Compression, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::unpack;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Where the store lives.
pub const STORE_ROOT: &str = "/var/lib/lab/images";

/// An image in the store, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Its full reference (`docker.io/library/alpine:3.20`).
    pub reference: String,
    /// The manifest's digest: what `lab image ls` shows, and `name@digest` pins.
    pub manifest: Digest,
    pub config: ImageConfig,
    /// The unpacked layers, bottom first (overlayfs wants them the other way round).
    pub layers: Vec<PathBuf>,
}

/// An entry of `images.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub manifest: Digest,
    pub config: Digest,
    /// Diff ids, bottom first.
    pub layers: Vec<Digest>,
    /// Bytes of its layers' files, unpacked.
    pub size: u64,
}

type Catalog = BTreeMap<String, ImageInfo>;

/// The store at a root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `root`, made if missing (0700: layers hold set-id files of images).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for d in [root.clone(), root.join("blobs/sha256"), root.join("layers/sha256"), root.join("tmp")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(|e| Error::io(format!("making {}", d.display()), e))?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn catalog(&self) -> Result<Catalog> {
        let path = self.root.join("images.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Invalid(format!("{} is corrupt ({e}); remove it to start afresh", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::new()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Runs `f` on the catalog under the store's lock, and writes back what it returns.
    fn update<T>(&self, f: impl FnOnce(&mut Catalog) -> Result<T>) -> Result<T> {
        let _held = lock(&self.root.join("lock"))?;
        let mut catalog = self.catalog()?;
        let out = f(&mut catalog)?;
        let json = serde_json::to_vec_pretty(&catalog).map_err(|e| Error::Invalid(e.to_string()))?;
        let tmp = self.root.join("tmp/images.json");
        fs::write(&tmp, json).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, self.root.join("images.json")).map_err(|e| Error::io("updating images.json", e))?;
        Ok(out)
    }

    /// Every image, by full reference.
    pub fn list(&self) -> Result<Vec<(String, ImageInfo)>> {
        Ok(self.catalog()?.into_iter().collect())
    }

    /// The image `reference` names, if the store has it: by name and tag, or by digest.
    pub fn resolve(&self, reference: &Reference) -> Result<Option<Image>> {
        let catalog = self.catalog()?;
        let found = match &reference.digest {
            Some(d) => catalog.iter().find(|(name, i)| i.manifest == *d && repository_of(name) == reference.name()),
            None => catalog.get_key_value(&reference.to_string()),
        };
        let Some((name, info)) = found else { return Ok(None) };
        let config: ImageConfig = serde_json::from_slice(&self.read_blob(&info.config)?)
            .map_err(|e| Error::Invalid(format!("the config of {name} in the store is corrupt: {e}")))?;
        let layers = info.layers.iter().map(|d| self.layer_dir(d)).collect::<Vec<_>>();
        if let Some(missing) = layers.iter().find(|l| !l.is_dir()) {
            return Err(Error::Invalid(format!(
                "layer {} of {name} is missing from the store; `lab image rm` it and import or pull it again",
                missing.display()
            )));
        }
        Ok(Some(Image { reference: name.clone(), manifest: info.manifest.clone(), config, layers }))
    }

    /// Removes image `name` (a full reference) from the catalog and the layers and blobs no
    /// other image has. Returns whether it was there.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let had = self.update(|c| Ok(c.remove(name).is_some()))?;
        self.prune()?;
        Ok(had)
    }

    /// Removes layers, blobs and leftovers of `tmp/` that no image of the catalog has.
    /// Returns how many entries went.
    pub fn prune(&self) -> Result<usize> {
        self.update(|catalog| {
            let mut keep = std::collections::BTreeSet::new();
            for i in catalog.values() {
                keep.insert(i.manifest.hex().to_string());
                keep.insert(i.config.hex().to_string());
                keep.extend(i.layers.iter().map(|l| l.hex().to_string()));
            }
            let mut removed = 0;
            for dir in ["blobs/sha256", "layers/sha256", "tmp"] {
                let dir = self.root.join(dir);
                for e in fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    // In-flight work of another import is in tmp/ too: only what is an hour old goes.
                    let stale = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
                    let in_tmp = dir.ends_with("tmp");
                    if keep.contains(&name)
                        || name == "images.json"
                        || (in_tmp && stale.is_none_or(|a| a.as_secs() < 3600))
                    {
                        continue;
                    }
                    let gone = if e.path().is_dir() { fs::remove_dir_all(e.path()) } else { fs::remove_file(e.path()) };
                    gone.map_err(|err| Error::io(format!("removing {}", e.path().display()), err))?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// The unpacked root of layer `diff_id`.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex()).join("fs")
    }

    fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let bytes = fs::read(&path).map_err(|e| Error::io(format!("reading blob {d} of the store"), e))?;
        check(&format!("blob {d} of the store"), d, &Digest::of(&bytes))?;
        Ok(bytes)
    }

    /// Keeps blob `bytes` (already checked against `d`).
    pub(crate) fn put_blob(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        let path = self.blob_path(d);
        if path.exists() {
            return Ok(());
        }
        let tmp = self.temp_path("blob")?;
        fs::write(&tmp, bytes).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(format!("keeping blob {d}"), e))
    }

    pub(crate) fn temp_path(&self, what: &str) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.root.join("tmp").join(format!("{what}-{}-{n}", std::process::id())))
    }

    /// Unpacks the layer blob read by `blob` (compressed as `compression`, checked against
    /// digest `blob_digest` if it has one) whose tar must have digest `diff_id`, unless the
    /// store has it. Returns its unpacked size.
    pub(crate) fn add_layer(
        &self,
        what: &str,
        blob: impl Read,
        compression: Compression,
        blob_digest: Option<&Digest>,
        diff_id: &Digest,
    ) -> Result<u64> {
        let dir = self.layer_dir(diff_id);
        if dir.is_dir() {
            return Ok(size_of(&dir));
        }
        // One unpacking of a layer at a time: a second import or pull of it waits for the
        // first, then finds its work done.
        let lock_path = self.root.join("tmp").join(format!("layer-{}.lock", diff_id.hex()));
        let _held = lock(&lock_path)?;
        // Gone once the layer is in place or the try failed (whoever waits checks again).
        let _unlink = Unlink(lock_path.clone());
        if dir.is_dir() {
            return Ok(size_of(&dir));
        }
        let tmp = self.temp_path("layer")?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| Error::io(format!("making {}", tmp.display()), e))?;
        let made = (|| {
            let fs_dir = tmp.join("fs");
            fs::DirBuilder::new().mode(0o755).create(&fs_dir).map_err(|e| Error::io("making a layer directory", e))?;
            let mut compressed = Hashing::new(BufReader::new(blob));
            let unpacked = (|| {
                let tar: Box<dyn Read + '_> = match compression {
                    Compression::None => Box::new(&mut compressed),
                    Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut compressed)),
                    Compression::Zstd => Box::new(
                        zstd::stream::read::Decoder::new(&mut compressed)
                            .map_err(|e| Error::io(format!("reading {what}"), e))?,
                    ),
                };
                let mut tar = Hashing::new(tar);
                let stats = unpack::unpack(&mut tar, &fs_dir)?;
                let (d, _) = tar.finish().map_err(|e| Error::io(format!("reading {what}"), e))?;
                Ok::<_, Error>((d, stats))
            })();
            // The blob's digest first: a tampered blob is told as such, whatever its tar says.
            let (got, _) = compressed.finish().map_err(|e| Error::io(format!("reading {what}"), e))?;
            if let Some(want) = blob_digest {
                check(what, want, &got)?;
            }
            let (tar_digest, stats) = unpacked?;
            check(&format!("{what} (uncompressed)"), diff_id, &tar_digest)?;
            Ok(stats.bytes)
        })();
        let bytes = match made {
            Ok(b) => b,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let parent = dir.parent().expect("a layer dir has a parent");
        match fs::rename(&tmp, parent) {
            Ok(()) => Ok(bytes),
            // Another import put it there first: theirs is as good.
            Err(_) if dir.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(bytes)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(Error::io(format!("keeping {what}"), e))
            }
        }
    }

    /// Records image `name`.
    pub(crate) fn record(&self, name: &str, info: ImageInfo) -> Result<()> {
        self.update(|c| {
            c.insert(name.to_string(), info);
            Ok(())
        })
    }

    /// Imports `path`: an OCI image layout directory (what `skopeo copy ... oci:DIR` writes) or
    /// a `docker save` tarball (either format Docker writes). `name` names the image when the
    /// source does not, or renames it. Returns the full references imported.
    pub fn import(&self, path: &Path, name: Option<&Reference>) -> Result<Vec<String>> {
        let meta = fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if meta.is_dir() {
            return self.import_layout(path, name);
        }
        // A tarball: unpacked (safely: it is as hostile as a layer) into tmp/, then read.
        let staged = self.temp_path("import")?;
        fs::DirBuilder::new().mode(0o700).create(&staged).map_err(|e| Error::io("staging the import", e))?;
        let done = (|| {
            let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            unpack::unpack(BufReader::new(file), &staged).map_err(|e| match e {
                Error::Io { what, source } => Error::Io { what: format!("{} ({what})", path.display()), source },
                e => e,
            })?;
            if staged.join("manifest.json").is_file() {
                self.import_docker(&staged, name)
            } else if staged.join("index.json").is_file() {
                self.import_layout(&staged, name)
            } else {
                Err(Error::Invalid(format!(
                    "{} is neither a `docker save` tarball (manifest.json) nor an OCI layout (index.json)",
                    path.display()
                )))
            }
        })();
        let _ = fs::remove_dir_all(&staged);
        done
    }

    /// An OCI image layout: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
    fn import_layout(&self, dir: &Path, name: Option<&Reference>) -> Result<Vec<String>> {
        let read_json =
            |p: &Path| -> Result<Vec<u8>> { fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e)) };
        let index: Index = serde_json::from_slice(&read_json(&dir.join("index.json"))?)
            .map_err(|e| Error::Invalid(format!("{}/index.json: {e}", dir.display())))?;
        let blob = |d: &Digest| dir.join("blobs/sha256").join(d.hex());
        let read_blob = |d: &Digest, what: &str| -> Result<Vec<u8>> {
            let bytes = fs::read(blob(d)).map_err(|e| Error::io(format!("reading {what} {d}"), e))?;
            check(what, d, &Digest::of(&bytes))?;
            Ok(bytes)
        };
        let mut out = Vec::new();
        for desc in &index.manifests {
            let tag = desc.annotations.get(oci::REF_NAME);
            let reference = match (name, tag) {
                (Some(n), _) => n.clone(),
                (None, Some(t)) => Reference::parse(t)?,
                (None, None) => {
                    return Err(Error::Invalid(format!(
                        "{}: an image of the layout has no name (annotation {}); give it one",
                        dir.display(),
                        oci::REF_NAME
                    )))
                }
            };
            let manifest_digest = resolve_platform(desc, &|d| read_blob(d, "manifest"))?;
            let manifest_bytes = read_blob(&manifest_digest, "manifest")?;
            let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
                .map_err(|e| Error::Invalid(format!("manifest {manifest_digest}: {e}")))?;
            let config_bytes = read_blob(&manifest.config.digest, "config")?;
            let config: ImageConfig = serde_json::from_slice(&config_bytes)
                .map_err(|e| Error::Invalid(format!("config {}: {e}", manifest.config.digest)))?;
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(Error::Invalid(format!(
                    "image {reference}: its manifest has {} layers, its config {}",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                )));
            }
            let mut size = 0;
            for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
                let what = format!("layer {} of {reference}", layer.digest);
                let compression = Compression::of_layer(&layer.media_type).ok_or_else(|| {
                    Error::UnsupportedMediaType { what: what.clone(), media_type: layer.media_type.clone() }
                })?;
                let file = File::open(blob(&layer.digest)).map_err(|e| Error::io(format!("reading {what}"), e))?;
                size += self.add_layer(&what, file, compression, Some(&layer.digest), diff_id)?;
            }
            self.put_blob(&manifest_digest, &manifest_bytes)?;
            self.put_blob(&manifest.config.digest, &config_bytes)?;
            let info = ImageInfo {
                manifest: manifest_digest,
                config: manifest.config.digest.clone(),
                layers: config.rootfs.diff_ids.clone(),
                size,
            };
            self.record(&reference.to_string(), info)?;
            out.push(reference.to_string());
        }
        Ok(out)
    }

    /// A `docker save` tarball, unpacked: `manifest.json` lists each image's config, tags
    /// and layer tarballs.
    fn import_docker(&self, dir: &Path, name: Option<&Reference>) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let list_path = dir.join("manifest.json");
        let list: Vec<Entry> = serde_json::from_slice(
            &fs::read(&list_path).map_err(|e| Error::io("reading the tarball's manifest.json", e))?,
        )
        .map_err(|e| Error::Invalid(format!("the tarball's manifest.json: {e}")))?;
        // Paths inside the tarball: relative, without `..`.
        let inside = |p: &str| -> Result<PathBuf> {
            if p.starts_with('/') || p.split('/').any(|c| c == "..") {
                return Err(Error::Unsafe {
                    entry: p.to_string(),
                    why: "manifest.json points outside the tarball".into(),
                });
            }
            Ok(dir.join(p))
        };
        let mut out = Vec::new();
        for entry in list {
            let config_bytes =
                fs::read(inside(&entry.config)?).map_err(|e| Error::io(format!("reading {}", entry.config), e))?;
            let config_digest = Digest::of(&config_bytes);
            let config: ImageConfig = serde_json::from_slice(&config_bytes)
                .map_err(|e| Error::Invalid(format!("config {}: {e}", entry.config)))?;
            if config.rootfs.diff_ids.len() != entry.layers.len() {
                return Err(Error::Invalid(format!(
                    "{}: manifest.json lists {} layers, its config {}",
                    entry.config,
                    entry.layers.len(),
                    config.rootfs.diff_ids.len()
                )));
            }
            let mut names: Vec<Reference> = match name {
                Some(n) => vec![n.clone()],
                None => {
                    entry.repo_tags.unwrap_or_default().iter().map(|t| Reference::parse(t)).collect::<Result<_>>()?
                }
            };
            if names.is_empty() {
                return Err(Error::Invalid("an image of the tarball has no tag (RepoTags); give it a name".into()));
            }
            names.dedup();
            let mut size = 0;
            let mut descriptors = Vec::new();
            for (layer, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
                let what = format!("layer {layer}");
                let path = inside(layer)?;
                let compression = sniff(&path)?;
                let file = File::open(&path).map_err(|e| Error::io(format!("reading {what}"), e))?;
                size += self.add_layer(&what, file, compression, None, diff_id)?;
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                descriptors.push(serde_json::json!({
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "digest": diff_id,
                    "size": len,
                }));
            }
            // The image has no manifest blob of its own in this format: one is written, as
            // Docker would push it, so that it has a digest like any other.
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": oci::DOCKER_MANIFEST,
                "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config_bytes.len() },
                "layers": descriptors,
            });
            let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
            let manifest_digest = Digest::of(&manifest_bytes);
            self.put_blob(&manifest_digest, &manifest_bytes)?;
            self.put_blob(&config_digest, &config_bytes)?;
            for n in names {
                let info = ImageInfo {
                    manifest: manifest_digest.clone(),
                    config: config_digest.clone(),
                    layers: config.rootfs.diff_ids.clone(),
                    size,
                };
                self.record(&n.to_string(), info)?;
                out.push(n.to_string());
            }
        }
        Ok(out)
    }
}

/// The manifest `desc` leads to on this host's platform: itself, or the right entry of the
/// index or manifest list it is.
pub(crate) fn resolve_platform(desc: &oci::Descriptor, read: &dyn Fn(&Digest) -> Result<Vec<u8>>) -> Result<Digest> {
    match desc.media_type.as_str() {
        oci::OCI_MANIFEST | oci::DOCKER_MANIFEST | "" => Ok(desc.digest.clone()),
        oci::OCI_INDEX | oci::DOCKER_LIST => {
            let index: Index = serde_json::from_slice(&read(&desc.digest)?)
                .map_err(|e| Error::Invalid(format!("index {}: {e}", desc.digest)))?;
            let (os, arch) = oci::host_platform();
            let pick = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch))
                .ok_or_else(|| {
                    let have: Vec<String> = index
                        .manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref().map(|p| format!("{}/{}", p.os, p.architecture)))
                        .collect();
                    Error::Invalid(format!(
                        "index {} has no image for {os}/{arch} (only {})",
                        desc.digest,
                        have.join(", ")
                    ))
                })?;
            resolve_platform(pick, read)
        }
        other => {
            Err(Error::UnsupportedMediaType { what: format!("manifest {}", desc.digest), media_type: other.into() })
        }
    }
}

/// An exclusive flock on `path` (made if missing), held until dropped.
fn lock(path: &Path) -> Result<nix::fcntl::Flock<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(format!("locking {}", path.display()), e.into()))
}

/// Removes a file when dropped.
struct Unlink(PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The name of a catalog key without its tag or digest.
fn repository_of(key: &str) -> &str {
    let key = key.split_once('@').map_or(key, |(n, _)| n);
    match key.rsplit_once('/') {
        Some((head, last)) => last.split_once(':').map_or(key, |(l, _)| &key[..head.len() + 1 + l.len()]),
        None => key.split_once(':').map_or(key, |(n, _)| n),
    }
}

pub(crate) fn check(what: &str, want: &Digest, got: &Digest) -> Result<()> {
    if want == got {
        Ok(())
    } else {
        Err(Error::DigestMismatch { what: what.to_string(), want: want.to_string(), got: got.to_string() })
    }
}

/// How a layer file of a `docker save` tarball is compressed, by its first bytes.
fn sniff(path: &Path) -> Result<Compression> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let n = f.read(&mut magic).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

/// Bytes of the regular files below `dir`.
pub(crate) fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}
