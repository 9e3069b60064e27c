//! The processes the `lab` executable runs as besides the command line: a node's monitor,
//! its init, and `lab exec`'s join process. The executable picks one by its first argument
//! (`__monitor`, `__init`, `__join`), always running from a sealed copy of itself.

use std::path::Path;

/// A node's monitor: creates the init, relays its output to the log, records how it ended.
pub fn monitor(spec: &Path) -> ! {
    lab_sandbox::monitor::main(spec)
}

/// A node's init (pid 1 of the node), from the monitor.
pub fn init() -> ! {
    lab_sandbox::init::main()
}

/// `lab exec`'s join process, which enters the node and runs the command.
pub fn join() -> ! {
    lab_sandbox::join::main()
}
