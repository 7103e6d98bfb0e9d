//! The parent's side of a container's life: creating it (clone, id maps, cgroup, state),
//! starting it, waiting for it, signalling and destroying it.

mod create;
mod destroy;
mod exec;
pub mod tty;
mod wait;

pub use create::{create, CreateError, CreateOpts, Created, Mode};
pub use destroy::{destroy, kill, DestroyError};
pub use exec::{exec, ExecError, ExecOpts, Execed};
pub use wait::{block_signals, wait_for_exit, WaitError};
