//! The RFC 9110 challenge grammar (section 11.6.1), as far as `WWW-Authenticate` needs it:
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param  = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! Several challenges can share one line, separated by commas like the parameters; a comma is followed by a new
//! challenge when the next token is not followed by `=`. Parameter names are case-insensitive.

use std::borrow::Cow;

/// One challenge as written: its scheme and parameters (values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawChallenge<'a> {
    pub(crate) scheme: &'a str,
    pub(crate) token68: Option<&'a str>,
    pub(crate) params: Vec<(&'a str, Cow<'a, str>)>,
}

impl RawChallenge<'_> {
    /// The value of a parameter (the first one of that name, case-insensitively).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
    }
}

/// A syntax error in a header line (no position or content is kept: the input is untrusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyntaxError;

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token68_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }

    /// Whether the text at the cursor is `token BWS "=" BWS (token / quoted-string)`, without moving.
    fn at_auth_param(&self) -> bool {
        let mut c = Cursor { s: self.s, pos: self.pos };
        if c.token().is_none() {
            return false;
        }
        c.skip_ows();
        if c.peek() != Some(b'=') {
            return false;
        }
        c.pos += 1;
        c.skip_ows();
        c.peek().is_some_and(|b| b == b'"' || is_tchar(b))
    }

    fn quoted_string(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        // The opening quote is at the cursor.
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            let c = self.peek().ok_or(SyntaxError)?;
            match c {
                b'"' => {
                    let plain = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok(owned.map_or(Cow::Borrowed(plain), Cow::Owned));
                }
                b'\\' => {
                    let buf = owned.get_or_insert_with(|| self.s[start..self.pos].to_owned());
                    self.pos += 1;
                    let escaped = self.peek().ok_or(SyntaxError)?;
                    if escaped.is_ascii_control() && escaped != b'\t' {
                        return Err(SyntaxError);
                    }
                    // Quoted-pair only escapes single ASCII octets; the string is UTF-8, so a multi-byte
                    // character after a backslash is taken whole.
                    let ch = self.s[self.pos..].chars().next().ok_or(SyntaxError)?;
                    buf.push(ch);
                    self.pos += ch.len_utf8();
                }
                c if c.is_ascii_control() && c != b'\t' => return Err(SyntaxError),
                _ => {
                    let ch = self.s[self.pos..].chars().next().ok_or(SyntaxError)?;
                    if let Some(buf) = owned.as_mut() {
                        buf.push(ch);
                    }
                    self.pos += ch.len_utf8();
                }
            }
        }
    }
}

/// Parses one `WWW-Authenticate` field value into its challenges.
pub(crate) fn parse_challenges(s: &str) -> Result<Vec<RawChallenge<'_>>, SyntaxError> {
    let mut c = Cursor { s, pos: 0 };
    let mut out = Vec::new();
    loop {
        c.skip_list_separators();
        if c.peek().is_none() {
            return Ok(out);
        }
        let scheme = c.token().ok_or(SyntaxError)?;
        let mut ch = RawChallenge { scheme, token68: None, params: Vec::new() };
        let had_space = matches!(c.peek(), Some(b' '));
        c.skip_ows();
        match c.peek() {
            None | Some(b',') => {}
            Some(_) if !had_space => return Err(SyntaxError),
            Some(_) if !c.at_auth_param() => {
                let start = c.pos;
                while c.peek().is_some_and(is_token68_char) {
                    c.pos += 1;
                }
                if c.pos == start {
                    return Err(SyntaxError);
                }
                while c.peek() == Some(b'=') {
                    c.pos += 1;
                }
                ch.token68 = Some(&s[start..c.pos]);
                c.skip_ows();
                if !matches!(c.peek(), None | Some(b',')) {
                    return Err(SyntaxError);
                }
            }
            Some(_) => loop {
                let name = c.token().ok_or(SyntaxError)?;
                c.skip_ows();
                c.pos += 1; // '=' (checked by at_auth_param)
                c.skip_ows();
                let value = if c.peek() == Some(b'"') {
                    c.quoted_string()?
                } else {
                    Cow::Borrowed(c.token().ok_or(SyntaxError)?)
                };
                ch.params.push((name, value));
                c.skip_ows();
                match c.peek() {
                    None => break,
                    Some(b',') => {
                        c.skip_list_separators();
                        if !c.at_auth_param() {
                            break;
                        }
                    }
                    Some(_) => return Err(SyntaxError),
                }
            },
        }
        out.push(ch);
    }
}
