//! Matching requests to services: one canonical form of the request path ([`canonical_path`]), then host and
//! path patterns where `*` matches any run of characters.
//!
//! Every decision the proxy takes on a path (which service, a free path, which capability route) is taken on
//! the canonical path, and the canonical path is what goes upstream: an upstream that resolves dot segments
//! or decodes escapes itself sees exactly the path that was priced.

use std::fmt;

/// Why a request path has no canonical form (the proxy answers 400 with [`PathError::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not an absolute path (`*`, or no leading `/`).
    NotAbsolute,
    /// `%2F`: an encoded `/` (upstreams disagree on whether it separates segments).
    EncodedSlash,
    /// `%5C` or a raw `\` (some upstreams treat it as `/`).
    Backslash,
    /// `%2E`: an encoded `.` (it could hide a dot segment from one decoder and not another).
    EncodedDot,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A `..` that would climb above the root.
    AboveRoot,
}

impl PathError {
    /// A short stable name, for the 400 body, metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::EncodedSlash => "encoded_slash",
            PathError::Backslash => "backslash",
            PathError::EncodedDot => "encoded_dot",
            PathError::BadEscape => "bad_percent_escape",
            PathError::AboveRoot => "dot_dot_above_root",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the request path must start with '/'",
            PathError::EncodedSlash => "an encoded '/' (%2F) is not accepted in the path",
            PathError::Backslash => "'\\' (raw or %5C) is not accepted in the path",
            PathError::EncodedDot => "an encoded '.' (%2E) is not accepted in the path",
            PathError::BadEscape => "a '%' in the path must be followed by two hex digits",
            PathError::AboveRoot => "'..' climbs above the root",
        })
    }
}

impl std::error::Error for PathError {}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved characters other than `.` (which is refused when encoded).
fn decodes_to_itself(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

/// The canonical form of a request path (no query):
///
/// - percent-escapes of unreserved characters are decoded (`%61dmin` is `admin`), every other escape keeps its
///   encoding with upper-case hex (`%c3%a9` is `%C3%A9`);
/// - an encoded `/`, `\` or `.` (`%2F`, `%5C`, `%2E`, any case), a raw `\` and a malformed escape are refused;
/// - repeated slashes are collapsed and `.` / `..` segments resolved (RFC 3986 5.2.4); a `..` above the root
///   is refused. A path ending in `/`, `/.` or `/..` keeps one trailing `/`.
///
/// Case is kept: matching is case-sensitive unless a service sets `case_insensitive_paths`. The result is a
/// fixed point: `canonical_path(canonical_path(p)?) == canonical_path(p)`.
pub fn canonical_path(path: &str) -> Result<String, PathError> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // The common case, checked in one pass: no escape, no backslash, no empty segment (`//`) and no segment
    // starting with '.' (so no dot segment). Such a path is already canonical.
    let plain = !raw.iter().any(|&b| b == b'%' || b == b'\\')
        && !raw.windows(2).any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'));
    if plain {
        return Ok(path.to_owned());
    }
    // First pass: escapes normalised, one segment at a time (a decoded byte can never be '/' or '.').
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for seg in raw[1..].split(|&b| b == b'/') {
        let mut s = String::with_capacity(seg.len());
        let mut i = 0;
        while i < seg.len() {
            let b = seg[i];
            match b {
                b'\\' => return Err(PathError::Backslash),
                b'%' => {
                    let (Some(hi), Some(lo)) =
                        (seg.get(i + 1).copied().and_then(hex_value), seg.get(i + 2).copied().and_then(hex_value))
                    else {
                        return Err(PathError::BadEscape);
                    };
                    let d = hi * 16 + lo;
                    match d {
                        b'/' => return Err(PathError::EncodedSlash),
                        b'\\' => return Err(PathError::Backslash),
                        b'.' => return Err(PathError::EncodedDot),
                        d if decodes_to_itself(d) => s.push(char::from(d)),
                        d => {
                            const HEX: &[u8; 16] = b"0123456789ABCDEF";
                            s.push('%');
                            s.push(char::from(HEX[usize::from(d >> 4)]));
                            s.push(char::from(HEX[usize::from(d & 15)]));
                        }
                    }
                    i += 3;
                    continue;
                }
                _ => {}
            }
            // Any other byte is kept as it came (hyper admits only visible ASCII and UTF-8 here); find the end
            // of the run of ordinary bytes and copy it whole, as UTF-8 when it is.
            let end = seg[i..].iter().position(|&c| c == b'%' || c == b'\\').map_or(seg.len(), |p| i + p);
            s.push_str(&String::from_utf8_lossy(&seg[i..end]));
            i = end;
        }
        trailing_slash = false;
        match s.as_str() {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            _ => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}
/// Whether `text` matches `pattern` (`*` is any run of characters, everything else literal).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// The host of a request without its port, lowercased.
pub fn host_only(host: &str) -> String {
    let h = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| h).trim_start_matches('[')
    } else {
        host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h)
    };
    h.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, ok) in [
            ("*", "", true),
            ("/api/*", "/api/x/y", true),
            ("/api/*", "/apix", false),
            ("/api/*/items", "/api/7/items", true),
            ("/api/*/items", "/api/7/other", false),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "example.com", false),
            ("/exact", "/exact", true),
            ("/exact", "/exact/", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob(p, t), ok, "{p} ~ {t}");
        }
        assert_eq!(host_only("Api.Example.com:8443"), "api.example.com");
        assert_eq!(host_only("[::1]:80"), "::1");
        assert_eq!(host_only("localhost"), "localhost");
    }

    #[test]
    fn canonical_paths() {
        for (raw, want) in [
            ("/", "/"),
            ("//", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("//a///b//", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/weather/docs/../forecast", "/weather/forecast"),
            ("/weather/docs/./../../weather/forecast", "/weather/forecast"),
            ("/%61dmin", "/admin"),
            ("/%7e%2d%5f%41%7A%30", "/~-_Az0"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b%25c", "/a%20b%25c"),
            ("/Weather/Admin", "/Weather/Admin"),
            ("/a..b/.c/..d", "/a..b/.c/..d"),
            ("/é/x", "/é/x"),
        ] {
            assert_eq!(canonical_path(raw).as_deref(), Ok(want), "{raw}");
            assert_eq!(canonical_path(want).as_deref(), Ok(want), "{want} is a fixed point");
        }
        for (raw, err) in [
            ("", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("a/b", PathError::NotAbsolute),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%5cb", PathError::Backslash),
            ("/a%5Cb", PathError::Backslash),
            ("/a\\b", PathError::Backslash),
            ("/%2e%2e/x", PathError::EncodedDot),
            ("/a/%2E", PathError::EncodedDot),
            ("/a%", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/../a", PathError::AboveRoot),
        ] {
            assert_eq!(canonical_path(raw), Err(err), "{raw:?}");
        }
    }
}
