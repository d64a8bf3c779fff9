//! Matching requests to services: host and path patterns where `*` matches any run of characters.

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
}
