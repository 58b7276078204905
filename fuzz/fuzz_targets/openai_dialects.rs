//! DeepSeek and xAI fix-ups: the input as a client request (`prepare_request`, then serialised as
//! the provider sends it), and as an answer, a stream chunk and a usage object (`fix_response`,
//! `fix_chunk`, `fix_usage`, and the usage normalisation the gateway prices with).
#![no_main]

use gophergate::{
    domain,
    providers::usage::WireUsage,
    translate::openai_dialects::{self as dialects, ChunkFix, Dialect},
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const DIALECTS: [Dialect; 3] = [Dialect::OpenAi, Dialect::DeepSeek, Dialect::Xai];

fn usage(v: &Value) {
    if let Ok(u) = serde_json::from_value::<WireUsage>(v.clone()) {
        let t = u.normalize();
        assert!(t.cached <= t.prompt && t.reasoning <= t.completion, "{t:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = domain::validate::parse_chat_request(data) {
        for d in DIALECTS {
            let mut req = req.clone();
            if dialects::prepare_request(d, &mut req).is_ok() {
                serde_json::to_vec(&req).expect("a prepared request serialises");
            }
        }
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    usage(&value);
    if let Some(u) = value.get("usage") {
        usage(u);
    }
    for d in DIALECTS {
        // Each fix-up says whether it changed anything; a fixed value needs no second fix.
        let mut body = value.clone();
        dialects::fix_response(d, &mut body);
        assert!(
            !dialects::fix_response(d, &mut body),
            "fix_response twice: {body}"
        );
        if let Some(u) = body.get("usage") {
            usage(u);
        }

        let mut chunk = value.clone();
        match dialects::fix_chunk(d, &mut chunk) {
            ChunkFix::Split(mut usage_chunk) => {
                assert_eq!(
                    dialects::fix_chunk(d, &mut usage_chunk),
                    ChunkFix::Unchanged
                );
                if let Some(u) = usage_chunk.get("usage") {
                    usage(u);
                }
            }
            ChunkFix::Changed | ChunkFix::Unchanged => {}
        }
        assert_eq!(
            dialects::fix_chunk(d, &mut chunk),
            ChunkFix::Unchanged,
            "{chunk}"
        );

        let mut u = value.clone();
        dialects::fix_usage(d, &mut u);
        assert!(!dialects::fix_usage(d, &mut u), "fix_usage twice: {u}");
    }
});
