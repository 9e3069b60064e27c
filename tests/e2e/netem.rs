//! Impairments that need netem, measured: delay and jitter by ping, loss over hundreds of
//! packets, duplication and corruption in a capture, a rate together with a delay, changes at
//! run time and `--clear`. They run where the kernel has sch_netem (scripts/vm-test's guest,
//! most distribution kernels); elsewhere each says so and the test report shows where it ran.
//! Each runs with no other test at once (`exclusive`): timing is what they measure.

use crate::network::measure;
use crate::report::{needs, Feature};
use crate::support::*;

/// `ping` from `node` of `lab`, with `args`; its output (failing is fine: loss is measured).
fn ping(lab: &Lab, node: &str, args: &[&str]) -> String {
    let mut argv = vec!["ping", "-4", "-n"];
    argv.extend_from_slice(args);
    text(&lab.exec(node, &argv).stdout)
}

/// min, average, max and standard deviation of the round trips ping printed (`time=… ms`), in
/// milliseconds, leaving out the first: it waited for ARP too (delayed as much as it).
fn rtt(out: &str) -> [f64; 4] {
    let times: Vec<f64> =
        out.lines().filter_map(|l| l.split("time=").nth(1)?.split_whitespace().next()?.parse().ok()).skip(1).collect();
    assert!(times.len() >= 3, "too few replies to measure:\n{out}");
    eprintln!("round trips (ms): {times:?}");
    let n = times.len() as f64;
    let avg = times.iter().sum::<f64>() / n;
    let sd = (times.iter().map(|t| (t - avg).powi(2)).sum::<f64>() / n).sqrt();
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    [min, avg, max, sd]
}

/// The `N% packet loss` of ping's summary.
fn loss_percent(out: &str) -> f64 {
    out.split(',')
        .find_map(|part| part.trim().strip_suffix("% packet loss"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no packet loss in:\n{out}"))
}

/// The `+N duplicates` of ping's summary (0 when it has none).
fn duplicates(out: &str) -> u32 {
    out.split(',')
        .find_map(|part| part.trim().strip_suffix(" duplicates")?.trim_start_matches('+').parse().ok())
        .unwrap_or(0)
}

fn impair(lab: &Lab, args: &[&str]) {
    let mut argv = vec!["impair", "--lab", &lab.name];
    argv.extend_from_slice(args);
    let out = crate::support::lab(&argv);
    assert!(out.status.success(), "lab {}: {}", argv.join(" "), show(&out));
}

/// Two nodes on a point-to-point link, 10.77.6.1 (a) and 10.77.6.2 (b).
const LINK: &str = r#"
[nodes.a]
[nodes.b]
[[links]]
endpoints = ["a:eth0", "b:eth0"]
addresses = ["10.77.6.1/30", "10.77.6.2/30"]
"#;

#[test]
fn delay_and_jitter_are_what_ping_measures_and_change_at_run_time() {
    // Alone: what is measured is timing, which other tests' load would blur.
    let _host = exclusive();
    if !needs(Feature::Netem) {
        return;
    }
    let lab = Lab::up("delay", LINK);
    // What a sends is delayed; b's replies are not: the round trip is the delay and a little.
    impair(&lab, &["a:eth0", "--delay", "40ms"]);
    let qdisc = text(&host(&format!("tc qdisc show dev {}", host_end(&lab.name, "b", "eth0"))).stdout);
    assert!(qdisc.contains("netem") && qdisc.contains("delay 40ms"), "on the host end towards b: {qdisc}");
    let [min, avg, _, sd] = rtt(&ping(&lab, "a", &["-c", "11", "-i", "0.05", "10.77.6.2"]));
    assert!(min >= 39.5, "no round trip can beat a 40 ms delay: min {min} ms");
    assert!(avg < 55.0, "40 ms delay: average {avg} ms");
    assert!(sd < 5.0, "no jitter asked for: standard deviation {sd} ms");

    // Changed while it runs: 80 ms, give or take 20 (netem's jitter is uniform).
    impair(&lab, &["a:eth0", "--delay", "80ms", "--jitter", "20ms"]);
    let [min, avg, max, sd] = rtt(&ping(&lab, "a", &["-c", "41", "-i", "0.05", "10.77.6.2"]));
    assert!(min >= 59.5, "80±20 ms: min {min} ms");
    assert!((70.0..95.0).contains(&avg), "80±20 ms: average {avg} ms");
    assert!(max < 115.0, "80±20 ms: max {max} ms");
    assert!((6.0..17.0).contains(&sd), "±20 ms uniform jitter: standard deviation near 11.5 ms, not {sd} ms");

    impair(&lab, &["a:eth0", "--clear"]);
    let qdisc = text(&host(&format!("tc qdisc show dev {}", host_end(&lab.name, "b", "eth0"))).stdout);
    assert!(!qdisc.contains("netem"), "cleared: {qdisc}");
    let [_, avg, _, _] = rtt(&ping(&lab, "a", &["-c", "6", "-i", "0.05", "10.77.6.2"]));
    assert!(avg < 20.0, "no delay left: average {avg} ms");
    lab.down();
}

#[test]
fn loss_is_measured_over_hundreds_of_packets_on_links_and_networks() {
    // Alone: what is measured is timing, which other tests' load would blur.
    let _host = exclusive();
    if !needs(Feature::Netem) {
        return;
    }
    let lab = Lab::up(
        "loss",
        &format!("{LINK}\n[networks.lan]\n[nodes.c]\nnetworks = [\"lan\"]\n[nodes.d]\nnetworks = [\"lan\"]\n"),
    );
    // 25% of 400: 100 expected, 8.7 the standard deviation; ±10 points is over 4 of them.
    let lossy = |from: &str, to: &str| {
        let lost = loss_percent(&ping(&lab, from, &["-q", "-c", "400", "-i", "0.005", "-W", "1", to]));
        eprintln!("{from} -> {to}: {lost}% lost");
        lost
    };
    assert_eq!(lossy("a", "10.77.6.2"), 0.0, "no loss before the impairment");
    impair(&lab, &["a:eth0", "--loss", "25%"]);
    let link = lossy("a", "10.77.6.2");
    assert!((15.0..=35.0).contains(&link), "25% loss on a link: measured {link}%");
    // A node on a network: shaped on the IFB device beside its host end.
    impair(&lab, &["c:eth0", "--loss", "25%"]);
    let bridged = lossy("c", "d");
    assert!((15.0..=35.0).contains(&bridged), "25% loss on a network: measured {bridged}%");
    let replies = lossy("d", "c");
    assert!((15.0..=35.0).contains(&replies), "c's replies to d are what it sends: {replies}% lost");
    impair(&lab, &["c:eth0", "--clear"]);
    assert_eq!(lossy("c", "d"), 0.0, "cleared");
    lab.down();
}

/// The frames of a pcap stream (a record cut off at the end is left out).
pub(crate) fn frames(pcap: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + len) else { break };
        out.push(frame);
        at += 16 + len;
    }
    out
}

/// The Internet checksum of `data` is right (it sums to all ones).
fn checksum_ok(data: &[u8]) -> bool {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// What b received and sent while `during` ran: its frames, captured on b:eth0.
fn captured_on_b(lab: &Lab, during: impl FnOnce()) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("b.pcap");
    let mut capture = std::process::Command::new(lab_bin())
        .args(["capture", "--lab", &lab.name, "b:eth0", "-w", file.to_str().expect("utf-8")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting lab capture");
    let mut started = [0u8; 9];
    std::io::Read::read_exact(capture.stderr.as_mut().expect("piped"), &mut started).expect("capture starts");
    during();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(capture.id() as i32), nix::sys::signal::Signal::SIGINT);
    let _ = capture.wait();
    let pcap = std::fs::read(&file).expect("the capture file");
    frames(&pcap).into_iter().map(<[u8]>::to_vec).collect()
}

/// An ICMP echo of `len` bytes in all from `src` to `dst`, of ICMP type `kind`, every checksum right.
fn is_echo(f: &[u8], len: usize, src: [u8; 4], dst: [u8; 4], kind: u8) -> bool {
    f.len() == len
        && f[12..14] == [0x08, 0x00]
        && f[23] == 1
        && f[26..30] == src
        && f[30..34] == dst
        && f[34] == kind
        && checksum_ok(&f[14..34])
        && checksum_ok(&f[34..])
}

#[test]
fn duplication_and_corruption_show_in_a_capture() {
    // Alone: what is measured is timing, which other tests' load would blur.
    let _host = exclusive();
    if !needs(Feature::Netem) {
        return;
    }
    let lab = Lab::up("dupcorrupt", LINK);
    let (a, b) = ([10, 77, 6, 1], [10, 77, 6, 2]);
    // 56 bytes of data: 14 Ethernet + 20 IP + 8 ICMP + 56.
    let len = 98;
    let requests = |frames: &[Vec<u8>]| frames.iter().filter(|f| is_echo(f, len, a, b, 8)).count();
    let mangled = |frames: &[Vec<u8>]| {
        frames.iter().filter(|f| f.len() == len && !is_echo(f, len, a, b, 8) && !is_echo(f, len, b, a, 0)).count()
    };

    impair(&lab, &["a:eth0", "--duplicate", "50%"]);
    let mut out = String::new();
    let frames = captured_on_b(&lab, || out = ping(&lab, "a", &["-c", "40", "-i", "0.02", "10.77.6.2"]));
    let got = requests(&frames);
    eprintln!("40 requests sent, {got} received, {} duplicate replies", duplicates(&out));
    assert!(got >= 45, "40 echo requests, half of them doubled: b received {got}");
    assert!(duplicates(&out) >= 5, "ping sees the doubled replies:\n{out}");
    assert_eq!(mangled(&frames), 0, "duplication alone damages nothing");

    impair(&lab, &["a:eth0", "--corrupt", "50%"]);
    let mut out = String::new();
    let frames = captured_on_b(&lab, || out = ping(&lab, "a", &["-c", "60", "-i", "0.02", "-W", "1", "10.77.6.2"]));
    let bad = mangled(&frames);
    eprintln!("60 requests sent, {bad} damaged on arrival, {}% lost", loss_percent(&out));
    assert!(bad >= 10, "60 echo requests, half with a bit flipped: {bad} damaged frames reached b");
    assert!(loss_percent(&out) >= 10.0, "b drops what fails its checksums:\n{out}");

    impair(&lab, &["a:eth0", "--clear"]);
    let frames = captured_on_b(&lab, || drop(ping(&lab, "a", &["-c", "20", "-i", "0.02", "10.77.6.2"])));
    assert_eq!((requests(&frames), mangled(&frames)), (20, 0), "cleared: every request once, whole");
    lab.down();
}

#[test]
fn a_rate_and_a_delay_together() {
    // Alone: what is measured is timing, which other tests' load would blur.
    let _host = exclusive();
    if !needs(Feature::Netem) {
        return;
    }
    let lab = Lab::up("ratedelay", &format!("[defaults]\n{}{LINK}", probe_mount()));
    impair(&lab, &["a:eth0", "--rate", "10mbit", "--delay", "30ms"]);
    let qdisc = text(&host(&format!("tc qdisc show dev {}", host_end(&lab.name, "b", "eth0"))).stdout);
    assert!(qdisc.contains("netem") && qdisc.contains("rate 10Mbit"), "one netem qdisc does both: {qdisc}");
    let [min, _, _, _] = rtt(&ping(&lab, "a", &["-c", "6", "-i", "0.1", "10.77.6.2"]));
    assert!(min >= 29.5, "30 ms delay: min {min} ms");
    let rate = measure(&lab, "a", "b", "10.77.6.2", 2_500_000);
    eprintln!("10 Mbit/s and 30 ms: measured {:.2} Mbit/s", rate / 1e6);
    assert!((7.5e6..=12.5e6).contains(&rate), "10 Mbit/s with 30 ms delay: measured {:.1} Mbit/s", rate / 1e6);
    lab.down();
}
