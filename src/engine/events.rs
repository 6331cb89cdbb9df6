//! The event stream (`GET /events`): what happened to containers and
//! images, as Docker reports it. Live subscribers get a broadcast; a short
//! history answers `since`.

use crate::api::types::{EventActor, EventMessage};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Events kept for `since` queries.
const HISTORY: usize = 1024;
/// Events a slow subscriber may fall behind before it misses some.
const CHANNEL: usize = 1024;

pub struct Events {
    tx: broadcast::Sender<EventMessage>,
    recent: Mutex<VecDeque<EventMessage>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CHANNEL).0,
            recent: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl Events {
    /// Record and broadcast one event. `kind` is `container` or `image`.
    pub fn emit(&self, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let attributes: BTreeMap<String, String> = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let from = attributes.get("image").cloned();
        let e = EventMessage {
            kind: kind.to_string(),
            action: action.to_string(),
            actor: EventActor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".into(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
            status: Some(action.to_string()),
            id: Some(id.to_string()),
            from: if kind == "container" { from } else { None },
        };
        {
            let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if r.len() == HISTORY {
                r.pop_front();
            }
            r.push_back(e.clone());
        }
        let _ = self.tx.send(e);
    }

    /// The remembered events at or after `since_nanos`, and a subscription
    /// to what comes next (taken together, so nothing falls in between).
    pub fn subscribe(
        &self,
        since_nanos: Option<i64>,
    ) -> (Vec<EventMessage>, broadcast::Receiver<EventMessage>) {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let past = match since_nanos {
            Some(s) => r.iter().filter(|e| e.time_nano >= s).cloned().collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

/// Docker's event filters: `type`, `event`/`action`, `container`, `image`,
/// `label`, `network`, `volume`, `daemon`, `scope` (the daemon checked the
/// keys). Every key must hold: any of its values, and all of `label`'s.
pub fn matches(e: &EventMessage, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(k, vals)| {
        let holds = |v: &String| match k.as_str() {
            "type" => e.kind == *v,
            "event" | "action" => e.action == *v || e.action.split(':').next() == Some(v),
            "container" => {
                e.kind == "container"
                    && (e.actor.id.starts_with(v.as_str())
                        || e.actor.attributes.get("name") == Some(v))
            }
            "image" => {
                e.actor.attributes.get("image") == Some(v)
                    || (e.kind == "image"
                        && (e.actor.id == *v || e.actor.attributes.get("name") == Some(v)))
            }
            "label" => {
                let (lk, lv) = v
                    .split_once('=')
                    .map_or((v.as_str(), None), |(a, b)| (a, Some(b)));
                e.actor
                    .attributes
                    .get(lk)
                    .is_some_and(|x| lv.is_none_or(|lv| x == lv))
            }
            "network" => {
                e.kind == "network"
                    && (e.actor.id.starts_with(v.as_str())
                        || e.actor.attributes.get("name") == Some(v))
            }
            "volume" => e.kind == "volume" && e.actor.id == *v,
            "daemon" => e.kind == "daemon",
            "scope" => v == "local",
            // Swarm objects and plugins: ketch has none.
            _ => false,
        };
        // As Docker: the values of one key are alternatives, except
        // labels, which must all hold.
        if k == "label" {
            vals.iter().all(holds)
        } else {
            vals.iter().any(holds)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_and_filters() {
        let ev = Events::default();
        ev.emit(
            "container",
            "start",
            "abc123",
            &[("name", "web"), ("image", "hello")],
        );
        ev.emit("image", "tag", "sha256:1", &[("name", "hello:v2")]);
        let (past, _rx) = ev.subscribe(Some(0));
        assert_eq!(past.len(), 2);
        let f = |k: &str, v: &str| BTreeMap::from([(k.to_string(), vec![v.to_string()])]);
        assert!(matches(&past[0], &f("container", "web")));
        assert!(matches(&past[0], &f("container", "abc")));
        assert!(matches(&past[0], &f("image", "hello")));
        assert!(!matches(&past[1], &f("type", "container")));
        assert!(matches(&past[1], &f("event", "tag")));
        // Labels must all hold; other values are alternatives.
        let two = |k: &str, a: &str, b: &str| {
            BTreeMap::from([(k.to_string(), vec![a.to_string(), b.to_string()])])
        };
        assert!(matches(&past[0], &two("label", "name=web", "image")));
        assert!(!matches(&past[0], &two("label", "name=web", "zz")));
        assert!(matches(&past[0], &two("container", "nosuch", "web")));
        assert!(!matches(&past[0], &f("service", "x")));
        assert_eq!(past[0].from.as_deref(), Some("hello"));
        let (none, _rx) = ev.subscribe(None);
        assert!(none.is_empty());
    }
}
