//! `.dockerignore`: Go `filepath.Match` patterns with `**`, `!` exceptions,
//! last match wins, applied to paths relative to the context root.

pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    pub fn parse(src: &str) -> Self {
        let mut rules = Vec::new();
        for line in src.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (neg, pat) = match t.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, t),
            };
            let clean = crate::fsutil::clean_abs(pat);
            let segs: Vec<String> = clean
                .trim_start_matches('/')
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if !segs.is_empty() {
                rules.push((neg, segs));
            }
        }
        Ignore { rules }
    }

    /// Is this context-relative path excluded? A path is also excluded when
    /// one of its parent directories matches.
    pub fn excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let mut out = false;
        for (neg, pat) in &self.rules {
            let hit = (1..=parts.len()).any(|n| match_segs(pat, &parts[..n]));
            if hit {
                out = !neg;
            }
        }
        out
    }
}

fn match_segs(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|i| match_segs(rest, &path[i..])),
        Some((p, rest)) => {
            !path.is_empty()
                && glob(p.as_bytes(), path[0].as_bytes())
                && match_segs(rest, &path[1..])
        }
    }
}

/// One path segment: `*`, `?`, `[a-z]`/`[^x]` classes, `\` escapes.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().position(|&c| c == b']') else {
                return false;
            };
            let (class, after) = (&rest[..end], &rest[end + 1..]);
            let Some((&c, s_rest)) = s.split_first() else {
                return false;
            };
            let (neg, class) = match class.first() {
                Some(b'^') | Some(b'!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob(after, s_rest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            !s.is_empty() && s[0] == rest[0] && glob(&rest[1..], &s[1..])
        }
        Some((&c, rest)) => !s.is_empty() && s[0] == c && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse("# c\ntarget\n*.tmp\n**/secret*\n!keep.tmp\ndocs/[a-c]*.md\n");
        assert!(ig.excluded("target"));
        assert!(ig.excluded("target/debug/x"));
        assert!(ig.excluded("a.tmp"));
        assert!(!ig.excluded("keep.tmp"));
        assert!(ig.excluded("deep/dir/secret.key"));
        assert!(ig.excluded("docs/b.md"));
        assert!(!ig.excluded("docs/z.md"));
        assert!(!ig.excluded("src/main.rs"));
    }
}
