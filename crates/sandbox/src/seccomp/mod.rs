//! seccomp: profiles in the Docker/OCI JSON format, compiled with libseccomp.
//!
//! A [`Profile`] is what a file says (defaultAction, architectures, archMap, syscalls with
//! names, action, errnoRet, args, includes/excludes by caps, arches and minKernel). It is
//! compiled for one node: rules whose includes/excludes do not hold for the node's
//! capabilities, this architecture or this kernel are left out, as Docker does.

mod default;
mod eval;

use crate::caps::Cap;
use crate::error::{Error, Result};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

pub use default::docker_default;
pub use eval::Verdict;

/// A seccomp profile in the Docker/OCI format. Fields it does not use are ignored, and a list
/// or table written as `null` (Go's empty slice, as in moby's and podman's own profiles) is
/// read as empty, so that existing profiles load as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default, deserialize_with = "nullable")]
    pub sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Condition::is_empty")]
    pub includes: Condition,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Condition::is_empty")]
    pub excludes: Condition,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// A value that may be missing or `null`: either is the type's default.
fn nullable<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> std::result::Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

impl Condition {
    fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty() && self.min_kernel.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "SCMP_ACT_KILL", alias = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[default]
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

impl Profile {
    /// Reads a Docker/OCI profile file.
    pub fn load(path: &Path) -> Result<Profile> {
        let text =
            std::fs::read(path).map_err(|e| Error::os(format!("reading seccomp profile {}", path.display()), e))?;
        serde_json::from_slice(&text).map_err(|e| Error::BadProfile {
            file: path.display().to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// A filter for a process with capabilities `caps` on this machine.
    pub fn compile(&self, caps: &BTreeSet<Cap>) -> Result<ScmpFilterContext> {
        let errno = |ret: Option<u32>| ret.or(self.default_errno_ret).unwrap_or(libc::EPERM as u32) as i32;
        let default = action(self.default_action, errno(None));
        let ctx_err = |what: &str, e: libseccomp::error::SeccompError| Error::Seccomp { what: what.into(), source: e };
        let mut ctx = ScmpFilterContext::new(default).map_err(|e| ctx_err("creating a filter", e))?;
        for arch in self.arches()? {
            ctx.add_arch(arch).map_err(|e| ctx_err("adding an architecture", e))?;
        }
        let native = native_arch_name();
        let kernel = kernel_version();
        for rule in &self.syscalls {
            if !applies(rule, caps, native, kernel) {
                continue;
            }
            let act = action(rule.action, errno(rule.errno_ret));
            if act == default {
                continue;
            }
            let names = rule.names.iter().chain(&rule.name);
            for name in names {
                // Profiles list syscalls of every architecture; skip those this one lacks.
                let Ok(syscall) = ScmpSyscall::from_name(name) else { continue };
                for args in arg_sets(&rule.args) {
                    let cmps: Vec<ScmpArgCompare> = args.iter().map(compare).collect();
                    ctx.add_rule_conditional(act, syscall, &cmps)
                        .map_err(|e| ctx_err(&format!("adding a rule for {name}"), e))?;
                }
            }
        }
        Ok(ctx)
    }

    /// The architectures the filter covers: the native one and those the archMap lists under
    /// it (x86 and x32 on x86_64, so that 32-bit syscalls are filtered rather than killed),
    /// or those `architectures` names.
    fn arches(&self) -> Result<Vec<ScmpArch>> {
        let native = native_arch_name();
        let names: Vec<String> = match self.arch_map.iter().find(|m| m.architecture == native) {
            Some(m) => std::iter::once(m.architecture.clone()).chain(m.sub_architectures.iter().cloned()).collect(),
            None if !self.architectures.is_empty() => self.architectures.clone(),
            None => vec![native.to_string()],
        };
        Ok(names.iter().filter_map(|n| arch(n)).collect())
    }
}

/// Whether `rule`'s includes hold and its excludes do not.
fn applies(rule: &Rule, caps: &BTreeSet<Cap>, native: &str, kernel: (u32, u32)) -> bool {
    let has_cap = |n: &String| Cap::parse(n).is_ok_and(|c| caps.contains(&c));
    let inc = &rule.includes;
    let exc = &rule.excludes;
    let at_least = |m: &str| kernel >= parse_version(m);
    let on_arch = |arches: &[String]| arches.iter().any(|a| arch_matches(a, native));
    // Includes: every cap, one of the arches, at least the kernel. Excludes: any of them.
    let included = inc.caps.iter().all(has_cap)
        && (inc.arches.is_empty() || on_arch(&inc.arches))
        && inc.min_kernel.as_deref().is_none_or(at_least);
    let excluded =
        exc.caps.iter().any(has_cap) || on_arch(&exc.arches) || exc.min_kernel.as_deref().is_some_and(at_least);
    included && !excluded
}

/// Docker's rule: several args on one index mean any of them (one rule each); args on
/// different indexes must all hold (one rule).
fn arg_sets(args: &[Arg]) -> Vec<Vec<Arg>> {
    let mut indexes: Vec<u32> = args.iter().map(|a| a.index).collect();
    indexes.sort_unstable();
    let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
    if repeated {
        args.iter().map(|a| vec![*a]).collect()
    } else {
        vec![args.to_vec()]
    }
}

fn compare(a: &Arg) -> ScmpArgCompare {
    let op = match a.op {
        Op::Ne => ScmpCompareOp::NotEqual,
        Op::Lt => ScmpCompareOp::Less,
        Op::Le => ScmpCompareOp::LessOrEqual,
        Op::Eq => ScmpCompareOp::Equal,
        Op::Ge => ScmpCompareOp::GreaterEqual,
        Op::Gt => ScmpCompareOp::Greater,
        Op::MaskedEq => ScmpCompareOp::MaskedEqual(a.value),
    };
    let datum = if a.op == Op::MaskedEq { a.value_two } else { a.value };
    ScmpArgCompare::new(a.index, op, datum)
}

fn action(a: Action, errno: i32) -> ScmpAction {
    match a {
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Errno => ScmpAction::Errno(errno),
        Action::Trace => ScmpAction::Trace(errno as u16),
        Action::Allow => ScmpAction::Allow,
        Action::Log => ScmpAction::Log,
    }
}

fn arch(name: &str) -> Option<ScmpArch> {
    Some(match name {
        "SCMP_ARCH_X86_64" => ScmpArch::X8664,
        "SCMP_ARCH_X86" => ScmpArch::X86,
        "SCMP_ARCH_X32" => ScmpArch::X32,
        "SCMP_ARCH_AARCH64" => ScmpArch::Aarch64,
        "SCMP_ARCH_ARM" => ScmpArch::Arm,
        "SCMP_ARCH_RISCV64" => ScmpArch::Riscv64,
        "SCMP_ARCH_PPC64LE" => ScmpArch::Ppc64Le,
        "SCMP_ARCH_S390X" => ScmpArch::S390X,
        _ => return None,
    })
}

fn native_arch_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "x86" => "SCMP_ARCH_X86",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        _ => "SCMP_ARCH_NATIVE",
    }
}

/// Docker's includes.arches use short names ("amd64", "x32", "arm64") as well.
fn arch_matches(name: &str, native: &str) -> bool {
    let canonical = match name {
        "amd64" | "x86_64" => "SCMP_ARCH_X86_64",
        "x86" | "386" => "SCMP_ARCH_X86",
        "x32" => "SCMP_ARCH_X32",
        "arm64" | "aarch64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        other => other,
    };
    canonical == native
}

fn parse_version(s: &str) -> (u32, u32) {
    let mut parts = s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

fn kernel_version() -> (u32, u32) {
    nix::sys::utsname::uname().map(|u| parse_version(&u.release().to_string_lossy())).unwrap_or((0, 0))
}

/// A compiled filter: the BPF program the kernel loads. Compiling a profile takes libseccomp
/// ~18 ms; `lab up` does it once per distinct profile and capability set, and nodes (and
/// `lab exec`) only load the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bpf(Vec<u8>);

impl Profile {
    /// Compiles this profile for capabilities `caps` into the program to load.
    pub fn to_bpf(&self, caps: &BTreeSet<Cap>) -> Result<Bpf> {
        let ctx = self.compile(caps)?;
        // export_bpf_mem needs libseccomp 2.6 (Debian 12 has 2.5): export into a memfd.
        let fd = nix::sys::memfd::memfd_create(c"lab-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::os("creating a memfd for the seccomp filter", e))?;
        ctx.export_bpf(&fd).map_err(|e| Error::Seccomp { what: "exporting the filter".into(), source: e })?;
        let mut file = std::fs::File::from(fd);
        let mut bytes = Vec::new();
        std::io::Seek::rewind(&mut file).map_err(|e| Error::os("reading the seccomp filter", e))?;
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| Error::os("reading the seccomp filter", e))?;
        Ok(Bpf(bytes))
    }
}

impl Bpf {
    /// Loads the program on the calling thread (seccomp(2), SECCOMP_SET_MODE_FILTER). Without
    /// no_new_privs already set, the caller needs CAP_SYS_ADMIN.
    pub fn load(&self) -> Result<()> {
        let prog =
            libc::sock_fprog { len: (self.0.len() / 8) as u16, filter: self.0.as_ptr() as *mut libc::sock_filter };
        // SAFETY: seccomp(2) with a sock_fprog pointing at our program, which outlives the call.
        let r = unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog)
        };
        if r != 0 {
            return Err(Error::os("loading the seccomp filter", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Serialize for Bpf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for Bpf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        if hex.len() % 16 != 0 {
            return Err(serde::de::Error::custom("a seccomp program is a whole number of 8-byte instructions"));
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map(Bpf)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
