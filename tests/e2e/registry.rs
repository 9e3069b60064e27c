//! Pulling from a real registry on loopback: Debian's `docker-registry`, started here on a
//! free 127.0.0.1 port with a throwaway storage directory; images built by the tests and
//! pushed with `skopeo`. Nothing is downloaded from anywhere else.

use crate::image::{config_with, layer, layers, put_blob, write_index, write_layout, write_manifest, Entry};
use crate::support::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A registry of the test's own, killed (and its storage removed) when dropped.
struct Registry {
    child: Child,
    pub addr: String,
    storage: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        Registry::start_with(|_| String::new())
    }

    /// A registry whose config has what `extra` returns for its storage directory added.
    fn start_with(extra: impl FnOnce(&Path) -> String) -> Registry {
        let storage = tempfile::tempdir().expect("storage");
        let more = extra(storage.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let addr = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{more}",
                storage.path().join("data").display()
            ),
        )
        .expect("config");
        let mut child = Command::new("docker-registry")
            .args(["serve", config.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-registry (scripts/install-deps installs it)");
        // It says where it listens once it does.
        let mut err = std::io::BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        loop {
            line.clear();
            assert!(err.read_line(&mut line).expect("the registry's log") > 0, "docker-registry exited");
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Registry { child, addr, storage }
    }

    /// Pushes image `reference` (`name` in layout `dir`) as `repo:tag`; `all`: every
    /// platform of an index.
    fn push(&self, dir: &Path, name: &str, repo_tag: &str, all: bool) -> String {
        self.push_as(dir, name, repo_tag, all, None)
    }

    fn push_as(&self, dir: &Path, name: &str, repo_tag: &str, all: bool, creds: Option<&str>) -> String {
        let to = format!("{}/{repo_tag}", self.addr);
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        let creds_arg = creds.map(|c| format!("--dest-creds={c}"));
        args.extend(creds_arg.as_deref());
        if all {
            args.push("--all");
        }
        let from = format!("oci:{}:{name}", dir.display());
        let dest = format!("docker://{to}");
        args.extend([from.as_str(), dest.as_str()]);
        let out = Command::new("skopeo").args(&args).output().expect("skopeo (scripts/install-deps installs it)");
        assert!(out.status.success(), "skopeo {args:?}:\n{}", show(&out));
        to
    }

    /// The manifest (or index) of `image` as the registry serves it (skopeo compresses
    /// layers on the way in, so digests are the registry's, not the layout's).
    fn manifest(&self, image: &str) -> serde_json::Value {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{image}")])
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice(&out.stdout).expect("a manifest")
    }

    /// Where the registry keeps blob `digest`.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        self.storage.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the images this test pulled, however it ends.
struct Forget(Vec<String>);

impl Drop for Forget {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = lab(&["image", "rm", i]);
        }
    }
}

fn alpine_like(layers: &[Vec<u8>]) -> Vec<u8> {
    config_with(layers, serde_json::json!({ "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] }))
}

#[test]
fn images_pull_from_a_registry_by_lab_image_pull_and_by_lab_up_two_at_once() {
    let _host = shared();
    let registry = Registry::start();
    let src = tempfile::tempdir().expect("layout");
    let layers = layers();
    write_layout(src.path(), "v1", &layers, &alpine_like(&layers));
    let tag = std::process::id();
    let pulled = registry.push(src.path(), "v1", &format!("lab-test/pulled:{tag}"), false);
    let fresh = registry.push(src.path(), "v1", &format!("lab-test/fresh:{tag}"), false);
    let _forget = Forget(vec![pulled.clone(), fresh.clone()]);

    let out = lab(&["image", "pull", &pulled]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout), format!("pulled {pulled}\n"));
    assert_eq!(text(&out.stderr), "", "quiet off a terminal: {}", show(&out));
    assert!(text(&lab(&["image", "ls"]).stdout).contains(&pulled));

    // Two labs on an image the store lacks, brought up at once: each pulls (or finds the
    // other's layers), both come up.
    let topology = format!("[nodes.a]\nimage = \"{fresh}\"\ncommand = [\"sleep\", \"infinity\"]\n");
    let (one, two) = std::thread::scope(|s| {
        let a = s.spawn(|| Lab::try_up("pulla", &topology));
        let b = s.spawn(|| Lab::try_up("pullb", &topology));
        (a.join().expect("first up"), b.join().expect("second up"))
    });
    for (l, out) in [&one, &two] {
        assert!(out.status.success(), "{}: {}", l.name, show(out));
        assert_eq!(l.sh("a", "ls /opt/data"), "new\n");
    }
    let json: serde_json::Value = serde_json::from_slice(&lab(&["image", "ls", "--json"]).stdout).expect("json");
    let row = json.as_array().and_then(|a| a.iter().find(|i| i["name"] == fresh.as_str()).cloned()).expect("listed");
    assert_eq!(row["labs"].as_array().map(Vec::len), Some(2), "{row}");
    let (one, two) = (one.0, two.0);
    one.down();
    two.down();
}

#[test]
fn a_pull_that_fails_names_the_image_the_registry_and_why_and_keeps_nothing() {
    let _host = shared();
    let registry = Registry::start();
    let src = tempfile::tempdir().expect("layout");
    // A layer of this test's own, so that the store cannot have it from another test.
    let own = layer(&[Entry::File(
        "etc/own",
        format!("{} {:?}\n", std::process::id(), std::time::Instant::now()).into_bytes(),
        0o644,
    )]);
    let mut all = layers();
    all.push(own.clone());
    write_layout(src.path(), "v1", &all, &alpine_like(&all));
    let tag = std::process::id();
    let bad = registry.push(src.path(), "v1", &format!("lab-test/corrupt:{tag}"), false);
    let _forget = Forget(vec![bad.clone()]);

    let missing = format!("{}/lab-test/never-pushed:1", registry.addr);
    let out = lab(&["image", "pull", &missing]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("pulling {missing} from {}: not found", registry.addr)), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let out = lab(&["image", "pull", &format!("127.0.0.1:{closed}/lab-test/x:1")]);
    assert!(text(&out.stderr).contains("unreachable"), "{}", show(&out));

    // The registry's copy of the test's own layer (the last), tampered with: refused,
    // nothing kept.
    let manifest = registry.manifest(&bad);
    let digest = manifest["layers"][3]["digest"].as_str().expect("a fourth layer").to_string();
    let file = registry.blob_file(&digest);
    let mut bytes = std::fs::read(&file).expect("the layer in the registry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).expect("tampering");
    let out = lab(&["image", "pull", &bad]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("corrupt or tampered with") && err.contains(&digest), "{}", show(&out));
    assert!(!text(&lab(&["image", "ls"]).stdout).contains(&bad), "nothing of it is listed");
    let diff_id = lab_image::Digest::of(&own).to_string();
    let layer_dir = Path::new("/var/lib/lab/images/layers/sha256").join(&diff_id["sha256:".len()..]);
    assert!(!layer_dir.exists(), "no layer that looks complete");
    // A lab on it fails before anything is made.
    let (l, out) = Lab::try_up("corrupt", &format!("[nodes.a]\nimage = \"{bad}\"\n"));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(leftovers(&l.name), Vec::<String>::new());
}

#[test]
fn a_manifest_list_resolves_to_this_hosts_platform() {
    let _host = shared();
    let registry = Registry::start();
    let src = tempfile::tempdir().expect("layout");
    let layers = layers();
    let platform = |arch: &str| {
        let config = config_with(&layers, serde_json::json!({ "Cmd": ["/bin/sh"], "Env": [format!("ARCH={arch}")] }));
        let config = {
            let mut c: serde_json::Value = serde_json::from_slice(&config).expect("config");
            c["architecture"] = arch.into();
            serde_json::to_vec(&c).expect("config")
        };
        let mut m = write_manifest(src.path(), &layers, &config);
        m["platform"] = serde_json::json!({ "os": "linux", "architecture": arch });
        m
    };
    let (_, arch) = lab_image::oci::host_platform();
    let (other, mine) = (platform("s390x"), platform(arch));
    let mine_config = mine["digest"].clone();
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [other, mine.clone()] });
    let mut desc =
        put_blob(src.path(), "application/vnd.oci.image.index.v1+json", &serde_json::to_vec(&index).expect("index"));
    desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": "multi" });
    write_index(src.path(), vec![desc]);
    let image = registry.push(src.path(), "multi", &format!("lab-test/multi:{}", std::process::id()), true);
    let _forget = Forget(vec![image.clone()]);
    let out = lab(&["image", "pull", &image]);
    assert!(out.status.success(), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&lab(&["image", "ls", "--json"]).stdout).expect("json");
    let row = json.as_array().and_then(|a| a.iter().find(|i| i["name"] == image.as_str()).cloned()).expect("listed");
    let list = registry.manifest(&image);
    let entry =
        list["manifests"].as_array().and_then(|m| m.iter().find(|m| m["platform"]["architecture"] == arch).cloned());
    let want = entry.expect("this platform in the pushed list")["digest"].clone();
    assert_eq!(row["digest"], want, "this host's platform's manifest, not the list's first ({mine_config})");
}

/// `lab` with environment `env` added.
fn lab_with(env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    Command::new(lab_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .expect("lab")
}

#[test]
fn a_tls_registry_with_htpasswd_needs_its_ca_and_the_right_credentials() {
    let _host = shared();
    let keys = tempfile::tempdir().expect("keys");
    let k = |f: &str| keys.path().join(f);
    // A CA of the test's own, and the registry's certificate from it for localhost.
    let script = format!(
        "set -e; cd {dir}; \
         openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=lab-test-ca 2>/dev/null; \
         openssl req -newkey rsa:2048 -nodes -keyout reg.key -out reg.csr -subj /CN=localhost 2>/dev/null; \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext; \
         openssl x509 -req -in reg.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out reg.crt -days 1 -extfile ext 2>/dev/null; \
         python3 -c \"import crypt; print('alice:' + crypt.crypt('right', crypt.mksalt(crypt.METHOD_BLOWFISH)))\" > htpasswd",
        dir = keys.path().display()
    );
    let out = host(&script);
    assert!(out.status.success(), "making the keys:\n{}", show(&out));
    let registry = Registry::start_with(|_| {
        format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: lab-test\n    path: {}\n",
            k("reg.crt").display(),
            k("reg.key").display(),
            k("htpasswd").display()
        )
    });
    let src = tempfile::tempdir().expect("layout");
    let layers = layers();
    write_layout(src.path(), "v1", &layers, &alpine_like(&layers));
    let pushed = registry.push_as(
        src.path(),
        "v1",
        &format!("lab-test/private:{}", std::process::id()),
        false,
        Some("alice:right"),
    );
    // By the name its certificate has.
    let image = pushed.replacen("127.0.0.1", "localhost", 1);
    let _forget = Forget(vec![image.clone()]);
    let auth = |user: &str, pass: &str, file: &str| {
        let token = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{pass}"));
        let host = image.split('/').next().expect("a registry");
        std::fs::write(k(file), format!(r#"{{"auths": {{"{host}": {{"auth": "{token}"}}}}}}"#)).expect("auth file");
        k(file)
    };
    let (wrong, right, ca) = (auth("alice", "wrong", "wrong.json"), auth("alice", "right", "right.json"), k("ca.crt"));
    // Without the CA: its certificate is not trusted (and it speaks no plain HTTP).
    let out = lab_with(&[("REGISTRY_AUTH_FILE", &right)], &["image", "pull", &image]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // Wrong credentials, and none: unauthorized.
    for env in [
        vec![("LAB_REGISTRY_CA", ca.as_path()), ("REGISTRY_AUTH_FILE", wrong.as_path())],
        vec![("LAB_REGISTRY_CA", ca.as_path()), ("REGISTRY_AUTH_FILE", k("none.json").as_path())],
    ] {
        let out = lab_with(&env, &["image", "pull", &image]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        assert!(text(&out.stderr).contains("unauthorized"), "{}", show(&out));
    }
    // The CA and the right credentials: pulled.
    let out = lab_with(&[("LAB_REGISTRY_CA", &ca), ("REGISTRY_AUTH_FILE", &right)], &["image", "pull", &image]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(text(&lab(&["image", "ls"]).stdout).contains(&image));
}
