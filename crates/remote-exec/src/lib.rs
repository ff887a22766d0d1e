//! SSH remote execution for `fleet`, over [russh](https://docs.rs/russh).
//!
//! # Overview
//!
//! A [`Client`] is created once per run and shared by every host task: it parses known_hosts
//! files once, loads private keys once (asking a [`Prompter`] for passphrases), and keeps jump
//! host connections. [`Client::connect`] turns a [`Target`] into an authenticated
//! [`Session`]; one session carries every [`RemoteCommand`] and upload the host needs.
//!
//! Every network wait is bounded: connect and authentication by [`Target::connect_timeout`],
//! commands by [`ExecOptions::timeout`], and all of them by a cancellation token. A command
//! that times out or is cancelled has its remote process group killed.
//!
//! A command's failure is data ([`ExecOutput`] with an [`ExitStatus`]); [`ExecError`] is only
//! for transport problems: connection, host key, authentication, channel.
//!
//! This crate knows nothing about inventories or terminals, and never prints.
//!
//! # Example
//!
//! ```no_run
//! use fleet_remote_exec::{Client, ClientOptions, ExecOptions, RemoteCommand, Target};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> Result<(), fleet_remote_exec::ExecError> {
//! let client = Client::new(ClientOptions::default());
//! let cancel = CancellationToken::new();
//! let mut target = Target::new("web01", "203.0.113.10", "deploy");
//! target.port = 2222;
//! let session = client.connect(&target, &cancel).await?;
//! let out = session
//!     .exec(&RemoteCommand::new("uname").arg("-r"), &ExecOptions::default(), &cancel)
//!     .await?;
//! assert!(out.status.success());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod admission;
mod auth;
mod client;
mod command;
mod error;
mod escalate;
mod known_hosts;
mod marker;
mod output;
mod script;
mod session;
mod target;
mod transfer;

pub use auth::{NoPrompt, Prompter};
pub use client::{Client, ClientOptions, DEFAULT_MAX_HANDSHAKES};
pub use command::{RemoteCommand, Sudo, quote};
pub use error::{ExecError, HostKeyError};
pub use escalate::{Become, BecomeMethod, Secret};
#[doc(hidden)]
pub use known_hosts::matching_lines as known_hosts_matching_lines;
pub use output::{Capture, ExecOutput, ExitStatus, Sink, Stream};
pub use script::ScriptError;
pub use session::{ExecOptions, Session};
pub use target::{AgentChoice, HostKeyPolicy, Target};
pub use transfer::{Downloaded, LocalFile, PutOptions, RemoteFile};
