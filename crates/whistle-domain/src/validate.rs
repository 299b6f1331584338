//! Bounds on free-text and attachment inputs, shared by every command. Limits are
//! generous for real use and small enough that one request cannot bloat the log.

use crate::error::DomainError;
use crate::event::Evidence;

/// Longest description of a problem, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Longest note, resolution summary or satisfaction comment, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest reason (escalate, decline, pause, withdraw …), in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Most evidence items on one note or resolution.
pub const MAX_EVIDENCE: usize = 10;
/// Longest evidence URL.
pub const MAX_URL_LEN: usize = 2048;

/// Non-blank text of at most `max` characters, trimmed.
pub fn required_text(field: &'static str, s: &str, max: usize) -> Result<String, DomainError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    optional_text(field, t, max)
}

/// Text of at most `max` characters (may be empty), trimmed. Control characters other than
/// newlines and tabs are refused: they have no place in a complaint and confuse logs.
pub fn optional_text(field: &'static str, s: &str, max: usize) -> Result<String, DomainError> {
    let t = s.trim();
    let n = t.chars().count();
    if n > max {
        return Err(DomainError::invalid(
            field,
            format!("is {n} characters, at most {max} allowed"),
        ));
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(DomainError::invalid(field, "contains control characters"));
    }
    Ok(t.to_string())
}

pub fn evidence(field: &'static str, items: &[Evidence]) -> Result<Vec<Evidence>, DomainError> {
    if items.len() > MAX_EVIDENCE {
        return Err(DomainError::invalid(
            field,
            format!("{} items, at most {MAX_EVIDENCE} allowed", items.len()),
        ));
    }
    items
        .iter()
        .map(|e| {
            let url = e.url.trim();
            if url.len() > MAX_URL_LEN {
                return Err(DomainError::invalid(field, "url longer than 2048 bytes"));
            }
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.len() < 10
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(DomainError::invalid(
                    field,
                    format!("url {url:?} is not an http(s) URL"),
                ));
            }
            let sha = e.sha256.trim().to_ascii_lowercase();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DomainError::invalid(
                    field,
                    "sha256 must be 64 hexadecimal characters",
                ));
            }
            Ok(Evidence {
                url: url.to_string(),
                sha256: sha,
            })
        })
        .collect()
}
