//! libketch: the C ABI of `ketch::plugin` (see `include/ketch.h`, which
//! documents every function). Each entry point checks its pointers,
//! catches panics, and reports failures as strings the caller frees.

use ketch::model::units::parse_size;
use ketch::plugin::{Grants, Host, Limits, Output, Reuse, Sandbox, Type, Val};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

const OK: c_int = 0;
const FAILED: c_int = 1;
const PLUGIN_ERROR: c_int = 2;

/// `ketch_host` of ketch.h.
#[allow(non_camel_case_types)]
pub struct ketch_host(Host);
/// `ketch_sandbox` of ketch.h.
#[allow(non_camel_case_types)]
pub struct ketch_sandbox(Sandbox);

/// How a call failed: an error of the library, or the plugin's own error
/// value.
enum Failure {
    Failed(String),
    Plugin(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Failed(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Failed(s.to_string())
    }
}

/// A string for C: owned by the caller until `ketch_free`. Interior NULs
/// (possible in plugin output) are cut there.
fn c_string(s: impl Into<Vec<u8>>) -> *mut c_char {
    let mut v = s.into();
    if let Some(i) = v.iter().position(|&b| b == 0) {
        v.truncate(i);
    }
    CString::new(v).map_or(std::ptr::null_mut(), CString::into_raw)
}

/// Store `s` in `*slot` if the caller gave a slot.
///
/// # Safety
/// `slot` is null or valid for a write.
unsafe fn put(slot: *mut *mut c_char, s: impl Into<Vec<u8>>) {
    if !slot.is_null() {
        // SAFETY: non-null, and valid for writes by the caller's contract.
        unsafe { *slot = c_string(s) };
    }
}

/// A C string argument, or an error naming it.
///
/// # Safety
/// `p` is null or a NUL-terminated string that outlives the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| format!("{what} is not UTF-8"))
}

/// The `nargs` strings at `args`.
///
/// # Safety
/// `args` is null (with `nargs` 0) or points to `nargs` valid C strings.
unsafe fn words<'a>(args: *const *const c_char, nargs: usize) -> Result<Vec<&'a str>, String> {
    if nargs == 0 {
        return Ok(Vec::new());
    }
    if args.is_null() {
        return Err("args is NULL".into());
    }
    (0..nargs)
        // SAFETY: `args` has `nargs` elements by the caller's contract,
        // each a C string.
        .map(|i| unsafe { text(*args.add(i), &format!("args[{i}]")) })
        .collect()
}

/// Run `f`, turning a panic into a failure: nothing unwinds into C.
fn guarded<T>(err: *mut *mut c_char, fail: T, f: impl FnOnce() -> Result<T, Failure>) -> T
where
    T: Copy,
{
    let msg = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => return v,
        Ok(Err(Failure::Failed(m) | Failure::Plugin(m))) => m,
        Err(_) => "internal error (a panic in libketch)".to_string(),
    };
    // SAFETY: `err` is null or writable, by every entry point's contract.
    unsafe { put(err, msg) };
    fail
}

/// [`guarded`] for functions returning a status code.
fn status(err: *mut *mut c_char, f: impl FnOnce() -> Result<(), Failure>) -> c_int {
    let mut code = FAILED;
    guarded(err, (), || {
        let r = f();
        code = match &r {
            Ok(()) => OK,
            Err(Failure::Failed(_)) => FAILED,
            Err(Failure::Plugin(_)) => PLUGIN_ERROR,
        };
        r
    });
    code
}

#[no_mangle]
pub extern "C" fn ketch_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// # Safety
/// See ketch.h: `cache_dir` is null or a C string; `err` null or writable.
#[no_mangle]
pub unsafe extern "C" fn ketch_host_new(
    cache_dir: *const c_char,
    err: *mut *mut c_char,
) -> *mut ketch_host {
    guarded(err, std::ptr::null_mut(), || {
        let mut b = Host::builder();
        if !cache_dir.is_null() {
            // SAFETY: non-null C string by the contract.
            b = b.cache_dir(unsafe { text(cache_dir, "cache_dir") }?);
        }
        let host = b.build().map_err(|e| e.to_string())?;
        Ok(Box::into_raw(Box::new(ketch_host(host))))
    })
}

/// # Safety
/// `host` is null or from `ketch_host_new`, not freed before.
#[no_mangle]
pub unsafe extern "C" fn ketch_host_free(host: *mut ketch_host) {
    if !host.is_null() {
        // SAFETY: from Box::into_raw in ketch_host_new, freed once.
        drop(unsafe { Box::from_raw(host) });
    }
}

/// The options object of `ketch_sandbox_new`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    dirs: Vec<Dir>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    allow_http: Vec<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    memory: Option<Value>,
    timeout_ms: Option<u64>,
    fuel: Option<u64>,
    reuse: Option<String>,
    #[serde(default)]
    trap_unknown_imports: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dir {
    host: String,
    guest: String,
    #[serde(default)]
    read_only: bool,
}

fn output(v: Option<&str>, what: &str) -> Result<Output, String> {
    match v {
        None | Some("discard") => Ok(Output::Discard),
        Some("capture") => Ok(Output::Capture),
        Some("inherit") => Ok(Output::Inherit),
        Some(o) => Err(format!(
            "options: {what} is {o:?}: use discard, capture or inherit"
        )),
    }
}

fn sandbox(host: &Host, plugin: &str, options: Option<&str>) -> Result<Sandbox, String> {
    let (grants, limits, reuse, trap_unknown) =
        settings(options).map_err(|e| format!("plugin {plugin}: {e}"))?;
    let loaded = if ketch::plugin::is_file_name(plugin) {
        host.load_file(plugin)
    } else {
        host.pull_blocking(plugin)
    }
    .map_err(|e| e.to_string())?;
    let mut b = loaded.sandbox().grants(grants).limits(limits).reuse(reuse);
    if trap_unknown {
        b = b.trap_unknown_imports();
    }
    b.build().map_err(|e| e.to_string())
}

/// The options object, read.
fn settings(options: Option<&str>) -> Result<(Grants, Limits, Reuse, bool), String> {
    let o: Options = match options {
        Some(j) => serde_json::from_str(j).map_err(|e| format!("options: {e}"))?,
        None => Options::default(),
    };
    let mut grants = Grants::new()
        .stdout(output(o.stdout.as_deref(), "stdout")?)
        .stderr(output(o.stderr.as_deref(), "stderr")?);
    for d in o.dirs {
        grants = grants.dir(d.host, d.guest, d.read_only);
    }
    for (k, v) in o.env {
        grants = grants.env(k, v);
    }
    for h in o.allow_http {
        grants = grants.allow_http(h);
    }
    let mut limits = Limits::new();
    match o.memory {
        None => {}
        Some(Value::Number(n)) => {
            limits = limits.memory(
                n.as_u64()
                    .ok_or("options: memory must be a whole number of bytes")?,
            )
        }
        Some(Value::String(s)) => {
            limits = limits.memory(parse_size(&s).map_err(|e| format!("options: memory: {e}"))?)
        }
        Some(_) => return Err("options: memory must be bytes or a size such as \"64MiB\"".into()),
    }
    if let Some(ms) = o.timeout_ms {
        limits = limits.timeout(Duration::from_millis(ms));
    }
    if let Some(f) = o.fuel {
        limits = limits.fuel(f);
    }
    let reuse = match o.reuse.as_deref() {
        None | Some("fresh") => Reuse::Fresh,
        Some("keep") => Reuse::Keep,
        Some(r) => return Err(format!("options: reuse is {r:?}: use fresh or keep")),
    };
    Ok((grants, limits, reuse, o.trap_unknown_imports))
}

/// # Safety
/// See ketch.h: `host` from `ketch_host_new`; strings null or C strings.
#[no_mangle]
pub unsafe extern "C" fn ketch_sandbox_new(
    host: *const ketch_host,
    plugin: *const c_char,
    options: *const c_char,
    err: *mut *mut c_char,
) -> *mut ketch_sandbox {
    guarded(err, std::ptr::null_mut(), || {
        // SAFETY: null or a live host, by the contract.
        let host = unsafe { host.as_ref() }.ok_or("host is NULL")?;
        // SAFETY: C strings by the contract.
        let plugin = unsafe { text(plugin, "plugin") }?;
        let options = if options.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { text(options, "options") }?)
        };
        let sb = sandbox(&host.0, plugin, options)?;
        Ok(Box::into_raw(Box::new(ketch_sandbox(sb))))
    })
}

/// # Safety
/// `sandbox` is null or from `ketch_sandbox_new`, not freed before, and
/// no call on it is running.
#[no_mangle]
pub unsafe extern "C" fn ketch_sandbox_free(sandbox: *mut ketch_sandbox) {
    if !sandbox.is_null() {
        // SAFETY: from Box::into_raw in ketch_sandbox_new, freed once.
        drop(unsafe { Box::from_raw(sandbox) });
    }
}

/// A word as a value of the parameter's type.
fn word(name: &str, t: &Type, a: &str) -> Result<Val, String> {
    let bad = || format!("argument {name}: {a:?} is not a {}", kind(t));
    Ok(match t {
        Type::String => Val::String(a.into()),
        Type::Char => Val::Char(a.parse().map_err(|_| bad())?),
        Type::Bool => Val::Bool(a.parse().map_err(|_| bad())?),
        _ => {
            json_val(t, &serde_json::from_str::<Value>(a).map_err(|_| bad())?).map_err(|_| bad())?
        }
    })
}

fn kind(t: &Type) -> String {
    format!("{t:?}")
        .split('(')
        .next()
        .unwrap_or("value")
        .to_lowercase()
}

/// A JSON value as a value of type `t` (the mapping in ketch.h).
fn json_val(t: &Type, v: &Value) -> Result<Val, String> {
    let bad = || format!("{v} is not a {}", kind(t));
    let int = |v: &Value| v.as_i64().ok_or_else(bad);
    let uint = |v: &Value| v.as_u64().ok_or_else(bad);
    Ok(match t {
        Type::Bool => Val::Bool(v.as_bool().ok_or_else(bad)?),
        Type::S8 => Val::S8(i8::try_from(int(v)?).map_err(|_| bad())?),
        Type::S16 => Val::S16(i16::try_from(int(v)?).map_err(|_| bad())?),
        Type::S32 => Val::S32(i32::try_from(int(v)?).map_err(|_| bad())?),
        Type::S64 => Val::S64(int(v)?),
        Type::U8 => Val::U8(u8::try_from(uint(v)?).map_err(|_| bad())?),
        Type::U16 => Val::U16(u16::try_from(uint(v)?).map_err(|_| bad())?),
        Type::U32 => Val::U32(u32::try_from(uint(v)?).map_err(|_| bad())?),
        Type::U64 => Val::U64(uint(v)?),
        Type::Float32 => Val::Float32(v.as_f64().ok_or_else(bad)? as f32),
        Type::Float64 => Val::Float64(v.as_f64().ok_or_else(bad)?),
        Type::Char => {
            let s = v.as_str().ok_or_else(bad)?;
            let mut cs = s.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(bad()),
            }
        }
        Type::String => Val::String(v.as_str().ok_or_else(bad)?.into()),
        Type::List(l) => Val::List(
            v.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|e| json_val(&l.ty(), e))
                .collect::<Result<_, _>>()?,
        ),
        Type::Tuple(tt) => {
            let a = v.as_array().ok_or_else(bad)?;
            let types: Vec<Type> = tt.types().collect();
            if a.len() != types.len() {
                return Err(bad());
            }
            Val::Tuple(
                types
                    .iter()
                    .zip(a)
                    .map(|(t, e)| json_val(t, e))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Record(r) => {
            let o = v.as_object().ok_or_else(bad)?;
            Val::Record(
                r.fields()
                    .map(|f| {
                        let e = o
                            .get(f.name)
                            .ok_or_else(|| format!("{v} has no field {}", f.name))?;
                        Ok((f.name.to_string(), json_val(&f.ty, e)?))
                    })
                    .collect::<Result<_, String>>()?,
            )
        }
        Type::Option(o) => match v {
            Value::Null => Val::Option(None),
            v => Val::Option(Some(Box::new(json_val(&o.ty(), v)?))),
        },
        Type::Result(r) => {
            let o = v.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
            let side = |t: Option<Type>, e: &Value| -> Result<Option<Box<Val>>, String> {
                match t {
                    Some(t) => Ok(Some(Box::new(json_val(&t, e)?))),
                    None => Ok(None),
                }
            };
            match (o.get("ok"), o.get("err")) {
                (Some(e), None) => Val::Result(Ok(side(r.ok(), e)?)),
                (None, Some(e)) => Val::Result(Err(side(r.err(), e)?)),
                _ => return Err(bad()),
            }
        }
        Type::Enum(e) => {
            let s = v.as_str().ok_or_else(bad)?;
            if !e.names().any(|n| n == s) {
                return Err(bad());
            }
            Val::Enum(s.into())
        }
        Type::Flags(f) => {
            let a = v.as_array().ok_or_else(bad)?;
            let mut names = Vec::new();
            for n in a {
                let n = n.as_str().ok_or_else(bad)?;
                if !f.names().any(|x| x == n) {
                    return Err(bad());
                }
                names.push(n.to_string());
            }
            Val::Flags(names)
        }
        Type::Variant(var) => {
            let (name, payload) = match v {
                Value::String(s) => (s.as_str(), None),
                Value::Object(o) if o.len() == 1 => o
                    .iter()
                    .next()
                    .map(|(k, p)| (k.as_str(), Some(p)))
                    .ok_or_else(bad)?,
                _ => return Err(bad()),
            };
            let case = var.cases().find(|c| c.name == name).ok_or_else(bad)?;
            let payload = match (case.ty, payload) {
                (Some(t), Some(p)) => Some(Box::new(json_val(&t, p)?)),
                (None, None) | (None, Some(Value::Null)) => None,
                _ => return Err(bad()),
            };
            Val::Variant(name.into(), payload)
        }
        _ => return Err(format!("a {} cannot be passed from C", kind(t))),
    })
}

/// A value as JSON (the mapping in ketch.h).
fn val_json(v: &Val) -> Value {
    let boxed = |b: &Option<Box<Val>>| b.as_deref().map_or(Value::Null, val_json);
    match v {
        Val::Bool(b) => json!(b),
        Val::S8(n) => json!(n),
        Val::U8(n) => json!(n),
        Val::S16(n) => json!(n),
        Val::U16(n) => json!(n),
        Val::S32(n) => json!(n),
        Val::U32(n) => json!(n),
        Val::S64(n) => json!(n),
        Val::U64(n) => json!(n),
        Val::Float32(n) => json!(n),
        Val::Float64(n) => json!(n),
        Val::Char(c) => json!(c.to_string()),
        Val::String(s) => json!(s),
        Val::List(l) | Val::Tuple(l) => Value::Array(l.iter().map(val_json).collect()),
        Val::Record(fs) => Value::Object(
            fs.iter()
                .map(|(k, v)| (k.clone(), val_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Val::Option(o) => boxed(o),
        Val::Result(Ok(v)) => json!({ "ok": boxed(v) }),
        Val::Result(Err(v)) => json!({ "err": boxed(v) }),
        Val::Enum(s) => json!(s),
        Val::Flags(f) => json!(f),
        Val::Variant(name, None) => json!(name),
        Val::Variant(name, Some(p)) => json!({ name.clone(): val_json(p) }),
        other => json!(format!("{other:?}")),
    }
}

fn results_text(results: Vec<Val>) -> Result<String, Failure> {
    match results.as_slice() {
        [Val::String(s)] => Ok(s.clone()),
        [Val::Result(Ok(v))] => Ok(v.as_deref().map_or(String::new(), |v| match v {
            Val::String(s) => s.clone(),
            v => val_json(v).to_string(),
        })),
        [Val::Result(Err(v))] => Err(Failure::Plugin(v.as_deref().map_or(
            String::new(),
            |v| match v {
                Val::String(s) => s.clone(),
                v => val_json(v).to_string(),
            },
        ))),
        [] => Ok(String::new()),
        [one] => Ok(val_json(one).to_string()),
        many => Ok(Value::Array(many.iter().map(val_json).collect()).to_string()),
    }
}

/// An export's parameters: names and types.
type Params = Vec<(String, Type)>;

/// The sandbox, the export's name and its parameters.
///
/// # Safety
/// `sandbox` is null or live; `export_name` null or a C string.
unsafe fn export<'a>(
    sandbox: *const ketch_sandbox,
    export_name: *const c_char,
) -> Result<(&'a Sandbox, &'a str, Params), Failure> {
    // SAFETY: null or a live sandbox, by the contract.
    let sb = &unsafe { sandbox.as_ref() }.ok_or("sandbox is NULL")?.0;
    // SAFETY: null or a C string, by the contract.
    let name = unsafe { text(export_name, "export_name") }?;
    let ty = sb.func_type(name).map_err(|e| e.to_string())?;
    let params = ty.params().map(|(n, t)| (n.to_string(), t)).collect();
    Ok((sb, name, params))
}

/// # Safety
/// See ketch.h: `sandbox` from `ketch_sandbox_new`; `args` holds `nargs`
/// C strings; `out` and `err` null or writable.
#[no_mangle]
pub unsafe extern "C" fn ketch_call(
    sandbox: *const ketch_sandbox,
    export_name: *const c_char,
    args: *const *const c_char,
    nargs: usize,
    out: *mut *mut c_char,
    err: *mut *mut c_char,
) -> c_int {
    status(err, || {
        // SAFETY: by the contract, as `export`'s.
        let (sb, name, params) = unsafe { export(sandbox, export_name) }?;
        // SAFETY: `nargs` C strings by the contract.
        let words = unsafe { words(args, nargs) }?;
        let bad = |e: String| format!("plugin {}: {name}: {e}", sb.plugin().name());
        let mut vals = Vec::new();
        for (i, w) in words.iter().enumerate() {
            vals.push(match params.get(i) {
                Some((n, t)) => word(n, t, w).map_err(bad)?,
                // Too many: the sandbox's own message says how many.
                None => Val::String(w.to_string()),
            });
        }
        let results = sb.call(name, &vals).map_err(|e| e.to_string())?;
        let text = results_text(results)?;
        // SAFETY: null or writable by the contract.
        unsafe { put(out, text) };
        Ok(())
    })
}

/// # Safety
/// As [`ketch_call`], with `args_json` a C string.
#[no_mangle]
pub unsafe extern "C" fn ketch_call_json(
    sandbox: *const ketch_sandbox,
    export_name: *const c_char,
    args_json: *const c_char,
    out: *mut *mut c_char,
    err: *mut *mut c_char,
) -> c_int {
    status(err, || {
        // SAFETY: by the contract, as `export`'s.
        let (sb, name, params) = unsafe { export(sandbox, export_name) }?;
        // SAFETY: a C string by the contract.
        let args = unsafe { text(args_json, "args_json") }?;
        let args: Vec<Value> = serde_json::from_str(args)
            .map_err(|e| format!("plugin {}: {name}: args_json: {e}", sb.plugin().name()))?;
        if params.len() != args.len() {
            return Err(format!(
                "plugin {}: {name}: takes {} argument(s), got {}",
                sb.plugin().name(),
                params.len(),
                args.len()
            )
            .into());
        }
        let vals = params
            .iter()
            .zip(&args)
            .map(|((n, t), a)| {
                json_val(t, a).map_err(|e| {
                    format!("plugin {}: {name}: argument {n}: {e}", sb.plugin().name())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let results = sb.call(name, &vals).map_err(|e| e.to_string())?;
        let json = Value::Array(results.iter().map(val_json).collect()).to_string();
        // SAFETY: null or writable by the contract.
        unsafe { put(out, json) };
        Ok(())
    })
}

/// # Safety
/// As [`ketch_call`]; `exit_code` and `out_len` null or writable.
#[no_mangle]
pub unsafe extern "C" fn ketch_run(
    sandbox: *const ketch_sandbox,
    args: *const *const c_char,
    nargs: usize,
    exit_code: *mut c_int,
    out: *mut *mut c_char,
    out_len: *mut usize,
    err: *mut *mut c_char,
) -> c_int {
    status(err, || {
        // SAFETY: null or a live sandbox, by the contract.
        let sb = &unsafe { sandbox.as_ref() }.ok_or("sandbox is NULL")?.0;
        // SAFETY: `nargs` C strings by the contract.
        let words = unsafe { words(args, nargs) }?;
        let r = sb.run(&words).map_err(|e| e.to_string())?;
        // SAFETY: each pointer null or writable by the contract.
        unsafe {
            if let Some(c) = exit_code.as_mut() {
                *c = r.code;
            }
            let mut stdout = r.stdout;
            if let Some(i) = stdout.iter().position(|&b| b == 0) {
                stdout.truncate(i);
            }
            if let Some(l) = out_len.as_mut() {
                *l = stdout.len();
            }
            put(out, stdout);
        }
        Ok(())
    })
}

/// # Safety
/// `sandbox` null or live; each out-pointer null or writable.
#[no_mangle]
pub unsafe extern "C" fn ketch_metrics(
    sandbox: *const ketch_sandbox,
    calls: *mut u64,
    traps: *mut u64,
    timeouts: *mut u64,
    p50_ns: *mut u64,
    p99_ns: *mut u64,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: null or a live sandbox, by the contract.
        let Some(sb) = (unsafe { sandbox.as_ref() }) else {
            return;
        };
        let m = sb.0.metrics();
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        for (p, v) in [
            (calls, m.calls),
            (traps, m.traps),
            (timeouts, m.timeouts),
            (p50_ns, ns(m.p50)),
            (p99_ns, ns(m.p99)),
        ] {
            // SAFETY: null or writable by the contract.
            if let Some(p) = unsafe { p.as_mut() } {
                *p = v;
            }
        }
    }));
}

/// # Safety
/// `s` is null or a string this library returned, not freed before.
#[no_mangle]
pub unsafe extern "C" fn ketch_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: every string handed out is a CString::into_raw.
        drop(unsafe { CString::from_raw(s) });
    }
}
