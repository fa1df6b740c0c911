//! Which files SQL may name: every path a statement gives (a file table's
//! or stream's `path`, a file sink's folder, `read_csv('...')` and the other
//! table functions) is checked here before anything opens it.
//!
//! ```text
//!   'data/../x/*.csv', 'file:///srv/x', '/etc/passwd'
//!        │ strip file://, cut at the first glob character, make absolute
//!        │ canonicalize the longest prefix that exists (symbolic links and
//!        │   `..` resolved by the OS), then the rest lexically
//!        v
//!   inside one of allowed_paths, and not Weir's own files? ──no──> 42501
//! ```
//!
//! The allowed roots are set once at start-up by the server
//! ([`configure`]); by default they are the directory the server was
//! started in and its data directory, minus the data directory's catalog,
//! roles, lock, table log and checkpoints. Until configured (unit tests of
//! this crate), every path is allowed.
//!
//! A check happens when a statement opens the path. A symbolic link made
//! later inside an allowed folder, pointing outside, is the operator's to
//! prevent: whoever can make links there can read those files anyway.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{ConnectorError, Result};

/// Where SQL may read and write files.
#[derive(Debug, Clone)]
pub struct AllowedPaths {
    roots: Vec<PathBuf>,
    denied: Vec<PathBuf>,
}

static ALLOWED: OnceLock<AllowedPaths> = OnceLock::new();

impl AllowedPaths {
    /// `roots` (each canonicalized; a root that does not exist is created
    /// by nobody and allows nothing) minus `denied`.
    pub fn new(roots: &[PathBuf], denied: &[PathBuf]) -> Self {
        Self {
            roots: roots.iter().map(|r| resolve(r)).collect(),
            denied: denied.iter().map(|d| resolve(d)).collect(),
        }
    }

    /// The roots, for messages.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Check `path` as SQL wrote it; the path it resolves to if allowed.
    pub fn check(&self, path: &str) -> Result<PathBuf> {
        let Some(local) = local_part(path) else {
            // An object store URL (s3://...): reached only with credentials
            // the operator configured, not a local file.
            return Ok(PathBuf::from(path));
        };
        let resolved = resolve(&local);
        let inside = self.roots.iter().any(|root| resolved.starts_with(root));
        let own = self.denied.iter().any(|d| resolved.starts_with(d));
        if inside && !own {
            Ok(resolved)
        } else {
            Err(ConnectorError::PathNotAllowed {
                path: path.to_string(),
                reason: if own {
                    "it is one of Weir's own files".to_string()
                } else {
                    format!(
                        "it is outside allowed_paths ({})",
                        self.roots
                            .iter()
                            .map(|r| r.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            })
        }
    }
}

/// Set the allowed paths for this process (once; later calls are ignored).
pub fn configure(allowed: AllowedPaths) {
    let _ = ALLOWED.set(allowed);
}

/// Check `path` against the configured allowed paths.
pub fn check(path: &str) -> Result<()> {
    match ALLOWED.get() {
        Some(allowed) => allowed.check(path).map(|_| ()),
        None => Ok(()),
    }
}

/// A name that becomes part of a file name (a sink's files are named after
/// it): refused if it could leave its folder.
pub fn check_file_name_part(kind: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.starts_with('.');
    if bad {
        return Err(ConnectorError::InvalidOption {
            option: format!("{kind} name"),
            value: name.to_string(),
            reason: "it names files, so it cannot contain / or \\ or start with a dot".to_string(),
        });
    }
    Ok(())
}

/// The local path in `path` (a plain path or a `file://` URL), cut before
/// its first glob character; `None` for other URLs.
fn local_part(path: &str) -> Option<PathBuf> {
    let path = match path.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => rest,
        // "c://" is not a scheme on the systems Weir runs on; any other
        // scheme is an object store.
        Some((scheme, _))
            if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            return None;
        }
        _ => path,
    };
    let cut = path.find(['*', '?', '[', '{']).unwrap_or(path.len());
    // Up to the last separator before the glob: `data/bids-*.json` is
    // checked as `data/`.
    let prefix = if cut < path.len() {
        match path[..cut].rfind('/') {
            Some(slash) => &path[..=slash],
            None => ".",
        }
    } else {
        path
    };
    let decoded = percent_decode(prefix);
    Some(PathBuf::from(decoded))
}

/// `file://` URLs may spell bytes as %xx (DataFusion decodes them): decode
/// them too, so `%2e%2e` cannot pass as a name while meaning `..`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `path` made absolute, its longest existing prefix canonicalized (links
/// and `..` resolved by the OS), the rest applied lexically.
fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let components: Vec<Component> = absolute.components().collect();
    // The longest prefix that exists.
    for split in (0..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        if let Ok(canonical) = prefix.canonicalize() {
            let mut out = canonical;
            for part in &components[split..] {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            return out;
        }
    }
    absolute
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_before_they_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("allowed");
        let data = root.join("weir-data");
        std::fs::create_dir_all(data.join("tables")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("secret")).expect("mkdir");
        std::fs::write(dir.path().join("secret/pw"), "x").expect("write");
        std::fs::write(data.join("catalog.json"), "{}").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).expect("link");
        let allowed = AllowedPaths::new(
            std::slice::from_ref(&root),
            &[data.join("catalog.json"), data.join("tables")],
        );
        let at = |p: &str| root.join(p).display().to_string();
        assert!(allowed.check(&at("x.csv")).is_ok());
        assert!(allowed.check(&at("sub/new/folder")).is_ok());
        assert!(allowed.check(&at("data/*.json")).is_ok());
        assert!(allowed.check(&format!("file://{}", at("x.csv"))).is_ok());
        for bad in [
            "/etc/passwd".to_string(),
            at("../secret/pw"),
            at("nothere/../../secret/pw"),
            format!("file://{}", at("../secret/pw")),
            format!("file://{}", at("%2e%2e/secret/pw")),
            at("weir-data/catalog.json"),
            at("weir-data/tables/log"),
            at("../secret/*.csv"),
            at("../*"),
        ] {
            assert!(allowed.check(&bad).is_err(), "{bad} was allowed");
        }
        #[cfg(unix)]
        assert!(
            allowed.check(&at("link/pw")).is_err(),
            "a link out was followed"
        );
        let err = allowed
            .check("/etc/passwd")
            .expect_err("outside")
            .to_string();
        assert!(err.contains("/etc/passwd"), "{err}");
        assert!(allowed.check("s3://bucket/x.parquet").is_ok());
    }

    #[test]
    fn names_that_would_leave_their_folder_are_refused() {
        assert!(check_file_name_part("sink", "hot_out").is_ok());
        for bad in ["../../escaped", "a/b", "..", ".hidden", "a\\b", ""] {
            assert!(check_file_name_part("sink", bad).is_err(), "{bad}");
        }
    }
}
