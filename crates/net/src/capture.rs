//! Packet capture on an interface of any network namespace: an AF_PACKET socket opened from
//! inside the namespace, written out as a classic pcap stream (what tcpdump -w writes and
//! `wireshark -k -i -` reads), one flushed record per packet.

use crate::{netns, Error, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, socket, AddressFamily, MsgFlags, SockFlag, SockType};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest frame kept whole (tcpdump's default snap length).
pub const SNAPLEN: u32 = 262_144;
const LINKTYPE_ETHERNET: u32 = 1;

/// An AF_PACKET socket bound to one interface, both directions.
pub struct Capture {
    socket: OwnedFd,
}

/// A capture filter in tcpdump's language (`icmp or arp`, `tcp port 80`), compiled by
/// libpcap for Ethernet frames, as classic BPF the kernel runs on the socket.
#[derive(Debug, Clone)]
pub struct Filter(Vec<libc::sock_filter>);

impl Filter {
    /// Compiles `expression`; a bad one is an error in libpcap's words.
    pub fn compile(expression: &str) -> Result<Filter> {
        let bad = |e: pcap::Error| Error::invalid(format!("capture filter `{expression}`"), e.to_string());
        let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(bad)?;
        let program = dead.compile(expression, true).map_err(bad)?;
        // pcap shows each instruction as `code jt jf k`.
        let parse = |i: &pcap::BpfInstruction| -> Option<libc::sock_filter> {
            let text = i.to_string();
            let mut f = text.split_whitespace();
            Some(libc::sock_filter {
                code: f.next()?.parse().ok()?,
                jt: f.next()?.parse().ok()?,
                jf: f.next()?.parse().ok()?,
                k: f.next()?.parse().ok()?,
            })
        };
        let insns: Option<Vec<_>> = program.get_instructions().iter().map(parse).collect();
        insns
            .map(Filter)
            .ok_or_else(|| Error::invalid(format!("capture filter `{expression}`"), "cannot read libpcap's program"))
    }
}

impl Capture {
    /// Opens a capture of interface `ifname` in the network namespace `netns`, of the
    /// packets `filter` accepts (all without one).
    pub fn open(netns: BorrowedFd<'_>, label: &str, ifname: &str, filter: Option<&Filter>) -> Result<Capture> {
        let what = format!("capturing on {ifname} in {label}");
        let socket = netns::run_in(netns, label, || {
            let index = nix::net::if_::if_nametoindex(ifname)
                .map_err(|e| Error::os(format!("{what}: no such interface"), e.into()))?;
            // Protocol 0 receives nothing until bound: the filter is in place before the
            // first packet.
            let socket = socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, None)
                .map_err(|e| Error::os(what.clone(), e.into()))?;
            if let Some(f) = filter {
                crate::ffi::attach_filter(&socket, &f.0).map_err(|e| Error::os(format!("{what}: the filter"), e))?;
            }
            crate::ffi::bind_packet_socket(&socket, index, (libc::ETH_P_ALL as u16).to_be())
                .map_err(|e| Error::os(what.clone(), e))?;
            Ok(socket)
        })?;
        Ok(Capture { socket })
    }

    /// Writes the pcap header, then each packet as it arrives, until `count` packets (if
    /// given), until `stop` (a signalfd, say) is readable, or until `out` is closed (a reader
    /// that went away is not an error). Returns how many packets were written.
    pub fn run(&self, out: &mut impl Write, count: Option<u64>, stop: Option<BorrowedFd<'_>>) -> Result<u64> {
        let closed = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
        let header = pcap_header();
        match out.write_all(&header).and_then(|()| out.flush()) {
            Err(e) if closed(&e) => return Ok(0),
            Err(e) => return Err(Error::os("writing the capture", e)),
            Ok(()) => {}
        }
        let mut buf = vec![0u8; SNAPLEN as usize];
        let mut n = 0u64;
        while count.is_none_or(|c| n < c) {
            if let Some(stop) = stop {
                let mut fds =
                    [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN), PollFd::new(stop, PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(Error::os("waiting for packets", e.into())),
                    Ok(_) => {}
                }
                if fds[1].any().unwrap_or(false) {
                    break;
                }
            }
            // MSG_TRUNC: the frame's real length even when it did not fit.
            let len = match recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
                Ok(len) => len,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::os("reading captured packets", e.into())),
            };
            let kept = len.min(buf.len());
            let record = pcap_record(SystemTime::now(), &buf[..kept], len);
            match out.write_all(&record).and_then(|()| out.flush()) {
                Err(e) if closed(&e) => break,
                Err(e) => return Err(Error::os("writing the capture", e)),
                Ok(()) => n += 1,
            }
        }
        Ok(n)
    }
}

/// The pcap global header: microsecond timestamps, Ethernet frames.
pub fn pcap_header() -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&SNAPLEN.to_le_bytes());
    h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// One pcap record: timestamp, kept and original lengths, the bytes kept.
pub fn pcap_record(at: SystemTime, data: &[u8], original_len: usize) -> Vec<u8> {
    let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut r = Vec::with_capacity(16 + data.len());
    r.extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
    r.extend_from_slice(&t.subsec_micros().to_le_bytes());
    r.extend_from_slice(&(data.len() as u32).to_le_bytes());
    r.extend_from_slice(&(original_len as u32).to_le_bytes());
    r.extend_from_slice(data);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pcap_layout() {
        let h = pcap_header();
        assert_eq!(h.len(), 24);
        assert_eq!(&h[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(h[20..24].try_into().unwrap()), 1);
        let r = pcap_record(UNIX_EPOCH + Duration::from_micros(5_000_007), &[1, 2, 3], 60);
        assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(r[4..8].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(r[8..12].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(r[12..16].try_into().unwrap()), 60);
        assert_eq!(&r[16..], &[1, 2, 3]);
    }
}
