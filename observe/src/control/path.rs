//! Where the control socket lives, and binding it safely: private directory, 0600 socket
//! from the moment it exists, a stale socket of a dead daemon replaced, a live one refused.
//!
//! Two kinds of directory:
//! - **ours**: the default `$XDG_RUNTIME_DIR/loopd/` or `/tmp/loopd-<uid>/`. It must belong
//!   to us and is set to 0700.
//! - **chosen** (`--control`, `control =` in the config, `$LOOPD_SOCKET`): never changed, but
//!   checked: it must belong to us or to root, and must not be writable by group or others
//!   unless it has the sticky bit (like `/tmp`); otherwise someone else could replace the
//!   socket with theirs. A directory that does not exist yet is created 0700.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::super::ObserveError;
use crate::sys::effective_uid;

/// Environment variable naming the socket path.
pub const SOCKET_ENV: &str = "LOOPD_SOCKET";

/// The default socket path (DESIGN §5): `$LOOPD_SOCKET`, else
/// `$XDG_RUNTIME_DIR/loopd/control.sock`, else `/tmp/loopd-<uid>/control.sock`.
///
/// # Examples
///
/// ```
/// let path = loopd_observe::control::default_socket_path();
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

/// The socket path of a program that is not the daemon (an example built on loopd, a
/// program with the agent): `$LOOPD_SOCKET`, else `$XDG_RUNTIME_DIR/loopd/<name>.sock`, else
/// `/tmp/loopd-<uid>/<name>.sock` — beside the daemon's `control.sock`, in the same private
/// directory, so that several programs never take each other's socket.
pub fn program_socket_path(name: &str) -> PathBuf {
    let default = default_socket_path();
    if std::env::var_os(SOCKET_ENV).is_some_and(|v| !v.is_empty()) {
        return default;
    }
    default.with_file_name(format!("{name}.sock"))
}

/// [`program_socket_path`], and whether its directory is ours alone.
pub(crate) fn program_location(name: &str) -> (PathBuf, bool) {
    let chosen = std::env::var_os(SOCKET_ENV).is_some_and(|v| !v.is_empty());
    (program_socket_path(name), !chosen)
}

/// The default socket path, and whether its directory is ours alone (not when it comes from
/// `$LOOPD_SOCKET`, which names a path of the user's choosing).
pub(crate) fn default_location() -> (PathBuf, bool) {
    let chosen = std::env::var_os(SOCKET_ENV).is_some_and(|v| !v.is_empty());
    (default_socket_path(), !chosen)
}

/// Backlog of the listening socket (what `std` uses).
const BACKLOG: i32 = 128;

/// Longest socket path in bytes: `sun_path` holds 108 bytes including the terminating NUL.
pub(crate) const MAX_PATH_LEN: usize = 107;

/// Refuses a path too long for `sun_path` before anything is created for it (the directory
/// would otherwise be made, and left behind, only for `bind` to fail).
fn check_len(path: &Path) -> Result<(), ObserveError> {
    use std::os::unix::ffi::OsStrExt;
    let len = path.as_os_str().as_bytes().len();
    if len > MAX_PATH_LEN {
        return Err(socket_error(
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the path is {len} bytes long; a Unix socket path may have at most \
                     {MAX_PATH_LEN}"
                ),
            ),
        ));
    }
    Ok(())
}

fn socket_error(path: &Path, source: io::Error) -> ObserveError {
    ObserveError::ControlSocket {
        path: path.to_path_buf(),
        cause: source,
    }
}

/// Makes sure the socket's directory exists. A directory we create is 0700; our own directory
/// (the default path's) must belong to us and is made 0700; a chosen one is checked by
/// [`check_chosen_dir`].
fn prepare_dir(path: &Path, ours: bool) -> Result<(), ObserveError> {
    // A bare file name lives in the current directory, which is checked like any other.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| socket_error(path, e))?;
        return Ok(());
    }
    if !ours {
        return check_chosen_dir(dir).map_err(|e| socket_error(path, e));
    }
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
    Ok(())
}

/// A directory we did not create for ourselves may hold our socket only if nobody else can
/// replace what is in it: owned by us or root, and not writable by group or others unless
/// sticky (then only a file's owner can remove or rename it).
fn check_chosen_dir(dir: &Path) -> io::Result<()> {
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let me = effective_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "directory {} belongs to uid {}, not to us (uid {me}) or root; its owner could \
                 replace the socket",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "directory {} (mode {mode:04o}) is writable by other users and not sticky, so \
                 they could replace the socket; choose a directory only you can write to",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// A listening Unix socket at `path` whose file is created mode 0600 (less if the umask says
/// so), never wider: on Linux `bind` gives the file the socket inode's mode minus the umask,
/// so the mode is set on the socket before `bind` and no other user can connect in between.
fn listen_private(path: &Path) -> io::Result<UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    let file = File::from(OwnedFd::from(socket));
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    let socket = Socket::from(OwnedFd::from(file));
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(BACKLOG)?;
    Ok(UnixListener::from(OwnedFd::from(socket)))
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

/// Binds the control socket at `path` (0600); `ours`: its directory is the default one.
pub(crate) fn bind(path: &Path, ours: bool) -> Result<Bound, ObserveError> {
    check_len(path)?;
    prepare_dir(path, ours)?;
    clear_stale(path)?;
    let listener = listen_private(path).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => ObserveError::AlreadyRunning(path.to_path_buf()),
        _ => socket_error(path, e),
    })?;
    // Exactly 0600 whatever the umask took away (the owner needs read and write to connect).
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn temp_dir(tag: &str, mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loopd-path-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[test]
    fn the_socket_file_is_never_wider_than_0600() {
        // Without the mode set before bind, the file would be 0777 minus the umask (0755
        // under the usual 022) until the chmod after it.
        let dir = temp_dir("mode", 0o755);
        let path = dir.join("s.sock");
        let _listener = listen_private(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(mode & !0o600, 0, "mode {mode:o} right after bind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_too_long_for_sun_path_creates_nothing() {
        let dir = temp_dir("long", 0o755);
        let fits = dir.join("x".repeat(MAX_PATH_LEN - dir.as_os_str().len() - 1));
        assert_eq!(fits.as_os_str().len(), MAX_PATH_LEN);
        check_len(&fits).unwrap();
        let sub = dir.join("d".repeat(100));
        let err = bind(&sub.join("c.sock"), false).err().unwrap().to_string();
        assert!(err.contains("at most 107"), "{err}");
        assert!(!sub.exists(), "{} was created", sub.display());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_chosen_directory_others_can_write_to_is_refused_unless_sticky() {
        let open = temp_dir("open", 0o777);
        let err = check_chosen_dir(&open).unwrap_err();
        assert!(err.to_string().contains("writable by other users"), "{err}");
        let group = temp_dir("group", 0o775);
        assert!(check_chosen_dir(&group).is_err());
        let sticky = temp_dir("sticky", 0o1777);
        check_chosen_dir(&sticky).unwrap();
        let private = temp_dir("private", 0o755);
        check_chosen_dir(&private).unwrap();
        for d in [open, group, sticky, private] {
            fs::remove_dir_all(&d).unwrap();
        }
    }
}
