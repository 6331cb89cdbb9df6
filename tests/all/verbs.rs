//! Docker's smaller verbs as a user runs them: `rename` and `history`,
//! through the ketch CLI, the API and (when installed) the docker CLI.

use crate::common::*;

#[test]
fn rename_takes_a_free_valid_name_and_keeps_it_across_a_restart() {
    let mut d = TestDaemon::start();
    example_image(&d, "hello");
    d.ketch(&["create", "--name", "first", "hello"]).ok();
    d.ketch(&["create", "--name", "taken", "hello"]).ok();
    let id = d.ketch(&["inspect", "-f", "{{.Id}}", "first"]).ok();
    d.ketch(&["rename", "first", "second"]).ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Name}}", id.trim()]).ok(),
        "/second\n"
    );
    let r = d.ketch(&["inspect", "first"]);
    assert!(
        r.stderr.contains("No such container: first") || r.stderr.contains("No such object: first"),
        "{}",
        r.stderr
    );
    // Docker's words for the refusals, and nothing changes.
    let r = d.ketch(&["rename", "second", "taken"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("The container name \"/taken\" is already in use"),
        "{}",
        r.stderr
    );
    let (code, body) = d.http("POST", "/containers/second/rename?name=bad%20name", "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Invalid container name (bad name)"), "{body}");
    let (code, _) = d.http("POST", "/containers/second/rename?name=second", "");
    assert_eq!(code, 400);
    let (code, _) = d.http("POST", "/containers/nobody/rename?name=x1", "");
    assert_eq!(code, 404);
    // The old name is free again; the event names both.
    d.ketch(&["create", "--name", "first", "hello"]).ok();
    let until = chrono::Utc::now().timestamp() + 1;
    let (_, events) = d.http(
        "GET",
        &format!("/events?since=0&until={until}&filters=%7B%22event%22%3A%5B%22rename%22%5D%7D"),
        "",
    );
    let e: serde_json::Value = serde_json::from_str(events.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(e["Actor"]["Attributes"]["name"], "second", "{events}");
    assert_eq!(e["Actor"]["Attributes"]["oldName"], "/first", "{events}");
    // The record holds it.
    d.crash_and_restart();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Name}}", id.trim()]).ok(),
        "/second\n"
    );
    let out = d.ketch(&["start", "-a", "second"]).ok();
    assert!(out.contains("Hello"), "{out}");
}

#[test]
fn history_lists_the_build_steps_newest_first() {
    let d = TestDaemon::start();
    example_image(&d, "hello");
    let (code, body) = d.http("GET", "/images/hello/history", "");
    assert_eq!(code, 200, "{body}");
    let h: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let id = d
        .ketch(&["image", "inspect", "-f", "{{.Id}}", "hello"])
        .ok();
    assert_eq!(h[0]["Id"], id.trim());
    assert_eq!(h[0]["Tags"], serde_json::json!(["hello:latest"]));
    let by: Vec<&str> = h.iter().map(|e| e["CreatedBy"].as_str().unwrap()).collect();
    assert_eq!(
        by,
        [
            "ENTRYPOINT [\"/hello.wasm\"]",
            "COPY hello.wasm /hello.wasm"
        ],
        "{body}"
    );
    assert_eq!(h[0]["Size"], 0);
    assert!(h[1]["Size"].as_i64().unwrap() > 1000);
    assert_eq!(h[1]["Id"], "<missing>");
    let out = d.ketch(&["history", "hello"]).ok();
    assert!(
        out.starts_with("IMAGE") && out.contains("COPY hello.wasm"),
        "{out}"
    );
    let (code, _) = d.http("GET", "/images/nosuch/history", "");
    assert_eq!(code, 404);
}

#[test]
fn fields_ketch_does_not_honour_are_refused_naming_them() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    for (body, field) in [
        (
            r#"{"Image":"spin","HostConfig":{"Privileged":true}}"#,
            "HostConfig.Privileged (true)",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"Dns":["1.1.1.1"]}}"#,
            "HostConfig.Dns",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"CpusetCpus":"0"}}"#,
            "HostConfig.CpusetCpus",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"Devices":[{"PathOnHost":"/dev/null"}]}}"#,
            "HostConfig.Devices",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"CgroupnsMode":"private"}}"#,
            "HostConfig.CgroupnsMode (--cgroupns) applies to Linux containers",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"ShmSize":1048576}}"#,
            "HostConfig.ShmSize (--shm-size) applies to Linux containers",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"Init":true}}"#,
            "HostConfig.Init (--init) applies to Linux containers",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"DeviceCgroupRules":["c 1:3 rwm"]}}"#,
            "HostConfig.DeviceCgroupRules (--device-cgroup-rule) applies to Linux containers",
        ),
        (
            r#"{"Image":"spin","MacAddress":"02:42:ac:11:00:02"}"#,
            "Config.MacAddress",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"NanoCpus":1000000000}}"#,
            "NanoCpus (--cpus) applies to Linux containers",
        ),
        (
            r#"{"Image":"spin","HostConfig":{"CapAdd":["NET_ADMIN"]}}"#,
            "CapAdd (--cap-add) applies to Linux containers",
        ),
    ] {
        let (code, text) = d.http("POST", "/containers/create", body);
        assert_eq!(code, 400, "{body}: {text}");
        assert!(text.contains(field), "{body}: {text}");
    }
    // What the docker CLI sends for a plain run passes.
    let plain = r#"{"Image":"spin","Domainname":"","OnBuild":null,"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"CpuPeriod":0,"CpuQuota":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"MaskedPaths":null,"ReadonlyPaths":null}}"#;
    let (code, text) = d.http("POST", "/containers/create?name=plain", plain);
    assert_eq!(code, 201, "{text}");
    assert_eq!(d.ketch(&["ps", "-aq"]).ok().lines().count(), 1);
    // Inspect shows Docker's other fields at the value ketch gives them,
    // each once, and which kind of runtime runs it.
    let (_, body) = d.http("GET", "/containers/plain/json", "");
    let hc = &serde_json::from_str::<serde_json::Value>(&body).unwrap()["HostConfig"];
    assert_eq!(hc["Privileged"], false, "{hc}");
    assert_eq!(hc["Dns"], serde_json::Value::Null);
    assert_eq!(hc["OomScoreAdj"], 0);
    assert_eq!(hc["PidMode"], "");
    assert_eq!(hc["Runtime"], "wasm");
    assert_eq!(hc["NetworkMode"], "default");
    assert_eq!(body.matches("\"Privileged\"").count(), 1, "{body}");
}

#[test]
fn prunes_take_label_and_until_filters() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    for (name, label) in [("c1", "keep=1"), ("c2", "drop=1"), ("c3", "other=1")] {
        d.ketch(&["create", "--name", name, "--label", label, "spin"])
            .ok();
    }
    let names = |d: &TestDaemon| {
        let mut n: Vec<String> = d
            .ketch(&["ps", "-a", "--format", "{{.Names}}"])
            .ok()
            .lines()
            .map(String::from)
            .collect();
        n.sort();
        n
    };
    // Made just now: none is older than an hour.
    d.ketch(&["container", "prune", "-f", "--filter", "until=1h"])
        .ok();
    assert_eq!(names(&d), ["c1", "c2", "c3"]);
    d.ketch(&["container", "prune", "-f", "--filter", "label=drop"])
        .ok();
    assert_eq!(names(&d), ["c1", "c3"]);
    d.ketch(&["container", "prune", "-f", "--filter", "label!=keep=1"])
        .ok();
    assert_eq!(names(&d), ["c1"]);
    let (code, body) = d.http(
        "POST",
        "/containers/prune?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D",
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid filter 'colour'"), "{body}");
    let (code, body) = d.http(
        "POST",
        "/containers/prune?filters=%7B%22until%22%3A%5B%22soon%22%5D%7D",
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid filter 'until=soon'"), "{body}");
    assert_eq!(names(&d), ["c1"]);

    // Volumes: named ones go only with all=true, and only those the
    // labels admit.
    d.ketch(&["volume", "create", "--label", "tier=cache", "v1"])
        .ok();
    d.ketch(&["volume", "create", "v2"]).ok();
    let prune = |f: &str| d.http("POST", &format!("/volumes/prune?filters={f}"), "");
    let (code, body) = prune("%7B%22label%22%3A%5B%22tier%3Dcache%22%5D%7D");
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("v1"), "a named volume without all: {body}");
    let (_, body) =
        prune("%7B%22all%22%3A%5B%22true%22%5D%2C%22label%22%3A%5B%22tier%3Dcache%22%5D%7D");
    assert!(
        body.contains("\"v1\"") && !body.contains("\"v2\""),
        "{body}"
    );
    let vols = d.ketch(&["volume", "ls", "-q"]).ok();
    assert_eq!(vols.trim(), "v2");
    // The same through the CLI's --filter.
    d.ketch(&["volume", "create", "--label", "x=1", "v3"]).ok();
    d.ketch(&["volume", "prune", "-f", "-a", "--filter", "label=x=1"])
        .ok();
    let vols = d.ketch(&["volume", "ls", "-q"]).ok();
    assert_eq!(vols.trim(), "v2");

    // Images: unused ones with the label.
    d.build(
        "labelled",
        "FROM scratch\nCOPY m.wasm /m.wasm\nLABEL tier=cache\nENTRYPOINT [\"/m.wasm\"]\n",
        &[("m.wasm", &wat::parse_str(HELLO_WAT).unwrap())],
    )
    .ok();
    // Built just now (at the epoch, for a reproducible id): not older
    // than an hour, so `until=1h` keeps it; the images list agrees.
    d.ketch(&["image", "prune", "-a", "-f", "--filter", "until=1h"])
        .ok();
    assert!(d.ketch(&["images"]).ok().contains("labelled"));
    let (_, body) = d.http(
        "GET",
        "/images/json?filters=%7B%22until%22%3A%5B%221h%22%5D%7D",
        "",
    );
    assert_eq!(body.trim(), "[]", "{body}");
    d.ketch(&["image", "prune", "-a", "-f", "--filter", "label=tier=cache"])
        .ok();
    let images = d.ketch(&["images"]).ok();
    assert!(
        !images.contains("labelled") && images.contains("spin"),
        "{images}"
    );

    // Networks: unused ones the filters admit.
    d.ketch(&["network", "create", "--label", "tier=cache", "n1"])
        .ok();
    d.ketch(&["network", "create", "n2"]).ok();
    d.ketch(&["network", "prune", "-f", "--filter", "until=1h"])
        .ok();
    d.ketch(&["network", "prune", "-f", "--filter", "label=tier=cache"])
        .ok();
    let nets = d.ketch(&["network", "ls", "--format", "{{.Name}}"]).ok();
    assert!(!nets.contains("n1") && nets.contains("n2"), "{nets}");
}

#[test]
fn update_changes_a_wasm_guests_memory_cap_and_restart_policy() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    d.ketch(&["run", "-d", "--name", "g1", "--memory", "64m", "spin"])
        .ok();
    d.ketch(&["update", "--memory", "128m", "--restart", "always", "g1"])
        .ok();
    let hc = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
            "g1",
        ])
        .ok();
    assert_eq!(hc.trim(), format!("{} always", 128 << 20));
    // Below one Wasm page: refused, and nothing changes.
    let r = d.ketch(&["update", "--memory", "32k", "g1"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Cannot update container"), "{}", r.stderr);
    let r = d.ketch(&["update", "--cpus", "1", "g1"]);
    assert!(
        r.stderr
            .contains("NanoCpus (--cpus) applies to Linux containers"),
        "{}",
        r.stderr
    );
    let (code, body) = d.http("POST", "/containers/g1/update", r#"{"BlkioWeight":300}"#);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("BlkioWeight (300) cannot be updated"),
        "{body}"
    );
    let hc = d
        .ketch(&["inspect", "-f", "{{.HostConfig.Memory}}", "g1"])
        .ok();
    assert_eq!(hc.trim(), (128 << 20).to_string());
    let r = d.ketch(&["update", "--memory", "1m", "nosuch"]);
    assert!(
        r.stderr.contains("No such container: nosuch"),
        "{}",
        r.stderr
    );
}

#[test]
fn system_df_counts_volumes_and_their_users() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    d.ketch(&["volume", "create", "data"]).ok();
    let path = d
        .ketch(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data"])
        .ok();
    std::fs::write(
        std::path::Path::new(path.trim()).join("blob"),
        vec![7u8; 5000],
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/etc/passwd",
        std::path::Path::new(path.trim()).join("link"),
    )
    .unwrap();
    d.ketch(&["volume", "create", "idle"]).ok();
    d.ketch(&["create", "-v", "data:/data", "spin"]).ok();
    let (code, body) = d.http("GET", "/system/df", "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let vol = |name: &str| {
        v["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["Name"] == name)
            .cloned()
            .unwrap()
    };
    // The link is not followed: only the file's 5000 bytes count.
    assert_eq!(
        vol("data")["UsageData"],
        serde_json::json!({"Size": 5000, "RefCount": 1})
    );
    assert_eq!(
        vol("idle")["UsageData"],
        serde_json::json!({"Size": 0, "RefCount": 0})
    );
    let out = d.ketch(&["system", "df"]).ok();
    assert!(
        out.starts_with("TYPE") && out.contains("Local Volumes"),
        "{out}"
    );
    let vols = out
        .lines()
        .find(|l| l.starts_with("Local Volumes"))
        .unwrap();
    assert_eq!(
        vols.split_whitespace().collect::<Vec<_>>()[2..4],
        ["2", "1"],
        "{out}"
    );
}

#[test]
fn volumes_from_copies_another_containers_volumes() {
    let d = TestDaemon::start();
    example_image(&d, "volume");
    d.ketch(&["create", "--name", "store", "-v", "shared:/data", "volume"])
        .ok();
    // Twice through the other container's volume: the visits add up.
    d.ketch(&["run", "--rm", "--volumes-from", "store", "volume"])
        .ok();
    let out = d
        .ketch(&["run", "--rm", "--volumes-from", "store", "volume"])
        .ok();
    assert_eq!(out.matches("visit").count(), 2, "{out}");
    // `:ro` makes them read-only.
    let r = d.ketch(&["run", "--rm", "--volumes-from", "store:ro", "volume"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let binds = d
        .ketch(&["inspect", "-f", "{{json .HostConfig.Binds}}", "store"])
        .ok();
    assert_eq!(binds.trim(), r#"["shared:/data"]"#);
    // Inspect shows Binds and VolumesFrom as given; Mounts has them all.
    d.ketch(&[
        "create",
        "--name",
        "taker",
        "--volumes-from",
        "store:ro",
        "-v",
        "own:/own",
        "volume",
    ])
    .ok();
    let hc = d
        .ketch(&[
            "inspect",
            "-f",
            "{{json .HostConfig.Binds}} {{json .HostConfig.VolumesFrom}}",
            "taker",
        ])
        .ok();
    assert_eq!(hc.trim(), r#"["own:/own"] ["store:ro"]"#);
    let mounts = d
        .ketch(&["inspect", "-f", "{{json .Mounts}}", "taker"])
        .ok();
    let mounts: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    let mut seen: Vec<(String, bool)> = mounts
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Destination"].as_str().unwrap().to_string(),
                m["RW"].as_bool().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("/data".to_string(), false), ("/own".to_string(), true)]
    );
    let r = d.ketch(&["create", "--volumes-from", "nosuch", "volume"]);
    assert!(
        r.stderr.contains("No such container: nosuch"),
        "{}",
        r.stderr
    );
    let r = d.ketch(&["create", "--volumes-from", "store:rx", "volume"]);
    assert!(
        r.stderr.contains("the mode must be ro or rw"),
        "{}",
        r.stderr
    );
}
