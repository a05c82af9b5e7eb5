//! File-system requests and name lookups, run on the thread pool (libuv's `uv_fs_*` and
//! `uv_getaddrinfo`): the loop thread never blocks on a disk or a resolver. Each returns its
//! [`WorkRequest`]: while no worker has taken it, [`WorkRequest::cancel`] stops it and its
//! callback gets `ECANCELED` (libuv's `uv_cancel` on an fs or getaddrinfo request).

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::FileExt;
use std::panic::Location;
use std::path::PathBuf;
use std::sync::Arc;

use super::pool::{JobFn, JobOutput, WorkContext, WorkError};
use super::request::AfterWork;
use super::target::RequestType;
use super::{Loop, WorkRequest};

/// An open file, shareable between requests (reads at an offset need no shared cursor).
pub type FsFile = Arc<File>;

/// One directory entry from [`Loop::fs_readdir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
}

fn work_error(e: WorkError) -> io::Error {
    match e {
        WorkError::Cancelled => io::Error::from_raw_os_error(libc::ECANCELED),
        other => io::Error::other(other.to_string()),
    }
}

impl Loop {
    /// Runs `op` on the pool as a request of `kind` labelled `label`, then `cb` on the loop.
    /// getaddrinfo is slow work (a resolver can take seconds, as in libuv); fs is fast.
    fn pool_io<T: Send + 'static>(
        &mut self,
        kind: RequestType,
        site: &'static Location<'static>,
        label: String,
        op: impl FnOnce() -> io::Result<T> + Send + 'static,
        cb: impl FnOnce(&mut Loop, io::Result<T>) + 'static,
    ) -> WorkRequest {
        let run = move || {
            let result = op();
            let failed = result.is_err();
            JobOutput {
                value: Box::new(result),
                failed,
                cancelled: false,
            }
        };
        let run = if kind == RequestType::Getaddrinfo {
            JobFn::Slow(Box::new(move |_: &WorkContext<'_>| run()))
        } else {
            JobFn::Fast(Box::new(run))
        };
        let after: AfterWork = Box::new(move |lp, result| {
            let typed = match result {
                Ok(v) => match v.downcast::<io::Result<T>>() {
                    Ok(b) => *b,
                    Err(_) => Err(work_error(WorkError::WrongType)),
                },
                Err(e) => Err(work_error(e)),
            };
            cb(lp, typed)
        });
        let r = self.submit_to_pool(kind, site, run, after, None);
        if let Some(slot) = self.requests.get_mut(r) {
            slot.label = Some(label.into());
        }
        WorkRequest(r)
    }

    /// Opens a file for reading.
    #[track_caller]
    pub fn fs_open(
        &mut self,
        path: impl Into<PathBuf>,
        cb: impl FnOnce(&mut Loop, io::Result<FsFile>) + 'static,
    ) -> WorkRequest {
        self.fs_open_with(path, OpenOptions::new().read(true).clone(), cb)
    }

    /// Opens a file with `options`.
    #[track_caller]
    pub fn fs_open_with(
        &mut self,
        path: impl Into<PathBuf>,
        options: OpenOptions,
        cb: impl FnOnce(&mut Loop, io::Result<FsFile>) + 'static,
    ) -> WorkRequest {
        let path = path.into();
        let label = format!("open {}", path.display());
        self.pool_io(
            RequestType::Fs,
            Location::caller(),
            label,
            move || options.open(&path).map(Arc::new),
            cb,
        )
    }

    /// Reads up to `len` bytes at `offset` (fewer at end of file; empty at or past it).
    #[track_caller]
    pub fn fs_read(
        &mut self,
        file: &FsFile,
        offset: u64,
        len: usize,
        cb: impl FnOnce(&mut Loop, io::Result<Vec<u8>>) + 'static,
    ) -> WorkRequest {
        self.fs_read_into(file, offset, vec![0; len], move |lp, read, mut buf| {
            cb(
                lp,
                read.map(|n| {
                    buf.truncate(n);
                    buf
                }),
            )
        })
    }

    /// Reads into `buf` at `offset`, as much as `buf.len()` (fewer bytes at end of file,
    /// none at or past it), and gives the buffer back to `cb` with the count read, so one
    /// buffer serves every read of a file (libuv's `uv_fs_read` with the caller's
    /// `uv_buf_t`; no allocation or zeroing per read). The buffer comes back whole even on
    /// an error, and empty only if the request itself was lost (cancelled, or its task
    /// panicked).
    #[track_caller]
    pub fn fs_read_into(
        &mut self,
        file: &FsFile,
        offset: u64,
        mut buf: Vec<u8>,
        cb: impl FnOnce(&mut Loop, io::Result<usize>, Vec<u8>) + 'static,
    ) -> WorkRequest {
        let file = file.clone();
        let len = buf.len();
        self.pool_io(
            RequestType::Fs,
            Location::caller(),
            format!("read {len} bytes at {offset}"),
            move || {
                let mut filled = 0;
                let read = loop {
                    if filled == len {
                        break Ok(filled);
                    }
                    match file.read_at(&mut buf[filled..], offset + filled as u64) {
                        Ok(0) => break Ok(filled),
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                Ok((read, buf))
            },
            move |lp, r: io::Result<(io::Result<usize>, Vec<u8>)>| match r {
                Ok((read, buf)) => cb(lp, read, buf),
                Err(e) => cb(lp, Err(e), Vec::new()),
            },
        )
    }

    /// Writes `data` at `offset`.
    #[track_caller]
    pub fn fs_write(
        &mut self,
        file: &FsFile,
        offset: u64,
        data: Vec<u8>,
        cb: impl FnOnce(&mut Loop, io::Result<()>) + 'static,
    ) -> WorkRequest {
        let file = file.clone();
        self.pool_io(
            RequestType::Fs,
            Location::caller(),
            format!("write {} bytes at {offset}", data.len()),
            move || file.write_all_at(&data, offset),
            cb,
        )
    }

    /// Closes a file (on the pool: `close` can block on network file systems). Other clones
    /// of the `FsFile` keep it open until they are dropped.
    #[track_caller]
    pub fn fs_close(
        &mut self,
        file: FsFile,
        cb: impl FnOnce(&mut Loop, io::Result<()>) + 'static,
    ) -> WorkRequest {
        self.pool_io(
            RequestType::Fs,
            Location::caller(),
            "close".to_string(),
            move || {
                drop(file);
                Ok(())
            },
            cb,
        )
    }

    /// Reads a path's metadata, following symlinks.
    #[track_caller]
    pub fn fs_stat(
        &mut self,
        path: impl Into<PathBuf>,
        cb: impl FnOnce(&mut Loop, io::Result<Metadata>) + 'static,
    ) -> WorkRequest {
        let path = path.into();
        let label = format!("stat {}", path.display());
        self.pool_io(
            RequestType::Fs,
            Location::caller(),
            label,
            move || std::fs::metadata(&path),
            cb,
        )
    }

    /// Resolves a path to its canonical form (symlinks followed).
    #[track_caller]
    pub fn fs_realpath(
        &mut self,
        path: impl Into<PathBuf>,
        cb: impl FnOnce(&mut Loop, io::Result<PathBuf>) + 'static,
    ) -> WorkRequest {
        let path = path.into();
        let label = format!("realpath {}", path.display());
        self.pool_io(
            RequestType::Fs,
            Location::caller(),
            label,
            move || std::fs::canonicalize(&path),
            cb,
        )
    }

    /// Lists a directory (sorted by name).
    #[track_caller]
    pub fn fs_readdir(
        &mut self,
        path: impl Into<PathBuf>,
        cb: impl FnOnce(&mut Loop, io::Result<Vec<DirEntry>>) + 'static,
    ) -> WorkRequest {
        let path = path.into();
        let label = format!("readdir {}", path.display());
        self.pool_io(
            RequestType::Fs,
            Location::caller(),
            label,
            move || {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(&path)? {
                    let entry = entry?;
                    out.push(DirEntry {
                        name: entry.file_name().to_string_lossy().into_owned(),
                        is_dir: entry.file_type()?.is_dir(),
                    });
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            },
            cb,
        )
    }

    /// Resolves `host:port` to addresses on the pool.
    #[track_caller]
    pub fn getaddrinfo(
        &mut self,
        host: impl Into<String>,
        port: u16,
        cb: impl FnOnce(&mut Loop, io::Result<Vec<SocketAddr>>) + 'static,
    ) -> WorkRequest {
        let host = host.into();
        let label = format!("getaddrinfo {host}:{port}");
        self.pool_io(
            RequestType::Getaddrinfo,
            Location::caller(),
            label,
            move || Ok((host.as_str(), port).to_socket_addrs()?.collect()),
            cb,
        )
    }
}
