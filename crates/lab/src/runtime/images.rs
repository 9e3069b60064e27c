//! `lab image`: what the image store holds, and which labs run on it. Removal holds the
//! global lock, as `lab up` does while it resolves a lab's images, so that no image goes
//! from under a lab coming up.

use crate::state::{all_states, Lock};
use crate::topology::Rootfs;
use crate::Error;
use lab_image::{Reference, Store, STORE_ROOT};
use std::path::Path;

/// One image of the store, as `lab image ls` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageRow {
    /// Its full reference: `docker.io/library/alpine:3.20`.
    pub name: String,
    /// The short form: `alpine:3.20`.
    pub short: String,
    /// Its manifest's digest.
    pub digest: String,
    /// Bytes of its layers' files, unpacked.
    pub size: u64,
    /// The labs that are up and run nodes on it.
    pub labs: Vec<String>,
}

fn store() -> Result<Store, Error> {
    Ok(Store::open(STORE_ROOT)?)
}

/// The labs that are up with a node on image `name` (a full reference).
fn users(name: &str) -> Vec<String> {
    all_states()
        .into_iter()
        .filter_map(|(lab, s)| {
            let s = s?;
            s.plan.nodes.iter().any(|n| matches!(&n.rootfs, Rootfs::Image(r) if r == name)).then(|| lab.to_string())
        })
        .collect()
}

/// Imports a `docker save` tarball or an OCI layout directory, named `name` if given (else
/// as the source names its images). Returns the full references imported.
pub fn image_import(path: &Path, name: Option<&str>) -> Result<Vec<String>, Error> {
    let name = name.map(Reference::parse).transpose()?;
    Ok(store()?.import(path, name.as_ref())?)
}

/// Every image of the store.
pub fn image_list() -> Result<Vec<ImageRow>, Error> {
    let rows = store()?
        .list()?
        .into_iter()
        .map(|(name, info)| ImageRow {
            short: Reference::parse(&name).map(|r| r.familiar()).unwrap_or_else(|_| name.clone()),
            labs: users(&name),
            digest: info.manifest.to_string(),
            size: info.size,
            name,
        })
        .collect();
    Ok(rows)
}

/// Removes image `name` (as any reference to it reads), unless a lab that is up runs on it.
/// Returns its full reference.
pub fn image_remove(name: &str) -> Result<String, Error> {
    let reference = Reference::parse(name)?;
    let _global = Lock::global()?;
    let store = store()?;
    let full = match store.resolve(&reference)? {
        Some(image) => image.reference,
        None => return Err(lab_image::Error::NotFound(reference.familiar()).into()),
    };
    let labs = users(&full);
    if !labs.is_empty() {
        return Err(Error::ImageInUse { image: reference.familiar(), labs });
    }
    store.remove(&full)?;
    Ok(full)
}

/// Removes what no image of the store needs (layers, blobs, stale work), and with `all` the
/// images no lab that is up runs on (`docker image prune -a`). Returns the images removed
/// and how many store entries went.
pub fn image_prune(all: bool) -> Result<(Vec<String>, usize), Error> {
    let _global = Lock::global()?;
    let store = store()?;
    let mut removed = Vec::new();
    if all {
        for (name, _) in store.list()? {
            if users(&name).is_empty() {
                store.remove(&name)?;
                removed.push(name);
            }
        }
    }
    Ok((removed, store.prune()?))
}

/// A pull's progress, told as lab's [`super::Progress`] to `progress`.
fn teller(progress: Option<&super::ProgressFn>) -> impl Fn(&lab_image::pull::PullProgress) + Sync + '_ {
    move |at| {
        if let Some(p) = progress {
            p(&super::Progress::Pulling { image: at.image.to_string(), done: at.done, total: at.total });
        }
    }
}

/// Pulls image `name` from its registry (even if the store has it by tag: `lab image pull`
/// looks for a newer one). Returns its full reference.
pub async fn image_pull(name: &str, progress: Option<&super::ProgressFn>) -> Result<String, Error> {
    let reference = Reference::parse(name)?;
    Ok(store()?.pull(&reference, true, &teller(progress)).await?)
}

/// Pulls the images `topology` names that the store does not have, all at once.
pub(super) async fn pull_missing(
    topology: &crate::topology::Topology,
    progress: Option<&super::ProgressFn>,
) -> Result<(), Error> {
    let wanted = topology.images();
    if wanted.is_empty() {
        return Ok(());
    }
    let store = store()?;
    let tell = teller(progress);
    let pulls = wanted.into_iter().map(|r| {
        let (store, tell) = (&store, &tell);
        // Told as the first node on it's.
        let node = topology
            .nodes
            .iter()
            .find(|n| matches!(&n.rootfs, Rootfs::Image(i) if i == r))
            .map(|n| n.name.to_string())
            .unwrap_or_default();
        async move {
            let reference = Reference::parse(r)?;
            store.pull(&reference, false, tell).await.map_err(|e| Error::node(&node, Error::from(e)))?;
            Ok::<(), Error>(())
        }
    });
    futures::future::try_join_all(pulls).await?;
    Ok(())
}
