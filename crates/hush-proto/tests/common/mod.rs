//! Shared by the vector tests: load `/work/shared/vectors/<file>` (a JSON array). A missing or
//! malformed file fails the test loudly, never skips it.
#![allow(dead_code)]

use serde_json::Value;

/// Every vector of `/work/shared/vectors/<file>`.
pub fn load(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../../shared/vectors/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {path} missing or unreadable: {e}"));
    serde_json::from_str::<Vec<Value>>(&text)
        .unwrap_or_else(|e| panic!("vector file {path} is not a JSON array: {e}"))
}

/// The vectors of `file` whose name starts with `prefix`.
pub fn family(file: &str, prefix: &str) -> Vec<Value> {
    load(file)
        .into_iter()
        .filter(|v| v["name"].as_str().unwrap().starts_with(prefix))
        .collect()
}
