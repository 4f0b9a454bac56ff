//! The twin's descriptive fields, apart from the twin so that what replicas exchange (which
//! carries the hub's meta) can sit below the twin.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Descriptive fields written by applications, not by the device's state reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub device_type: Option<String>,
    pub firmware_version: Option<String>,
    pub capabilities: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}
