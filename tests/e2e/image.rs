//! Nodes from OCI images, built here from files the test makes (the host's static busybox
//! and a few files; nothing downloaded): `lab image import` of an OCI layout and of a
//! `docker save` tarball, a three-node lab on the image that pings by name, whiteouts and an
//! opaque directory seen as Docker shows them, the image's Entrypoint, Cmd, Env,
//! WorkingDir and User applied and overridden by the node, `lab image rm` refused while a
//! lab runs on it.

use crate::support::*;
use lab_image::Digest;
use std::path::Path;

/// A layer's entries: (path, contents or symlink target, mode; `None` contents: a directory).
pub(crate) enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, Vec<u8>, u32),
    Link(&'a str, &'a str),
}

pub(crate) fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).expect("a directory entry");
            }
            Entry::File(p, data, mode) => {
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).expect("a file entry");
            }
            Entry::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).expect("a symlink entry");
            }
        }
    }
    b.into_inner().expect("a layer")
}

/// Three layers: a busybox root with a user `app` (1000); one that deletes /etc/doomed and
/// replaces /opt/data with an opaque directory; one that adds /srv/motd.
pub(crate) fn layers() -> Vec<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox").expect("the host's static busybox (scripts/install-deps installs it)");
    let mut base = vec![
        Entry::Dir("bin", 0o755),
        Entry::File("bin/busybox", busybox, 0o755),
        Entry::Dir("etc", 0o755),
        Entry::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/srv:/bin/sh\n".to_vec(), 0o644),
        Entry::File("etc/group", b"root:x:0:\napp:x:1000:\n".to_vec(), 0o644),
        Entry::File("etc/doomed", b"deleted by the second layer\n".to_vec(), 0o644),
        Entry::Dir("opt/data", 0o755),
        Entry::File("opt/data/old", b"hidden by the opaque directory\n".to_vec(), 0o644),
        Entry::Dir("srv", 0o755),
        Entry::Dir("tmp", 0o1777),
        Entry::Dir("root", 0o700),
    ];
    for applet in ["sh", "ping", "cat", "ls", "id", "env", "pwd", "sleep", "echo", "hostname", "ip", "test"] {
        base.push(Entry::Link(Box::leak(format!("bin/{applet}").into_boxed_str()), "busybox"));
    }
    vec![
        layer(&base),
        layer(&[
            Entry::File("etc/.wh.doomed", Vec::new(), 0o644),
            Entry::Dir("opt/data", 0o755),
            Entry::File("opt/data/.wh..wh..opq", Vec::new(), 0o644),
            Entry::File("opt/data/new", b"the second layer's\n".to_vec(), 0o644),
        ]),
        layer(&[Entry::File("srv/motd", b"from the image\n".to_vec(), 0o644)]),
    ]
}

/// The test image's config: one that shows each setting at work.
fn config(layers: &[Vec<u8>]) -> Vec<u8> {
    config_with(
        layers,
        serde_json::json!({
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["id -u > /tmp/ran; pwd >> /tmp/ran; echo $GREETING >> /tmp/ran; exec sleep 1000000"],
            "Env": ["PATH=/bin", "GREETING=hello from the image"],
            "WorkingDir": "/srv",
            "User": "1000:1000",
            "StopSignal": "SIGINT"
        }),
    )
}

pub(crate) fn config_with(layers: &[Vec<u8>], run: serde_json::Value) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let c = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": run,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    serde_json::to_vec(&c).expect("config")
}

/// Imports, as `tag`, an image set up as Alpine's is (no Entrypoint, Cmd `/bin/sh`): for
/// the README's example. Removed from the store when the result is dropped.
pub(crate) fn import_alpine_like(tag: &str) -> Forget {
    let dir = tempfile::tempdir().expect("temp dir");
    let layers = layers();
    let config =
        config_with(&layers, serde_json::json!({ "Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] }));
    write_layout(dir.path(), tag, &layers, &config);
    let out = lab(&["image", "import", dir.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", show(&out));
    Forget(tag.to_string())
}

/// An OCI layout of the test image at `dir`, tagged `name`.
fn oci_layout(dir: &Path, name: &str) {
    let layers = layers();
    let config = config(&layers);
    write_layout(dir, name, &layers, &config);
}

pub(crate) fn write_layout(dir: &Path, name: &str, layers: &[Vec<u8>], config: &[u8]) {
    let mut m = write_manifest(dir, layers, config);
    m["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    write_index(dir, vec![m]);
}

/// Blob `bytes` of media type `media` in layout `dir`; its descriptor.
pub(crate) fn put_blob(dir: &Path, media: &str, bytes: &[u8]) -> serde_json::Value {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout");
    let d = Digest::of(bytes);
    std::fs::write(blobs.join(d.hex()), bytes).expect("blob");
    serde_json::json!({ "mediaType": media, "digest": d.as_str(), "size": bytes.len() })
}

/// An image's blobs in layout `dir`; its manifest's descriptor.
pub(crate) fn write_manifest(dir: &Path, layers: &[Vec<u8>], config: &[u8]) -> serde_json::Value {
    let descs: Vec<_> = layers.iter().map(|l| put_blob(dir, "application/vnd.oci.image.layer.v1.tar", l)).collect();
    let config = put_blob(dir, "application/vnd.oci.image.config.v1+json", config);
    let manifest = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": descs });
    put_blob(dir, "application/vnd.oci.image.manifest.v1+json", &serde_json::to_vec(&manifest).expect("manifest"))
}

/// The layout's `index.json` (and `oci-layout`) listing `manifests`.
pub(crate) fn write_index(dir: &Path, manifests: Vec<serde_json::Value>) {
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).expect("index")).expect("index.json");
}

/// The image as `docker save` writes it: manifest.json, the config, a tarball per layer.
fn docker_save(file: &Path, tag: &str) {
    let layers = layers();
    let config = config(&layers);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let mut b = tar::Builder::new(std::fs::File::create(file).expect("tarball"));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).expect("tarball entry");
    };
    add(&config_name, &config);
    let mut names = Vec::new();
    for (k, l) in layers.iter().enumerate() {
        let name = format!("{k}/layer.tar");
        add(&name, l);
        names.push(name);
    }
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": [tag], "Layers": names }]);
    add("manifest.json", &serde_json::to_vec(&manifest).expect("manifest.json"));
    b.finish().expect("tarball");
}

#[test]
fn nodes_run_an_imported_image_as_docker_would() {
    let _host = shared();
    let tmp = tempfile::tempdir().expect("temp dir");
    // A tag of this test's own: other test runs may share the store.
    let tag = format!("localhost/lab-test/busybox:{}", std::process::id());
    let layout = tmp.path().join("layout");
    oci_layout(&layout, &tag);
    let out = lab(&["image", "import", layout.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout), format!("imported {tag}\n"));
    let _forget = Forget(tag.clone());

    let lab_ = Lab::up(
        "img",
        &format!(
            r#"
[defaults]
image = "{tag}"
[networks.lan]
[nodes.n1]
networks = ["lan"]
[nodes.n2]
networks = ["lan"]
env = {{ GREETING = "the node's own" }}
[nodes.n3]
networks = ["lan"]
entrypoint = ["/bin/sleep"]
command = ["1000000"]
user = "root"
"#
        ),
    );
    // Entrypoint + Cmd as the image's user, in its WorkingDir, with its Env (the node's wins).
    let ran = |node: &str| {
        for _ in 0..50 {
            let out = lab_.exec(node, &["cat", "/tmp/ran"]);
            if out.status.success() {
                return text(&out.stdout);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{node} never ran the image's command");
    };
    assert_eq!(ran("n1"), "1000\n/srv\nhello from the image\n");
    assert_eq!(ran("n2"), "1000\n/srv\nthe node's own\n");
    // An entrypoint of the node's own drops the image's Cmd; its user replaces the image's.
    let n3 =
        lab_.exec("n3", &["sh", "-c", "test -e /tmp/ran && echo ran; id -u; cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]);
    let n3 = text(&n3.stdout);
    assert!(n3.starts_with("0\n") && n3.contains("/bin/sleep 1000000"), "{n3}");
    // The layers as Docker shows them: deleted, replaced, added.
    assert!(!lab_.exec("n1", &["test", "-e", "/etc/doomed"]).status.success(), "the whiteout hides /etc/doomed");
    assert_eq!(lab_.sh("n1", "ls /opt/data"), "new\n", "the opaque directory hides the first layer's");
    assert_eq!(lab_.sh("n1", "cat /srv/motd"), "from the image\n");
    // lab's own files over the image's: the nodes ping each other by name (as root: the
    // image's user has no raw sockets, as in Docker).
    let ping = lab(&["exec", "--lab", &lab_.name, "-u", "root", "n1", "ping", "-c1", "-W2", "n2"]);
    assert!(ping.status.success(), "{}", show(&ping));
    // What a node writes is its own, and stays across stop and start.
    lab(&["exec", "--lab", &lab_.name, "-u", "root", "n1", "sh", "-c", "echo mine > /srv/mine"]);
    assert!(!lab_.exec("n2", &["test", "-e", "/srv/mine"]).status.success());
    let n1 = format!("{}/n1", lab_.name);
    for cmd in ["stop", "start"] {
        let out = lab(&[cmd, &n1]);
        assert!(out.status.success(), "{}", show(&out));
    }
    assert_eq!(lab_.sh("n1", "cat /srv/mine"), "mine\n", "kept across stop/start");

    // ps, inspect and the store say which image the nodes run.
    let details = node_json(&lab_.name, "n1");
    assert_eq!(details["image"], tag.as_str(), "{details}");
    let graph = text(&lab(&["graph", &lab_.name]).stdout);
    assert!(graph.contains(&format!("n1<br/>{tag}")), "the drawing names the image: {graph}");
    let ls = text(&lab(&["image", "ls"]).stdout);
    let row = ls.lines().find(|l| l.starts_with(&tag)).unwrap_or_else(|| panic!("{tag} in {ls}"));
    assert!(row.contains(&lab_.name), "the image's row names the lab that runs it: {row}");
    let json: serde_json::Value = serde_json::from_slice(&lab(&["image", "ls", "--json"]).stdout).expect("json");
    let entry = json.as_array().and_then(|a| a.iter().find(|i| i["name"] == tag.as_str()).cloned()).expect("listed");
    assert!(
        entry["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")) && entry["size"].as_u64() > Some(100_000)
    );
    // Not removable while the lab runs on it.
    let rm = lab(&["image", "rm", &tag]);
    assert_eq!(rm.status.code(), Some(1), "{}", show(&rm));
    assert!(text(&rm.stderr).contains(&format!("is used by lab {}", lab_.name)), "{}", show(&rm));
    lab_.down();
    let rm = lab(&["image", "rm", &tag]);
    assert!(rm.status.success(), "{}", show(&rm));
    assert!(!text(&lab(&["image", "ls"]).stdout).contains(&tag));
}

#[test]
fn a_docker_save_tarball_imports_and_an_image_no_registry_has_fails_up_naming_the_node() {
    let _host = shared();
    let tmp = tempfile::tempdir().expect("temp dir");
    let tag = format!("lab-test-saved:{}", std::process::id());
    let tarball = tmp.path().join("saved.tar");
    docker_save(&tarball, &tag);
    let out = lab(&["image", "import", tarball.to_str().expect("utf-8"), "--name", &format!("{tag}-renamed")]);
    assert!(out.status.success(), "{}", show(&out));
    let full = format!("docker.io/library/{tag}-renamed");
    assert_eq!(text(&out.stdout), format!("imported {full}\n"));
    let _forget = Forget(full.clone());
    let l = Lab::up("saved", &format!("[nodes.a]\nimage = \"{tag}-renamed\"\ncommand = [\"exec sleep 1000000\"]\n"));
    assert_eq!(l.sh("a", "cat /srv/motd"), "from the image\n");
    l.down();

    // An image the store lacks is pulled first; one no registry has fails the up, naming the
    // node, before anything is made. (A registry on a closed loopback port: nothing leaves.)
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let (missing, out) =
        Lab::try_up("noimage", &format!("[nodes.a]\nimage = \"127.0.0.1:{closed}/lab-test/never:1\"\n"));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "node a: pulling 127.0.0.1:{closed}/lab-test/never:1 from 127.0.0.1:{closed}: unreachable"
        )),
        "{err}"
    );
    assert_eq!(leftovers(&missing.name), Vec::<String>::new());
}

/// Removes an image from the store when the test ends, however it ends.
pub(crate) struct Forget(String);

impl Drop for Forget {
    fn drop(&mut self) {
        let _ = lab(&["image", "rm", &self.0]);
    }
}
