//! The seam between the engine and the hosts: what a host job needs of a connection (run a
//! command, upload a file, close) and of a client (connect). The SSH client and session are
//! the real implementations; the unit tests run the same procedures against this machine's
//! own shell (`testkit.rs`), with faults injected between the engine and the host.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use fleet_remote_exec::{
    Client, ExecError, ExecOptions, ExecOutput, RemoteCommand, Session, Target,
};
use tokio_util::sync::CancellationToken;

/// A boxed future, for the object-safe traits below.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One connection to a host.
pub(crate) trait Remote: Send + Sync {
    /// Runs `cmd`, bounded by `opts.timeout`, killed on `cancel`.
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        opts: &'a ExecOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<ExecOutput, ExecError>>;

    /// Uploads `local` to `dest` (atomically, with `mode`), its processes on the host
    /// carrying `env`.
    fn upload<'a>(
        &'a self,
        local: &'a Path,
        dest: &'a str,
        mode: u32,
        env: &'a [(&'a str, &'a str)],
        opts: &'a ExecOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<ExecOutput, ExecError>>;

    /// Closes the connection (bounded).
    fn close(&self) -> BoxFut<'_, ()>;
}

/// Makes connections.
pub(crate) trait Connect: Send + Sync {
    /// Connects to `target`, giving up on `cancel`.
    fn connect<'a>(
        &'a self,
        target: &'a Target,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<Box<dyn Remote>, ExecError>>;
}

impl Remote for Session {
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        opts: &'a ExecOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<ExecOutput, ExecError>> {
        Box::pin(Session::exec(self, cmd, opts, cancel))
    }

    fn upload<'a>(
        &'a self,
        local: &'a Path,
        dest: &'a str,
        mode: u32,
        env: &'a [(&'a str, &'a str)],
        opts: &'a ExecOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<ExecOutput, ExecError>> {
        Box::pin(Session::upload(self, local, dest, mode, env, opts, cancel))
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(Session::close(self))
    }
}

impl Connect for Client {
    fn connect<'a>(
        &'a self,
        target: &'a Target,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<Box<dyn Remote>, ExecError>> {
        Box::pin(async move {
            Client::connect(self, target, cancel)
                .await
                .map(|s| Box::new(s) as Box<dyn Remote>)
        })
    }
}
