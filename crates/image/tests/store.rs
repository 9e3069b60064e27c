//! The store against the real kernel, as root: images built here from files the test makes
//! (no download), imported as an OCI layout and as a `docker save` tarball, their layers
//! stacked by overlayfs as a node's would be; corrupt and hostile images refused, leaving
//! nothing behind.

use lab_image::{Digest, Error, Reference, Store};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn require_root() {
    assert!(nix::unistd::Uid::effective().is_root(), "the store tests need root (mknod, chown, trusted xattrs)");
}

/// One entry of a layer, written raw (so that hostile paths are possible).
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (path, data): (&str, &[u8]) = match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, b"")
            }
            E::File(p, d, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (p, d)
            }
            E::Symlink(p, t) | E::Hard(p, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
                (p, b"")
            }
        };
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b).unwrap();
    enc.finish().unwrap()
}

/// Writes blob `bytes` into layout `dir`; returns its descriptor.
fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let d = Digest::of(bytes);
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    serde_json::json!({ "mediaType": media_type, "digest": d.as_str(), "size": bytes.len() })
}

/// An OCI layout at `dir` of one image of `layers` (uncompressed tars, stored gzip, zstd
/// and plain in turn), tagged `name`; `arch` wraps it in an index with a second platform.
fn layout(dir: &Path, name: &str, layers: &[Vec<u8>], multi_arch: bool) -> serde_json::Value {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (k, tar) in layers.iter().enumerate() {
        diff_ids.push(Digest::of(tar).to_string());
        descs.push(match k % 3 {
            0 => blob(dir, "application/vnd.oci.image.layer.v1.tar+gzip", &gzip(tar)),
            1 => blob(dir, "application/vnd.oci.image.layer.v1.tar+zstd", &zstd::encode_all(&tar[..], 1).unwrap()),
            _ => blob(dir, "application/vnd.oci.image.layer.v1.tar", tar),
        });
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Entrypoint": ["/bin/serve"], "Cmd": ["--port", "80"], "Env": ["A=1"], "WorkingDir": "/srv", "User": "1000:1000" },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = blob(dir, "application/vnd.oci.image.config.v1+json", &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": descs });
    let mut top = blob(dir, "application/vnd.oci.image.manifest.v1+json", &serde_json::to_vec(&manifest).unwrap());
    let picked = top.clone();
    if multi_arch {
        let (_, arch) = lab_image::oci::host_platform();
        let mut mine = top.clone();
        mine["platform"] = serde_json::json!({ "os": "linux", "architecture": arch });
        // The other platform's manifest is not even in the layout: it must not be read.
        let other = serde_json::json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", "0".repeat(64)), "size": 1, "platform": { "os": "linux", "architecture": "s390x" } });
        let index = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [other, mine] });
        top = blob(dir, "application/vnd.oci.image.index.v1+json", &serde_json::to_vec(&index).unwrap());
    }
    top["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({ "schemaVersion": 2, "manifests": [top] })).unwrap(),
    )
    .unwrap();
    picked
}

fn base_layers() -> Vec<Vec<u8>> {
    vec![
        tar_of(&[
            E::Dir("etc"),
            E::File("etc/gone", b"deleted above\n", 0o644),
            E::File("etc/kept", b"kept\n", 0o644),
            E::Dir("data"),
            E::File("data/old", b"replaced by an opaque dir\n", 0o644),
            E::File("bin/suid", b"#!/bin/sh\n", 0o4755),
            E::Symlink("etc/abs", "/etc/kept"),
            E::Hard("etc/kept-too", "etc/kept"),
        ]),
        tar_of(&[
            E::File("etc/.wh.gone", b"", 0o644),
            E::File("data/.wh..wh..opq", b"", 0o644),
            E::File("data/new", b"new\n", 0o644),
        ]),
        tar_of(&[E::File("srv/index", b"third layer\n", 0o644)]),
    ]
}

#[test]
fn an_oci_layout_imports_and_its_layers_stack_as_overlayfs_reads_them() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("layout");
    layout(&src, "localhost:5000/test/app:1.0", &base_layers(), true);
    let names = store.import(&src, None).unwrap();
    assert_eq!(names, ["localhost:5000/test/app:1.0"]);
    let image = store.resolve(&Reference::parse("localhost:5000/test/app:1.0").unwrap()).unwrap().expect("imported");
    assert_eq!(image.layers.len(), 3);
    assert_eq!(image.config.config.entrypoint.as_deref(), Some(&["/bin/serve".to_string()][..]));
    assert_eq!(image.config.config.working_dir.as_deref(), Some("/srv"));
    // By digest too.
    let pinned = Reference::parse(&format!("localhost:5000/test/app@{}", image.manifest)).unwrap();
    assert_eq!(store.resolve(&pinned).unwrap().map(|i| i.reference), Some(image.reference.clone()));

    // On disk, as overlayfs wants: a 0/0 whiteout, an opaque directory, modes, links.
    let [l1, l2, _] = [&image.layers[0], &image.layers[1], &image.layers[2]];
    let wh = std::fs::symlink_metadata(l2.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "a whiteout device");
    assert_eq!(xattr::get(l2.join("data"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert_eq!(std::fs::symlink_metadata(l1.join("bin/suid")).unwrap().mode() & 0o7777, 0o4755, "set-id kept");
    assert_eq!(std::fs::read_link(l1.join("etc/abs")).unwrap(), Path::new("/etc/kept"));
    assert_eq!(
        std::fs::metadata(l1.join("etc/kept")).unwrap().ino(),
        std::fs::metadata(l1.join("etc/kept-too")).unwrap().ino()
    );

    // Stacked: what a node sees.
    let merged = tmp.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let lower: Vec<String> = image.layers.iter().rev().map(|l| l.display().to_string()).collect();
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(format!("lowerdir={}", lower.join(":")).as_str()),
    )
    .unwrap();
    let seen = || {
        assert!(!merged.join("etc/gone").exists(), "the whiteout hides it");
        assert_eq!(std::fs::read_to_string(merged.join("etc/kept")).unwrap(), "kept\n");
        let data: Vec<String> = std::fs::read_dir(merged.join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(data, ["new"], "the opaque directory hides what was below it");
        assert_eq!(std::fs::read_to_string(merged.join("srv/index")).unwrap(), "third layer\n");
    };
    let result = std::panic::catch_unwind(seen);
    nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
    result.unwrap();

    // Importing it again, twice at once, unpacks nothing new and breaks nothing.
    std::thread::scope(|s| {
        let a = s.spawn(|| store.import(&src, None));
        let b = s.spawn(|| store.import(&src, None));
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    assert_eq!(std::fs::read_dir(store.root().join("layers/sha256")).unwrap().count(), 3);
    assert!(store.remove("localhost:5000/test/app:1.0").unwrap());
    assert_eq!(std::fs::read_dir(store.root().join("layers/sha256")).unwrap().count(), 0, "rm takes its layers");
    assert!(store.resolve(&Reference::parse("localhost:5000/test/app:1.0").unwrap()).unwrap().is_none());
}

#[test]
fn a_corrupt_blob_is_refused_and_nothing_is_kept() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("layout");
    layout(&src, "localhost/bad:1", &base_layers(), false);
    // Flip a byte of the plain (third) layer's blob.
    let third = Digest::of(&base_layers()[2]);
    let path = src.join("blobs/sha256").join(third.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.iter().position(|b| *b == b't').unwrap();
    bytes[at] = b'T';
    std::fs::write(&path, bytes).unwrap();
    let err = store.import(&src, None).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&third.to_string()), "{err}");
    assert!(store.list().unwrap().is_empty());
    let layers = store.root().join("layers/sha256");
    assert!(!layers.join(third.hex()).exists(), "no layer that looks complete");
    assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0, "no work left behind");
}

#[test]
fn layers_that_escape_are_refused_and_write_nothing_outside() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = outside.display().to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", tar_of(&[E::File("../escaped", b"x", 0o644)]), "`..`"),
        ("absolute", tar_of(&[E::File("/abs", b"x", 0o644)]), "absolute"),
        (
            "through a symlink",
            tar_of(&[E::Symlink("esc", &target), E::File("esc/pwned", b"x", 0o644)]),
            "not a directory of the layer",
        ),
        ("hard link out", tar_of(&[E::Hard("passwd", "../../etc/passwd")]), "`..`"),
    ];
    for (what, tar, why) in cases {
        let src = tmp.path().join(format!("layout-{}", what.replace(' ', "-")));
        layout(&src, "localhost/evil:1", &[tar], false);
        let err = store.import(&src, None).unwrap_err();
        assert!(matches!(err, Error::Unsafe { .. }) && err.to_string().contains(why), "{what}: {err}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was written outside");
    assert!(!tmp.path().join("store/tmp/escaped").exists() && !tmp.path().join("escaped").exists());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_docker_save_tarball_imports_under_its_tags_or_a_name_given() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let layers = base_layers();
    let config = serde_json::json!({ "architecture": "amd64", "os": "linux", "config": { "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| Digest::of(l).to_string()).collect::<Vec<_>>() } });
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let mut files: Vec<(String, Vec<u8>)> = vec![(config_name.clone(), config)];
    let mut layer_names = Vec::new();
    for (k, l) in layers.iter().enumerate() {
        let name = format!("l{k}/layer.tar");
        // Docker writes them plain; one gzipped, as some tools do.
        files.push((name.clone(), if k == 1 { gzip(l) } else { l.clone() }));
        layer_names.push(name);
    }
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": ["app:saved", "localhost:5000/app:saved"], "Layers": layer_names }]);
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
    let tarball = tmp.path().join("app.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    for (name, data) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.finish().unwrap();
    drop(b);
    let names = store.import(&tarball, None).unwrap();
    assert_eq!(names, ["docker.io/library/app:saved", "localhost:5000/app:saved"]);
    let image = store.resolve(&Reference::parse("app:saved").unwrap()).unwrap().expect("by its short name");
    assert_eq!(image.config.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(image.layers.len(), 3);
    let renamed = store.import(&tarball, Some(&Reference::parse("mine:1").unwrap())).unwrap();
    assert_eq!(renamed, ["docker.io/library/mine:1"]);
    assert_eq!(store.list().unwrap().len(), 3);
}
