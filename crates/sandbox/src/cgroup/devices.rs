//! Which devices a node may create (mknod) and open: the devices cgroup on v1, a BPF program
//! attached to the cgroup on v2. By default the character devices every node's /dev has,
//! plus mknod of character devices (as Docker allows; they stay unusable unless listed), and
//! no block device at all.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Char,
    Block,
    Any,
}

/// One allow rule: kind, major and minor (`None` = any), and what is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceRule {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub mknod: bool,
    pub read: bool,
    pub write: bool,
}

const fn rwm(major: u32, minor: Option<u32>) -> DeviceRule {
    DeviceRule { kind: Kind::Char, major: Some(major), minor, mknod: true, read: true, write: true }
}

/// What every node may use: null, zero, full, random, urandom, tty, ptmx, its ptys, tun; and
/// mknod (only) of any character device.
pub const DEFAULT_RULES: &[DeviceRule] = &[
    rwm(1, Some(3)),
    rwm(1, Some(5)),
    rwm(1, Some(7)),
    rwm(1, Some(8)),
    rwm(1, Some(9)),
    rwm(5, Some(0)),
    rwm(5, Some(2)),
    rwm(136, None),
    rwm(10, Some(200)),
    DeviceRule { kind: Kind::Char, major: None, minor: None, mknod: true, read: false, write: false },
];

/// Everything: for privileged nodes.
pub const ALLOW_ALL: &[DeviceRule] =
    &[DeviceRule { kind: Kind::Any, major: None, minor: None, mknod: true, read: true, write: true }];

impl DeviceRule {
    /// The v1 `devices.allow` line, e.g. `c 1:3 rwm`.
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            Kind::Char => "c",
            Kind::Block => "b",
            Kind::Any => "a",
        };
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if on {
                access.push(c);
            }
        }
        format!("{kind} {}:{} {access}", num(self.major), num(self.minor))
    }

    fn access_bits(&self) -> i32 {
        (i32::from(self.mknod) * BPF_DEVCG_ACC_MKNOD)
            | (i32::from(self.read) * BPF_DEVCG_ACC_READ)
            | (i32::from(self.write) * BPF_DEVCG_ACC_WRITE)
    }
}

// <linux/bpf.h>
const BPF_DEVCG_ACC_MKNOD: i32 = 1;
const BPF_DEVCG_ACC_READ: i32 = 2;
const BPF_DEVCG_ACC_WRITE: i32 = 4;
const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;
const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_ATTACH: i64 = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// One eBPF instruction, as struct bpf_insn lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// Opcodes used below.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_AND_K: u8 = 0x57; // dst &= imm
const ALU64_RSH_K: u8 = 0x77; // dst >>= imm
const ALU64_MOV_X: u8 = 0xbf; // dst = src
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const JMP_JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JMP_JNE_X: u8 = 0x5d; // if dst != src: pc += off
const JMP_EXIT: u8 = 0x95;

/// The device program: allow (return 1) if some rule matches the access, deny otherwise.
/// The context is struct bpf_cgroup_dev_ctx { access_type (access << 16 | type), major, minor }.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),        // r2 = access_type
        insn(ALU64_AND_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_MEM_W, 3, 1, 0, 0),        // r3 = access_type
        insn(ALU64_RSH_K, 3, 0, 0, 16),     // r3 = access
        insn(LDX_MEM_W, 4, 1, 4, 0),        // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),        // r5 = minor
    ];
    for rule in rules {
        let mut block = Vec::new();
        // Each check jumps to the end of this rule's block when it fails; offsets are filled
        // in once the block's length is known.
        match rule.kind {
            Kind::Char => block.push(insn(JMP_JNE_K, 2, 0, 0, BPF_DEVCG_DEV_CHAR)),
            Kind::Block => block.push(insn(JMP_JNE_K, 2, 0, 0, BPF_DEVCG_DEV_BLOCK)),
            Kind::Any => {}
        }
        let full = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;
        if rule.access_bits() != full {
            // Every requested access must be among the allowed ones: (access & allowed) == access.
            block.push(insn(ALU64_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU64_AND_K, 1, 0, 0, rule.access_bits()));
            block.push(insn(JMP_JNE_X, 1, 3, 0, 0));
        }
        if let Some(major) = rule.major {
            block.push(insn(JMP_JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JMP_JNE_K, 5, 0, 0, minor as i32));
        }
        let unconditional = block.is_empty();
        block.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        if unconditional {
            // Everything is allowed: whatever follows could never run, and the verifier
            // refuses unreachable instructions.
            p.extend(block);
            return p;
        }
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K || ins.code == JMP_JNE_X {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: i64, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: bpf(2) with a zero-filled attribute buffer of the size we pass.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load(prog: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<i64> {
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    if let Some(log) = log {
        attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
        attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
        attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    }
    attr[68..72].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    bpf(BPF_PROG_LOAD, &mut attr)
}

/// Loads the device program for `rules` and attaches it to the v2 cgroup `cgroup_dir`. The
/// program stays attached for the cgroup's life.
pub fn attach(cgroup_dir: &std::path::Path, rules: &[DeviceRule]) -> Result<()> {
    let prog = program(rules);
    let fd = load(&prog, None).map_err(|e| {
        // Load again with the verifier's log, only to say why.
        let mut log = vec![0u8; 1 << 20];
        let _ = load(&prog, Some(&mut log));
        let verifier = String::from_utf8_lossy(&log);
        let last = verifier.trim_end_matches('\0').lines().last().unwrap_or("").to_string();
        Error::os(format!("loading the device filter (verifier: {last})"), e)
    })?;
    // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let dir = std::fs::File::open(cgroup_dir)
        .map_err(|e| Error::os(format!("opening cgroup {}", cgroup_dir.display()), e))?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(dir.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog_fd.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map_err(|e| Error::os(format!("attaching the device filter to {}", cgroup_dir.display()), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one access, as the kernel would: a tiny interpreter for exactly
    /// the instructions `program` emits.
    fn run(prog: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access << 16) | kind) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU64_AND_K => r[dst] &= i.imm as u64,
                ALU64_RSH_K => r[dst] >>= i.imm,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = i.imm as u64,
                JMP_JNE_K if r[dst] != i.imm as u64 => pc += i.off as usize,
                JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const R: i32 = BPF_DEVCG_ACC_READ;
    const W: i32 = BPF_DEVCG_ACC_WRITE;
    const M: i32 = BPF_DEVCG_ACC_MKNOD;
    const C: i32 = BPF_DEVCG_DEV_CHAR;
    const B: i32 = BPF_DEVCG_DEV_BLOCK;

    #[test]
    fn default_rules_allow_the_standard_devices_only() {
        let p = program(DEFAULT_RULES);
        assert_eq!(run(&p, C, R | W, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, C, R, 136, 7), 1, "a pty");
        assert_eq!(run(&p, C, R | W, 10, 200), 1, "tun");
        assert_eq!(run(&p, C, M, 4, 1), 1, "mknod of any char device");
        assert_eq!(run(&p, C, R, 4, 1), 0, "but not opening it");
        assert_eq!(run(&p, B, M, 8, 0), 0, "no block devices");
        assert_eq!(run(&p, B, R, 8, 0), 0, "no block devices");
        assert_eq!(run(&p, C, R | W, 1, 1), 0, "/dev/mem");
    }

    #[test]
    fn allow_all_allows_all() {
        let p = program(ALLOW_ALL);
        assert_eq!(run(&p, B, R | W | M, 8, 0), 1);
        assert_eq!(run(&p, C, R, 1, 1), 1);
    }

    #[test]
    fn v1_lines() {
        let lines: Vec<String> = DEFAULT_RULES.iter().map(DeviceRule::v1_line).collect();
        assert_eq!(lines[0], "c 1:3 rwm");
        assert_eq!(lines[7], "c 136:* rwm");
        assert_eq!(lines.last().unwrap(), "c *:* m");
        assert_eq!(ALLOW_ALL[0].v1_line(), "a *:* rwm");
    }
}
