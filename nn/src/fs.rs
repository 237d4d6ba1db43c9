//! Atomic file writes: the one way every file of the workspace reaches the disk.
//!
//! [`write_atomic`] writes the bytes to `<path>.tmp` in the same directory, flushes
//! that file to the disk (`fsync`), renames it over `path` and then syncs the
//! directory, so that the rename itself survives a power cut. A rename within one
//! file system is atomic: a reader, a crash, a full disk or a killed job in the
//! middle of a write sees either the old file or the new one, never half of either.
//!
//! The temporary name is fixed per target (not per process), so a process killed
//! mid-write leaves at most one `<path>.tmp`, which the next write to `path`
//! overwrites and renames away. The flip side: two processes must not write the
//! same target at the same time (they would share the temporary file). On any
//! error the temporary file is removed again and `path` is left as it was.
//!
//! Checkpoints ([`crate::safetensors::save`]) and, in `ddpm`, sample grids and
//! figures all write through here.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (see the module doc): `<path>.tmp`, fsync,
/// rename over `path`, fsync of the directory. Removes the temporary file when
/// any step fails; `path` then keeps its old contents (or stays absent).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let written = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        // Best effort: the write's own error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_parent_dir(path);
    Ok(())
}

/// The temporary file [`write_atomic`] uses for `path`: `<path>.tmp`, beside it.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Creates (or truncates) `path`, writes `bytes` and flushes them to the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the rename itself durable by syncing the directory entry. Best effort:
/// some file systems refuse to sync a directory, and the new file is in place
/// (and complete) either way.
#[cfg(unix)]
fn sync_parent_dir(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Directories cannot be opened for syncing here; the rename is still atomic.
#[cfg(not(unix))]
fn sync_parent_dir(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A fresh, empty directory for one test, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("nn-fs-{}-{test}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// The names in the directory, sorted.
        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn replaces_the_target_by_renaming_and_leaves_no_temporary_file() {
        let dir = Scratch::new("replace");
        let path = dir.0.join("out.bin");
        write_atomic(&path, b"first version, the longer one").unwrap();
        assert_eq!(dir.names(), ["out.bin"]);

        // A reader that opened the old file keeps reading the old bytes: the new
        // file is a different file renamed into place, not the old one rewritten.
        let mut old = File::open(&path).unwrap();
        write_atomic(&path, b"second").unwrap();
        let mut seen = String::new();
        old.read_to_string(&mut seen).unwrap();
        assert_eq!(seen, "first version, the longer one");
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(dir.names(), ["out.bin"]);
    }

    #[test]
    fn a_stale_temporary_file_from_a_killed_write_is_replaced() {
        let dir = Scratch::new("stale");
        let path = dir.0.join("grid.png");
        fs::write(temp_path(&path), b"half a file from a killed process").unwrap();
        write_atomic(&path, b"whole").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        assert_eq!(dir.names(), ["grid.png"]);
    }

    #[test]
    fn failures_keep_the_target_and_remove_the_temporary_file() {
        let dir = Scratch::new("fail");
        // The target is a directory: the rename fails after the write.
        let target_dir = dir.0.join("taken");
        fs::create_dir(&target_dir).unwrap();
        fs::write(target_dir.join("inside"), b"kept").unwrap();
        assert!(write_atomic(&target_dir, b"x").is_err());
        assert_eq!(fs::read(target_dir.join("inside")).unwrap(), b"kept");
        assert_eq!(dir.names(), ["taken"]);

        // The directory does not exist: nothing can be created.
        let missing = dir.0.join("no-such-dir").join("f");
        let err = write_atomic(&missing, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(dir.names(), ["taken"]);

        // The temporary name is taken by a directory: the old file survives.
        let path = dir.0.join("model.safetensors");
        write_atomic(&path, b"old").unwrap();
        fs::create_dir(temp_path(&path)).unwrap();
        assert!(write_atomic(&path, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        fs::remove_dir(temp_path(&path)).unwrap();
        assert_eq!(dir.names(), ["model.safetensors", "taken"]);
    }
}
