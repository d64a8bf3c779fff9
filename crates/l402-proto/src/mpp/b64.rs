//! base64url as the scheme uses it: written without padding; read strictly (the URL alphabet only, padding
//! only to a multiple of four and at most two, no line breaks, and the unused bits of the last character
//! zero, so that one payload has exactly one spelling).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::MppError;

/// `data` as unpadded base64url.
pub fn b64url_encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url strictly (see the module doc).
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, MppError> {
    let unpadded = s.trim_end_matches('=');
    let padding = s.len() - unpadded.len();
    if padding > 2 || (padding > 0 && s.len() % 4 != 0) {
        return Err(MppError::Base64);
    }
    if !unpadded.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        return Err(MppError::Base64);
    }
    // The engine refuses non-zero trailing bits and a dangling character.
    URL_SAFE_NO_PAD.decode(unpadded).map_err(|_| MppError::Base64)
}
