//! Golden tests for the Gemini translation: each `tests/fixtures/gemini/*.input.json` is translated
//! and compared with the checked-in `*.expected.json` beside it. `request_*` are OpenAI requests
//! (translated to Gemini), `response_*` Gemini answers and `stream_*` Gemini stream events
//! (translated to OpenAI). After a deliberate change, regenerate with `UPDATE_GOLDEN=1 cargo test
//! --test golden_gemini` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gophergate::{
    domain::ChatRequest,
    translate::gemini::{self, GenerateContentResponse, ResponseMeta, StreamTranslator},
};
use serde_json::{Value, json};
use std::path::Path;

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-golden".into(),
        created: 1_770_000_000,
        model: "gemini-2.5-flash".into(),
    }
}

fn translate(name: &str, input: Value) -> Value {
    if name.starts_with("request_") {
        let req: ChatRequest = serde_json::from_value(input).unwrap();
        match gemini::to_request(&req) {
            Ok(body) => serde_json::to_value(body).unwrap(),
            Err(e) => json!({"error": {"message": e.message, "param": e.param}}),
        }
    } else if name.starts_with("response_") {
        let resp: GenerateContentResponse = serde_json::from_value(input).unwrap();
        serde_json::to_value(gemini::from_response(&resp, &meta())).unwrap()
    } else if name.starts_with("stream_") {
        let events: Vec<GenerateContentResponse> = serde_json::from_value(input).unwrap();
        let mut tr = StreamTranslator::new(meta());
        let mut chunks: Vec<Value> = events
            .iter()
            .flat_map(|e| tr.on_event(e))
            .map(|c| serde_json::to_value(c).unwrap())
            .collect();
        if let Some((usage_chunk, _)) = tr.usage_chunk() {
            chunks.push(serde_json::to_value(usage_chunk).unwrap());
        }
        Value::Array(chunks)
    } else {
        panic!("fixture {name} has no known prefix")
    }
}

#[test]
fn gemini_golden_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemini");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(name) = file.strip_suffix(".input.json") else {
            continue;
        };
        let input: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let actual = translate(name, input);
        let expected_path = dir.join(format!("{name}.expected.json"));
        if update {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&actual).unwrap() + "\n",
            )
            .unwrap();
        }
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
                panic!("{name}.expected.json is missing (run with UPDATE_GOLDEN=1)")
            }),
        )
        .unwrap();
        if actual != expected {
            failures.push(format!(
                "{name}: translation differs from {name}.expected.json\nactual:\n{}",
                serde_json::to_string_pretty(&actual).unwrap()
            ));
        }
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} fixtures found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
