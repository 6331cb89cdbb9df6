//! Container ids, content digests and generated container names.

use rand::Rng;
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A container id: 64 lowercase hex digits, as Docker's.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ContainerId(String);

impl ContainerId {
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::rng().random();
        ContainerId(hex::encode(bytes))
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| ContainerId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit form shown by `ps`.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// Ordered as its text, so a map keyed by ids can be searched by prefix.
impl std::borrow::Borrow<str> for ContainerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
pub struct DigestError(pub String);

/// A sha256 content digest, `sha256:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn of(data: &[u8]) -> Self {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    pub fn from_hasher(h: Sha256) -> Self {
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }

    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestError(s.to_string()))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError(s.to_string()));
        }
        Ok(Digest(s.to_string()))
    }

    /// `sha256:<hex>`
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part only; safe to use as a file name (validated on parse).
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly",
    "keen", "lucid", "merry", "nimble", "proud", "quiet", "rapid", "sharp", "swift", "tidy",
    "vivid", "wise", "witty", "zealous",
];
const NOUNS: &[&str] = &[
    "albatross",
    "badger",
    "cormorant",
    "dolphin",
    "egret",
    "falcon",
    "gannet",
    "heron",
    "ibis",
    "jay",
    "kestrel",
    "lark",
    "marlin",
    "narwhal",
    "osprey",
    "petrel",
    "quail",
    "raven",
    "seal",
    "tern",
    "urchin",
    "vole",
    "whale",
    "wren",
];

/// A Docker-style `adjective_noun` name.
pub fn random_name() -> String {
    let mut r = rand::rng();
    format!(
        "{}_{}",
        ADJECTIVES[r.random_range(0..ADJECTIVES.len())],
        NOUNS[r.random_range(0..NOUNS.len())]
    )
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_container_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_roundtrip_and_rejects() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse("md5:abc").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn container_ids() {
        let id = ContainerId::random();
        assert_eq!(id.as_str().len(), 64);
        assert!(ContainerId::parse(id.as_str()).is_some());
        assert!(ContainerId::parse("xyz").is_none());
        assert!(valid_container_name("web-1"));
        assert!(!valid_container_name("-web"));
        assert!(!valid_container_name("a/b"));
    }
}
