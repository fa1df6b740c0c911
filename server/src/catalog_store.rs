//! Where the catalog lives on disk: `<data-dir>/catalog.json`.
//!
//! Writes are atomic: the new catalog goes to a temporary file that is
//! fsync'd and then renamed over the old one (and the directory fsync'd), so a
//! crash at any moment leaves either the old or the new catalog, never half
//! of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use weir_planner::catalog::Catalog;

use crate::error::{Result, ServerError};

const FILE_NAME: &str = "catalog.json";

/// The catalog file of one data directory.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    dir: PathBuf,
}

impl CatalogStore {
    /// Use `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, "create data directory", e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Read the catalog; an empty one when none was written yet.
    pub fn load(&self) -> Result<Catalog> {
        let path = self.dir.join(FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => Ok(Catalog::from_json(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
            Err(e) => Err(io_error(&path, "read", e)),
        }
    }

    /// Replace the catalog on disk, atomically.
    pub fn save(&self, catalog: &Catalog) -> Result<()> {
        let path = self.dir.join(FILE_NAME);
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = fs::File::create(&tmp).map_err(|e| io_error(&tmp, "create", e))?;
        file.write_all(&catalog.to_json())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(&tmp, "write", e))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, "rename into", e))?;
        // The rename is durable only once the directory entry is.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, "sync", e))?;
        Ok(())
    }
}

fn io_error(path: &Path, what: &str, err: std::io::Error) -> ServerError {
    ServerError::Io {
        message: format!("could not {what} \"{}\": {err}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_planner::catalog::{CatalogEntry, ViewDef};

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CatalogStore::open(dir.path()).expect("open");
        assert_eq!(store.load().expect("load empty"), Catalog::default());
        let mut catalog = Catalog::default();
        catalog
            .insert(CatalogEntry::View(ViewDef {
                name: "v".into(),
                sql: "CREATE VIEW v AS SELECT 1".into(),
                definition: "SELECT 1".into(),
            }))
            .expect("insert");
        store.save(&catalog).expect("save");
        assert_eq!(store.load().expect("load"), catalog);
        assert!(!dir.path().join("catalog.json.tmp").exists());
    }
}
