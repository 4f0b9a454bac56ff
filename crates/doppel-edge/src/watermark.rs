//! How far the hub has acknowledged each device's local changes, kept durably.
//!
//! The changes themselves are the local history (durable in the local store); the watermark
//! only says where the next sync starts. Losing an update of it is harmless: the changes after
//! the older watermark are sent again, and merging is idempotent.

use crate::config::EdgeError;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

const FILE_NAME: &str = "edge-sync.json";

pub(crate) struct Watermarks {
    path: PathBuf,
    /// Device id -> the last local document version the hub has merged.
    acknowledged: Mutex<BTreeMap<String, u64>>,
}

impl Watermarks {
    pub(crate) fn open(data_dir: &Path) -> Result<Self, EdgeError> {
        let path = data_dir.join(FILE_NAME);
        let failed = |source| EdgeError::Watermarks {
            path: path.display().to_string(),
            source,
        };
        let acknowledged = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|err| failed(std::io::Error::new(std::io::ErrorKind::InvalidData, err)))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(failed(err)),
        };
        Ok(Self {
            path,
            acknowledged: Mutex::new(acknowledged),
        })
    }

    pub(crate) fn get(&self, device: &str) -> u64 {
        self.lock().get(device).copied().unwrap_or(0)
    }

    /// Moves `device`'s watermark forward (never back) and writes the file through: a temporary
    /// file made durable, then renamed over the old one, so a crash leaves one or the other.
    pub(crate) fn advance(&self, device: &str, version: u64) -> std::io::Result<()> {
        let mut acknowledged = self.lock();
        let current = acknowledged.entry(device.to_owned()).or_insert(0);
        if version <= *current {
            return Ok(());
        }
        *current = version;
        let bytes = serde_json::to_vec(&*acknowledged).map_err(std::io::Error::other)?;
        let temporary = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.acknowledged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
