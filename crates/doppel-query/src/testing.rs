//! A twin for tests: fields in a map, so any combination of present and missing fields is easy
//! to build.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use crate::{Fields, Path, parse_path};

#[derive(Clone, Debug, Default)]
pub(crate) struct MapTwin {
    pub fields: HashMap<Path, Value>,
    pub delta_empty: bool,
}

impl MapTwin {
    /// A twin with an empty delta and the given fields, named as in a query.
    pub fn with(fields: &[(&str, Value)]) -> Self {
        Self {
            fields: fields
                .iter()
                .map(|(path, value)| (parse_path(path).expect("test path"), value.clone()))
                .collect(),
            delta_empty: true,
        }
    }
}

impl Fields for MapTwin {
    fn value(&self, path: &Path) -> Option<Cow<'_, Value>> {
        self.fields.get(path).map(Cow::Borrowed)
    }

    fn delta_is_empty(&self) -> bool {
        self.delta_empty
    }
}
