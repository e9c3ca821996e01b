//! [`Headers`]: an ordered list of header fields with case-insensitive lookup.
//!
//! Names and values are `Bytes`; a parsed head's fields are slices of the received buffer, so
//! parsing copies nothing. Order and the sender's spelling of names are preserved, because some
//! origins care, and duplicates stay separate fields.

use bytes::Bytes;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name as sent (compare with [`Header::is`], not `==`).
    pub name: Bytes,
    /// The field value, without surrounding whitespace.
    pub value: Bytes,
}

impl Header {
    /// Whether the field's name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// An ordered list of header fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<Header>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// An empty list with room for `n` fields.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            fields: Vec::with_capacity(n),
        }
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The fields in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.fields.iter()
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.fields.iter().find(|h| h.is(name)).map(|h| &h.value)
    }

    /// The values of every field named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.fields
            .iter()
            .filter(move |h| h.is(name))
            .map(|h| &h.value)
    }

    /// Whether a field named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.fields.iter().any(|h| h.is(name))
    }

    /// Whether any field named `name` lists `token` (comma-separated, ASCII case-insensitive),
    /// as in `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
    }

    /// Adds a field at the end.
    pub fn append(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.fields.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Sets `name` to `value`: replaces the first field of that name (ASCII case-insensitive)
    /// in place and removes the others, or appends when there is none. `name` is anything
    /// byte-like (`&'static str` costs no allocation).
    pub fn set<N>(&mut self, name: N, value: impl Into<Bytes>)
    where
        N: Into<Bytes> + AsRef<[u8]>,
    {
        let value = value.into();
        let matches = |h: &Header| h.name.eq_ignore_ascii_case(name.as_ref());
        match self.fields.iter().position(matches) {
            Some(i) => {
                self.fields[i].value = value;
                let mut n = 0;
                self.fields.retain(|h| {
                    if matches(h) {
                        n += 1;
                        n == 1
                    } else {
                        true
                    }
                });
            }
            None => self.append(name, value),
        }
    }

    /// Removes every field named `name`; returns how many there were.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.fields.len();
        self.fields.retain(|h| !h.is(name));
        before - self.fields.len()
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, keep: impl FnMut(&Header) -> bool) {
        self.fields.retain(keep);
    }

    /// The number of bytes [`Headers::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        self.fields
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum()
    }

    /// Writes the fields as `name: value\r\n` lines.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for h in &self.fields {
            out.extend_from_slice(&h.name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.fields.iter()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<T: IntoIterator<Item = Header>>(iter: T) -> Headers {
        Headers {
            fields: iter.into_iter().collect(),
        }
    }
}

/// The non-empty elements of a comma-separated list value, trimmed of spaces and tabs.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// `s` without leading and trailing spaces and tabs.
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2), the characters of names and methods.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `v` is a valid field value: visible ASCII, obs-text, spaces and tabs, no CR, LF or
/// NUL, and no leading or trailing whitespace.
pub(crate) fn is_field_value(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7f)
        && trim(v).len() == v.len()
}

impl FromIterator<(Bytes, Bytes)> for Headers {
    fn from_iter<T: IntoIterator<Item = (Bytes, Bytes)>>(iter: T) -> Headers {
        iter.into_iter()
            .map(|(name, value)| Header { name, value })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_ordered() {
        let mut h = Headers::new();
        h.append("Host", "a");
        h.append("X-A", "1");
        h.append("x-a", "2");
        assert_eq!(h.get("HOST").map(|v| &v[..]), Some(&b"a"[..]));
        let all: Vec<_> = h.get_all("X-a").cloned().collect();
        assert_eq!(all, vec![Bytes::from("1"), Bytes::from("2")]);
        h.set("X-A", "3");
        assert_eq!(h.len(), 2);
        assert_eq!(h.get("x-a").map(|v| &v[..]), Some(&b"3"[..]));
        assert_eq!(h.remove("host"), 1);
        assert!(!h.contains("Host"));
    }

    #[test]
    fn token_lists() {
        let mut h = Headers::new();
        h.append("Connection", " keep-alive ,Upgrade,, ");
        assert!(h.has_token("connection", "upgrade"));
        assert!(h.has_token("connection", "KEEP-ALIVE"));
        assert!(!h.has_token("connection", "close"));
    }

    #[test]
    fn field_values() {
        assert!(is_field_value(b"a b\tc"));
        assert!(is_field_value(b""));
        assert!(!is_field_value(b"a\r\nb"));
        assert!(!is_field_value(b" a"));
        assert!(!is_field_value(b"a\0"));
    }
}
