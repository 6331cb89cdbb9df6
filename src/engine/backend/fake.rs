//! A runtime that runs nothing, for unit tests of the lifecycle: each
//! start hands back an instance the test ends when it likes.

use super::{Backend, BoxFuture, Caps, Container, Engine, EngineError, Record};
use crate::image::Image;
use crate::model::{Digest, Platform, RuntimeKind};
use crate::runtime::{Control, ExitStatus, Reattached, RuntimeError, RuntimeStats, Started};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// One started instance.
#[derive(Default)]
pub(crate) struct Instance {
    exit: Mutex<Option<oneshot::Sender<ExitStatus>>>,
    pub paused: AtomicBool,
    /// `terminate` ends it with code 0 (else it ignores the request).
    pub obeys_terminate: AtomicBool,
}

impl Instance {
    /// Has it ended?
    pub fn ended(&self) -> bool {
        self.exit.lock().unwrap().is_none()
    }

    /// End it with this code.
    pub fn exit(&self, code: i64) {
        if let Some(tx) = self.exit.lock().unwrap().take() {
            let _ = tx.send(ExitStatus {
                code,
                error: None,
                oom_killed: false,
            });
        }
    }
}

struct Handle(Arc<Instance>);

impl Control for Handle {
    fn kill(&self) {
        self.0.exit(crate::runtime::EXIT_KILLED);
    }
    fn terminate(&self) {
        if self.0.obeys_terminate.load(Ordering::SeqCst) {
            self.0.exit(0);
        }
    }
    fn pause(&self) {
        self.0.paused.store(true, Ordering::SeqCst);
    }
    fn resume(&self) {
        self.0.paused.store(false, Ordering::SeqCst);
    }
    fn stats(&self) -> RuntimeStats {
        RuntimeStats::default()
    }
}

#[derive(Default)]
pub(crate) struct Fake {
    pub starts: AtomicUsize,
    pub instances: Mutex<Vec<Arc<Instance>>>,
    /// The next starts fail.
    pub fail: AtomicBool,
    /// Containers a reattach after a restart of ketchd finds exited, and
    /// how; any other is found running.
    pub reattach_exit: Mutex<std::collections::HashMap<crate::model::ContainerId, ExitStatus>>,
    pub cleaned: Mutex<Vec<String>>,
}

impl Fake {
    pub fn last(&self) -> Arc<Instance> {
        self.instances.lock().unwrap().last().cloned().unwrap()
    }

    fn instance(&self) -> Started {
        let (tx, rx) = oneshot::channel();
        let i = Arc::new(Instance {
            exit: Mutex::new(Some(tx)),
            obeys_terminate: AtomicBool::new(true),
            ..Default::default()
        });
        self.instances.lock().unwrap().push(i.clone());
        Started {
            control: Arc::new(Handle(i)),
            exit: rx,
            ports: Vec::new(),
        }
    }
}

impl Backend for Fake {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Wasm
    }

    fn caps(&self) -> Caps {
        Caps::default()
    }

    fn known(&self, _: &Digest, _: &str) -> Option<Platform> {
        Some(Platform::Wasm)
    }

    fn prepare<'a>(
        &'a self,
        _: &'a Image,
        _: &'a str,
        _: &'a str,
        _: Option<Arc<[u8]>>,
    ) -> BoxFuture<'a, Result<Option<Platform>, EngineError>> {
        Box::pin(async { Ok(Some(Platform::Wasm)) })
    }

    fn start<'a>(
        &'a self,
        _: &'a Arc<Engine>,
        _: &'a Arc<Container>,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<Started, EngineError>> {
        Box::pin(async move {
            self.starts.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(RuntimeError::Start {
                    name: rec.name.clone(),
                    image: rec.image.clone(),
                    reason: "the fake refuses".into(),
                }
                .into());
            }
            Ok(self.instance())
        })
    }

    fn reattach(&self, _: &Engine, _: &Container, rec: &Record) -> Reattached {
        match self.reattach_exit.lock().unwrap().remove(&rec.id) {
            Some(st) => Reattached::Exited(st, chrono::Utc::now()),
            None => Reattached::Running(self.instance()),
        }
    }

    fn cleanup(&self, rec: &Record) {
        self.cleaned.lock().unwrap().push(rec.name.clone());
    }
}
