//! Sizes and durations as users write them: `64m`, `1.5g`, `30s`, `250ms`,
//! and back for display.

use std::time::Duration;

/// A size or duration that does not parse. The text is quoted as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid size: {0:?}")]
    Size(String),
    #[error("invalid duration: {0:?} (use e.g. 30s, 250ms, 2m)")]
    Duration(String),
}

/// `1024`, `64k`, `64m`, `1.5g`, `2t` (optionally with a trailing `b`, or
/// `ib` as [`format_size`] writes them: `64MiB`), in bytes, binary
/// multiples as Docker reads them.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim().to_ascii_lowercase();
    let invalid = || UnitError::Size(s.to_string());
    let split = t
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
        .map_or(t.len(), |(i, _)| i);
    let unit = t[split..].strip_suffix('b').unwrap_or(&t[split..]);
    let unit = unit
        .strip_suffix('i')
        .filter(|u| !u.is_empty())
        .unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(invalid()),
    };
    let n: f64 = t[..split].parse().map_err(|_| invalid())?;
    if !n.is_finite() || n < 0.0 || n * mult as f64 > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok((n * mult as f64) as u64)
}

/// Bytes for display, in the largest binary unit they fill: `256MiB`,
/// `1.5GiB`, `100B`.
pub fn format_size(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            return if n % size == 0 {
                format!("{}{unit}", n / size)
            } else {
                format!("{:.1}{unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n}B")
}

/// `30s`, `250ms`, `1.5s`, `2m`, `1h`, and Go's compound forms (`1m30s`,
/// `1h5m`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    let invalid = || UnitError::Duration(s.to_string());
    if t.is_empty() {
        return Err(invalid());
    }
    if let Ok(n) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(n).map_err(|_| invalid());
    }
    let mut rest = t;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(invalid)?;
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - digits);
        let n: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        let secs = match &rest[digits..digits + unit_len] {
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += n * secs;
        rest = &rest[digits + unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// The inverse of [`parse_duration`] for display: `30s`, `1.5s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_gos_compound_forms() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h5m"), Ok(Duration::from_secs(3900)));
        for bad in ["", "s", "1x", "1m30", "ms5", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2kib"), Ok(2 << 10));
        assert!(parse_size("1i").is_err());
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert!(parse_size("12x").is_err());
        assert!(parse_size("m").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(format_size(256 << 20), "256MiB");
        assert_eq!(format_size(3 << 29), "1.5GiB");
        assert_eq!(format_size(64 << 10), "64KiB");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        for d in ["30s", "250ms", "1.5s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }
}
