//! Reading a plugin file from the plugins directory: regular files only, a symbolic link only when
//! it leads to a regular file inside the directory, never more than a size cap, never blocking on
//! a FIFO or a device.
//!
//! The entry is inspected without following links (`lstat`) before anything is opened, so a FIFO
//! or device is never opened at all; the file is then opened with `O_NOFOLLOW | O_NONBLOCK` and
//! checked again on the open descriptor (`fstat`), so what is read is what was checked; at most
//! cap + 1 bytes are read, so a file that grows meanwhile is still refused.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The default size cap of a plugin file: 64 MiB (an 18 MB Python component fits).
pub const DEFAULT_MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// Why a plugin file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Nothing is there (any more).
    #[error("the file does not exist")]
    NotFound,
    /// A directory, FIFO, socket or device rather than a regular file.
    #[error("not a regular file but a {0}")]
    NotRegular(&'static str),
    /// A symbolic link whose target is not a regular file.
    #[error("a symbolic link to {target}, which is not a regular file but a {kind}")]
    LinkToIrregular {
        /// Where the link leads.
        target: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// A symbolic link that leads out of the plugins directory.
    #[error("a symbolic link to {target}, outside the plugins directory {dir}")]
    LinkOutside {
        /// Where the link leads.
        target: PathBuf,
        /// The plugins directory.
        dir: PathBuf,
    },
    /// A symbolic link that leads nowhere.
    #[error("a symbolic link to a file that does not exist")]
    Dangling,
    /// Larger than the cap.
    #[error("{size} bytes, over the {cap}-byte cap on plugin files (runtime.maxPluginMiB)")]
    TooLarge {
        /// Size seen (at least cap + 1 when the file grew while read).
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The file could not be opened or read.
    #[error("cannot read the file")]
    Io(#[source] std::io::Error),
}

/// What a file type is, in words.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Read the plugin file `path` of the plugins directory `dir`, at most `cap` bytes.
///
/// # Errors
/// [`FileError`] says why the file is refused; [`FileError::NotFound`] when it is gone.
pub fn read_plugin_file(dir: &Path, path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    let entry = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileError::NotFound),
        Err(e) => return Err(FileError::Io(e)),
    };
    let open_path = if entry.file_type().is_symlink() {
        let target = match std::fs::canonicalize(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileError::Dangling),
            Err(e) => return Err(FileError::Io(e)),
        };
        let dir = std::fs::canonicalize(dir).map_err(FileError::Io)?;
        if !target.starts_with(&dir) {
            return Err(FileError::LinkOutside { target, dir });
        }
        let meta = std::fs::symlink_metadata(&target).map_err(FileError::Io)?;
        if !meta.is_file() {
            return Err(FileError::LinkToIrregular {
                target,
                kind: kind(&meta),
            });
        }
        target
    } else if entry.is_file() {
        path.to_owned()
    } else {
        return Err(FileError::NotRegular(kind(&entry)));
    };
    check_size(entry_size(&open_path, &entry), cap)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&open_path)
        .map_err(|e| match e.raw_os_error() {
            // Replaced by a symbolic link between the check and the open.
            Some(libc::ELOOP) => FileError::NotRegular("symbolic link"),
            _ if e.kind() == std::io::ErrorKind::NotFound => FileError::NotFound,
            _ => FileError::Io(e),
        })?;
    read_checked(file, cap)
}

/// The size to check before opening: the link target's for a link, the entry's otherwise.
fn entry_size(open_path: &Path, entry: &Metadata) -> u64 {
    if entry.file_type().is_symlink() {
        std::fs::metadata(open_path).map_or(0, |m| m.len())
    } else {
        entry.len()
    }
}

fn check_size(size: u64, cap: u64) -> Result<(), FileError> {
    if size > cap {
        return Err(FileError::TooLarge { size, cap });
    }
    Ok(())
}

/// Check the open file again (it may have been swapped since it was inspected) and read it.
fn read_checked(file: File, cap: u64) -> Result<Vec<u8>, FileError> {
    let meta = file.metadata().map_err(FileError::Io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(kind(&meta)));
    }
    check_size(meta.len(), cap)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    check_size(bytes.len() as u64, cap)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[test]
    fn a_regular_file_is_read() {
        let d = dir();
        let p = d.path().join("a.wasm");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(read_plugin_file(d.path(), &p, 10).unwrap(), b"abc");
        assert!(matches!(
            read_plugin_file(d.path(), &p, 2),
            Err(FileError::TooLarge { size: 3, cap: 2 })
        ));
        assert!(matches!(
            read_plugin_file(d.path(), &d.path().join("gone.wasm"), 10),
            Err(FileError::NotFound)
        ));
    }

    #[test]
    fn links_lead_only_to_regular_files_inside() {
        let d = dir();
        let outside = dir();
        std::fs::write(d.path().join("real.wasm"), b"abc").unwrap();
        std::fs::write(outside.path().join("x.wasm"), b"abc").unwrap();
        let link = |name: &str, to: &Path| {
            let p = d.path().join(name);
            std::os::unix::fs::symlink(to, &p).unwrap();
            p
        };
        let inside = link("inside.wasm", Path::new("real.wasm"));
        assert_eq!(read_plugin_file(d.path(), &inside, 10).unwrap(), b"abc");
        let out = link("out.wasm", &outside.path().join("x.wasm"));
        let e = read_plugin_file(d.path(), &out, 10).unwrap_err();
        assert!(matches!(e, FileError::LinkOutside { .. }), "{e}");
        let zero = link("zero.wasm", Path::new("/dev/zero"));
        let e = read_plugin_file(d.path(), &zero, 10).unwrap_err();
        assert!(matches!(e, FileError::LinkOutside { .. }), "{e}");
        let to_dir = link("dir.wasm", Path::new("."));
        let e = read_plugin_file(d.path(), &to_dir, 10).unwrap_err();
        assert!(
            e.to_string().contains("not a regular file but a directory"),
            "{e}"
        );
        let dangling = link("dangling.wasm", Path::new("nothing.wasm"));
        let e = read_plugin_file(d.path(), &dangling, 10).unwrap_err();
        assert!(matches!(e, FileError::Dangling), "{e}");
    }

    #[test]
    fn directories_are_not_files() {
        let d = dir();
        let p = d.path().join("x.wasm");
        std::fs::create_dir(&p).unwrap();
        let e = read_plugin_file(d.path(), &p, 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file but a directory");
        let e = read_plugin_file(d.path(), Path::new("/dev/null"), 10).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }
}
