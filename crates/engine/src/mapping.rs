//! PLACEHOLDER until the jq mapping lands: identity only.
use ferry_model::{FieldError, Stream};
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct MappingConfig {}
pub struct Mapping;
#[derive(Debug, thiserror::Error)]
#[error("{option}: {message}")]
pub struct MappingError { pub option: String, pub message: String }
impl Mapping {
    pub fn compile(_c: &MappingConfig, _t: Stream) -> Result<Mapping, MappingError> { Ok(Mapping) }
    pub fn apply(&self, v: serde_json::Value) -> Result<Option<serde_json::Value>, FieldError> { Ok(Some(v)) }
    pub fn is_identity(&self) -> bool { true }
}
