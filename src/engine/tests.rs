//! The lifecycle, restart backoff and reconcile against a fake runtime,
//! on a current-thread runtime: no daemon, no guest, no root.

use super::backend::fake::Fake;
use super::backend::Backends;
use super::*;
use crate::api::types::{ContainerConfig, HostConfig, RestartPolicyApi};
use crate::model::{Platform, Status};
use chrono::Utc;
use std::sync::atomic::Ordering;
use std::time::Duration;

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    fake: Arc<Fake>,
    engine: Arc<Engine>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let fake = Arc::new(Fake::default());
    let engine = open(&root, &fake).await;
    World {
        _dir: dir,
        root,
        fake,
        engine,
    }
}

async fn open(root: &Path, fake: &Arc<Fake>) -> Arc<Engine> {
    prepare_root(root).unwrap();
    let backends = Backends::of(vec![fake.clone() as Arc<dyn backend::Backend>]);
    Engine::open_with(root, Default::default(), backends)
        .await
        .unwrap()
}

/// A container record as `create` would make it, without an image (an
/// empty name is `insert`'s to generate).
pub(super) fn record(name: &str, hc: HostConfig) -> Record {
    Record {
        id: ContainerId::random(),
        name: name.into(),
        created: Utc::now(),
        image: "fake".into(),
        image_id: Digest::of(b"fake"),
        config: ContainerConfig::default(),
        host_config: hc,
        path: "/fake.wasm".into(),
        args: Vec::new(),
        platform: Platform::Wasm,
        state: StateRecord::default(),
        networks: Default::default(),
        inherited_binds: Vec::new(),
    }
}

async fn make(w: &World, name: &str, hc: HostConfig) -> Arc<Container> {
    w.engine.insert(record(name, hc)).await.unwrap();
    w.engine.lookup(name).unwrap()
}

/// Poll until `cond` holds, for at most 5 s of (virtual or real) time.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

fn on_failure(n: i64) -> HostConfig {
    HostConfig {
        restart_policy: RestartPolicyApi {
            name: "on-failure".into(),
            maximum_retry_count: n,
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn a_run_records_its_exit_once_and_wait_sees_it() {
    let w = world().await;
    let c = make(&w, "a", HostConfig::default()).await;
    let waited = w.engine.wait("a", WaitCondition::NextExit).unwrap();
    w.engine.start("a").await.unwrap();
    assert_eq!(c.status(), Status::Running);
    assert!(matches!(
        w.engine.start("a").await,
        Err(EngineError::NotModified(_))
    ));
    w.fake.last().exit(3);
    assert_eq!(waited.await, (3, None));
    let rec = c.record();
    assert_eq!(
        (rec.state.status(), rec.state.exit_code()),
        (Status::Exited, 3)
    );
    // The record on disk says the same.
    let Ok(Some(disk)) = super::record_file::read(c.dir()) else {
        panic!("no record on disk");
    };
    assert_eq!(disk.state.exit_code(), 3);
}

#[tokio::test]
async fn stop_asks_then_kills_and_a_second_stop_is_not_modified() {
    let w = world().await;
    let c = make(&w, "s", HostConfig::default()).await;
    w.engine.start("s").await.unwrap();
    w.engine.stop("s", Some(5)).await.unwrap();
    assert_eq!(c.record().state.exit_code(), 0, "it obeyed the terminate");
    assert!(c.record().state.manually_stopped());
    assert!(matches!(
        w.engine.stop("s", None).await,
        Err(EngineError::NotModified(_))
    ));
    // One that ignores the request is killed when the timeout ends.
    w.engine.start("s").await.unwrap();
    w.fake.last().obeys_terminate.store(false, Ordering::SeqCst);
    w.engine.stop("s", Some(0)).await.unwrap();
    assert_eq!(c.record().state.exit_code(), crate::runtime::EXIT_KILLED);
}

#[tokio::test]
async fn pause_reaches_the_instance_and_illegal_moves_are_conflicts() {
    let w = world().await;
    let c = make(&w, "p", HostConfig::default()).await;
    assert!(matches!(
        w.engine.pause("p").await,
        Err(EngineError::Transition {
            verb: "pause",
            source: crate::model::TransitionError::NotRunning,
            ..
        })
    ));
    w.engine.start("p").await.unwrap();
    w.engine.pause("p").await.unwrap();
    assert!(w.fake.last().paused.load(Ordering::SeqCst));
    assert_eq!(c.status(), Status::Paused);
    let e = w.engine.remove("p", false).await.unwrap_err().to_string();
    assert!(
        e.starts_with("You cannot remove a running container"),
        "{e}"
    );
    w.engine.unpause("p").await.unwrap();
    assert!(!w.fake.last().paused.load(Ordering::SeqCst));
    assert_eq!(c.status(), Status::Running);
    w.engine.remove("p", true).await.unwrap();
    assert!(matches!(
        w.engine.lookup("p"),
        Err(EngineError::NoSuchContainer(_))
    ));
    assert_eq!(*w.fake.cleaned.lock().unwrap(), vec!["p".to_string()]);
}

#[tokio::test]
async fn on_failure_restarts_with_backoff_up_to_its_count() {
    let w = world().await;
    let c = make(&w, "r", on_failure(2)).await;
    w.engine.start("r").await.unwrap();
    for restarts in 1..=2 {
        w.fake.last().exit(1);
        until("the restart", || {
            w.fake.starts.load(Ordering::SeqCst) == restarts + 1 && c.status() == Status::Running
        })
        .await;
        assert_eq!(c.record().state.restart_count(), restarts as u32);
    }
    w.fake.last().exit(1);
    until("the last exit", || c.status() == Status::Exited).await;
    // Past the longest backoff it could have used.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.status(), Status::Exited);
    assert_eq!(w.fake.starts.load(Ordering::SeqCst), 3, "no third restart");
}

#[tokio::test]
async fn a_stop_during_the_backoff_ends_the_restarts() {
    let w = world().await;
    let c = make(&w, "b", on_failure(0)).await;
    w.engine.start("b").await.unwrap();
    w.fake.last().exit(1);
    until("restarting", || c.status() == Status::Restarting).await;
    w.engine.stop("b", None).await.unwrap();
    assert_eq!(c.status(), Status::Exited);
    // Past the backoff (100 ms) that was pending.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(w.fake.starts.load(Ordering::SeqCst), 1);
    assert_eq!(c.status(), Status::Exited);
}

#[tokio::test]
async fn a_failed_start_leaves_the_container_as_it_was() {
    let w = world().await;
    let c = make(&w, "f", HostConfig::default()).await;
    w.fake.fail.store(true, Ordering::SeqCst);
    let e = w.engine.start("f").await.unwrap_err().to_string();
    assert!(e.contains("the fake refuses"), "{e}");
    assert_eq!(c.status(), Status::Created);
}

#[tokio::test]
async fn an_auto_remove_container_is_gone_after_its_exit() {
    let w = world().await;
    let c = make(
        &w,
        "rm",
        HostConfig {
            auto_remove: true,
            ..Default::default()
        },
    )
    .await;
    let removed = w.engine.wait("rm", WaitCondition::Removed).unwrap();
    w.engine.start("rm").await.unwrap();
    w.fake.last().exit(0);
    removed.await;
    assert!(w.engine.lookup("rm").is_err());
    until("its directory is deleted", || !c.dir().exists()).await;
}

#[tokio::test]
async fn an_instance_whose_start_cannot_be_recorded_is_killed_not_left_unseen() {
    let w = world().await;
    let c = make(&w, "unseen", HostConfig::default()).await;
    // The record's directory is gone: the backend starts, the write fails.
    std::fs::remove_dir_all(c.dir()).unwrap();
    assert!(w.engine.start("unseen").await.is_err());
    until("the instance is killed", || w.fake.last().ended()).await;
    until("its exit is handled", || c.status() == Status::Exited).await;
    assert_eq!(c.record().state.exit_code(), crate::runtime::EXIT_KILLED);
}

#[tokio::test]
async fn an_auto_remove_container_that_cannot_start_is_removed() {
    let w = world().await;
    make(
        &w,
        "gone",
        HostConfig {
            auto_remove: true,
            ..Default::default()
        },
    )
    .await;
    let removed = w.engine.wait("gone", WaitCondition::Removed).unwrap();
    w.fake.fail.store(true, Ordering::SeqCst);
    assert!(w.engine.start("gone").await.is_err());
    // `run --rm` waits for this; without the removal it would wait forever.
    tokio::time::timeout(Duration::from_secs(5), removed)
        .await
        .expect("the container is removed after its failed start");
    assert!(matches!(
        w.engine.lookup("gone"),
        Err(EngineError::NoSuchContainer(_))
    ));
}

#[tokio::test]
async fn generated_names_never_collide_under_concurrent_creates() {
    let w = world().await;
    // Not fsynced: many records, quickly.
    let unnamed = || {
        record(
            "",
            HostConfig {
                auto_remove: true,
                ..Default::default()
            },
        )
    };
    // Far more than the adjective_surname space can hold without a
    // repeat: every insert interleaves with the others at its write.
    let inserts = (0..3000).map(|_| w.engine.insert(unnamed()));
    let made = futures_util::future::join_all(inserts).await;
    let mut names = std::collections::HashSet::new();
    for r in made {
        assert!(names.insert(r.unwrap().name));
    }
    assert_eq!(w.engine.list().len(), 3000);
}

#[tokio::test]
async fn names_are_unique_and_lookups_take_ids_and_prefixes() {
    let w = world().await;
    let c = make(&w, "n", HostConfig::default()).await;
    let rec = Record {
        id: ContainerId::random(),
        ..c.record()
    };
    let e = w.engine.insert(rec).await.unwrap_err().to_string();
    assert!(e.contains("is already in use by container"), "{e}");
    assert_eq!(w.engine.lookup(c.id.as_str()).unwrap().id, c.id);
    assert_eq!(w.engine.lookup(&c.id.as_str()[..12]).unwrap().id, c.id);
    assert_eq!(w.engine.lookup("/n").unwrap().id, c.id);
    let Err(e) = w.engine.lookup("zz") else {
        panic!("zz found")
    };
    let e = e.to_string();
    assert_eq!(e, "No such container: zz");
}

#[tokio::test]
async fn reconcile_reattaches_the_living_and_records_the_dead() {
    let w = world().await;
    let alive = make(&w, "alive", HostConfig::default()).await;
    let dead = make(&w, "dead", HostConfig::default()).await;
    let always = make(
        &w,
        "always",
        HostConfig {
            restart_policy: RestartPolicyApi {
                name: "always".into(),
                maximum_retry_count: 0,
            },
            ..Default::default()
        },
    )
    .await;
    for n in ["alive", "dead"] {
        w.engine.start(n).await.unwrap();
    }
    w.engine.start("always").await.unwrap();
    w.engine.stop("always", None).await.unwrap();
    // A create a power loss took before the kernel wrote its directory:
    // it was answered, so the journal brings it back.
    let lost = make(&w, "lost", HostConfig::default()).await.id.clone();
    std::fs::remove_dir_all(w.root.join("containers").join(lost.as_str())).unwrap();
    // Leftovers of an interrupted create and removal.
    let containers = w.root.join("containers");
    std::fs::create_dir_all(containers.join("x.creating")).unwrap();
    std::fs::create_dir_all(containers.join("y.removing")).unwrap();
    std::fs::create_dir_all(containers.join("norecord")).unwrap();
    // A spare a power loss left holding its removed owner's record.
    let spare = containers.join(".spare-9");
    std::fs::create_dir_all(&spare).unwrap();
    record_file::append(&spare, &record("gone", HostConfig::default()), false).unwrap();
    // A create killed before its record's first line was whole.
    std::fs::create_dir_all(containers.join("torn")).unwrap();
    std::fs::write(containers.join("torn/container.jsonl"), b"\n{\"id\":\"ab").unwrap();
    let (alive_id, dead_id, always_id) = (alive.id.clone(), dead.id.clone(), always.id.clone());
    drop((alive, dead, always));

    // ketchd restarts: "dead" exited while it was away.
    let fake = Arc::new(Fake::default());
    fake.reattach_exit.lock().unwrap().insert(
        dead_id.clone(),
        crate::runtime::ExitStatus {
            code: 7,
            error: None,
            oom_killed: false,
        },
    );
    let engine = open(&w.root, &fake).await;
    let get = |id: &ContainerId| engine.lookup(id.as_str()).unwrap().record();
    assert_eq!(get(&alive_id).state.status(), Status::Running);
    let d = get(&dead_id);
    assert_eq!((d.state.status(), d.state.exit_code()), (Status::Exited, 7));
    // `always` comes back even after a manual stop, as with Docker.
    assert_eq!(get(&always_id).state.status(), Status::Running);
    assert_eq!(get(&lost).state.status(), Status::Created);
    assert_eq!(get(&lost).name, "lost");
    let mut left: Vec<_> = std::fs::read_dir(&containers)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut want = vec![
        alive_id.to_string(),
        dead_id.to_string(),
        always_id.to_string(),
        lost.to_string(),
        // The journal read back, and a new one begun.
        ".creates-2".to_string(),
    ];
    want.sort();
    assert_eq!(left, want);
}
