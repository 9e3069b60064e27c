//! What lab-net needs that no crate wraps: two nf_tables expressions the nftnl crate lacks,
//! and binding a packet socket to an interface (nix has no constructor for `sockaddr_ll`).
//! All of the crate's unsafe code is here.

use nftnl::expr::{Expression, Register};
use nftnl::nftnl_sys as sys;
use nftnl::Rule;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

/// NFT_FIB_RESULT_ADDRTYPE and NFTA_FIB_F_DADDR of linux/netfilter/nf_tables.h.
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;

/// A new libnftnl expression of kind `name`, without attributes.
fn alloc(name: &CStr) -> NonNull<sys::nftnl_expr> {
    // SAFETY: nftnl_expr_alloc copies nothing but reads the NUL-terminated name.
    let expr = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
    // Allocation failure: what Rust's own allocator would abort on.
    NonNull::new(expr).expect("libnftnl: out of memory")
}

/// Sets u32 attribute `attr` of an expression of ours.
fn set_u32(expr: NonNull<sys::nftnl_expr>, attr: u32, value: u32) {
    // SAFETY: expr is a live expression (from `alloc`, not yet handed to a rule), and `attr`
    // one of the u32 attributes of its kind, as the callers pass them.
    unsafe { sys::nftnl_expr_set_u32(expr.as_ptr(), attr as u16, value) };
}

/// `fib daddr type`: the route type of the packet's destination into register 1 (compared
/// with RTN_LOCAL it means "addressed to this host").
pub(crate) struct FibDaddrLocal;

impl Expression for FibDaddrLocal {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let expr = alloc(c"fib");
        set_u32(expr, sys::NFTNL_EXPR_FIB_DREG, Register::Reg1.to_raw());
        set_u32(expr, sys::NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
        set_u32(expr, sys::NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
        expr
    }
}

/// An expression by kind alone, without attributes: the kernel loads the module of that
/// kind, then refuses the rule (what module preloading wants).
pub(crate) struct Named(pub(crate) CString);

impl Expression for Named {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        alloc(&self.0)
    }
}

/// Binds packet socket `socket` to interface `index`: it receives that interface's frames
/// of protocol `protocol` (network byte order) only.
pub(crate) fn bind_packet_socket(socket: &OwnedFd, index: u32, protocol: u16) -> io::Result<()> {
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol,
        sll_ifindex: index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: addr is a sockaddr_ll, and the length given is its size.
    let r = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches classic BPF program `program` to socket `socket` (SO_ATTACH_FILTER): the kernel
/// passes only the packets it accepts.
pub(crate) fn attach_filter(socket: &OwnedFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::other("the filter is too long"))?;
    let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
    // SAFETY: fprog points at `len` instructions that outlive the call (the kernel copies
    // them), and the length given is sock_fprog's size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
