//! Tables, sizes, times and a small Go-template subset for `--format`.

use serde_json::Value;

/// Print rows as left-aligned columns separated by three spaces (Docker's
/// tabwriter settings).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// Docker's `units.HumanSize` (decimal units).
pub fn human_size(n: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

pub fn ago(ts: i64) -> String {
    let d = chrono::Utc::now() - chrono::DateTime::from_timestamp(ts, 0).unwrap_or_default();
    format!("{} ago", crate::engine::view::human_duration(d))
}

/// Render a template like `{{.ID}}\t{{.Names}}` or `{{json .State}}`
/// against a JSON value. Unknown fields render as `<no value>`, as Go does.
pub fn template(tpl: &str, v: &Value) -> anyhow::Result<String> {
    let tpl = tpl.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = tpl.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("unterminated action in template {tpl:?}"))?
            + start;
        let action = rest[start + 2..end].trim();
        let (json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        if !path.starts_with('.') {
            anyhow::bail!("unsupported template action {{{{{action}}}}}");
        }
        let mut cur = v;
        let mut missing = false;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            match cur.get(key) {
                Some(x) => cur = x,
                None => {
                    missing = true;
                    break;
                }
            }
        }
        if missing {
            out.push_str("<no value>");
        } else if json {
            out.push_str(&serde_json::to_string(cur).unwrap_or_default());
        } else {
            out.push_str(&match cur {
                Value::String(s) => s.clone(),
                Value::Null => "<nil>".into(),
                Value::Array(a) => format!(
                    "[{}]",
                    a.iter()
                        .map(|x| x
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string()))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Value::Object(_) => format!("map{}", cur),
                other => other.to_string(),
            });
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let v = serde_json::json!({"ID": "abc", "State": {"Status": "running", "ExitCode": 0}});
        assert_eq!(
            template("{{.ID}}\\t{{.State.Status}}", &v).unwrap(),
            "abc\trunning"
        );
        assert_eq!(
            template("{{json .State}}", &v).unwrap(),
            r#"{"ExitCode":0,"Status":"running"}"#
        );
        assert_eq!(template("{{.Nope}}", &v).unwrap(), "<no value>");
        assert!(template("{{.ID", &v).is_err());
    }

    #[test]
    fn sizes_and_tables() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(12_345_678), "12.346MB");
        assert_eq!(
            table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]),
            "A     BB\nxyz   1\n"
        );
    }
}
