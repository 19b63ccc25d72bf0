//! Request bodies and query strings, checked field by field.
//!
//! Bodies are read as plain JSON values and checked here rather than with
//! `serde` derives, so that every mistake in a request is reported at once,
//! each with the path of the field it concerns (`scopes[1]`), instead of
//! the first one only as a line of text.
//!
//! [`body`] reads the bodies of `POST /keys`, `PATCH /keys/{id}`,
//! `POST /keys/{id}/rotate` and `PATCH /keys/{id}/credits`, [`query`] the
//! query strings of the `GET` routes, both with the readers of single
//! values in [`value`].

mod body;
mod query;
mod value;

use serde::Serialize;
use utoipa::ToSchema;

pub(super) use self::{
    body::{
        CreateKeyRequest, RotateKeyRequest, UpdateCreditsRequest, UpdateKeyRequest, create, rotate,
        update, update_credits,
    },
    query::{ListQuery, ListStatus, UsageQuery, list, usage},
};

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(super) struct FieldError {
    /// Where the problem is: a field name, an array element (`scopes[1]`),
    /// a query parameter, or `body` for the body as a whole.
    #[schema(example = "scopes[1]")]
    pub(super) field: String,
    /// What is wrong, and what is accepted instead.
    #[schema(
        example = "invalid scope \"Billing\": use 1 to 64 characters from a-z, 0-9 and `:._-`, starting with a letter"
    )]
    pub(super) message: String,
}

/// Collects field errors while a request is read.
#[derive(Debug, Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The value, or `None` after recording why there is none.
    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.push(field, message)).ok()
    }

    /// The request, if nothing was wrong. `value` is only called then, so it
    /// may unwrap what each check returned.
    fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty()
            && let Some(v) = value()
        {
            return Ok(v);
        }
        Err(self.0)
    }
}

#[cfg(test)]
fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}
