use super::*;
use crate::diagnostic::Source;
use std::collections::HashSet;

fn topo(text: &str) -> Topology {
    Topology::parse(Source::new("lab.toml", text)).expect("valid topology")
}

const THREE_NODE: &str = r#"
name = "three-node"
[networks.lan]
subnet = "10.42.0.0/24"
nat = true
[nodes.node1]
networks = ["lan"]
[nodes.node2]
networks = { lan = "10.42.0.2" }
[nodes.node3]
networks = ["lan"]
command = ["sleep", "infinity"]
"#;

#[test]
fn three_node_plan() {
    let plan = Plan::new(&topo(THREE_NODE), &Facts::default()).unwrap();
    assert_eq!(plan.lab.as_str(), "three-node");
    assert_eq!(plan.nft_table, "lab-three-node");
    assert_eq!(plan.id.len(), ID_LEN);
    let lan = &plan.networks[0];
    assert_eq!(lan.subnet.to_string(), "10.42.0.0/24");
    assert_eq!(lan.gateway, Some("10.42.0.1".parse().unwrap()));
    assert_eq!(lan.bridge.as_str(), format!("lb-{}-0", plan.id));
    assert_eq!(lan.alias, "lab/three-node/net/lan");
    assert_eq!(lan.mac[0] & 0x03, 0x02, "locally administered unicast");

    // node2 asked for .2; the others get the next free addresses in file order.
    let addrs: Vec<String> = plan.nodes.iter().map(|n| n.interfaces[0].addresses[0].to_string()).collect();
    assert_eq!(addrs, ["10.42.0.3/24", "10.42.0.2/24", "10.42.0.4/24"]);

    let n1 = &plan.nodes[0];
    assert_eq!(n1.netns, "three-node.node1");
    assert_eq!(n1.cgroup, "lab/three-node/node1");
    assert_eq!(n1.interfaces[0].name.as_str(), "eth0");
    assert_eq!(
        n1.interfaces[0].attach,
        Attach::Bridge {
            network: 0,
            host_veth: IfName::parse(&format!("lv-{}-0", plan.id)).unwrap(),
            alias: "lab/three-node/node1/eth0".into(),
            vlans: Default::default()
        }
    );
    assert_eq!(n1.routes, [RoutePlan { destination: "0.0.0.0/0".parse().unwrap(), via: "10.42.0.1".parse().unwrap() }]);
    assert_eq!(
        n1.hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         10.42.0.3\tnode1\n10.42.0.2\tnode2\n10.42.0.4\tnode3\n\
         10.42.0.3\tnode1.lan node1-eth0\n10.42.0.2\tnode2.lan node2-eth0\n10.42.0.4\tnode3.lan node3-eth0\n"
    );
}

#[test]
fn plan_is_deterministic_and_round_trips_through_json() {
    let t = topo(THREE_NODE);
    let a = Plan::new(&t, &Facts::default()).unwrap();
    let b = Plan::new(&t, &Facts::default()).unwrap();
    assert_eq!(a, b);
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), a);
}

#[test]
fn free_subnets_avoid_host_routes_and_other_labs() {
    let facts = Facts {
        used_subnets: vec![
            ("10.42.0.0/23".parse().unwrap(), "host route".into()),
            ("10.42.2.0/24".parse().unwrap(), "lab other".into()),
        ],
        ..Facts::default()
    };
    let t = topo("name = \"x\"\n[networks.a]\n[networks.b]\nsubnet = \"10.42.3.0/24\"\n[networks.c]\n[nodes.n]\n");
    let plan = Plan::new(&t, &facts).unwrap();
    let subnets: Vec<String> = plan.networks.iter().map(|n| n.subnet.to_string()).collect();
    assert_eq!(subnets, ["10.42.4.0/24", "10.42.3.0/24", "10.42.5.0/24"]);
}

#[test]
fn a_taken_explicit_subnet_is_an_error_at_the_subnet() {
    let facts = Facts {
        used_subnets: vec![("10.0.0.0/8".parse().unwrap(), "host route 10.0.0.0/8 dev eth1".into())],
        ..Facts::default()
    };
    let t = topo("name = \"x\"\n[networks.lan]\nsubnet = \"10.9.0.0/24\"\nnat = true\n[nodes.a]\n");
    let err = Plan::new(&t, &facts).unwrap_err();
    assert_eq!(err.location(), "lab.toml:3:10");
    assert!(err.diagnostics[0].message.contains("already in use by host route 10.0.0.0/8 dev eth1"), "{err}");
}

#[test]
fn a_network_without_nat_may_share_its_subnet_but_free_ones_are_picked_apart() {
    let facts = Facts {
        used_subnets: vec![("10.9.0.0/16".parse().unwrap(), "host route".into())],
        segment_subnets: vec![("10.42.0.0/24".parse().unwrap(), "lab alice's network lan".into())],
        ..Facts::default()
    };
    // Copies of one worksheet lab: the same fixed subnet as a host route, or as another
    // lab's segment, on a network the host is not on.
    let t = topo("name = \"x\"\n[networks.lan]\nsubnet = \"10.9.0.0/24\"\n[networks.b]\nsubnet = \"10.42.0.0/24\"\n[networks.c]\n[nodes.a]\n");
    let plan = Plan::new(&t, &facts).unwrap();
    let subnets: Vec<String> = plan.networks.iter().map(|n| n.subnet.to_string()).collect();
    assert_eq!(subnets, ["10.9.0.0/24", "10.42.0.0/24", "10.42.1.0/24"]);
}

#[test]
fn a_copy_of_a_nat_lab_that_is_up_gets_a_gateway_namespace_on_a_transfer_subnet() {
    let t = topo("name = \"bob\"\n[networks.lan]\nsubnet = \"10.9.0.0/24\"\nsubnet6 = \"fd00:9::/64\"\nnat = true\n[networks.priv]\n[nodes.a]\nnetworks = [\"lan\", \"priv\"]\nports = [\"8080:80\"]\n");
    // Alone, the host routes it.
    assert_eq!(Plan::new(&t, &Facts::default()).unwrap().gateway, None);
    let facts = Facts {
        lab_subnets: vec![
            ("10.9.0.0/24".parse().unwrap(), "lab alice's network lan".into()),
            ("10.42.248.0/30".parse().unwrap(), "lab carol's gateway namespace".into()),
        ],
        ..Facts::default()
    };
    let plan = Plan::new(&t, &facts).unwrap();
    let g = plan.gateway.as_ref().expect("a gateway namespace");
    assert_eq!(g.netns, "bob");
    assert_eq!(g.uplink.as_str(), format!("lg-{}-0", plan.id));
    let shown = |a: &[IpNetwork]| a.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(shown(&g.host_addresses), ["10.42.248.5/30", "fd42:4242:ff00::1/64"]);
    assert_eq!(shown(&g.addresses), ["10.42.248.6/30", "fd42:4242:ff00::2/64"]);
    // One leg, on the NAT network only, named after it; the network keeps its gateways.
    assert_eq!(g.legs.len(), 1);
    assert_eq!((g.legs[0].network, g.legs[0].name.as_str()), (0, "lan"));
    assert_eq!(g.legs[0].host_end.as_str(), format!("lg-{}-1", plan.id));
    assert_eq!(plan.networks[0].gateway, Some("10.9.0.1".parse().unwrap()));
    assert_eq!(plan.ports[0].address, "10.9.0.2".parse::<std::net::IpAddr>().unwrap());

    // A host route of the host's own is still an error; a taken name is one too.
    let facts = Facts { used_subnets: vec![("10.9.0.0/16".parse().unwrap(), "host route".into())], ..Facts::default() };
    assert!(Plan::new(&t, &facts).unwrap_err().diagnostics[0].message.contains("already in use by host route"));
    let facts = Facts {
        lab_subnets: vec![("10.9.0.0/24".parse().unwrap(), "lab alice's network lan".into())],
        taken_netns: vec![("bob".into(), "a network namespace of the host's".into())],
        ..Facts::default()
    };
    let err = Plan::new(&t, &facts).unwrap_err();
    assert!(err.diagnostics[0].message.contains("gateway namespace `bob`"), "{err}");
}

#[test]
fn legs_are_named_net_k_when_a_network_name_does_not_fit() {
    let t = topo("name = \"bob\"\n[networks.a-very-long-network-name]\nsubnet = \"10.9.0.0/24\"\nnat = true\n[networks.wan]\nnat = true\n[nodes.a]\n");
    let facts = Facts { lab_subnets: vec![("10.9.0.0/24".parse().unwrap(), "lab alice".into())], ..Facts::default() };
    let plan = Plan::new(&t, &facts).unwrap();
    let names: Vec<&str> = plan.gateway.as_ref().unwrap().legs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["net0", "net1"]);
}

#[test]
fn a_full_subnet_is_an_error() {
    let t = topo("name = \"x\"\n[networks.lan]\nsubnet = \"10.9.0.0/30\"\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\nnetworks = [\"lan\"]\n");
    let err = Plan::new(&t, &Facts::default()).unwrap_err();
    assert!(err.diagnostics[0].message.contains("no free address left for node `b`"), "{err}");
}

#[test]
fn ids_are_salted_away_from_taken_ones() {
    let t = topo(THREE_NODE);
    let first = Plan::new(&t, &Facts::default()).unwrap().id;
    let facts = Facts { taken_ids: [first.clone()].into(), ..Facts::default() };
    let second = Plan::new(&t, &facts).unwrap();
    assert_ne!(second.id, first);
    let plan = Plan::new(&t, &Facts::default()).unwrap();
    let facts = Facts { taken_groups: [plan.group].into(), ..Facts::default() };
    let third = Plan::new(&t, &facts).unwrap();
    assert_ne!(third.group, plan.group);
    assert_eq!(third.group & 0xffff_0000, GROUP_BASE);
    assert_eq!(second.networks[0].bridge.as_str(), format!("lb-{}-0", second.id));
}

#[test]
fn host_interface_names_fit_ifnamsiz_for_big_labs() {
    let mut text = String::from("name = \"a-lab-with-a-really-long-name-that-is-still-a-dns-label-xyz\"\n");
    for n in 0..40 {
        text += &format!("[networks.n{n}]\n");
    }
    for i in 0..300 {
        let nets: Vec<String> = (0..40).filter(|n| (i + n) % 10 == 0).map(|n| format!("\"n{n}\"")).collect();
        text += &format!("[nodes.node-with-a-long-name-{i}]\nnetworks = [{}]\n", nets.join(","));
    }
    let plan = Plan::new(&topo(&text), &Facts::default()).unwrap();
    let mut names = HashSet::new();
    for n in &plan.networks {
        assert!(n.bridge.len() <= 15, "{}", n.bridge);
        assert!(names.insert(n.bridge.clone()));
    }
    for i in plan.nodes.iter().flat_map(|n| &n.interfaces) {
        if let Attach::Bridge { host_veth, .. } = &i.attach {
            assert!(host_veth.len() <= 15, "{host_veth}");
            assert!(names.insert(host_veth.clone()), "{host_veth} twice");
        }
    }
    assert_eq!(names.len(), 40 + 300 * 4);
}

#[test]
fn hosts_prefer_an_address_on_a_shared_segment() {
    let t = topo(
        r#"
name = "x"
[networks.a]
subnet = "10.1.0.0/24"
[networks.b]
subnet = "10.2.0.0/24"
[nodes.r]
networks = ["a", "b"]
hostname = "router"
[nodes.left]
networks = ["a"]
[nodes.right]
networks = ["b"]
[nodes.island]
[[links]]
endpoints = ["island", "right"]
addresses = ["10.9.0.1/30", "10.9.0.2/30"]
"#,
    );
    let plan = Plan::new(&t, &Facts::default()).unwrap();
    let hosts = |n: usize| plan.nodes[n].hosts.clone();
    assert!(hosts(1).contains("10.1.0.2\tr router\n"), "{}", hosts(1));
    assert!(hosts(2).contains("10.2.0.2\tr router\n"), "{}", hosts(2));
    assert!(hosts(2).contains("10.1.0.2\tr.a r-eth0\n10.2.0.2\tr.b r-eth1\n"), "{}", hosts(2));
    // A link's ends by interface too.
    assert!(hosts(1).contains("10.9.0.1\tisland-eth0\n"), "{}", hosts(1));
    // island reaches right over the link, so that is the address it gets for it.
    assert!(hosts(3).contains("10.9.0.2\tright\n"), "{}", hosts(3));
    assert!(hosts(3).contains("10.9.0.1\tisland\n"), "{}", hosts(3));
    // Without NAT there is no gateway and no default route.
    assert!(plan.nodes.iter().all(|n| n.routes.is_empty()));
    assert_eq!(plan.networks[0].gateway, None);
}

/// A node's routes as `ip route` writes them.
fn route_list(node: &NodePlan) -> Vec<String> {
    node.routes.iter().map(|r| format!("{} via {}", r.destination, r.via)).collect()
}

fn routed() -> Topology {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../topologies/routed.toml")).unwrap();
    Topology::parse(Source::new("routed.toml", &text)).expect("routed.toml is valid")
}

#[test]
fn routed_example_plans_static_routes_and_dual_stack() {
    let plan = Plan::new(&routed(), &Facts::default()).unwrap();
    let a = plan.node("a").unwrap();
    let addrs: Vec<String> = a.interfaces[0].addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(addrs, ["10.1.0.10/24", "fd00:1::10/64"]);
    // No NAT network: no default route, only the file's.
    let routes = route_list(a);
    assert_eq!(routes, ["10.0.23.0/30 via 10.1.0.1", "fd00:23::/64 via fd00:1::1"]);
    let b = plan.node("b").unwrap();
    assert_eq!(b.interfaces[1].name.as_str(), "eth1");
    assert_eq!(b.interfaces[1].addresses[1].to_string(), "fd00:23::1/64");
    assert!(b.sysctls.contains(&("net.ipv4.ip_forward".into(), "1".into())));
    // c is reached from a by its link address, the only one it has.
    assert!(a.hosts.contains("10.0.23.2\tc\n") && a.hosts.contains("fd00:23::2\tc\n"));
}

#[test]
fn dual_stack_nat_network_gets_a_ula_subnet_and_both_default_routes() {
    let t = topo(
        r#"
name = "v6"
[networks.lan]
nat = true
ipv6 = true
mtu = 9000
[nodes.a]
networks = ["lan"]
"#,
    );
    let plan = Plan::new(&t, &Facts::default()).unwrap();
    let lan = &plan.networks[0];
    assert_eq!(lan.subnet6.unwrap().to_string(), "fd42:4242::/64");
    assert_eq!(lan.gateway6.unwrap().to_string(), "fd42:4242::1");
    assert_eq!(lan.mtu, Some(9000));
    assert!(plan.needs_nat6());
    let a = &plan.nodes[0];
    assert_eq!(a.interfaces[0].mtu, Some(9000));
    assert_eq!(a.interfaces[0].addresses[1].to_string(), "fd42:4242::2/64");
    let routes = route_list(a);
    assert_eq!(routes, ["0.0.0.0/0 via 10.42.0.1", "::/0 via fd42:4242::1"]);
}

#[test]
fn own_default_route_replaces_the_nat_one_and_gateways_must_be_on_link() {
    let t = topo(
        r#"
name = "r"
[networks.lan]
subnet = "10.5.0.0/24"
nat = true
[networks.side]
subnet = "10.6.0.0/24"
[nodes.a]
networks = ["lan", "side"]
routes = ["default via 10.6.0.9"]
"#,
    );
    let plan = Plan::new(&t, &Facts::default()).unwrap();
    let routes = route_list(&plan.nodes[0]);
    assert_eq!(routes, ["0.0.0.0/0 via 10.6.0.9"]);

    let t = topo(
        r#"
name = "r"
[networks.lan]
subnet = "10.5.0.0/24"
[nodes.a]
networks = ["lan"]
routes = ["10.9.0.0/16 via 10.7.0.1"]
"#,
    );
    let err = Plan::new(&t, &Facts::default()).unwrap_err();
    assert!(err.to_string().contains("gateway 10.7.0.1 is on none of node `a`'s subnets"), "{err}");
    assert_eq!(err.location(), "lab.toml:7:11");
}

#[test]
fn ports_target_the_nat_address_and_clash_with_other_labs() {
    let text = r#"
name = "p"
[networks.lan]
subnet = "10.5.0.0/24"
nat = true
[nodes.web]
networks = ["lan"]
ports = ["8080:80", "5353:53/udp"]
"#;
    let plan = Plan::new(&topo(text), &Facts::default()).unwrap();
    assert_eq!(plan.ports.len(), 2);
    assert_eq!((plan.ports[0].host_port, plan.ports[0].node_port), (8080, 80));
    assert_eq!(plan.ports[0].address.to_string(), "10.5.0.2");
    assert_eq!(plan.ports[1].protocol, Protocol::Udp);
    assert_eq!(plan.ports[0].bridge, plan.networks[0].bridge);

    let facts = Facts { used_ports: vec![((5353, Protocol::Udp), "lab other (node dns)".into())], ..Facts::default() };
    let err = Plan::new(&topo(text), &facts).unwrap_err();
    assert!(err.to_string().contains("host port 5353/udp is already forwarded by lab other (node dns)"), "{err}");
    assert_eq!(err.location(), "lab.toml:8:21");
}

#[test]
fn a_taken_network_namespace_name_is_an_error_at_the_node() {
    // A namespace of that name exists (made by someone else, `ip netns add a-b.c`).
    let facts = Facts { taken_netns: vec![("a-b.c".into(), "lab a's node b-c".into())], ..Facts::default() };
    let err = Plan::new(&topo("name = \"a-b\"\n[nodes.c]\n"), &facts).unwrap_err();
    assert!(
        err.to_string().contains("node `c`'s network namespace name `a-b.c` is taken by lab a's node b-c"),
        "{err}"
    );
    assert_eq!(err.location(), "lab.toml:2:8");
}

/// The plan of every example topology, as a reviewed snapshot (plan/snapshots/): a change to
/// what lab decides shows as a diff of the plan.
#[test]
fn example_topologies_plan_as_their_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no topologies in {}", dir.display());
    // Files, and lab folders (their lab.toml).
    let labs = files.iter().filter_map(|f| match f.extension() {
        Some(e) if e == "toml" => Some((f.clone(), f.file_stem()?.to_string_lossy().into_owned())),
        _ if f.join("lab.toml").is_file() => Some((f.join("lab.toml"), f.file_name()?.to_string_lossy().into_owned())),
        _ => None,
    });
    for (file, name) in labs {
        let topology = Topology::load(&file).unwrap();
        let mut plan = Plan::new(&topology, &Facts::default()).unwrap();
        // Paths from the topology's folder as the repository has them, wherever it is.
        let from_repo =
            |p: &std::path::Path| std::path::Path::new("topologies").join(p.strip_prefix(&dir).unwrap_or(p));
        for node in &mut plan.nodes {
            node.files_from = node.files_from.as_deref().map(from_repo);
            node.startups = node.startups.iter().map(|p| from_repo(p)).collect();
        }
        insta::assert_yaml_snapshot!(name, plan);
    }
}

#[test]
fn a_node_on_an_image_runs_its_entrypoint_and_cmd_as_docker_does() {
    let t = topo(
        "name = \"x\"\n[defaults]\nimage = \"app:1\"\n[nodes.plain]\n[nodes.cmd]\ncommand = [\"--port\", \"81\"]\n\
         [nodes.entry]\nentrypoint = [\"/bin/other\"]\nuser = \"root\"\nstop_signal = \"SIGTERM\"\nenv = { A = \"node\" }\n\
         [nodes.host]\nimage = false\nrootfs = \"host\"\n",
    );
    let config = lab_image::RunConfig {
        entrypoint: Some(vec!["/bin/serve".into()]),
        cmd: Some(vec!["--port".into(), "80".into()]),
        env: Some(vec!["PATH=/usr/bin".into(), "A=image".into(), "B=image".into()]),
        working_dir: Some("/srv".into()),
        user: Some("1000".into()),
        stop_signal: Some("SIGINT".into()),
        healthcheck: Some(lab_image::HealthConfig {
            test: vec!["CMD-SHELL".into(), "wget -q localhost".into()],
            interval: Some(2_000_000_000),
            ..Default::default()
        }),
    };
    let image = ImageFacts { digest: "sha256:x".into(), layers: vec!["/l0".into(), "/l1".into()], config };
    let facts = Facts { images: [("docker.io/library/app:1".to_string(), image)].into(), ..Facts::default() };
    let plan = Plan::new(&t, &facts).unwrap();
    let [plain, cmd, entry, host] = [0, 1, 2, 3].map(|k| &plan.nodes[k]);
    let argv = |n: &NodePlan| n.command.clone().unwrap_or_default().join(" ");
    assert_eq!(argv(plain), "/bin/serve --port 80");
    assert_eq!(argv(cmd), "/bin/serve --port 81", "command replaces Cmd");
    assert_eq!(argv(entry), "/bin/other", "an entrypoint drops the image's Cmd");
    assert_eq!(plain.layers.len(), 2);
    assert_eq!((plain.service.workdir.as_deref(), plain.service.user.as_deref()), (Some("/srv"), Some("1000")));
    assert_eq!(plain.service.stop_signal, libc::SIGINT);
    let hc = plain.service.healthcheck.as_ref().expect("the image's HEALTHCHECK");
    assert_eq!((hc.cmd.join(" ").as_str(), hc.interval_ms, hc.retries), ("/bin/sh -c wget -q localhost", 2000, 3));
    let env = |n: &NodePlan, k: &str| n.env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!((env(plain, "PATH"), env(plain, "A")), (Some("/usr/bin".into()), Some("image".into())));
    assert_eq!((env(entry, "A"), env(entry, "B")), (Some("node".into()), Some("image".into())), "the node's env wins");
    assert_eq!((entry.service.user.as_deref(), entry.service.stop_signal), (Some("root"), libc::SIGTERM));
    assert_eq!(host.rootfs, Rootfs::Host);
    assert!(host.layers.is_empty() && host.command.is_none());

    // Missing from the store: an error at the image's line.
    let err = Plan::new(&t, &Facts::default()).unwrap_err();
    assert_eq!(err.location(), "lab.toml:3:9");
    assert!(err.diagnostics[0].message.contains("image docker.io/library/app:1 is not in lab's image store"), "{err}");
}
