//! A client request body through `parse_chat_request` and the Gemini request translation, and the
//! same bytes as an embeddings request through its Gemini translation.
#![no_main]

use gophergate::{domain, translate::gemini};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = domain::validate::parse_chat_request(data)
        && let Ok(out) = gemini::to_request(&req)
    {
        // The provider sends it with reqwest's `.json()`: serialising must not fail.
        serde_json::to_vec(&out).expect("a translated request serialises");
    }
    if let Ok(req) = domain::parse_embeddings_request(data) {
        let model = req.model.strip_prefix("models/").unwrap_or(&req.model);
        let _ = gemini::to_embed_request(&req, model);
    }
});
