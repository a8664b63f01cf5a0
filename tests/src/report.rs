//! Reading the JSON file `regkit cleanup --report FILE` writes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// The rows of untagged manifests (those without a tag), by digest, and the whole document.
pub fn untagged_rows(path: &Path) -> (BTreeMap<String, Value>, Value) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("read the cleanup report {}: {e}", path.display()));
    let document: Value = serde_json::from_slice(&bytes).expect("the cleanup report is JSON");
    let rows = document["tags"]
        .as_array()
        .expect("the report's tags")
        .iter()
        .filter(|row| row["tag"].is_null())
        .map(|row| {
            let digest = row["digest"].as_str().expect("an untagged row's digest");
            (digest.to_string(), row.clone())
        })
        .collect();
    (rows, document)
}
