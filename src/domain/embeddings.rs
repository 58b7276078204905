//! OpenAI `/v1/embeddings`, the canonical shape for embeddings.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<i64>),
    ManyTokens(Vec<Vec<i64>>),
}

impl EmbeddingInput {
    pub fn len(&self) -> usize {
        match self {
            Self::One(_) | Self::Tokens(_) => 1,
            Self::Many(v) => v.len(),
            Self::ManyTokens(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses and checks an embeddings request body, naming the offending field.
pub fn parse_embeddings_request(
    body: &[u8],
) -> Result<EmbeddingsRequest, super::validate::InvalidRequest> {
    use super::validate::InvalidRequest;
    let value: Value = serde_json::from_slice(body).map_err(|e| InvalidRequest {
        message: format!("We could not parse the JSON body of your request: {e}"),
        param: None,
    })?;
    for field in ["model", "input"] {
        if value.get(field).is_none_or(Value::is_null) {
            return Err(InvalidRequest {
                message: format!("Missing required parameter: '{field}'."),
                param: Some(field.into()),
            });
        }
    }
    let req: EmbeddingsRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        InvalidRequest {
            message: format!("Invalid value for '{path}': {}.", e.into_inner()),
            param: Some(path),
        }
    })?;
    if req.input.is_empty() || req.input.len() > 2048 {
        return Err(InvalidRequest {
            message: "'input' must hold between 1 and 2048 items.".into(),
            param: Some("input".into()),
        });
    }
    if let Some(f) = &req.encoding_format
        && f != "float"
        && f != "base64"
    {
        return Err(InvalidRequest {
            message: "'encoding_format' must be 'float' or 'base64'.".into(),
            param: Some("encoding_format".into()),
        });
    }
    Ok(req)
}
