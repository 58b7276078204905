//! OpenAI Chat Completions ⇄ Gemini `generateContent` (native API, v1beta).
//!
//! Request: system and developer messages become `systemInstruction`; user/assistant become
//! `user`/`model` contents with same-role turns merged; images and files become `inlineData` (data
//! URLs) or `fileData` (other URLs); tool calls and results become `functionCall` /
//! `functionResponse` (the function name of a result is recovered from the earlier call); tools,
//! `tool_choice`, `response_format`, sampling and `reasoning_effort` map to their Gemini fields.
//!
//! Response: text parts to `content`, thought parts to `reasoning_content`, function calls to
//! `tool_calls` with generated ids; finish reasons and usage in OpenAI's meaning.
//!
//! `thoughtSignature`s (which Gemini requires back on later turns of a tool-calling conversation
//! with a thinking model) ride inside the tool-call id, which every OpenAI client echoes back
//! verbatim, and also in `extra_content.google.thought_signature`, where Google's own
//! OpenAI-compatible endpoint puts them.
//!
//! Dropped, because Gemini has no equivalent (documented in README): `parallel_tool_calls`, `user`,
//! `service_tier`, `store`, `metadata`, `prompt_cache_key` and other OpenAI-only bookkeeping fields.
//! Refused with a 400 naming the parameter: `logit_bias`, `audio`/`modalities` with audio output.

use crate::domain::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Content, ContentPart, Delta,
    FunctionCall, FunctionCallDelta, ResponseMessage, Role, TokenCounts, ToolCall, ToolCallDelta,
    ToolChoice, Usage,
};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TranslateError {
    pub message: String,
    pub param: String,
}

fn unsupported(param: &str, why: &str) -> TranslateError {
    TranslateError {
        message: format!("'{param}' is not supported by Gemini: {why}"),
        param: param.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Wire types

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    pub contents: Vec<GContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<GContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<GPart>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GPart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<GBlob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<GFileData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<GFunctionCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<GFunctionResponse>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GBlob {
    pub mime_type: String,
    pub data: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GFileData {
    pub mime_type: String,
    pub file_uri: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GFunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GFunctionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub response: Value,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<GCandidate>,
    #[serde(default)]
    pub prompt_feedback: Option<GPromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<GUsage>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GCandidate {
    #[serde(default)]
    pub content: Option<GContent>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GPromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GUsage {
    #[serde(default)]
    pub prompt_tokens_details: Vec<GModalityCount>,
    #[serde(default)]
    pub candidates_tokens_details: Vec<GModalityCount>,
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub cached_content_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub thoughts_token_count: u64,
    #[serde(default)]
    pub tool_use_prompt_token_count: u64,
    #[serde(default)]
    pub total_token_count: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GModalityCount {
    #[serde(default)]
    pub modality: String,
    #[serde(default)]
    pub token_count: u64,
}

fn audio(details: &[GModalityCount]) -> u64 {
    details
        .iter()
        .filter(|d| d.modality == "AUDIO")
        .fold(0, |sum, d| sum.saturating_add(d.token_count))
}

impl GUsage {
    /// OpenAI meaning: thinking tokens are part of the completion; tool-use prompt tokens are input.
    /// Saturating: the counts are whatever the upstream sent.
    pub fn counts(&self) -> TokenCounts {
        TokenCounts {
            prompt: self
                .prompt_token_count
                .saturating_add(self.tool_use_prompt_token_count),
            completion: self
                .candidates_token_count
                .saturating_add(self.thoughts_token_count),
            cached: self.cached_content_token_count.min(self.prompt_token_count),
            reasoning: self.thoughts_token_count,
            cache_write: 0,
            audio_prompt: audio(&self.prompt_tokens_details),
            audio_completion: audio(&self.candidates_tokens_details),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request

/// Translates a canonical request into Gemini's body. `req.model` is not part of the body (it is in
/// the URL).
pub fn to_request(req: &ChatRequest) -> Result<GenerateContentRequest, TranslateError> {
    for (field, why) in [
        ("logit_bias", "Gemini has no token-bias control"),
        (
            "audio",
            "Gemini chat does not return audio through this endpoint",
        ),
        ("prediction", "Gemini has no predicted outputs"),
    ] {
        if req.extra.get(field).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(field, why));
        }
    }
    if let Some(Value::Array(m)) = req.extra.get("modalities")
        && m.iter().any(|x| x == "audio")
    {
        return Err(unsupported("modalities", "audio output is not available"));
    }

    // Tool-call id → function name, for results that only carry the id.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for m in &req.messages {
        for c in m.tool_calls.iter().flatten() {
            call_names.insert(&c.id, &c.function.name);
        }
    }

    let mut system_parts = Vec::new();
    let mut contents: Vec<GContent> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, parts) = match m.role {
            Role::System | Role::Developer => {
                if let Some(c) = &m.content {
                    system_parts.extend(
                        content_parts(c, i)?
                            .into_iter()
                            .filter(|p| p.text.is_some()),
                    );
                }
                continue;
            }
            Role::User => (
                "user",
                match &m.content {
                    Some(c) => content_parts(c, i)?,
                    None => Vec::new(),
                },
            ),
            Role::Assistant => ("model", assistant_parts(m, i)?),
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let name = call_names.get(id).copied().or(m.name.as_deref()).ok_or_else(|| {
                    TranslateError {
                        message: format!(
                            "messages[{i}]: no earlier assistant tool call has the id '{id}', so the function name cannot be known"
                        ),
                        param: format!("messages[{i}].tool_call_id"),
                    }
                })?;
                ("user", vec![function_response(name, m.content.as_ref())])
            }
            Role::Function => {
                let name = m.name.as_deref().ok_or_else(|| TranslateError {
                    message: format!("messages[{i}]: a function message needs a 'name'"),
                    param: format!("messages[{i}].name"),
                })?;
                ("user", vec![function_response(name, m.content.as_ref())])
            }
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(GContent {
                role: Some(role.to_string()),
                parts,
            }),
        }
    }
    if contents.is_empty() {
        return Err(TranslateError {
            message: "Gemini needs at least one user or assistant message besides system messages"
                .into(),
            param: "messages".into(),
        });
    }

    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system_parts.is_empty()).then_some(GContent {
            role: None,
            parts: system_parts,
        }),
        generation_config: generation_config(req)?,
        tools: tools(req)?,
        tool_config: tool_config(req)?,
    })
}

fn content_parts(c: &Content, msg: usize) -> Result<Vec<GPart>, TranslateError> {
    match c {
        Content::Text(t) => Ok(vec![text_part(t)]),
        Content::Parts(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| part(p, msg, j))
            .collect(),
    }
}

fn text_part(t: &str) -> GPart {
    GPart {
        text: Some(t.to_string()),
        ..Default::default()
    }
}

fn part(p: &ContentPart, msg: usize, j: usize) -> Result<GPart, TranslateError> {
    let param = || format!("messages[{msg}].content[{j}]");
    match p.kind.as_str() {
        "text" => Ok(text_part(p.text.as_deref().unwrap_or_default())),
        "refusal" => Ok(text_part(p.refusal.as_deref().unwrap_or_default())),
        "image_url" => {
            let url = p
                .image_url
                .as_ref()
                .map(|i| i.url.as_str())
                .unwrap_or_default();
            Ok(media_part(url, "image/jpeg"))
        }
        "input_audio" => {
            let a = p.input_audio.as_ref().ok_or_else(|| TranslateError {
                message: "an input_audio part needs 'input_audio'".into(),
                param: param(),
            })?;
            Ok(GPart {
                inline_data: Some(GBlob {
                    mime_type: format!("audio/{}", a.format),
                    data: a.data.clone(),
                }),
                ..Default::default()
            })
        }
        "file" => {
            let f = p.file.as_ref().ok_or_else(|| TranslateError {
                message: "a file part needs 'file'".into(),
                param: param(),
            })?;
            match (&f.file_data, &f.file_id) {
                (Some(data), _) => {
                    let fallback = mime_from_name(f.filename.as_deref().unwrap_or_default());
                    Ok(media_part(data, fallback))
                }
                (None, Some(_)) => Err(TranslateError {
                    message: "OpenAI file ids cannot be sent to Gemini; send the file as file_data"
                        .into(),
                    param: param(),
                }),
                (None, None) => Err(TranslateError {
                    message: "a file part needs 'file_data'".into(),
                    param: param(),
                }),
            }
        }
        other => Err(TranslateError {
            message: format!("content parts of type '{other}' are not supported by Gemini"),
            param: param(),
        }),
    }
}

/// A data URL becomes inline data; any other URL a file reference Gemini fetches itself; bare
/// base64 is inline data of the fallback type.
fn media_part(url: &str, fallback_mime: &str) -> GPart {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
    {
        let mime = meta
            .split(';')
            .next()
            .filter(|m| !m.is_empty())
            .unwrap_or(fallback_mime);
        return GPart {
            inline_data: Some(GBlob {
                mime_type: mime.to_string(),
                data: data.to_string(),
            }),
            ..Default::default()
        };
    }
    if url.contains("://") {
        return GPart {
            file_data: Some(GFileData {
                mime_type: mime_from_name(url.split(['?', '#']).next().unwrap_or(url))
                    .replace("application/octet-stream", fallback_mime),
                file_uri: url.to_string(),
            }),
            ..Default::default()
        };
    }
    GPart {
        inline_data: Some(GBlob {
            mime_type: fallback_mime.to_string(),
            data: url.to_string(),
        }),
        ..Default::default()
    }
}

fn mime_from_name(name: &str) -> &'static str {
    let ext = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

fn assistant_parts(m: &crate::domain::Message, i: usize) -> Result<Vec<GPart>, TranslateError> {
    let mut parts = Vec::new();
    if let Some(c) = &m.content {
        let text = c.text();
        if !text.is_empty() {
            parts.push(text_part(&text));
        }
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let args = if call.function.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(&call.function.arguments).map_err(|e| TranslateError {
                message: format!("the tool call arguments are not valid JSON: {e}"),
                param: format!("messages[{i}].tool_calls[{j}].function.arguments"),
            })?
        };
        parts.push(GPart {
            function_call: Some(GFunctionCall {
                id: None,
                name: call.function.name.clone(),
                args,
            }),
            thought_signature: signature_of(call),
            ..Default::default()
        });
    }
    Ok(parts)
}

fn function_response(name: &str, content: Option<&Content>) -> GPart {
    let text = content.map(Content::text).unwrap_or_default();
    // Gemini wants an object: a JSON object result is passed as is, anything else is wrapped.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => Value::Object(o),
        Ok(other) => json!({ "content": other }),
        Err(_) => json!({ "content": text }),
    };
    GPart {
        function_response: Some(GFunctionResponse {
            id: None,
            name: name.to_string(),
            response,
        }),
        ..Default::default()
    }
}

/// The marker between a tool-call id's own part and an embedded thought signature.
const SIG_MARK: &str = "__ts_";

/// Generates a tool-call id, carrying the thought signature (URL-safe base64) when there is one.
pub fn tool_call_id(seed: &str, index: usize, signature: Option<&str>) -> String {
    let base = format!("call_{}{index}", short_hash(seed));
    match signature {
        Some(sig) => format!(
            "{base}{SIG_MARK}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_bytes())
        ),
        None => base,
    }
}

fn short_hash(seed: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(seed.as_bytes())[..6])
}

/// The thought signature of a tool call: from `extra_content.google.thought_signature`, else
/// decoded from its id.
fn signature_of(call: &ToolCall) -> Option<String> {
    if let Some(sig) = call
        .extra
        .get("extra_content")
        .and_then(|e| e.get("google"))
        .and_then(|g| g.get("thought_signature"))
        .and_then(Value::as_str)
    {
        return Some(sig.to_string());
    }
    let (_, encoded) = call.id.split_once(SIG_MARK)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn generation_config(req: &ChatRequest) -> Result<Option<Map<String, Value>>, TranslateError> {
    let mut g = Map::new();
    let mut put = |k: &str, v: Value| {
        g.insert(k.to_string(), v);
    };
    if let Some(t) = req.temperature {
        put("temperature", json!(t));
    }
    if let Some(p) = req.top_p {
        put("topP", json!(p));
    }
    if let Some(n) = req.n {
        put("candidateCount", json!(n));
    }
    if let Some(max) = req.max_completion_tokens.or(req.max_tokens) {
        put("maxOutputTokens", json!(max));
    }
    if let Some(stop) = &req.stop {
        put("stopSequences", json!(stop.to_vec()));
    }
    if let Some(p) = req.presence_penalty {
        put("presencePenalty", json!(p));
    }
    if let Some(f) = req.frequency_penalty {
        put("frequencyPenalty", json!(f));
    }
    if let Some(s) = req.seed {
        put("seed", json!(s));
    }
    if req.logprobs == Some(true) {
        put("responseLogprobs", json!(true));
        if let Some(k) = req.top_logprobs {
            put("logprobs", json!(k));
        }
    }
    if let Some(rf) = &req.response_format {
        match rf.kind.as_str() {
            "text" => {}
            "json_object" => put("responseMimeType", json!("application/json")),
            "json_schema" => {
                put("responseMimeType", json!("application/json"));
                if let Some(schema) = rf.json_schema.as_ref().and_then(|s| s.schema.as_ref()) {
                    let schema = to_gemini_schema(schema)
                        .ok_or_else(|| schema_too_large("response_format.json_schema.schema"))?;
                    put("responseSchema", schema);
                }
            }
            other => {
                return Err(TranslateError {
                    message: format!("response_format type '{other}' is not supported by Gemini"),
                    param: "response_format.type".into(),
                });
            }
        }
    }
    if let Some(effort) = &req.reasoning_effort {
        put("thinkingConfig", thinking_config(&req.model, effort)?);
    }
    Ok((!g.is_empty()).then_some(g))
}

/// Gemini 3 models take a thinking level; 2.5 models a token budget. Thoughts are requested so
/// they can be returned as `reasoning_content`.
fn thinking_config(model: &str, effort: &str) -> Result<Value, TranslateError> {
    let gemini3 = model.starts_with("gemini-3");
    let bad = || TranslateError {
        message: format!(
            "reasoning_effort '{effort}' is not one of none, minimal, low, medium, high"
        ),
        param: "reasoning_effort".into(),
    };
    if gemini3 {
        let level = match effort {
            "none" | "minimal" => "MINIMAL",
            "low" => "LOW",
            "medium" => "MEDIUM",
            "high" | "xhigh" | "max" => "HIGH",
            _ => return Err(bad()),
        };
        return Ok(json!({"thinkingLevel": level, "includeThoughts": true}));
    }
    let budget = match effort {
        "none" => 0,
        "minimal" => 512,
        "low" => 1024,
        "medium" => 8192,
        "high" | "xhigh" | "max" => 24576,
        _ => return Err(bad()),
    };
    Ok(if budget == 0 {
        json!({"thinkingBudget": 0})
    } else {
        json!({"thinkingBudget": budget, "includeThoughts": true})
    })
}

fn tools(req: &ChatRequest) -> Result<Option<Vec<Value>>, TranslateError> {
    let decls: Vec<Value> = req
        .tools
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, t)| Some((i, t.function.as_ref()?)))
        .map(|(i, f)| {
            let mut d = json!({"name": f.name});
            if let Some(desc) = &f.description {
                d["description"] = json!(desc);
            }
            if let Some(p) = &f.parameters {
                let schema = to_gemini_schema(p)
                    .ok_or_else(|| schema_too_large(&format!("tools[{i}].function.parameters")))?;
                // An empty object schema is rejected; no parameters is the same thing.
                if schema
                    .get("properties")
                    .is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()))
                    || schema.get("type").is_some_and(|t| t != "OBJECT")
                {
                    d["parameters"] = schema;
                }
            }
            Ok(d)
        })
        .collect::<Result<_, _>>()?;
    Ok((!decls.is_empty()).then(|| vec![json!({ "functionDeclarations": decls })]))
}

fn schema_too_large(param: &str) -> TranslateError {
    TranslateError {
        message: format!(
            "the JSON schema in '{param}' is too large once its $refs are expanded for Gemini"
        ),
        param: param.to_string(),
    }
}

fn tool_config(req: &ChatRequest) -> Result<Option<Value>, TranslateError> {
    let Some(choice) = &req.tool_choice else {
        return Ok(None);
    };
    let cfg = match choice {
        ToolChoice::Mode(m) => match m.as_str() {
            "none" => json!({"mode": "NONE"}),
            "auto" => json!({"mode": "AUTO"}),
            "required" => json!({"mode": "ANY"}),
            other => {
                return Err(TranslateError {
                    message: format!("tool_choice '{other}' is not one of none, auto, required"),
                    param: "tool_choice".into(),
                });
            }
        },
        ToolChoice::Named(n) => match &n.function {
            Some(f) => json!({"mode": "ANY", "allowedFunctionNames": [f.name]}),
            None => {
                return Err(TranslateError {
                    message: format!(
                        "tool_choice of type '{}' is not supported by Gemini",
                        n.kind
                    ),
                    param: "tool_choice".into(),
                });
            }
        },
    };
    Ok(Some(json!({ "functionCallingConfig": cfg })))
}

/// JSON Schema → the OpenAPI subset Gemini's `Schema` accepts: upper-case types, `nullable`
/// instead of `["x", "null"]`, local `$ref`s inlined, unsupported keywords dropped. `None` when
/// inlining would make it more than [`SCHEMA_GROWTH`] larger than the input: `$ref`s that each
/// repeat a definition several times, nested, grow exponentially from a few kilobytes.
pub fn to_gemini_schema(schema: &Value) -> Option<Value> {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut budget = weight(schema).saturating_add(SCHEMA_GROWTH);
    let out = convert_schema(schema, &defs, 0, &mut budget);
    (budget > 0).then_some(out)
}

/// How much larger than its input (in [`weight`] units) a converted schema may be.
pub const SCHEMA_GROWTH: usize = 1 << 18;

/// Rough size of a JSON value: string bytes, one per other node.
fn weight(v: &Value) -> usize {
    match v {
        Value::String(s) => 1 + s.len(),
        Value::Array(a) => a.iter().fold(1, |n, v| n.saturating_add(weight(v))),
        Value::Object(o) => o.iter().fold(1, |n, (k, v)| {
            n.saturating_add(k.len()).saturating_add(weight(v))
        }),
        _ => 1,
    }
}

const SCHEMA_KEYS: &[&str] = &[
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "default",
    "minimum",
    "maximum",
    "propertyOrdering",
];

/// Takes `cost` from the budget; `false` once it is spent (the result is then thrown away).
fn spend(budget: &mut usize, cost: usize) -> bool {
    *budget = budget.saturating_sub(cost);
    *budget > 0
}

fn convert_schema(s: &Value, defs: &Value, depth: usize, budget: &mut usize) -> Value {
    let Some(obj) = s.as_object() else {
        return json!({});
    };
    if depth > 32 || !spend(budget, 1) {
        return json!({});
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or_default();
        return match defs.get(name) {
            Some(target) => convert_schema(target, defs, depth + 1, budget),
            None => json!({}),
        };
    }
    let mut out = Map::new();
    for k in SCHEMA_KEYS {
        if let Some(v) = obj.get(*k) {
            if !spend(budget, weight(v)) {
                return json!({});
            }
            out.insert((*k).to_string(), v.clone());
        }
    }
    if let Some(c) = obj.get("const") {
        if !spend(budget, weight(c)) {
            return json!({});
        }
        out.insert("enum".into(), json!([c]));
    }
    match obj.get("type") {
        Some(Value::String(t)) => {
            out.insert("type".into(), json!(t.to_ascii_uppercase()));
        }
        Some(Value::Array(types)) => {
            let non_null: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            if non_null.len() < types.len() {
                out.insert("nullable".into(), json!(true));
            }
            if let Some(t) = non_null.first() {
                out.insert("type".into(), json!(t.to_ascii_uppercase()));
            }
        }
        _ => {}
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        let converted: Map<String, Value> = props
            .iter()
            .map(|(k, v)| {
                spend(budget, k.len());
                (k.clone(), convert_schema(v, defs, depth + 1, budget))
            })
            .collect();
        out.insert("properties".into(), Value::Object(converted));
        if !out.contains_key("type") {
            out.insert("type".into(), json!("OBJECT"));
        }
    }
    if let Some(req @ Value::Array(_)) = obj.get("required") {
        if !spend(budget, weight(req)) {
            return json!({});
        }
        out.insert("required".into(), req.clone());
    }
    if let Some(items) = obj.get("items") {
        out.insert(
            "items".into(),
            convert_schema(items, defs, depth + 1, budget),
        );
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(variants)) = obj.get(key) {
            let mut vs: Vec<Value> = Vec::new();
            for v in variants {
                if v.get("type") == Some(&json!("null")) {
                    out.insert("nullable".into(), json!(true));
                } else {
                    vs.push(convert_schema(v, defs, depth + 1, budget));
                }
            }
            if vs.len() == 1 {
                if let Some(Value::Object(only)) = vs.pop() {
                    for (k, v) in only {
                        out.entry(k).or_insert(v);
                    }
                }
            } else if !vs.is_empty() {
                out.insert("anyOf".into(), Value::Array(vs));
            }
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Response

/// Identity of the answer being built: the OpenAI id, creation time and the model to report.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: i64,
    pub model: String,
}

fn finish_reason(reason: Option<&str>, has_calls: bool) -> Option<String> {
    let r = reason?;
    Some(
        match r {
            "STOP" if has_calls => "tool_calls",
            "STOP" | "FINISH_REASON_UNSPECIFIED" => "stop",
            "MAX_TOKENS" => "length",
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
            | "LANGUAGE" => "content_filter",
            _ if has_calls => "tool_calls",
            _ => "stop",
        }
        .to_string(),
    )
}

/// What one candidate's parts say, split the OpenAI way.
#[derive(Default)]
struct PartsSplit {
    text: String,
    thoughts: String,
    calls: Vec<(String, Value, Option<String>)>,
}

fn split_parts(parts: &[GPart]) -> PartsSplit {
    let mut s = PartsSplit::default();
    for p in parts {
        if let Some(fc) = &p.function_call {
            s.calls.push((
                fc.name.clone(),
                fc.args.clone(),
                p.thought_signature.clone(),
            ));
        } else if let Some(t) = &p.text {
            if p.thought == Some(true) {
                s.thoughts.push_str(t);
            } else {
                s.text.push_str(t);
            }
        }
    }
    s
}

fn tool_call(
    meta_id: &str,
    index: usize,
    name: String,
    args: &Value,
    sig: Option<String>,
) -> ToolCall {
    let mut extra = Map::new();
    if let Some(sig) = &sig {
        extra.insert(
            "extra_content".into(),
            json!({"google": {"thought_signature": sig}}),
        );
    }
    ToolCall {
        id: tool_call_id(meta_id, index, sig.as_deref()),
        kind: "function".into(),
        function: FunctionCall {
            name,
            arguments: serde_json::to_string(args).unwrap_or_else(|_| "{}".into()),
        },
        extra,
    }
}

pub fn from_response(resp: &GenerateContentResponse, meta: &ResponseMeta) -> ChatResponse {
    let mut choices: Vec<Choice> = resp
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let parts = c
                .content
                .as_ref()
                .map(|c| c.parts.as_slice())
                .unwrap_or_default();
            let split = split_parts(parts);
            let has_calls = !split.calls.is_empty();
            let index = c.index.unwrap_or(i as u32);
            let tool_calls: Vec<ToolCall> = split
                .calls
                .into_iter()
                .enumerate()
                .map(|(j, (name, args, sig))| {
                    tool_call(&format!("{}:{index}", meta.id), j, name, &args, sig)
                })
                .collect();
            Choice {
                index,
                message: ResponseMessage {
                    role: "assistant".into(),
                    content: (!split.text.is_empty() || !has_calls).then_some(split.text),
                    refusal: None,
                    reasoning_content: (!split.thoughts.is_empty()).then_some(split.thoughts),
                    tool_calls: has_calls.then_some(tool_calls),
                    extra: Map::new(),
                },
                finish_reason: finish_reason(c.finish_reason.as_deref(), has_calls)
                    .or(Some("stop".into())),
                logprobs: None,
            }
        })
        .collect();
    if choices.is_empty() {
        // A blocked prompt has no candidates at all.
        let blocked = resp
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
            .is_some();
        choices.push(Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content: None,
                refusal: None,
                reasoning_content: None,
                tool_calls: None,
                extra: Map::new(),
            },
            finish_reason: Some(if blocked { "content_filter" } else { "stop" }.into()),
            logprobs: None,
        });
    }
    ChatResponse {
        id: meta.id.clone(),
        object: "chat.completion".into(),
        created: meta.created,
        model: resp
            .model_version
            .clone()
            .unwrap_or_else(|| meta.model.clone()),
        choices,
        usage: resp
            .usage_metadata
            .as_ref()
            .map(|u| Usage::from_counts(&u.counts())),
        system_fingerprint: None,
        service_tier: None,
        extra: Map::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Turns Gemini stream events into OpenAI chunks. Gemini repeats cumulative usage on every event,
/// so only the last one is kept and sent once, in a usage-only chunk at the end.
pub struct StreamTranslator {
    meta: ResponseMeta,
    role_sent: HashMap<u32, bool>,
    calls_sent: HashMap<u32, usize>,
    pub usage: Option<GUsage>,
    pub finished: bool,
}

impl StreamTranslator {
    pub fn new(meta: ResponseMeta) -> Self {
        Self {
            meta,
            role_sent: HashMap::new(),
            calls_sent: HashMap::new(),
            usage: None,
            finished: false,
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> ChatChunk {
        ChatChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices,
            usage,
            system_fingerprint: None,
            extra: Map::new(),
        }
    }

    pub fn on_event(&mut self, ev: &GenerateContentResponse) -> Vec<ChatChunk> {
        if let Some(u) = &ev.usage_metadata {
            self.usage = Some(u.clone());
        }
        if let Some(v) = &ev.model_version {
            self.meta.model.clone_from(v);
        }
        let mut out = Vec::new();
        if ev.candidates.is_empty() {
            if ev
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_ref())
                .is_some()
            {
                self.finished = true;
                out.push(self.chunk(
                    vec![ChunkChoice {
                        index: 0,
                        delta: Delta {
                            role: Some("assistant".into()),
                            content: Some(String::new()),
                            ..Default::default()
                        },
                        finish_reason: Some("content_filter".into()),
                        logprobs: None,
                    }],
                    None,
                ));
            }
            return out;
        }
        for (i, c) in ev.candidates.iter().enumerate() {
            let index = c.index.unwrap_or(i as u32);
            let parts = c
                .content
                .as_ref()
                .map(|c| c.parts.as_slice())
                .unwrap_or_default();
            let split = split_parts(parts);
            let first = !self.role_sent.get(&index).copied().unwrap_or(false);
            let mut delta = Delta::default();
            if first {
                delta.role = Some("assistant".into());
                self.role_sent.insert(index, true);
            }
            if !split.text.is_empty() || (first && split.calls.is_empty()) {
                delta.content = Some(split.text);
            }
            if !split.thoughts.is_empty() {
                delta.reasoning_content = Some(split.thoughts);
            }
            if !split.calls.is_empty() {
                let sent = self.calls_sent.entry(index).or_insert(0);
                let seed = format!("{}:{index}", self.meta.id);
                let deltas = split
                    .calls
                    .into_iter()
                    .map(|(name, args, sig)| {
                        let call = tool_call(&seed, *sent, name, &args, sig);
                        let d = ToolCallDelta {
                            index: *sent as u32,
                            id: Some(call.id),
                            kind: Some("function".into()),
                            function: Some(FunctionCallDelta {
                                name: Some(call.function.name),
                                arguments: Some(call.function.arguments),
                            }),
                            extra: call.extra,
                        };
                        *sent += 1;
                        d
                    })
                    .collect();
                delta.tool_calls = Some(deltas);
            }
            let has_delta = delta != Delta::default();
            let finish = finish_reason(
                c.finish_reason.as_deref(),
                self.calls_sent.get(&index).copied().unwrap_or(0) > 0,
            );
            if has_delta {
                out.push(self.chunk(
                    vec![ChunkChoice {
                        index,
                        delta,
                        finish_reason: None,
                        logprobs: None,
                    }],
                    None,
                ));
            }
            if let Some(f) = finish {
                self.finished = true;
                out.push(self.chunk(
                    vec![ChunkChoice {
                        index,
                        delta: Delta::default(),
                        finish_reason: Some(f),
                        logprobs: None,
                    }],
                    None,
                ));
            }
        }
        out
    }

    /// The usage-only chunk that closes the stream (when the upstream reported usage).
    pub fn usage_chunk(&self) -> Option<(ChatChunk, TokenCounts)> {
        let counts = self.usage.as_ref()?.counts();
        Some((
            self.chunk(Vec::new(), Some(Usage::from_counts(&counts))),
            counts,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings (`batchEmbedContents`)

/// Translates an OpenAI embeddings request; token-id input has no Gemini equivalent.
pub fn to_embed_request(
    req: &crate::domain::EmbeddingsRequest,
    model: &str,
) -> Result<Value, TranslateError> {
    use crate::domain::EmbeddingInput;
    let texts: Vec<&str> = match &req.input {
        EmbeddingInput::One(s) => vec![s.as_str()],
        EmbeddingInput::Many(v) => v.iter().map(String::as_str).collect(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::ManyTokens(_) => {
            return Err(unsupported("input", "Gemini embeds text, not token ids"));
        }
    };
    let requests: Vec<Value> = texts
        .into_iter()
        .map(|t| {
            let mut r =
                json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}});
            if let Some(d) = req.dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    Ok(json!({ "requests": requests }))
}

#[derive(Debug, Deserialize)]
pub struct BatchEmbedResponse {
    #[serde(default)]
    pub embeddings: Vec<EmbeddingValues>,
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingValues {
    #[serde(default)]
    pub values: Vec<f32>,
}

/// Builds OpenAI's embeddings list. Gemini reports no token usage here, so `prompt_tokens` is the
/// caller's estimate (and the log row says `estimated`).
pub fn from_embed_response(
    resp: &BatchEmbedResponse,
    model: &str,
    base64_output: bool,
    prompt_tokens: u64,
) -> Value {
    let data: Vec<Value> = resp
        .embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64_output {
                let bytes: Vec<u8> = e.values.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(e.values)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts near `u64::MAX` overflowed: a panic in debug builds, nonsense in release.
    #[test]
    fn huge_usage_saturates() {
        let max = u64::MAX;
        let audio = |n| GModalityCount {
            modality: "AUDIO".into(),
            token_count: n,
        };
        let u = GUsage {
            prompt_token_count: max,
            tool_use_prompt_token_count: 1,
            candidates_token_count: max,
            thoughts_token_count: 1,
            prompt_tokens_details: vec![audio(max), audio(1)],
            ..Default::default()
        };
        let c = u.counts();
        assert_eq!((c.prompt, c.completion, c.audio_prompt), (max, max, max));
        assert_eq!(Usage::from_counts(&c).total_tokens, max);
    }

    /// Definitions that each use the next one four times: 17 levels inline to 4^17 nodes.
    fn exponential_schema() -> Value {
        let mut defs = Map::new();
        for i in 0..17 {
            let next = if i < 16 {
                json!({"$ref": format!("#/$defs/d{}", i + 1)})
            } else {
                json!({"type": "string"})
            };
            let props: Map<String, Value> = ["a", "b", "c", "d"]
                .into_iter()
                .map(|k| (k.to_string(), next.clone()))
                .collect();
            defs.insert(format!("d{i}"), json!({"properties": props}));
        }
        json!({"$defs": defs, "$ref": "#/$defs/d0"})
    }

    /// A 2 KB request took gigabytes of memory (the `gemini_request` fuzz target hit its limit).
    #[test]
    fn a_schema_that_inlines_exponentially_is_refused() {
        assert_eq!(to_gemini_schema(&exponential_schema()), None);
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": exponential_schema()}}]
        }))
        .unwrap();
        let e = to_request(&req).unwrap_err();
        assert_eq!(e.param, "tools[0].function.parameters");

        // Reuse within reason still inlines.
        let ok = json!({"$defs": {"p": {"type": "object", "properties": {"x": {"type": "number"}}}},
                        "type": "object",
                        "properties": {"a": {"$ref": "#/$defs/p"}, "b": {"$ref": "#/$defs/p"}}});
        let out = to_gemini_schema(&ok).unwrap();
        assert_eq!(out["properties"]["b"]["properties"]["x"]["type"], "NUMBER");
    }
}
