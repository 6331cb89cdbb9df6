//! Image references, parsed and normalised as Docker does:
//! `[domain[:port]/]path[:tag][@sha256:hex]`, default tag `latest`,
//! `docker.io/library/` for short names.

use super::ids::Digest;
use std::fmt;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the length of a repository name.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("invalid reference format: {0:?}")]
    Format(String),
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format: repository name {0:?} is longer than 255 characters")]
    TooLong(String),
    #[error("invalid reference format: invalid tag in {0:?}")]
    Tag(String),
    #[error("invalid reference format: invalid digest in {0:?}")]
    Digest(String),
}

/// A fully qualified image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, with port if any: `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path: `library/hello`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parse and normalise. A reference without tag or digest gets `latest`.
    pub fn parse(s: &str) -> Result<Self, RefError> {
        let mut r = Self::parse_any(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parse and normalise, leaving the tag empty when none is given
    /// (`docker push NAME` / `images NAME` semantics).
    pub fn parse_any(s: &str) -> Result<Self, RefError> {
        let fmt_err = || RefError::Format(s.to_string());
        if s.is_empty() || s.trim() != s {
            return Err(fmt_err());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|_| RefError::Digest(s.to_string()))?),
            ),
            None => (s, None),
        };
        // A tag is the part after the last ':' that is not followed by a '/'.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(RefError::Tag(s.to_string()));
            }
        }
        if name.is_empty() {
            return Err(fmt_err());
        }
        let (domain, path) = split_domain(name);
        // As Docker: the limit is on the normalised name, so every name
        // that parses prints as one that parses again.
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(RefError::TooLong(name.to_string()));
        }
        if !valid_domain(&domain) {
            return Err(fmt_err());
        }
        for comp in path.split('/') {
            if !valid_path_component(comp) {
                if valid_path_component(&comp.to_ascii_lowercase()) {
                    return Err(RefError::Uppercase(name.to_string()));
                }
                return Err(fmt_err());
            }
        }
        Ok(ImageRef {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `domain/path`, fully qualified.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short name Docker shows: `hello` for `docker.io/library/hello`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// Familiar form with tag/digest: `hello:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }

    /// This reference with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    /// Fully qualified: `docker.io/library/hello:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        Some(_) => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        None => (DEFAULT_DOMAIN.to_string(), format!("library/{name}")),
    }
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_limit_is_on_the_normalised_name() {
        // Found by the `reference` fuzz target: 250 characters that grew
        // past 255 with `docker.io/library/` printed again unparseable.
        let short = "a".repeat(250);
        assert!(matches!(ImageRef::parse(&short), Err(RefError::TooLong(_))));
        let fits = "a".repeat(255 - "docker.io/library/".len());
        let r = ImageRef::parse(&fits).unwrap();
        assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r);
    }

    fn p(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(p("hello"), "docker.io/library/hello:latest");
        assert_eq!(p("hello:v1"), "docker.io/library/hello:v1");
        assert_eq!(p("user/app"), "docker.io/user/app:latest");
        assert_eq!(p("localhost/app"), "localhost/app:latest");
        assert_eq!(p("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(p("ghcr.io/o/r:1.0"), "ghcr.io/o/r:1.0");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            p(&format!("hello@{d}")),
            format!("docker.io/library/hello@{d}")
        );
        assert_eq!(
            p(&format!("hello:t@{d}")),
            format!("docker.io/library/hello:t@{d}")
        );
    }

    #[test]
    fn familiar_forms() {
        let r = ImageRef::parse("docker.io/library/hello").unwrap();
        assert_eq!(r.familiar(), "hello:latest");
        assert_eq!(
            ImageRef::parse("user/app:1").unwrap().familiar(),
            "user/app:1"
        );
        assert_eq!(
            ImageRef::parse("localhost:5000/x").unwrap().familiar(),
            "localhost:5000/x:latest"
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(
            ImageRef::parse("Hello"),
            Err(RefError::Uppercase(_))
        ));
        for bad in [
            "",
            "a:",
            ":t",
            "a b",
            "a//b",
            "-a",
            "a-",
            "a:t/b:",
            "a@sha256:xyz",
            "a:-t",
            "a/",
            "/a",
            "a..b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(ImageRef::parse(&"a".repeat(300)).is_err());
        assert!(ImageRef::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn parse_any_keeps_tag_empty() {
        assert_eq!(ImageRef::parse_any("hello").unwrap().tag, None);
    }
}
