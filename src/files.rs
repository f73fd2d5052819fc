//! Native file helpers shared by the CLI's commands: writes that a killed run cannot leave half
//! done, and a check that an output path can be written, made before hours of work rather than
//! after them.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Write a file atomically: the bytes go to a temporary file beside it, which then replaces it,
/// so a run killed mid-write leaves the previous file whole. The temporary name is the target's
/// full name plus a suffix, so it can never be the target itself (a target named `x.tmp`
/// included); a failed write removes it. Creates missing parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(name) = path.file_name() else {
        return Err(Error::Io(format!(
            "cannot write {}: not a file name",
            path.display()
        )));
    };
    create_parent(path)?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}.partial", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Io(format!("cannot write {}: {e}", path.display())));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io(format!(
            "cannot write {} (renaming {} onto it): {e}",
            path.display(),
            tmp.display()
        ))
    })
}

/// Create the folders above `path` that do not exist yet.
pub fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::Io(format!(
                    "cannot write {}: cannot create the folder {}: {e}",
                    path.display(),
                    parent.display()
                ))
            })
        }
        _ => Ok(()),
    }
}

/// Check, before the work, that `path` can be written the way [`write_atomic`] writes it: it is
/// not a folder, and a file can be created beside it (missing folders are created, as the
/// write would). Leaves no file behind.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::Io(format!(
            "cannot write {}: not a file name",
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Io(format!(
            "cannot write {}: it is a folder",
            path.display()
        )));
    }
    create_parent(path)?;
    let mut probe_name = path.file_name().unwrap_or_default().to_os_string();
    probe_name.push(format!(".{}.probe", std::process::id()));
    let probe = path.with_file_name(probe_name);
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::Io(format!("cannot write {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_to_a_tmp_named_target() {
        let dir = std::env::temp_dir().join(format!("nnlab-files-{}", std::process::id()));
        let target = dir.join("sub").join("ck.tmp");
        check_writable(&target).unwrap();
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
        assert!(check_writable(&dir).is_err(), "a folder is not a file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
