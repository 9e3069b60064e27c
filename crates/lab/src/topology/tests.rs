use super::*;

fn parse(text: &str) -> Result<Topology, TopologyError> {
    Topology::parse(Source::new("lab.toml", text))
}

fn first_error(text: &str) -> (String, String) {
    let err = parse(text).expect_err("topology should be rejected");
    (err.location(), err.diagnostics[0].message.clone())
}

#[test]
fn three_node_example_parses_in_document_order() {
    let t = parse(
        r#"
name = "three-node"
[defaults]
command = ["sleep", "infinity"]
env = { ROLE = "default", A = "1" }
[networks.lan]
subnet = "10.42.0.0/24"
nat = true
[nodes.zeta]
networks = ["lan"]
[nodes.alpha]
networks = { lan = "10.42.0.12" }
env = { ROLE = "alpha" }
[nodes.mid]
networks = ["lan"]
command = "echo hi"
rootfs = "/srv/root"
hostname = "Mid.example"
[[links]]
endpoints = ["zeta:eth1", "alpha"]
addresses = ["10.0.12.1/30", "10.0.12.2/30"]
"#,
    )
    .expect("valid topology");
    assert_eq!(t.name.as_str(), "three-node");
    let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
    assert_eq!(t.networks[0].subnet, Some("10.42.0.0/24".parse().unwrap()));
    assert!(t.networks[0].nat);

    let alpha = &t.nodes[1];
    assert_eq!(alpha.env, [("ROLE".into(), "alpha".into()), ("A".into(), "1".into())]);
    assert_eq!(alpha.command.as_deref(), Some(&["sleep".to_string(), "infinity".to_string()][..]));
    assert_eq!(
        alpha.interfaces[0].kind,
        InterfaceKind::Network {
            network: 0,
            addresses: vec!["10.42.0.12".parse().unwrap()],
            vlans: Default::default()
        }
    );
    // The link endpoint without an interface name gets the next free ethN.
    assert_eq!(alpha.interfaces[1].name.as_str(), "eth1");
    assert_eq!(t.links[0].endpoints[1].node, 1);
    assert_eq!(t.links[0].endpoints[0].addresses, vec!["10.0.12.1/30".parse().unwrap()]);

    let mid = &t.nodes[2];
    assert_eq!(mid.command.as_deref(), Some(&["/bin/sh".to_string(), "-c".into(), "echo hi".into()][..]));
    assert_eq!(mid.rootfs, Rootfs::Dir("/srv/root".into()));
    assert_eq!(mid.hostname.as_str(), "Mid.example");
    assert_eq!(t.nodes[0].rootfs, Rootfs::Host);
}

#[test]
fn lab_name_defaults_to_the_file_stem() {
    let t = Topology::parse(Source::new("dir/my-lab.toml", "[nodes.a]\n")).unwrap();
    assert_eq!(t.name.as_str(), "my-lab");
    // As Compose names projects: `.lab.toml` is one suffix; `lab.toml` takes its directory's
    // name; what a name cannot hold becomes `-`.
    let name = |path: &str| Topology::parse(Source::new(path, "[nodes.a]\n")).map(|t| t.name.to_string());
    assert_eq!(name("ospf.lab.toml").unwrap(), "ospf");
    assert_eq!(name("/home/Alice/Week_3 OSPF/lab.toml").unwrap(), "week-3-ospf");
    assert_eq!(name("My Lab.toml").unwrap(), "my-lab");
    let err = name("/__/lab.toml").unwrap_err();
    assert!(err.diagnostics[0].message.contains("has no `name`"), "{err}");
}

#[test]
fn unknown_keys_point_at_the_key() {
    let (loc, msg) = first_error("name = \"x\"\n[nodes.a]\nnetwroks = [\"lan\"]\n");
    assert_eq!(loc, "lab.toml:3:1");
    assert!(msg.contains("unknown field `netwroks`"), "{msg}");
}

#[test]
fn several_problems_are_all_reported() {
    let err =
        parse("name = \"x\"\n[networks.lan]\nsubnet = \"10.1.0.0/24\"\n[nodes.A]\nnetworks = [\"wan\"]\n").unwrap_err();
    let messages: Vec<&str> = err.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("`A` is not a valid name"), "{messages:?}");
    assert!(messages[1].contains("network `wan`, which is not defined"), "{messages:?}");
}

#[test]
fn explicit_interface_names_cannot_collide() {
    let (loc, msg) = first_error(
        "name = \"x\"\n[networks.lan]\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\n[[links]]\nendpoints = [\"a:eth0\", \"b:eth0\"]\n",
    );
    assert_eq!(loc, "lab.toml:7:14");
    assert!(msg.contains("node `a` already has an interface `eth0`"), "{msg}");
}

#[test]
fn auto_address_keyword_is_accepted() {
    let t = parse("name = \"x\"\n[networks.lan]\n[nodes.a]\nnetworks = { lan = \"auto\" }\n").unwrap();
    assert_eq!(
        t.nodes[0].interfaces[0].kind,
        InterfaceKind::Network { network: 0, addresses: vec![], vlans: Default::default() }
    );
}

#[test]
fn gateway_is_reserved_only_on_nat_networks() {
    let plain =
        "name = \"x\"\n[networks.lan]\nsubnet = \"10.1.0.0/24\"\n[nodes.a]\nnetworks = { lan = \"10.1.0.1\" }\n";
    assert!(parse(plain).is_ok());
    let nat = plain.replace("subnet = ", "nat = true\nsubnet = ");
    let (_, msg) = first_error(&nat);
    assert!(msg.contains("is the gateway of network `lan`"), "{msg}");
}

/// Every file under tests/bad/ starts with `# expect: LINE:COL message` and must be rejected
/// with that message at that place. The end-to-end tests run the same files through `lab up`.
#[test]
fn bad_topology_files_give_their_expected_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected the table of bad topologies in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} must start with `# expect: LINE:COL message`", file.display()));
        let (loc, msg) = expect.split_once(' ').expect("LINE:COL then message");
        let err = match Topology::parse(Source::new(&file, text.clone())) {
            Ok(_) => panic!("{} was accepted; expected an error at {loc}: {msg}", file.display()),
            Err(e) => e,
        };
        let want_loc = format!("{}:{loc}", file.display());
        assert_eq!(err.location(), want_loc, "{}: wrong place for the error:\n{err}", file.display());
        assert!(
            err.diagnostics[0].message.contains(msg),
            "{}: expected a message containing {msg:?}, got:\n{err}",
            file.display()
        );
    }
}

#[test]
fn startup_is_one_script_or_several_in_order_relative_to_the_file() {
    let t = Topology::parse(Source::new(
        "/labs/ospf/lab.toml",
        "[defaults]\nstartup = [\"common.sh\", \"{node}.sh\"]\n[nodes.r1]\n[nodes.r2]\nstartup = \"/opt/only.sh\"\n[nodes.r3]\nstartup = false\n",
    ))
    .unwrap();
    let paths = |k: usize| t.nodes[k].startup.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
    assert_eq!(paths(0), ["/labs/ospf/common.sh", "/labs/ospf/{node}.sh"]);
    assert_eq!(paths(1), ["/opt/only.sh"]);
    assert!(paths(2).is_empty(), "cleared with false");
    let (at, message) = first_error("[nodes.a]\nstartup = [\"ok.sh\", \"\"]\n");
    assert_eq!((at.as_str(), message.as_str()), ("lab.toml:2:21", "a path cannot be empty"));
}
