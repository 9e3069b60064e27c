//! Which `lab` executable the API runs (nodes' monitors and inits are sealed copies of it, and
//! commands run through its `lab exec`), and whether it is one this library can drive.

use crate::Error;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The `lab` executable: `$LAB_BIN` if set, else `lab` on `PATH`; checked to be a `lab` of
/// this library's version (its state files and `lab exec` options are this library's).
///
/// ```no_run
/// let lab = lab::api::lab_binary()?;
/// println!("using {}", lab.display());
/// # Ok::<(), lab::Error>(())
/// ```
pub fn lab_binary() -> Result<PathBuf, Error> {
    let (path, from) = find(std::env::var_os("LAB_BIN"), std::env::var_os("PATH"))?;
    check(&path, from)
}

/// Where `lab` is, given `$LAB_BIN` and `$PATH`, and which of the two said so.
fn find(lab_bin: Option<OsString>, path: Option<OsString>) -> Result<(PathBuf, &'static str), Error> {
    if let Some(bin) = lab_bin.filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(bin), "LAB_BIN"));
    }
    let on_path = path.and_then(|p| std::env::split_paths(&p).map(|d| d.join("lab")).find(|c| is_executable(c)));
    on_path.map(|p| (p, "PATH")).ok_or_else(|| {
        Error::LabBinary(
            "no lab executable: LAB_BIN is not set and there is no `lab` on PATH (in a cargo test of this \
             workspace: LAB_BIN=env!(\"CARGO_BIN_EXE_lab\"))"
                .into(),
        )
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `path` if it is a `lab` this library can drive (asked once per path and process).
pub(super) fn check(path: &Path, from: &str) -> Result<PathBuf, Error> {
    static CHECKED: Mutex<Option<HashMap<PathBuf, Result<(), String>>>> = Mutex::new(None);
    let mut checked = CHECKED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let result =
        checked.get_or_insert_with(HashMap::new).entry(path.to_path_buf()).or_insert_with(|| ask(path)).clone();
    result
        .map(|()| path.to_path_buf())
        .map_err(|why| Error::LabBinary(format!("{} (from {from}) {why}", path.display())))
}

/// Asks `path` what it is (`lab version --json`).
fn ask(path: &Path) -> Result<(), String> {
    let ours = env!("CARGO_PKG_VERSION");
    let out = std::process::Command::new(path)
        .args(["version", "--json"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot be run: {e}"))?;
    #[derive(serde::Deserialize)]
    struct Version {
        version: String,
        json_version: u32,
    }
    let v: Version = serde_json::from_slice(&out.stdout).map_err(|_| {
        "is not a lab executable (`version --json` did not answer as lab does; a test binary's own path, \
         /proc/self/exe, is not lab)"
            .to_string()
    })?;
    if v.version != ours || v.json_version != crate::runtime::JSON_VERSION {
        return Err(format!(
            "is lab {}, and this library is lab {ours}: use a lab built from the same source",
            v.version
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, find};
    use std::path::Path;

    #[test]
    fn lab_bin_wins_then_path_then_an_error_naming_both() {
        let (p, from) = find(Some("/opt/lab".into()), Some("/bin".into())).unwrap();
        assert_eq!((p.as_path(), from), (Path::new("/opt/lab"), "LAB_BIN"));
        let dir = tempfile_dir();
        let lab = dir.join("lab");
        std::fs::write(&lab, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&lab, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent", dir.to_str().unwrap()]).unwrap();
        assert_eq!(find(None, Some(path)).unwrap(), (lab.clone(), "PATH"));
        let err = find(Some("".into()), Some("/nonexistent".into())).unwrap_err().to_string();
        assert!(err.contains("LAB_BIN is not set") && err.contains("no `lab` on PATH"), "{err}");
        // A `lab` that does not answer as lab does is refused, by name and by who named it.
        let err = check(&lab, "PATH").unwrap_err().to_string();
        assert!(err.contains(lab.to_str().unwrap()) && err.contains("(from PATH) is not a lab executable"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lab-binary-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
