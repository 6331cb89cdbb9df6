//! Engine API request decoding: query strings, create bodies and the
//! option parsers they feed never panic.
#![no_main]

use ketch::api::types::ContainerCreateRequest;
use ketch::daemon::http::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let q = Query::parse(Some(s));
    for k in ["all", "force", "t", "since", "tail", "signal", "platform"] {
        let _ = q.flag(k);
        let _ = q.int(k);
        let _ = q.all(k);
    }
    let _ = ketch::model::ports::parse_publish(s);
    let _ = ketch::model::ports::parse_port_key(s);
    let _ = ketch::model::units::parse_size(s);
    let _ = ketch::model::units::parse_duration(s);
    let Ok(req) = serde_json::from_str::<ContainerCreateRequest>(s) else {
        return;
    };
    if let Some(labels) = &req.config.labels {
        let _ = ketch::api::annotations::http_options(labels);
    }
    if let Some(hc) = &req.host_config {
        let _ = ketch::model::RestartPolicy::from_api(
            &hc.restart_policy.name,
            hc.restart_policy.maximum_retry_count,
        );
        let _ = ketch::engine::port_mappings(&req.config, hc);
    }
    let _ = serde_json::to_vec(&req).expect("a decoded request encodes");
});
