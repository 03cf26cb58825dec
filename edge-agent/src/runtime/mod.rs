//! The container runtime side of the agent: libcontainer (youki) for containers, libcgroups for
//! resource control and accounting. For now it answers whether this device can run containers;
//! creating, adopting and supervising them comes with the runtime itself.
//!
//! Invariant: every call into libcontainer and libcgroups goes through this module.

pub mod cgroup;

use libcontainer::syscall::syscall::create_syscall;

/// Whether the agent holds the privileges that creating containers needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privileges {
    /// Root in the initial user namespace: containers can be created.
    Root,
    /// Not root, or root inside a user namespace: libcontainer would need rootless mode,
    /// which the agent does not use.
    Rootless,
}

/// Asks libcontainer, through its syscall layer, whether it would need rootless mode here.
pub fn privileges() -> std::io::Result<Privileges> {
    let syscall = create_syscall();
    if libcontainer::utils::rootless_required(syscall.as_ref())? {
        Ok(Privileges::Rootless)
    } else {
        Ok(Privileges::Root)
    }
}
