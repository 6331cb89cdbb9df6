//! Dockerfile parsing: parser directives, comments, line continuations,
//! exec (JSON) and shell forms, and word splitting with `$VAR` expansion.
//!
//! Expansion needs the build-time environment, so instructions keep their
//! raw argument text; [`words`] splits and expands it when the step runs.

use super::BuildError;

/// Word splitting or `key=value` parsing that fails: the text is quoted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("unterminated quote in {0:?}")]
    UnterminatedQuote(String),
    #[error("missing '}}' in ${{{0}")]
    UnclosedBrace(String),
    #[error("bad substitution ${{{0}}}")]
    BadSubstitution(String),
    #[error("expected key=value, got {0:?}")]
    NotKeyValue(String),
    #[error("empty key in {0:?}")]
    EmptyKey(String),
}

/// What is wrong with a Dockerfile's text (the line is added by
/// [`BuildError::Parse`]).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid escape directive {0:?}")]
    EscapeDirective(String),
    #[error("the Dockerfile has no instructions")]
    NoInstructions,
    #[error("the first instruction must be FROM")]
    FirstNotFrom,
    #[error("{keyword} requires {what}")]
    Missing { keyword: String, what: &'static str },
    #[error("empty instruction")]
    EmptyInstruction,
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("invalid JSON array {text:?}: {source}")]
    JsonArray {
        text: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("HEALTHCHECK: {0}")]
    Healthcheck(String),
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
}

fn at(line: usize) -> impl FnOnce(ParseError) -> BuildError {
    move |source| BuildError::Parse { line, source }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CommandForm {
    Exec(Vec<String>),
    Shell(String),
}

impl CommandForm {
    pub fn into_argv(self) -> Vec<String> {
        match self {
            CommandForm::Exec(v) => v,
            CommandForm::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Instruction {
    From(String),
    Copy { args: String, add: bool },
    Env(String),
    Arg(String),
    Workdir(String),
    Label(String),
    Entrypoint(CommandForm),
    Cmd(CommandForm),
    Expose(String),
    User(String),
    Run(CommandForm),
    Volume(String),
    StopSignal(String),
    Healthcheck(crate::api::types::HealthConfig),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction as written (for build output).
    pub text: String,
    pub inst: Instruction,
}

/// Parse a whole Dockerfile.
pub fn parse(src: &str) -> Result<Vec<Step>, BuildError> {
    let mut escape = '\\';
    let mut lines = src.lines().enumerate().peekable();
    // Parser directives: only leading `# key=value` comments.
    while let Some((_, l)) = lines.peek() {
        let t = l.trim();
        let Some(d) = t.strip_prefix('#') else { break };
        match d.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("escape") => {
                escape = match v.trim() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        let line = lines.peek().map_or(1, |x| x.0 + 1);
                        return Err(at(line)(ParseError::EscapeDirective(other.to_string())));
                    }
                };
                lines.next();
            }
            Some((k, _)) if !k.trim().contains(' ') => {
                lines.next();
            }
            _ => break,
        }
    }
    let mut steps = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, raw) in lines {
        let t = raw.trim_start();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if !cur.is_empty() && t.starts_with('#') {
            continue; // comments inside a continuation are dropped
        }
        if cur.is_empty() {
            start = i + 1;
        }
        let trimmed = raw.trim_end();
        if let Some(body) = trimmed.strip_suffix(escape) {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(trimmed);
        steps.push(parse_line(start, cur.trim())?);
        cur.clear();
    }
    if !cur.trim().is_empty() {
        steps.push(parse_line(start, cur.trim())?);
    }
    let Some(first) = steps.first() else {
        return Err(at(1)(ParseError::NoInstructions));
    };
    if !matches!(first.inst, Instruction::From(_) | Instruction::Arg(_)) {
        return Err(at(first.line)(ParseError::FirstNotFrom));
    }
    Ok(steps)
}

fn parse_line(line: usize, text: &str) -> Result<Step, BuildError> {
    let (word, rest) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    };
    let kw = word.to_ascii_uppercase();
    parse_instruction(&kw, rest)
        .map(|inst| Step {
            line,
            text: format!("{kw} {rest}").trim().to_string(),
            inst,
        })
        .map_err(at(line))
}

fn parse_instruction(kw: &str, rest: &str) -> Result<Instruction, ParseError> {
    let need = |what: &'static str| -> Result<String, ParseError> {
        if rest.is_empty() {
            Err(ParseError::Missing {
                keyword: kw.to_string(),
                what,
            })
        } else {
            Ok(rest.to_string())
        }
    };
    let inst = match kw {
        "FROM" => Instruction::From(need("an image name")?),
        "COPY" | "ADD" => {
            const OPERANDS: &str = "at least a source and a destination";
            let args = need(OPERANDS)?;
            let n = if args.starts_with('[') {
                json_array(&args)?.len()
            } else {
                words(&args, &|_| None)?
                    .iter()
                    .filter(|w| !w.starts_with("--"))
                    .count()
            };
            if n < 2 {
                return Err(ParseError::Missing {
                    keyword: kw.to_string(),
                    what: OPERANDS,
                });
            }
            Instruction::Copy {
                args,
                add: kw == "ADD",
            }
        }
        "ENV" => Instruction::Env(need("a name and a value")?),
        "ARG" => Instruction::Arg(need("a name")?),
        "WORKDIR" => Instruction::Workdir(need("a path")?),
        "LABEL" => Instruction::Label(need("a key=value pair")?),
        "ENTRYPOINT" => Instruction::Entrypoint(command_form(&need("a command")?)),
        "CMD" => Instruction::Cmd(command_form(&need("a command")?)),
        "RUN" => Instruction::Run(command_form(&need("a command")?)),
        "EXPOSE" => Instruction::Expose(need("a port")?),
        "USER" => Instruction::User(need("a user")?),
        "VOLUME" => Instruction::Volume(need("a path")?),
        "STOPSIGNAL" => Instruction::StopSignal(need("a signal")?),
        "HEALTHCHECK" => Instruction::Healthcheck(healthcheck(&need("NONE or CMD")?)?),
        "" => return Err(ParseError::EmptyInstruction),
        other => return Err(ParseError::UnknownInstruction(other.to_string())),
    };
    Ok(inst)
}

/// `HEALTHCHECK NONE`, or `HEALTHCHECK [--interval=D] [--timeout=D]
/// [--start-period=D] [--start-interval=D] [--retries=N] CMD command`.
fn healthcheck(rest: &str) -> Result<crate::api::types::HealthConfig, ParseError> {
    use crate::api::types::HealthConfig;
    let bad = |m: String| ParseError::Healthcheck(m);
    if rest.eq_ignore_ascii_case("none") {
        return Ok(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        });
    }
    let mut hc = HealthConfig::default();
    let mut rest = rest.trim_start();
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) = flag[..end]
            .split_once('=')
            .ok_or_else(|| bad(format!("flag --{} needs a value", &flag[..end])))?;
        let nanos = || -> Result<i64, ParseError> {
            let d = crate::model::units::parse_duration(value)
                .map_err(|e| bad(format!("--{name}: {e}")))?;
            if !d.is_zero() && d < std::time::Duration::from_millis(1) {
                return Err(bad(format!("--{name} {value:?} cannot be less than 1ms")));
            }
            i64::try_from(d.as_nanos()).map_err(|_| bad(format!("--{name} {value:?} is too long")))
        };
        match name {
            "interval" => hc.interval = nanos()?,
            "timeout" => hc.timeout = nanos()?,
            "start-period" => hc.start_period = nanos()?,
            "start-interval" => hc.start_interval = nanos()?,
            "retries" => {
                hc.retries = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| bad(format!("--retries {value:?} is not a count")))?
            }
            other => return Err(bad(format!("unknown flag --{other}"))),
        }
        rest = flag[end..].trim_start();
    }
    let (kind, cmd) = rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()));
    if !kind.eq_ignore_ascii_case("cmd") {
        return Err(bad(format!("unknown type {kind:?} (try CMD)")));
    }
    let cmd = cmd.trim();
    if cmd.is_empty() {
        return Err(bad("CMD needs a command".into()));
    }
    hc.test = match command_form(cmd) {
        CommandForm::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
        CommandForm::Shell(s) => vec!["CMD-SHELL".into(), s],
    };
    Ok(hc)
}

fn command_form(rest: &str) -> CommandForm {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return CommandForm::Exec(v);
        }
    }
    // Docker falls back to the shell form when the JSON does not parse.
    CommandForm::Shell(rest.to_string())
}

/// The exec (JSON) form of VOLUME, COPY and ADD.
pub fn json_array(s: &str) -> Result<Vec<String>, ParseError> {
    serde_json::from_str(s).map_err(|source| ParseError::JsonArray {
        text: s.to_string(),
        source,
    })
}

/// Split `s` into words as the shell would (quotes, backslashes) expanding
/// `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alt}` outside single
/// quotes with `lookup`.
pub fn words(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, SyntaxError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '\'') | (None, '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                match chars.next() {
                    Some(n) if quote.is_none() || matches!(n, '"' | '\\' | '$') => cur.push(n),
                    Some(n) => {
                        cur.push('\\');
                        cur.push(n);
                    }
                    None => cur.push('\\'),
                }
            }
            (_, '$') => {
                in_word = true;
                cur.push_str(&expand_var(&mut chars, lookup)?);
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(SyntaxError::UnterminatedQuote(s.to_string()));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn expand_var(
    chars: &mut std::iter::Peekable<std::str::Chars>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SyntaxError> {
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut inner = String::new();
        let mut depth = 1;
        for c in chars.by_ref() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            inner.push(c);
        }
        if depth != 0 {
            return Err(SyntaxError::UnclosedBrace(inner));
        }
        if let Some((name, word)) = inner.split_once(":-") {
            return Ok(lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| word.to_string()));
        }
        if let Some((name, word)) = inner.split_once(":+") {
            return Ok(if lookup(name).is_some_and(|v| !v.is_empty()) {
                word.to_string()
            } else {
                String::new()
            });
        }
        if !inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || inner.is_empty() {
            return Err(SyntaxError::BadSubstitution(inner));
        }
        return Ok(lookup(&inner).unwrap_or_default());
    }
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if name.is_empty() {
        return Ok("$".into());
    }
    Ok(lookup(&name).unwrap_or_default())
}

/// Parse `k=v k2="v 2"` pairs (or the legacy `ENV k v` form when `legacy`).
pub fn key_values(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    legacy: bool,
) -> Result<Vec<(String, String)>, SyntaxError> {
    // Trimmed as `split_whitespace` splits (Unicode white space), so the
    // first word is a prefix of it.
    let s = s.trim_start();
    let first = s.split_whitespace().next().unwrap_or("");
    if legacy && !first.contains('=') {
        let rest = s[first.len()..].trim();
        let value = words(rest, lookup)?.join(" ");
        return Ok(vec![(first.to_string(), value)]);
    }
    let mut out = Vec::new();
    for w in words(s, lookup)? {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| SyntaxError::NotKeyValue(w.clone()))?;
        if k.is_empty() {
            return Err(SyntaxError::EmptyKey(w.clone()));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_env_after_unicode_space_does_not_panic() {
        // Found by the `dockerfile` fuzz target: a leading space made the
        // first word's length an index into the wrong string.
        let none = |_: &str| None;
        let kv = key_values(" \u{2003}K \u{c6}v", &none, true).unwrap();
        assert_eq!(kv, [("K".to_string(), "\u{c6}v".to_string())]);
    }

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn parses_forms_and_continuations() {
        let src = "# escape=\\\n# a comment\nFROM scratch AS base\nCOPY a.wasm \\\n   /app/\nENTRYPOINT [\"/app/a.wasm\"]\nCMD echo hi\nenv A=1 B=\"two words\"\n";
        let steps = parse(src).unwrap();
        assert_eq!(steps.len(), 5);
        assert_eq!(steps[0].line, 3);
        assert_eq!(steps[1].line, 4);
        assert!(matches!(
            &steps[1].inst,
            Instruction::Copy { add: false, .. }
        ));
        assert_eq!(
            steps[2].inst,
            Instruction::Entrypoint(CommandForm::Exec(vec!["/app/a.wasm".into()]))
        );
        assert_eq!(
            steps[3].inst,
            Instruction::Cmd(CommandForm::Shell("echo hi".into()))
        );
        assert_eq!(steps[4].line, 8);
    }

    #[test]
    fn errors_carry_line_numbers() {
        let e = parse("FROM scratch\n\nFROBNICATE x\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(e.to_string().contains("FROBNICATE"), "{e}");
        assert_eq!(
            parse("FROM scratch\nCOPY onlyone\n")
                .unwrap_err()
                .to_string(),
            "dockerfile line 2: COPY requires at least a source and a destination"
        );
        assert_eq!(parse("COPY a b\n").unwrap_err().line(), Some(1));
        assert!(parse("\n# just a comment\n").is_err());
    }

    #[test]
    fn words_and_expansion() {
        assert_eq!(
            words("a 'b c' \"d $A\" ${A}y $NOPE. '$A'", &env).unwrap(),
            vec!["a", "b c", "d x", "xy", ".", "$A"]
        );
        assert_eq!(
            words("${NOPE:-def} ${A:+alt} ${EMPTY:-e}", &env).unwrap(),
            vec!["def", "alt", "e"]
        );
        assert!(words("'open", &env).is_err());
        assert_eq!(
            words("${A", &env).unwrap_err().to_string(),
            "missing '}' in ${A"
        );
        assert_eq!(
            words("${A B}", &env).unwrap_err().to_string(),
            "bad substitution ${A B}"
        );
        assert_eq!(
            key_values("A=1 B=\"x y\"", &env, true).unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "x y".into())]
        );
        assert_eq!(
            key_values("NAME some value", &env, true).unwrap(),
            vec![("NAME".into(), "some value".into())]
        );
    }
}
