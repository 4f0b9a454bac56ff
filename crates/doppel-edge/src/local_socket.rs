//! The local API's Unix socket: bound with the mode the operator chose, a socket left by a
//! crashed agent replaced, removed again when the agent stops.
//!
//! No token protects the socket: the file's permissions decide who may connect (connecting
//! needs write permission on it), so the mode is set before the first connection is accepted.
//! Between `bind` and that `chmod` the socket has the mode the process's umask gives it
//! (0755 under the usual 022, which already lets no other user connect); a directory only the
//! agent's users can enter closes that gap under any umask.

use crate::config::EdgeError;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// The socket's file, removed from the file system when dropped (after the server stopped).
pub(crate) struct SocketFile {
    path: PathBuf,
}

/// Binds `path` with `mode`. A socket file nobody answers on (left by an agent that crashed) is
/// replaced; a live one, or a file that is not a socket, stops the start.
pub(crate) fn bind(path: &Path, mode: u32) -> Result<(UnixListener, SocketFile), EdgeError> {
    let failed = |reason: String| EdgeError::Listen {
        addr: format!("unix:{}", path.display()),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(found) if found.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(failed(
                            "another process is listening on it; stop it or choose another --http-unix-socket".into(),
                        ));
                }
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                        .map_err(|err| failed(format!("cannot remove the stale socket: {err}")))?;
                }
                Err(err) => return Err(failed(format!("cannot check the socket: {err}"))),
            }
        }
        Ok(_) => {
            return Err(failed(
                    "the path exists and is not a socket; remove it or choose another --http-unix-socket".into(),
                ));
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(failed(err.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|err| failed(err.to_string()))?;
    // From here on the file is ours: dropping `file` on an error below removes it.
    let file = SocketFile {
        path: path.to_owned(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|err| failed(format!("cannot set its mode to {mode:04o}: {err}")))?;
    Ok((listener, file))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // A socket file outlives its listener; left behind, it would look like a stale one.
        let _ = std::fs::remove_file(&self.path);
    }
}
