//! Where the control socket lives, and binding it safely: private directory, 0600 socket,
//! a stale socket of a dead daemon replaced, a live one refused.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::super::ObserveError;
use crate::engine::sys::effective_uid;

/// Environment variable naming the socket path.
pub const SOCKET_ENV: &str = "LOOPD_SOCKET";

/// The default socket path (DESIGN §5): `$LOOPD_SOCKET`, else
/// `$XDG_RUNTIME_DIR/loopd/control.sock`, else `/tmp/loopd-<uid>/control.sock`.
///
/// # Examples
///
/// ```
/// let path = loopd::observe::control::default_socket_path();
/// assert!(path.ends_with("control.sock") || std::env::var_os("LOOPD_SOCKET").is_some());
/// ```
pub fn default_socket_path() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = non_empty(SOCKET_ENV) {
        return PathBuf::from(p);
    }
    if let Some(dir) = non_empty("XDG_RUNTIME_DIR") {
        return Path::new(&dir).join("loopd").join("control.sock");
    }
    PathBuf::from(format!("/tmp/loopd-{}", effective_uid())).join("control.sock")
}

fn socket_error(path: &Path, source: io::Error) -> ObserveError {
    ObserveError::ControlSocket {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes sure the socket's directory exists. A directory we create is 0700; the directory of
/// the default path (ours alone) must belong to us and is made 0700.
fn prepare_dir(path: &Path, is_default: bool) -> Result<(), ObserveError> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| socket_error(path, e))?;
        return Ok(());
    }
    if is_default {
        let meta = fs::metadata(dir).map_err(|e| socket_error(path, e))?;
        let me = effective_uid();
        if meta.uid() != me {
            return Err(socket_error(
                path,
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "directory {} belongs to uid {}, not to us (uid {me})",
                        dir.display(),
                        meta.uid()
                    ),
                ),
            ));
        }
        if meta.mode() & 0o777 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| socket_error(path, e))?;
        }
    }
    Ok(())
}

/// Removes a socket left by a dead daemon; refuses when a live one answers on it.
fn clear_stale(path: &Path) -> Result<(), ObserveError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(socket_error(path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(socket_error(
            path,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; remove it or choose another path",
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ObserveError::AlreadyRunning(path.to_path_buf())),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) =>
        {
            tracing::info!(path = %path.display(), "removing stale control socket");
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(socket_error(path, e)),
            }
        }
        Err(e) => Err(socket_error(path, e)),
    }
}

/// A bound control socket and the inode it has, so that shutdown removes only our own file.
pub(crate) struct Bound {
    pub listener: UnixListener,
    pub ino: u64,
}

/// Binds the control socket at `path` (0600).
pub(crate) fn bind(path: &Path, is_default: bool) -> Result<Bound, ObserveError> {
    prepare_dir(path, is_default)?;
    clear_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => ObserveError::AlreadyRunning(path.to_path_buf()),
        _ => socket_error(path, e),
    })?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| socket_error(path, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| socket_error(path, e))?;
    let ino = fs::metadata(path).map(|m| m.ino()).unwrap_or(0);
    Ok(Bound { listener, ino })
}

/// Removes the socket file if it is still the one we bound.
pub(crate) fn remove_if_ours(path: &Path, ino: u64) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.ino() == ino => {
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove control socket");
            }
        }
        _ => {}
    }
}
