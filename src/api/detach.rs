//! Detach keys: the key sequence that, typed into an attached terminal,
//! ends the attach and leaves the container (or exec) running. Docker's
//! default is ctrl-p then ctrl-q; `detachKeys` (attach) and `DetachKeys`
//! (exec) name others, as `ctrl-x,y`.

/// Docker's default sequence.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

/// The bytes of a sequence such as `ctrl-p,ctrl-q` or `a,ctrl-@`.
pub fn parse(spec: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("Invalid detach keys ({spec}) provided");
    let mut out = Vec::new();
    for key in spec.split(',') {
        let key = key.trim();
        let byte = match key.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                b @ b'a'..=b'z' => b - b'a' + 1,
                b @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_') => b - b'@',
                _ => return Err(bad()),
            },
            Some(_) => return Err(bad()),
            None if key == "DEL" => 127,
            None if key.len() == 1 => key.as_bytes()[0],
            None => return Err(bad()),
        };
        out.push(byte);
    }
    Ok(out)
}

/// Finds the sequence in a stream of input, holding back the bytes of a
/// partial match until it is known not to be one.
#[derive(Debug)]
pub struct Escape {
    keys: Vec<u8>,
    matched: usize,
}

impl Escape {
    pub fn new(keys: Vec<u8>) -> Self {
        Escape { keys, matched: 0 }
    }

    /// Append to `out` what of `input` goes to the process; true once
    /// the whole sequence was typed (what follows it is dropped).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return false;
        }
        for &b in input {
            if self.matched > 0 && b != self.keys[self.matched] {
                // Not the sequence after all: what was held goes through,
                // and this byte may start it again.
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
            }
            if b != self.keys[self.matched] {
                out.push(b);
                continue;
            }
            self.matched += 1;
            if self.matched == self.keys.len() {
                self.matched = 0;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_parse_as_docker_reads_them() {
        assert_eq!(parse(DEFAULT).unwrap(), [16, 17]);
        assert_eq!(
            parse("a,ctrl-@,ctrl-[,ctrl-_,DEL").unwrap(),
            [b'a', 0, 27, 31, 127]
        );
        for bad in ["ctrl-", "ctrl-1", "ab", "", "ctrl-p,,ctrl-q", "ctrl-P"] {
            assert!(parse(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn the_sequence_is_found_across_reads_and_near_misses_pass_through() {
        let mut e = Escape::new(parse(DEFAULT).unwrap());
        let mut out = Vec::new();
        assert!(!e.feed(b"ls\x10", &mut out));
        assert_eq!(out, b"ls");
        // ctrl-p then not ctrl-q: both go through.
        assert!(!e.feed(b"x", &mut out));
        assert_eq!(out, b"ls\x10x");
        // ctrl-p ctrl-p ctrl-q: the first goes through, then detach.
        out.clear();
        assert!(e.feed(b"\x10\x10\x11after", &mut out));
        assert_eq!(out, b"\x10");
        // Across two reads.
        let mut e = Escape::new(parse(DEFAULT).unwrap());
        out.clear();
        assert!(!e.feed(b"a\x10", &mut out));
        assert!(e.feed(b"\x11", &mut out));
        assert_eq!(out, b"a");
        let mut one = Escape::new(parse("q").unwrap());
        out.clear();
        assert!(one.feed(b"abq", &mut out));
        assert_eq!(out, b"ab");
    }
}
