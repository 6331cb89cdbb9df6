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

/// Does the segment pattern match the path? `**` matches any number of
/// segments. Dynamic programming over (pattern, path) positions, so a
/// hostile `.dockerignore` of many `**` costs time linear in each, never
/// exponential.
fn match_segs(pat: &[String], path: &[&str]) -> bool {
    // row[j]: does pat[i..] match path[j..]? Computed from the last i up.
    let mut row = vec![false; path.len() + 1];
    row[path.len()] = true;
    for p in pat.iter().rev() {
        let mut next = vec![false; path.len() + 1];
        for j in (0..=path.len()).rev() {
            next[j] = if p == "**" {
                row[j] || (j < path.len() && next[j + 1])
            } else {
                j < path.len() && row[j + 1] && glob(p.as_bytes(), path[j].as_bytes())
            };
        }
        row = next;
    }
    row[0]
}

enum Tok<'a> {
    Star,
    Any,
    Class { neg: bool, set: &'a [u8] },
    Lit(u8),
}

fn tokens(mut p: &[u8]) -> Option<Vec<Tok<'_>>> {
    let mut out = Vec::new();
    while let Some((&c, rest)) = p.split_first() {
        p = rest;
        out.push(match c {
            b'*' => Tok::Star,
            b'?' => Tok::Any,
            b'[' => {
                let end = p.iter().position(|&c| c == b']')?;
                let (class, after) = (&p[..end], &p[end + 1..]);
                p = after;
                match class.first() {
                    Some(b'^') | Some(b'!') => Tok::Class {
                        neg: true,
                        set: &class[1..],
                    },
                    _ => Tok::Class {
                        neg: false,
                        set: class,
                    },
                }
            }
            b'\\' if !p.is_empty() => {
                let l = p[0];
                p = &p[1..];
                Tok::Lit(l)
            }
            c => Tok::Lit(c),
        });
    }
    Some(out)
}

fn in_class(set: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == b'-' {
            if set[i] <= c && c <= set[i + 2] {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// One path segment: `*`, `?`, `[a-z]`/`[^x]` classes, `\` escapes. Time
/// is the product of the lengths (no backtracking blow-up on `***...`).
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    let Some(toks) = tokens(p) else {
        return false;
    };
    // row[j]: do toks[i..] match s[j..]?
    let mut row = vec![false; s.len() + 1];
    row[s.len()] = true;
    for t in toks.iter().rev() {
        let mut next = vec![false; s.len() + 1];
        for j in (0..=s.len()).rev() {
            next[j] = match t {
                Tok::Star => row[j] || (j < s.len() && next[j + 1]),
                _ if j == s.len() => false,
                Tok::Any => row[j + 1],
                Tok::Class { neg, set } => row[j + 1] && in_class(set, s[j]) != *neg,
                Tok::Lit(c) => row[j + 1] && s[j] == *c,
            };
        }
        row = next;
    }
    row[0]
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

    #[test]
    fn many_stars_take_linear_time() {
        // Found by the `dockerfile` fuzz target: 85 `*` backtracked for
        // longer than 20 minutes.
        let stars = "*".repeat(200);
        assert!(!glob(
            format!("{stars}x").as_bytes(),
            "a".repeat(200).as_bytes()
        ));
        assert!(glob(stars.as_bytes(), b"anything"));
        let deep = vec!["**"; 200].join("/") + "/x";
        let ig = Ignore::parse(&deep);
        assert!(!ig.excluded(&vec!["a"; 200].join("/")));
        assert!(ig.excluded("a/b/x"));
        assert!(glob(b"a\\*b", b"a*b") && !glob(b"a\\*b", b"axb"));
        assert!(glob(b"[!a-c]?", b"dz") && !glob(b"[!a-c]?", b"bz") && !glob(b"[ab", b"a"));
    }
}
