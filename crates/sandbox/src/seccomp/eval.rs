//! Running a compiled seccomp program on a made-up system call, to know before a node starts
//! what its filter will do (a profile that denies execve lets nothing start).

use super::Bpf;

/// What the filter decides for a system call, by the top 16 bits of its return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Allowed and logged.
    Log,
    /// Refused: an errno, a trap, a kill, a tracer or user-space notifier that is not there.
    Deny,
}

const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;

/// struct seccomp_data: nr, arch, instruction_pointer, args[6].
fn data_word(nr: u32, arch: u32, offset: u32) -> Option<u32> {
    match offset {
        0 => Some(nr),
        4 => Some(arch),
        // The instruction pointer and the arguments: zero.
        8..=60 if offset % 4 == 0 => Some(0),
        _ => None,
    }
}

/// The AUDIT_ARCH_* value of this machine, as the kernel puts it in seccomp_data.
fn native_audit_arch() -> Option<u32> {
    Some(match std::env::consts::ARCH {
        "x86_64" => 0xc000_003e,
        "aarch64" => 0xc000_00b7,
        "riscv64" => 0xc000_00f3,
        "powerpc64" => 0xc000_0015,
        "s390x" => 0x8000_0016,
        _ => return None,
    })
}

impl Bpf {
    /// What the program decides for system call `nr` of this machine's architecture with
    /// every argument zero; `None` if the program uses an instruction this evaluator does not
    /// know (the caller then cannot tell).
    pub fn verdict(&self, nr: i64) -> Option<Verdict> {
        let arch = native_audit_arch()?;
        let nr = u32::try_from(nr).ok()?;
        let insns: Vec<(u16, u8, u8, u32)> = self
            .0
            .chunks_exact(8)
            .map(|c| {
                let code = u16::from_ne_bytes([c[0], c[1]]);
                (code, c[2], c[3], u32::from_ne_bytes([c[4], c[5], c[6], c[7]]))
            })
            .collect();
        let (mut a, mut x) = (0u32, 0u32);
        let mut mem = [0u32; 16];
        let mut pc = 0usize;
        // A cBPF program only jumps forward, so it ends within its length in steps.
        for _ in 0..=insns.len() {
            let &(code, jt, jf, k) = insns.get(pc)?;
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { jt } else { jf });
            match code {
                0x20 => a = data_word(nr, arch, k)?,   // ld [k]
                0x00 => a = k,                         // ld #k
                0x01 => x = k,                         // ldx #k
                0x60 => a = *mem.get(k as usize)?,     // ld M[k]
                0x61 => x = *mem.get(k as usize)?,     // ldx M[k]
                0x02 => *mem.get_mut(k as usize)? = a, // st M[k]
                0x03 => *mem.get_mut(k as usize)? = x, // stx M[k]
                0x07 => x = a,                         // tax
                0x87 => a = x,                         // txa
                0x54 => a &= k,                        // and #k
                0x44 => a |= k,                        // or #k
                0x05 => pc += k as usize,              // ja
                0x15 => pc += jump(a == k),            // jeq #k
                0x25 => pc += jump(a > k),             // jgt #k
                0x35 => pc += jump(a >= k),            // jge #k
                0x45 => pc += jump(a & k != 0),        // jset #k
                0x1d => pc += jump(a == x),            // jeq x
                0x2d => pc += jump(a > x),             // jgt x
                0x3d => pc += jump(a >= x),            // jge x
                0x4d => pc += jump(a & x != 0),        // jset x
                0x06 | 0x16 => {
                    let ret = if code == 0x06 { k } else { a };
                    return Some(match ret & SECCOMP_RET_ACTION_FULL {
                        SECCOMP_RET_ALLOW => Verdict::Allow,
                        SECCOMP_RET_LOG => Verdict::Log,
                        _ => Verdict::Deny,
                    });
                }
                _ => return None,
            }
        }
        None
    }
}
