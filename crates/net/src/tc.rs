//! Link impairments with traffic control: tbf for a rate alone, netem for delay, jitter,
//! loss, corruption and duplication (and rate with them). netlink-packet-route has no typed
//! options for either, so their structs and attributes are encoded here.

use crate::{Error, Netlink, Result};
use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What to do to the packets an interface sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impairment {
    /// Bits per second.
    pub rate: Option<u64>,
    /// Microseconds.
    pub delay: Option<u64>,
    pub jitter: Option<u64>,
    /// Parts per million.
    pub loss: Option<u32>,
    pub corrupt: Option<u32>,
    pub duplicate: Option<u32>,
}

impl Impairment {
    pub fn is_empty(&self) -> bool {
        *self == Impairment::default()
    }

    /// Everything but a rate needs netem.
    pub fn needs_netem(&self) -> bool {
        self.delay.is_some()
            || self.jitter.is_some()
            || self.loss.is_some()
            || self.corrupt.is_some()
            || self.duplicate.is_some()
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(r) = self.rate {
            parts.push(format!("rate {}", show_rate(r)));
        }
        if let Some(d) = self.delay {
            parts.push(format!("delay {}", show_time(d)));
        }
        if let Some(j) = self.jitter {
            parts.push(format!("jitter {}", show_time(j)));
        }
        for (name, v) in [("loss", self.loss), ("corrupt", self.corrupt), ("duplicate", self.duplicate)] {
            if let Some(ppm) = v {
                parts.push(format!("{name} {}%", f64::from(ppm) / 10_000.0));
            }
        }
        if parts.is_empty() {
            parts.push("none".into());
        }
        f.write_str(&parts.join(" "))
    }
}

fn show_rate(bps: u64) -> String {
    for (unit, div) in [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000)] {
        if bps >= div && bps % div == 0 {
            return format!("{}{unit}", bps / div);
        }
    }
    format!("{bps}bit")
}

fn show_time(us: u64) -> String {
    if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

// <linux/pkt_sched.h>
const TCA_OPTIONS: u16 = 2;
const TC_LINKLAYER_ETHERNET: u8 = 1;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_RATE64: u16 = 8;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
/// netem's default queue, in packets.
const NETEM_LIMIT: u32 = 1000;

/// A netlink attribute: length, type, value, padded to 4 bytes.
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity((len + 3) & !3);
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize((len + 3) & !3, 0);
    out
}

/// struct tc_ratespec: cell_log, linklayer, overhead, cell_align, mpu, rate (bytes/s).
fn ratespec(bytes_per_sec: u32) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[1] = TC_LINKLAYER_ETHERNET;
    r[8..12].copy_from_slice(&bytes_per_sec.to_ne_bytes());
    r
}

/// A probability (parts per million) as netem's u32 scale.
fn prob(ppm: u32) -> u32 {
    (u64::from(ppm) * u64::from(u32::MAX) / 1_000_000) as u32
}

/// TCA_OPTIONS of tbf for `rate` bits per second: a burst of at least 10 ms of traffic (and
/// never less than a few full frames), a queue of 50 ms of it.
pub fn tbf_options(rate_bps: u64) -> Vec<u8> {
    let bytes = rate_bps / 8;
    let burst = (bytes / 100).clamp(16 * 1024, u64::from(u32::MAX)) as u32;
    let limit = (bytes / 20 + u64::from(burst)).clamp(64 * 1024, u64::from(u32::MAX)) as u32;
    // struct tc_tbf_qopt: rate, peakrate, limit, buffer, mtu. With TCA_TBF_BURST the kernel
    // derives buffer itself; a linklayer set means no rate table is needed.
    let mut qopt = Vec::with_capacity(36);
    qopt.extend_from_slice(&ratespec(bytes.min(u64::from(u32::MAX)) as u32));
    qopt.extend_from_slice(&[0u8; 12]);
    qopt.extend_from_slice(&limit.to_ne_bytes());
    qopt.extend_from_slice(&0u32.to_ne_bytes());
    qopt.extend_from_slice(&0u32.to_ne_bytes());
    let mut out = nla(TCA_TBF_PARMS, &qopt);
    if bytes > u64::from(u32::MAX) {
        out.extend(nla(TCA_TBF_RATE64, &bytes.to_ne_bytes()));
    }
    out.extend(nla(TCA_TBF_BURST, &burst.to_ne_bytes()));
    out
}

/// TCA_OPTIONS of netem: struct tc_netem_qopt followed by attributes (netem's own layout).
pub fn netem_options(i: &Impairment) -> Vec<u8> {
    let mut out = Vec::new();
    // latency and jitter here are legacy ticks: 0, the 64-bit ns attributes below count.
    for v in [0u32, NETEM_LIMIT, prob(i.loss.unwrap_or(0)), 0, prob(i.duplicate.unwrap_or(0)), 0] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    if let Some(us) = i.delay {
        out.extend(nla(TCA_NETEM_LATENCY64, &((us * 1000) as i64).to_ne_bytes()));
    }
    if let Some(us) = i.jitter {
        out.extend(nla(TCA_NETEM_JITTER64, &((us * 1000) as i64).to_ne_bytes()));
    }
    if let Some(ppm) = i.corrupt {
        let mut v = prob(ppm).to_ne_bytes().to_vec();
        v.extend_from_slice(&0u32.to_ne_bytes());
        out.extend(nla(TCA_NETEM_CORRUPT, &v));
    }
    if let Some(bps) = i.rate {
        let bytes = bps / 8;
        // struct tc_netem_rate: rate, packet_overhead, cell_size, cell_overhead.
        let mut v = (bytes.min(u64::from(u32::MAX)) as u32).to_ne_bytes().to_vec();
        v.extend_from_slice(&[0u8; 12]);
        out.extend(nla(TCA_NETEM_RATE, &v));
        if bytes > u64::from(u32::MAX) {
            out.extend(nla(TCA_NETEM_RATE64, &bytes.to_ne_bytes()));
        }
    }
    out
}

impl Netlink {
    /// Replaces the root qdisc of interface `index` with what `impairment` needs, or removes it
    /// when the impairment is empty.
    pub async fn impair(&self, index: u32, ifname: &str, impairment: &Impairment) -> Result<()> {
        if impairment.is_empty() {
            return self.clear_impairment(index, ifname).await;
        }
        let (kind, options) = if impairment.needs_netem() {
            ("netem", netem_options(impairment))
        } else {
            ("tbf", tbf_options(impairment.rate.unwrap_or(0)))
        };
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::ROOT;
        // No handle: the kernel picks one, and replaces a root qdisc of another kind (with
        // a handle of its own, it would refuse to change the kind: EINVAL).
        msg.attributes.push(TcAttribute::Kind(kind.to_string()));
        msg.attributes.push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, options)));
        let what = || format!("impairing {ifname}{} ({impairment})", self.place);
        match self.request(RouteNetlinkMessage::NewQueueDiscipline(msg), NLM_F_CREATE | NLM_F_REPLACE).await {
            Err(code) if code == libc::ENOENT && kind == "netem" => Err(Error::MissingFeature {
                what: what(),
                feature: "sch_netem (CONFIG_NET_SCH_NETEM), which delay, jitter, loss, corrupt and duplicate \
                          need; a rate alone works without it"
                    .into(),
            }),
            Err(code) => Err(Error::os(what(), std::io::Error::from_raw_os_error(code))),
            Ok(()) => Ok(()),
        }
    }

    /// Removes any impairment (the root qdisc) of interface `index`. None is success.
    pub async fn clear_impairment(&self, index: u32, ifname: &str) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::ROOT;
        match self.request(RouteNetlinkMessage::DelQueueDiscipline(msg), 0).await {
            Ok(()) | Err(libc::ENOENT | libc::EINVAL) => Ok(()),
            Err(code) => Err(Error::os(
                format!("clearing the impairment of {ifname}{}", self.place),
                std::io::Error::from_raw_os_error(code),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impairments_show_in_tc_units() {
        let i = Impairment { rate: Some(10_000_000), delay: Some(50_000), loss: Some(10_000), ..Impairment::default() };
        assert_eq!(i.to_string(), "rate 10mbit delay 50ms loss 1%");
        assert!(i.needs_netem());
        assert!(!Impairment { rate: Some(1), ..Impairment::default() }.needs_netem());
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn tbf_layout() {
        let o = tbf_options(10_000_000);
        // TCA_TBF_PARMS: 4-byte header + 36-byte tc_tbf_qopt.
        assert_eq!(u16::from_ne_bytes([o[0], o[1]]), 40);
        assert_eq!(u16::from_ne_bytes([o[2], o[3]]), TCA_TBF_PARMS);
        assert_eq!(o[4 + 1], TC_LINKLAYER_ETHERNET);
        assert_eq!(u32_at(&o, 4 + 8), 1_250_000, "rate in bytes per second");
        assert_eq!(u32_at(&o, 4 + 24), 1_250_000 / 20 + 16 * 1024, "limit: 50 ms of traffic plus the burst");
        // Then TCA_TBF_BURST, u32.
        assert_eq!(u16::from_ne_bytes([o[40], o[41]]), 8);
        assert_eq!(u16::from_ne_bytes([o[42], o[43]]), TCA_TBF_BURST);
        assert_eq!(u32_at(&o, 44), 16 * 1024);
        assert_eq!(o.len(), 48);
        // Past 32 bits of bytes per second, the 64-bit rate follows.
        assert!(tbf_options(100_000_000_000).windows(2).any(|w| w == TCA_TBF_RATE64.to_ne_bytes()));
    }

    #[test]
    fn netem_layout() {
        let i = Impairment { delay: Some(50_000), loss: Some(10_000), corrupt: Some(1_000), ..Impairment::default() };
        let o = netem_options(&i);
        assert_eq!(u32_at(&o, 4), NETEM_LIMIT);
        assert_eq!(u32_at(&o, 8), prob(10_000), "loss, scaled to u32");
        assert_eq!(prob(10_000), 42_949_672);
        // LATENCY64 right after the 24-byte struct, in nanoseconds.
        assert_eq!(u16::from_ne_bytes([o[26], o[27]]), TCA_NETEM_LATENCY64);
        assert_eq!(i64::from_ne_bytes(o[28..36].try_into().unwrap()), 50_000_000);
        assert_eq!(u16::from_ne_bytes([o[38], o[39]]), TCA_NETEM_CORRUPT);
    }
}
