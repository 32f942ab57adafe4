#![allow(dead_code)]
//! Shared helpers for the vector tests: load /work/shared/vectors/<file>.json (fail loudly if
//! missing) and select vector families.

use serde_json::Value;

pub fn load(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../../shared/vectors/{}.json",
        env!("CARGO_MANIFEST_DIR"),
        file
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {path} missing or unreadable: {e}"));
    match serde_json::from_str(&text).unwrap() {
        Value::Array(v) => v,
        _ => panic!("{path}: not a JSON array"),
    }
}

/// Vectors whose name starts with `prefix`.
pub fn family<'a>(all: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|v| v["name"].as_str().unwrap().starts_with(prefix))
        .collect()
}

/// Exactly one vector with this name.
pub fn named<'a>(all: &'a [Value], name: &str) -> &'a Value {
    let v: Vec<_> = all.iter().filter(|v| v["name"] == name).collect();
    assert_eq!(v.len(), 1, "vector {name} not found exactly once");
    v[0]
}

pub fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

pub fn hx32(v: &Value) -> [u8; 32] {
    hx(v).try_into().unwrap()
}

pub fn hx24(v: &Value) -> [u8; 24] {
    hx(v).try_into().unwrap()
}

pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// msg_ascii or msg_hex input.
pub fn msg(inputs: &Value) -> Vec<u8> {
    if let Some(a) = inputs.get("msg_ascii") {
        s(a).as_bytes().to_vec()
    } else {
        hx(&inputs["msg_hex"])
    }
}

pub fn name(v: &Value) -> &str {
    s(&v["name"])
}
