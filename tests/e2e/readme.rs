//! Every TOML example of the README, brought up for real and taken down again (the README's
//! command lines are checked to parse by the CLI's unit tests). What is particular to the
//! machine the README imagines (`/srv/shared`, a profile of yours, an Alpine rootfs and
//! image, your worker binary, free ports) is given here.

use crate::report::{with_or_without, Feature};
use crate::support::*;

fn readme_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => out.extend(current.take()),
            (Some(block), l) => *block += &format!("{l}\n"),
            (None, _) => {}
        }
    }
    out
}

#[test]
fn every_toml_example_in_the_readme_comes_up_and_goes_down() {
    let _host = shared();
    let netem = with_or_without(Feature::Netem);
    let vlans = Feature::Vlans.present();
    let dir = tempfile::tempdir().expect("temp dir");
    let shared_dir = dir.path().join("shared");
    std::fs::create_dir(&shared_dir).expect("shared dir");
    let rootfs = dir.path().join("alpine");
    std::fs::create_dir(&rootfs).expect("rootfs dir");
    crate::isolation::make_rootfs(&rootfs, &["/bin/sh", "/bin/sleep"]);
    let profile = "/var/cache/lab-test/profiles/moby-default.json";
    assert!(std::path::Path::new(profile).exists(), "{profile}: scripts/install-deps puts Docker's profile there");
    let port = 20_000 + std::process::id() % 20_000;
    // The README's alpine:3.20 is an image of the tests' own, set up as Alpine's is.
    let alpine = format!("localhost/lab-test/alpine:{}", std::process::id());
    let _image = crate::image::import_alpine_like(&alpine);
    let mut ran = 0;
    for (i, example) in readme_examples().iter().enumerate() {
        let topology = example
            .replace("/srv/shared", shared_dir.to_str().unwrap())
            .replace("profiles/allow-ptrace.json", profile)
            .replace("/srv/rootfs/alpine", rootfs.to_str().unwrap())
            .replace("\"/srv/worker\"", "\"/bin/true\"")
            .replace("\"alpine:3.20\"", &format!("\"{alpine}\""))
            .replace("\"8080:80\"", &format!("\"{port}:80\""))
            .replace("\"5353:53/udp\"", &format!("\"{}:53/udp\"", port + 1));
        // Each example in a folder of its own, with what its relative paths name.
        let folder = dir.path().join(format!("example-{i}"));
        std::fs::create_dir(&folder).expect("example folder");
        if topology.contains("name = \"frr-ospf\"") {
            // The FRR lab's routers' configurations are those of topologies/frr-ospf.
            let from = repo().join("topologies/frr-ospf");
            let out = host(&format!("cp -r {0}/r1 {0}/r2 {0}/r3 {1}", from.display(), folder.display()));
            assert!(out.status.success(), "{}", show(&out));
        } else if topology.contains("files = \"{node}\"") {
            for node in ["r1", "r2"] {
                std::fs::create_dir_all(folder.join(node).join("etc")).expect("node files");
                std::fs::write(folder.join(format!("{node}.startup")), "true\n").expect("startup");
                std::fs::create_dir_all(folder.join(format!("data-{node}"))).expect("data");
            }
            std::fs::create_dir_all(folder.join("shared")).expect("shared");
        }
        let file = folder.join("lab.toml");
        std::fs::write(&file, &topology).expect("writing the example");
        let name = unique(&format!("readme{i}"));
        let out = lab(&["up", file.to_str().unwrap(), "--name", &name]);
        let guard = Lab::adopt(&name, &file, tempfile::tempdir().expect("temp dir"));
        let wants_netem =
            ["delay", "loss", "jitter", "corrupt", "duplicate"].iter().any(|k| topology.contains(&format!("{k} = ")));
        if (topology.contains("vlan = ") || topology.contains("vlans = ")) && !vlans {
            assert!(
                !out.status.success() && text_of(&out).contains("CONFIG_BRIDGE_VLAN_FILTERING"),
                "example {i}:\n{topology}\n{}",
                show(&out)
            );
            assert_eq!(leftovers(&name), Vec::<String>::new());
            continue;
        }
        if wants_netem && !netem {
            assert!(
                !out.status.success() && text_of(&out).contains("sch_netem"),
                "example {i}:\n{topology}\n{}",
                show(&out)
            );
            assert_eq!(leftovers(&name), Vec::<String>::new());
            continue;
        }
        assert!(out.status.success(), "README example {i} does not come up:\n{topology}\n{}", show(&out));
        let ps = text(&lab(&["ps", &name]).stdout);
        assert!(ps.contains("running"), "example {i}: {ps}");
        if topology.contains("[[checks]]") {
            let out = lab(&["check", &name]);
            assert!(out.status.success(), "example {i}'s checks fail:\n{}", show(&out));
        }
        guard.down();
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} examples came up");
}
