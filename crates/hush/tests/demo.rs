//! `hush demo` as a real process: both notification paths deliver and report a latency.

mod common;

use std::time::Duration;

use common::Proc;

#[test]
fn demo_reports_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let p = Proc::spawn(
        "demo",
        &[
            "--json",
            "demo",
            "--rounds",
            "2",
            "--dir",
            d.to_str().unwrap(),
        ],
        &[],
    );
    let (code, lines) = p.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{lines:#?}");
    let rounds: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "demo_round")
        .collect();
    assert_eq!(rounds.len(), 2, "{lines:#?}");
    for r in &rounds {
        let c = r["always_connected_ms"].as_f64().unwrap();
        let push = r["push_ms"].as_f64().unwrap();
        let shown = r["push_shown_ms"].as_f64().unwrap();
        assert!(c > 0.0 && c < 5000.0, "{r}");
        assert!(push > 0.0 && push <= shown && shown < 20_000.0, "{r}");
    }
    // each path delivered its message
    let texts: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "message")
        .map(|v| {
            format!(
                "{}: {}",
                v["from"].as_str().unwrap(),
                v["text"].as_str().unwrap()
            )
        })
        .collect();
    for t in [
        "alice: hello bob (1)",
        "bob: hello alice (1)",
        "alice: hello bob (2)",
        "bob: hello alice (2)",
    ] {
        assert!(texts.iter().any(|x| x == t), "{t} missing in {texts:?}");
    }
}
