//! The raw system calls hull-cri and its helpers need that std and nix do not wrap safely.
//! Every `unsafe` block of the crate lives under this module, each with the reason it is
//! sound; callers get safe functions that check their own preconditions.

mod fork;
mod fs;
mod netns;
mod root;
mod socket;
mod tty;

pub use fork::fork_single_threaded;
pub use fs::*;
pub use netns::connect_in_netns;
pub use root::open_in_root;
pub use socket::recv_fd;
pub use tty::{register_fd, set_winsize};
