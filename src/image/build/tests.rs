//! Each Dockerfile instruction's effect on the image config, through the
//! parser and the pure build state (no store, context or daemon).

use super::dockerfile::{self, Instruction};
use super::stage::{Builder, Stage};
use super::{BuildError, StepError};
use crate::image::ImageError;
use oci_spec::image::{Config, ImageConfiguration};
use std::collections::BTreeMap;

const CREATED: &str = "1970-01-01T00:00:00Z";

/// Run the config steps of `src` (FROM scratch or earlier stages only) as
/// the build loop does, with these `--build-arg`s.
fn run(src: &str, build_args: &[(&str, &str)]) -> Result<(Stage, Vec<String>), StepError> {
    let args: BTreeMap<String, String> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let no_images = |name: &str| Err(ImageError::NotFound(name.to_string()));
    let mut b = Builder::new(&args, Some("wasi/wasm"));
    for step in dockerfile::parse(src).expect("test dockerfile parses") {
        match &step.inst {
            Instruction::Arg(raw) => b.arg(raw)?,
            Instruction::From(raw) => b.from(raw, &no_images)?,
            inst => {
                let (stage, _) = b.current()?;
                stage.apply(inst)?;
                stage.history.push((step.text.clone(), true));
            }
        }
    }
    let (stage, unused) = b.finish().expect("a stage");
    Ok((stage, unused))
}

fn image_config(src: &str, build_args: &[(&str, &str)]) -> ImageConfiguration {
    let (stage, _) = run(src, build_args).unwrap();
    stage.config(CREATED).unwrap()
}

fn config(src: &str) -> Config {
    image_config(src, &[]).config().clone().unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn step_error(src: &str) -> String {
    run(src, &[]).unwrap_err().to_string()
}

#[test]
fn env_sets_replaces_and_expands_with_the_values_before_the_step() {
    let c = config(
        "FROM scratch\n\
         ENV A=1 B=\"two words\"\n\
         ENV C some value\n\
         ENV A=2 D=$A E=${NOPE:-dflt}\n",
    );
    // A redefined moves to the end; D saw the A before this ENV.
    assert_eq!(
        c.env().clone().unwrap(),
        strings(&["B=two words", "C=some value", "A=2", "D=1", "E=dflt"])
    );
}

#[test]
fn env_errors_name_the_text() {
    assert_eq!(step_error("FROM scratch\nENV =x\n"), "empty key in \"=x\"");
    assert_eq!(
        step_error("FROM scratch\nENV A=1 B\n"),
        "expected key=value, got \"B\""
    );
    assert_eq!(
        step_error("FROM scratch\nENV A='open\n"),
        "unterminated quote in \"A='open\""
    );
}

#[test]
fn workdir_resolves_against_the_previous_one() {
    let c = config("FROM scratch\nWORKDIR /app\nWORKDIR sub\nWORKDIR ../lib/./x\n");
    assert_eq!(c.working_dir().as_deref(), Some("/app/lib/x"));
    let c = config("FROM scratch\nENV D=/data\nWORKDIR $D/w\n");
    assert_eq!(c.working_dir().as_deref(), Some("/data/w"));
    let c = config("FROM scratch\nWORKDIR rel\n");
    assert_eq!(c.working_dir().as_deref(), Some("/rel"));
    assert_eq!(config("FROM scratch\n").working_dir(), &None);
}

#[test]
fn user_is_kept_as_written_after_expansion() {
    let c = config("FROM scratch\nARG UID=1000\nUSER $UID:staff\n");
    assert_eq!(c.user().as_deref(), Some("1000:staff"));
    assert_eq!(config("FROM scratch\n").user(), &None);
}

#[test]
fn labels_accumulate_and_later_ones_win() {
    let c = config(
        "FROM scratch\n\
         LABEL version=\"1.0\" \"desc ription\"='two words'\n\
         LABEL version=2 empty=\n",
    );
    let labels: BTreeMap<_, _> = c.labels().clone().unwrap().into_iter().collect();
    let want: BTreeMap<String, String> = [
        ("desc ription", "two words"),
        ("empty", ""),
        ("version", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, want);
    assert_eq!(
        step_error("FROM scratch\nLABEL justakey\n"),
        "expected key=value, got \"justakey\""
    );
}

#[test]
fn expose_keys_ports_by_protocol() {
    let c = config("FROM scratch\nEXPOSE 80 53/udp\nEXPOSE 8000-8010 80/tcp 9/sctp\n");
    let mut ports = c.exposed_ports().clone().unwrap();
    ports.sort();
    assert_eq!(
        ports,
        strings(&["53/udp", "80/tcp", "8000-8010/tcp", "9/sctp"])
    );
    assert_eq!(
        step_error("FROM scratch\nEXPOSE http\n"),
        "invalid port \"http\" in EXPOSE"
    );
    assert!(run("FROM scratch\nEXPOSE 80/icmp\n", &[]).is_err());
    assert!(run("FROM scratch\nEXPOSE 70000\n", &[]).is_err());
}

#[test]
fn cmd_and_entrypoint_in_shell_and_exec_form() {
    let c = config("FROM scratch\nCMD echo \"hi there\"\n");
    assert_eq!(
        c.cmd().clone().unwrap(),
        strings(&["/bin/sh", "-c", "echo \"hi there\""])
    );
    assert_eq!(c.entrypoint(), &None);

    let c = config("FROM scratch\nENTRYPOINT [\"/app.wasm\", \"--flag\"]\nCMD [\"serve\"]\n");
    assert_eq!(
        c.entrypoint().clone().unwrap(),
        strings(&["/app.wasm", "--flag"])
    );
    assert_eq!(c.cmd().clone().unwrap(), strings(&["serve"]));

    // JSON that does not parse is the shell form, as in Docker.
    let c = config("FROM scratch\nENTRYPOINT [not json\n");
    assert_eq!(
        c.entrypoint().clone().unwrap(),
        strings(&["/bin/sh", "-c", "[not json"])
    );

    // Variables are not expanded in either form: the shell does that.
    let c = config("FROM scratch\nENV A=1\nCMD [\"echo\", \"$A\"]\n");
    assert_eq!(c.cmd().clone().unwrap(), strings(&["echo", "$A"]));
}

#[test]
fn entrypoint_drops_an_inherited_cmd_but_not_one_set_in_the_stage() {
    // CMD before ENTRYPOINT in the same stage survives it.
    let c = config("FROM scratch\nCMD [\"a\"]\nENTRYPOINT [\"/e\"]\n");
    assert_eq!(c.cmd().clone().unwrap(), strings(&["a"]));
    // A CMD inherited from the base stage does not.
    let c = config("FROM scratch AS base\nCMD [\"a\"]\nFROM base\nENTRYPOINT [\"/e\"]\n");
    assert_eq!(c.cmd(), &None);
    assert_eq!(c.entrypoint().clone().unwrap(), strings(&["/e"]));
    // Without an ENTRYPOINT the inherited CMD stays.
    let c = config("FROM scratch AS base\nCMD [\"a\"]\nFROM base\nENV X=1\n");
    assert_eq!(c.cmd().clone().unwrap(), strings(&["a"]));
}

#[test]
fn healthcheck_takes_both_forms_its_flags_and_none() {
    let hc = |src: &str| run(src, &[]).unwrap().0.healthcheck.unwrap();
    let h = hc("FROM scratch\nHEALTHCHECK --interval=1m30s --timeout=2s --retries=5 \\\n  --start-period=500ms CMD curl -f http://localhost/\n");
    assert_eq!(h.test, strings(&["CMD-SHELL", "curl -f http://localhost/"]));
    assert_eq!(h.interval, 90_000_000_000);
    assert_eq!(h.timeout, 2_000_000_000);
    assert_eq!(h.start_period, 500_000_000);
    assert_eq!(h.retries, 5);
    let h = hc("FROM scratch\nHEALTHCHECK cmd [\"/probe\", \"--ok\"]\n");
    assert_eq!(h.test, strings(&["CMD", "/probe", "--ok"]));
    assert_eq!(h.interval, 0);
    let h = hc("FROM scratch\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\n");
    assert_eq!(h.test, strings(&["NONE"]));
    for (bad, why) in [
        ("HEALTHCHECK --interval=1us CMD true", "less than 1ms"),
        ("HEALTHCHECK --retries=-1 CMD true", "not a count"),
        ("HEALTHCHECK --every=1s CMD true", "unknown flag --every"),
        ("HEALTHCHECK --interval CMD true", "needs a value"),
        ("HEALTHCHECK RUN true", "unknown type \"RUN\""),
        ("HEALTHCHECK CMD", "CMD needs a command"),
    ] {
        let e = dockerfile::parse(&format!("FROM scratch\n{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(why) && e.contains("line 2"), "{bad}: {e}");
    }
}

#[test]
fn stopsignal_and_volume_in_both_forms() {
    let c = config(
        "FROM scratch\nARG SIG=SIGINT\nSTOPSIGNAL $SIG\nVOLUME /data /cache\nVOLUME [\"/logs\"]\n",
    );
    assert_eq!(c.stop_signal().as_deref(), Some("SIGINT"));
    let mut v = c.volumes().clone().unwrap();
    v.sort();
    assert_eq!(v, strings(&["/cache", "/data", "/logs"]));
    assert!(step_error("FROM scratch\nVOLUME [\"/x\", 1]\n").starts_with("invalid JSON array"));
}

#[test]
fn args_expand_in_later_steps_but_never_reach_the_config() {
    let c = config("FROM scratch\nARG V=1\nARG W=${V}0\nENV X=$V Y=$W\n");
    assert_eq!(c.env().clone().unwrap(), strings(&["X=1", "Y=10"]));
    // Before its ARG a name expands to nothing.
    let c = config("FROM scratch\nENV X=\"[$V]\"\nARG V=1\n");
    assert_eq!(c.env().clone().unwrap(), strings(&["X=[]"]));
    // ENV wins over an ARG of the same name.
    let c = config("FROM scratch\nARG V=arg\nENV V=env\nLABEL v=$V\n");
    assert_eq!(c.labels().clone().unwrap()["v"], "env");
}

#[test]
fn build_args_override_defaults_and_unused_ones_are_reported() {
    let (stage, unused) = run(
        "FROM scratch\nARG V=1\nARG EMPTY\nENV X=$V E=\"[$EMPTY]\"\n",
        &[("V", "2"), ("NOT_DECLARED", "x")],
    )
    .unwrap();
    let c = stage.config(CREATED).unwrap();
    assert_eq!(
        c.config().clone().unwrap().env().clone().unwrap(),
        strings(&["X=2", "E=[]"])
    );
    assert_eq!(unused, strings(&["NOT_DECLARED"]));
}

#[test]
fn global_args_reach_from_and_stages_that_declare_them() {
    let src =
        "ARG BASE=scratch\nARG G=global\nFROM $BASE\nENV BEFORE=\"[$G]\"\nARG G\nENV AFTER=$G\n";
    let c = config(src);
    // A global ARG is only seen in a stage that declares it again, and then
    // with the global default (as in Docker).
    assert_eq!(
        c.env().clone().unwrap(),
        strings(&["BEFORE=[]", "AFTER=global"])
    );
    let (stage, unused) = run(src, &[("G", "cli")]).unwrap();
    assert!(unused.is_empty());
    assert!(stage
        .env
        .contains(&("AFTER".to_string(), "cli".to_string())));
}

#[test]
fn from_picks_the_platform_and_earlier_stages() {
    let c = image_config("FROM scratch\n", &[]);
    assert_eq!(
        (c.os().to_string(), c.architecture().to_string()),
        ("wasi".into(), "wasm".into())
    );
    let c = image_config("FROM --platform=linux/arm64 scratch\n", &[]);
    assert_eq!(
        (c.os().to_string(), c.architecture().to_string()),
        ("linux".into(), "arm64".into())
    );
    assert_eq!(
        step_error("FROM --platform=linux scratch\n"),
        "invalid platform \"linux\": expected os/arch"
    );
    // Stage names are case-insensitive; the new stage keeps the config
    // but not the history.
    let (stage, _) = run("FROM scratch AS Base\nENV A=1\nFROM base\nENV B=2\n", &[]).unwrap();
    assert_eq!(stage.lookup("A").as_deref(), Some("1"));
    assert_eq!(stage.history.len(), 1);
    assert_eq!(
        step_error("FROM nothing-here\n"),
        "No such image: nothing-here"
    );
    assert_eq!(
        step_error("FROM scratch AS\n"),
        "FROM takes an image and an optional AS name, got \"scratch AS\""
    );
}

#[test]
fn the_config_records_history_and_instructions_before_from_fail() {
    let c = image_config("FROM scratch\nENV A=1\nLABEL a=b\n", &[]);
    let h = c.history().clone().unwrap_or_default();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].created_by().as_deref(), Some("ENV A=1"));
    assert_eq!(h[1].empty_layer(), Some(true));
    assert_eq!(c.created().as_deref(), Some(CREATED));
    assert!(matches!(
        run("ARG X\nENV A=1\n", &[]),
        Err(StepError::BeforeFrom)
    ));
}

#[test]
fn errors_render_with_their_dockerfile_line() {
    let e = BuildError::Step {
        line: 7,
        source: StepError::Expose("http".into()),
    };
    assert_eq!(
        e.to_string(),
        "dockerfile line 7: invalid port \"http\" in EXPOSE"
    );
    assert_eq!(e.line(), Some(7));
    assert_eq!(BuildError::NoFrom.line(), None);
    let e = dockerfile::parse("FROM scratch\nENTRYPOINT\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "dockerfile line 2: ENTRYPOINT requires a command"
    );
}
