//! Docker's list filters (`?filters={"key":["value"]}`): which keys each
//! list takes, and how values combine. As Docker: every key must hold;
//! the values of one key are alternatives, except `label`'s, which must
//! all hold. A key a list does not take is a 400 that names it.

use crate::engine::EngineError;
use std::collections::HashMap;

/// The keys of `GET /containers/json`.
pub const CONTAINERS: &[&str] = &[
    "ancestor",
    "before",
    "expose",
    "exited",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
];
/// The keys of `GET /images/json`.
pub const IMAGES: &[&str] = &["before", "dangling", "label", "reference", "since", "until"];
/// The keys of `GET /networks`.
pub const NETWORKS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];
/// The keys of `GET /volumes`.
pub const VOLUMES: &[&str] = &["dangling", "driver", "label", "name"];
/// The keys of `GET /events`.
pub const EVENTS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// A request's filters.
#[derive(Debug, Default)]
pub struct Filters(HashMap<String, Vec<String>>);

impl Filters {
    /// Parse `filters` (absent or empty: none), refusing keys not in
    /// `accepted`. Docker sends `{"key":["v"]}` or the older
    /// `{"key":{"v":true}}`.
    pub fn parse(filters: Option<&str>, accepted: &[&str]) -> Result<Filters, EngineError> {
        let Some(f) = filters.filter(|f| !f.is_empty()) else {
            return Ok(Filters::default());
        };
        parse_map(f, Some(accepted)).map(Filters)
    }

    /// The filters as key → values, for the event stream's matcher.
    pub fn into_map(self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.0.into_iter().collect()
    }

    /// The values given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// Refuse a value of `key` that is not one of `allowed`, as Docker
    /// does: `invalid filter 'key=value'`.
    pub fn only(&self, key: &str, allowed: &[&str]) -> Result<(), EngineError> {
        for v in self.get(key).unwrap_or_default() {
            if !allowed.contains(&v.as_str()) {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid filter '{key}={v}'"
                )));
            }
        }
        Ok(())
    }

    /// Does an item pass, `holds(key, value)` saying whether one value
    /// holds for it?
    pub fn pass(&self, mut holds: impl FnMut(&str, &str) -> bool) -> bool {
        self.0.iter().all(|(k, vals)| {
            if k == "label" {
                vals.iter().all(|v| holds(k, v))
            } else {
                vals.iter().any(|v| holds(k, v))
            }
        })
    }
}

/// The keys each prune takes.
pub const PRUNE_CONTAINERS: &[&str] = &["label", "label!", "until"];
pub const PRUNE_IMAGES: &[&str] = &["dangling", "label", "label!", "until"];
pub const PRUNE_NETWORKS: &[&str] = &["label", "label!", "until"];
pub const PRUNE_VOLUMES: &[&str] = &["all", "label", "label!"];

/// A prune's filters, checked: the parsed filters (for its own keys, such
/// as `dangling` and `all`) and the test of each object: it has every
/// `label`, none of the `label!`s, and was made before `until` (a Unix
/// time, an RFC 3339 time, or a duration back from now such as `24h`).
pub fn prune(
    raw: Option<&str>,
    accepted: &[&str],
) -> Result<(Filters, crate::engine::PruneFilter), EngineError> {
    let f = Filters::parse(raw, accepted)?;
    let until = match f.get("until") {
        None => None,
        Some([v]) => Some(until(v)?),
        Some(_) => {
            return Err(EngineError::InvalidArgument(
                "invalid filter 'until': give one time".into(),
            ))
        }
    };
    let has: Vec<String> = f.get("label").unwrap_or_default().to_vec();
    let lacks: Vec<String> = f.get("label!").unwrap_or_default().to_vec();
    let keep: crate::engine::PruneFilter = std::sync::Arc::new(move |labels, created| {
        let get = |k: &str| labels.get(k).map(String::as_str);
        has.iter().all(|v| label(get, v))
            && !lacks.iter().any(|v| label(get, v))
            && until.is_none_or(|t| created.is_some_and(|c| c < t))
    });
    Ok((f, keep))
}

/// An `until` value as a time.
pub(super) fn until(v: &str) -> Result<chrono::DateTime<chrono::Utc>, EngineError> {
    let bad = || EngineError::InvalidArgument(format!("invalid filter 'until={v}'"));
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return chrono::DateTime::from_timestamp(secs as i64, 0).ok_or_else(bad);
    }
    let back = crate::model::units::parse_duration(v).map_err(|_| bad())?;
    Ok(chrono::Utc::now() - chrono::Duration::from_std(back).map_err(|_| bad())?)
}

/// `filters` as key → values; with `accepted`, a key not in it is a
/// 400 that names it.
pub fn parse_map(
    f: &str,
    accepted: Option<&[&str]>,
) -> Result<HashMap<String, Vec<String>>, EngineError> {
    let v: serde_json::Value = serde_json::from_str(f)
        .map_err(|e| EngineError::InvalidArgument(format!("invalid filters {f:?}: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        EngineError::InvalidArgument(format!("invalid filters {f:?}: expected an object"))
    })?;
    let mut out = HashMap::new();
    for (k, vals) in obj {
        if accepted.is_some_and(|a| !a.contains(&k.as_str())) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid filter '{k}'"
            )));
        }
        let list = match vals {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            serde_json::Value::Object(o) => o.keys().cloned().collect(),
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid filter value for {k}"
                )))
            }
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// Does a `label` filter value (`key` or `key=value`) hold for labels
/// looked up by `get`?
pub fn label<'a>(get: impl Fn(&str) -> Option<&'a str>, v: &str) -> bool {
    match v.split_once('=') {
        Some((k, want)) => get(k) == Some(want),
        None => get(v).is_some(),
    }
}

/// Does a `publish`/`expose` value (`80`, `80/udp`, `8000-8080/tcp`) name
/// the port `port` of protocol `proto`?
pub fn port(v: &str, port: u16, proto: &str) -> bool {
    let (range, want_proto) = v.split_once('/').unwrap_or((v, "tcp"));
    if !want_proto.eq_ignore_ascii_case(proto) {
        return false;
    }
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    match (lo.parse::<u16>(), hi.parse::<u16>()) {
        (Ok(lo), Ok(hi)) => (lo..=hi).contains(&port),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_all_hold_and_labels_all_of_theirs() {
        let f = Filters::parse(
            Some(r#"{"label":["a=b","zz"],"status":["running","paused"]}"#),
            CONTAINERS,
        )
        .unwrap();
        let item = |labels: &[(&str, &str)], status: &str| {
            f.pass(|k, v| match k {
                "label" => label(
                    |key| labels.iter().find(|(lk, _)| *lk == key).map(|(_, lv)| *lv),
                    v,
                ),
                "status" => status == v,
                _ => true,
            })
        };
        assert!(item(&[("a", "b"), ("zz", "")], "paused"));
        assert!(!item(&[("a", "b")], "running"), "one label is missing");
        assert!(!item(&[("a", "b"), ("zz", "1")], "exited"));
        let e = Filters::parse(Some(r#"{"colour":["red"]}"#), CONTAINERS).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter 'colour'");
        let old = Filters::parse(Some(r#"{"name":{"web":true}}"#), CONTAINERS).unwrap();
        assert_eq!(old.get("name"), Some(&["web".to_string()][..]));
        assert!(Filters::parse(Some("[]"), CONTAINERS).is_err());
        let s = Filters::parse(Some(r#"{"status":["sleeping"]}"#), CONTAINERS).unwrap();
        assert_eq!(
            s.only("status", &["running"]).unwrap_err().to_string(),
            "invalid filter 'status=sleeping'"
        );
    }

    #[test]
    fn port_values_name_ports_ranges_and_protocols() {
        assert!(port("80", 80, "tcp"));
        assert!(!port("80", 80, "udp"));
        assert!(port("53/udp", 53, "udp"));
        assert!(port("8000-8080/tcp", 8042, "tcp"));
        assert!(!port("8000-8080", 8081, "tcp"));
        assert!(!port("x", 80, "tcp"));
    }
}
