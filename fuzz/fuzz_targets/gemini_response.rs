//! A Gemini answer through the OpenAI translation: as a `generateContent` body, as one stream
//! event, as a JSON array of stream events (one translator across them), and as a
//! `batchEmbedContents` body.
#![no_main]

use gophergate::translate::gemini::{
    self, BatchEmbedResponse, GenerateContentResponse, ResponseMeta, StreamTranslator,
};
use libfuzzer_sys::fuzz_target;

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-fuzz".into(),
        created: 0,
        model: "gemini-fuzz".into(),
    }
}

fn stream(events: &[GenerateContentResponse]) {
    let mut tr = StreamTranslator::new(meta());
    for ev in events {
        for chunk in tr.on_event(ev) {
            serde_json::to_vec(&chunk).expect("a chunk serialises");
        }
    }
    if let Some((chunk, _)) = tr.usage_chunk() {
        serde_json::to_vec(&chunk).expect("the usage chunk serialises");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = serde_json::from_slice::<GenerateContentResponse>(data) {
        let out = gemini::from_response(&resp, &meta());
        serde_json::to_vec(&out).expect("a response serialises");
        stream(std::slice::from_ref(&resp));
    }
    if let Ok(events) = serde_json::from_slice::<Vec<GenerateContentResponse>>(data) {
        stream(&events);
    }
    if let Ok(resp) = serde_json::from_slice::<BatchEmbedResponse>(data) {
        for base64 in [false, true] {
            let out = gemini::from_embed_response(&resp, "gemini-fuzz", base64, 7);
            serde_json::to_vec(&out).expect("embeddings serialise");
        }
    }
});
