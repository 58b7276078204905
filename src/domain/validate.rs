//! Turning a request body into a `ChatRequest`, with errors that name the offending field the way
//! OpenAI does (`param`), so a client sees what to fix instead of a generic 400.

use super::chat::{ChatRequest, Role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest {
    pub message: String,
    pub param: Option<String>,
}

impl InvalidRequest {
    fn new(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            message: message.into(),
            param: param.map(str::to_string),
        }
    }
}

/// Parses and checks a chat request body.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, InvalidRequest> {
    // The common case in one pass. Anything it refuses (including a missing or null `model` or
    // `messages`, which have no defaults) goes the slow way below, which says what was wrong.
    if let Ok(req) = serde_json::from_slice::<ChatRequest>(body) {
        check(&req)?;
        return Ok(req);
    }
    // First make sure it is JSON at all, so "not JSON" and "wrong shape" get different messages.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        InvalidRequest::new(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| InvalidRequest::new("The request body must be a JSON object.", None))?;
    for field in ["model", "messages"] {
        if obj.get(field).is_none_or(|v| v.is_null()) {
            return Err(InvalidRequest::new(
                format!("Missing required parameter: '{field}'."),
                Some(field),
            ));
        }
    }
    let req: ChatRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        InvalidRequest::new(format!("Invalid value for '{path}': {inner}."), Some(&path))
    })?;
    check(&req)?;
    Ok(req)
}

fn check(req: &ChatRequest) -> Result<(), InvalidRequest> {
    if req.model.trim().is_empty() {
        return Err(InvalidRequest::new(
            "'model' must be a non-empty string.",
            Some("model"),
        ));
    }
    if req.messages.is_empty() {
        return Err(InvalidRequest::new(
            "'messages' must contain at least one message.",
            Some("messages"),
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let missing_content = m.content.is_none();
        match m.role {
            Role::System | Role::Developer | Role::User if missing_content => {
                return Err(InvalidRequest::new(
                    format!("Missing required parameter: 'messages[{i}].content'."),
                    Some(&format!("messages[{i}].content")),
                ));
            }
            Role::Tool if m.tool_call_id.is_none() => {
                return Err(InvalidRequest::new(
                    format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
                    Some(&format!("messages[{i}].tool_call_id")),
                ));
            }
            Role::Assistant if missing_content && m.tool_calls.is_none() => {
                return Err(InvalidRequest::new(
                    format!(
                        "'messages[{i}]': an assistant message needs 'content' or 'tool_calls'."
                    ),
                    Some(&format!("messages[{i}].content")),
                ));
            }
            _ => {}
        }
    }
    if let Some(t) = req.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(InvalidRequest::new(
            format!("Invalid 'temperature': {t} is not between 0 and 2."),
            Some("temperature"),
        ));
    }
    if let Some(p) = req.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(InvalidRequest::new(
            format!("Invalid 'top_p': {p} is not between 0 and 1."),
            Some("top_p"),
        ));
    }
    if req.n == Some(0) {
        return Err(InvalidRequest::new(
            "Invalid 'n': must be at least 1.",
            Some("n"),
        ));
    }
    if req.stream_options.is_some() && req.stream != Some(true) {
        return Err(InvalidRequest::new(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            Some("stream_options"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> InvalidRequest {
        parse_chat_request(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn accepts_a_full_request_and_keeps_unknown_fields() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}],
            "temperature":0.2,"stop":"x","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"f"}},"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{}}},
            "metadata":{"a":"b"},"store":false}"#;
        let req = parse_chat_request(body.as_bytes()).unwrap();
        assert_eq!(
            req.extra.get("store"),
            Some(&serde_json::Value::Bool(false))
        );
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(back["metadata"]["a"], "b");
        assert_eq!(
            back["messages"][0]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AA=="
        );
        assert!(back.get("stream").is_none());
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(err("{not json").message.contains("parse the JSON"));
        assert!(err("[1]").message.contains("JSON object"));
        assert_eq!(err(r#"{"messages":[]}"#).param.as_deref(), Some("model"));
        assert_eq!(err(r#"{"model":"m"}"#).param.as_deref(), Some("messages"));
        assert_eq!(
            err(r#"{"model":"m","messages":[]}"#).param.as_deref(),
            Some("messages")
        );
        assert_eq!(
            err(r#"{"model":5,"messages":[]}"#).param.as_deref(),
            Some("model")
        );
        let e = err(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e =
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#);
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = err(r#"{"model":"m","messages":[{"role":"user"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e = err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#);
        assert_eq!(e.param.as_deref(), Some("temperature"));
    }
}
