//! A Kathará lab as Kathará users have it: lab.conf, a folder and a startup script per
//! device (a device known only by its folder too), shared/ and shared.startup, lab.dep; `lab up DIR` runs it, FRR started by `systemctl` and by its
//! init.d script as Kathará's images allow, errors at lab.conf's lines.

use crate::support::*;
use std::path::Path;
use std::time::{Duration, Instant};

const LAB_CONF: &str = r#"LAB_DESCRIPTION="Two routers, two hosts"
LAB_AUTHOR="a teacher"

pc1[0]="A"
pc1[image]="kathara/base"

r1[0]="A"
r1[1]="B"
r1[image]="kathara/frr"

r2[0]="B"
r2[1]="C"
r2[image]="kathara/frr"
r2[mem]="256m"

pc2[0]="C"
pc2[sysctl]="net.ipv4.ip_forward=0"
"#;

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// The lab, as a teacher would hand it out.
fn kathara_lab(dir: &Path) {
    write(dir, "lab.conf", LAB_CONF);
    write(dir, "lab.dep", "r2: r1\n");
    write(dir, "shared/notes.txt", "from the teacher\n");
    // shared.startup runs in every device before its own startup.
    write(dir, "shared.startup", "echo shared > /tmp/order\n");
    write(
        dir,
        "pc1.startup",
        "echo own >> /tmp/order\nip addr add 10.0.1.2/24 dev eth0\nip route add default via 10.0.1.1\n",
    );
    // A device lab.conf does not name: only its folder (and startup) says it is there.
    write(dir, "ws/etc/motd", "workstation\n");
    write(dir, "ws.startup", "echo own >> /tmp/order\n");
    write(dir, "pc2.startup", "ip addr add 10.0.3.2/24 dev eth0\nip route add default via 10.0.3.1\n");
    write(
        dir,
        "r1.startup",
        "ip addr add 10.0.1.1/24 dev eth0\nip addr add 10.0.2.1/24 dev eth1\nsystemctl start frr\n",
    );
    write(
        dir,
        "r2.startup",
        "ip addr add 10.0.2.2/24 dev eth0\nip addr add 10.0.3.1/24 dev eth1\n/etc/init.d/frr start\n",
    );
    for r in ["r1", "r2"] {
        write(dir, &format!("{r}/etc/frr/daemons"), "ospfd=yes\nvtysh_enable=yes\nzebra_options=\"  -A 127.0.0.1 -s 90000000\"\nospfd_options=\"  -A 127.0.0.1\"\nstaticd_options=\"-A 127.0.0.1\"\n");
        write(dir, &format!("{r}/etc/frr/vtysh.conf"), "service integrated-vtysh-config\n");
        let ospf = "interface eth0\n ip ospf hello-interval 1\n ip ospf dead-interval 4\n\
                    interface eth1\n ip ospf hello-interval 1\n ip ospf dead-interval 4\n\
                    router ospf\n network 10.0.0.0/16 area 0\n";
        write(dir, &format!("{r}/etc/frr/frr.conf"), &format!("frr defaults traditional\nhostname {r}\n{ospf}"));
    }
}

#[test]
fn a_kathara_lab_directory_comes_up_routes_and_goes_down() {
    // FRR starts slowly where CPU is short (a VM under TCG): nothing else runs meanwhile.
    let _host = exclusive();
    assert!(Path::new("/usr/lib/frr/watchfrr").exists(), "FRR is missing: scripts/install-deps installs it");
    let dir = tempfile::tempdir().expect("temp dir");
    kathara_lab(dir.path());
    let name = unique("kathara");
    let out = lab(&["up", dir.path().to_str().expect("utf-8"), "--name", &name]);
    let l = Lab::adopt(&name, &dir.path().join("lab.conf"), tempfile::tempdir().expect("temp dir"));
    assert!(out.status.success(), "{}", show(&out));
    let err = text(&out.stderr);
    assert_eq!(err.matches("names images").count(), 1, "one warning about images: {err}");
    assert!(err.contains("r2 waiting for"), "lab.dep orders r2 after r1: {err}");
    // Collision domains are bare segments: the startup scripts address the devices.
    assert!(text(&lab(&["ps", &name]).stdout).lines().all(|l| !l.contains("eth0=")), "no address of lab's");
    assert_eq!(l.sh("pc1", "cat /shared/notes.txt"), "from the teacher\n");
    assert_eq!(l.sh("pc1", "cat /tmp/order"), "shared\nown\n", "shared.startup, then the device's");
    assert_eq!(l.sh("r1", "cat /tmp/order"), "shared\n");
    assert_eq!(l.sh("ws", "cat /etc/motd /tmp/order"), "workstation\nshared\nown\n", "a device by its folder");
    assert_eq!(l.sh("pc2", "sysctl -n net.ipv4.ip_forward"), "0\n", "a device's sysctl");
    let inspect: serde_json::Value =
        serde_json::from_slice(&lab(&["inspect", &format!("{name}/r2"), "--json"]).stdout).expect("inspect");
    let limits = inspect["labs"][0]["nodes"][0]["details"]["limits"].to_string();
    assert!(limits.contains(&(256u64 << 20).to_string()), "r2[mem]: {limits}");
    // FRR, started by systemctl in r1 and by its init.d script in r2, routes pc1 to pc2.
    let deadline = Instant::now() + Duration::from_secs(120);
    let reach = || l.exec("pc1", &["ping", "-c1", "-W1", "10.0.3.2"]).status.success();
    while !reach() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(reach(), "pc1 reaches pc2 through r1 and r2: {}", l.sh("r1", "ip route; vtysh -c 'show ip ospf neighbor'"));
    // `lab down DIR`, as `lab up DIR`.
    let out = lab(&["down", dir.path().to_str().expect("utf-8"), "--name", &name]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    drop(l);
}

#[test]
fn a_mistake_in_lab_conf_is_told_at_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "lab.conf", "pc1[0]=\"A\"\npc1[colour]=\"blue\"\npc2[0]=\"A\"\npc2[mem]=\"lots\"\n");
    let out = lab(&["up", dir.path().to_str().expect("utf-8"), "--name", &unique("badconf")]);
    assert_eq!(out.status.code(), Some(2), "a topology error, as a lab.toml's: {}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("lab.conf:2:5") && err.contains("`colour` is not a device key"), "{err}");
}
