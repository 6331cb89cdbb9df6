//! `--device HOST[:CONTAINER][:PERMISSIONS]`, as the docker CLI reads it.

/// Is `s` a device access mode: one to three of `r`, `w`, `m`, each once?
pub fn valid_access(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 3
        && s.chars().all(|c| "rwm".contains(c))
        && s.chars().collect::<std::collections::BTreeSet<_>>().len() == s.len()
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`, split as the docker CLI
/// splits it: (host path, container path, permissions).
pub fn parse_device_flag(flag: &str) -> Result<(String, String, String), String> {
    let parts: Vec<&str> = flag.split(':').collect();
    let (src, dst, perms) = match parts[..] {
        [src] => (src, src, "rwm"),
        [src, second] if valid_access(second) => (src, src, second),
        [src, dst] => (src, dst, "rwm"),
        [src, dst, perms] => (src, dst, perms),
        _ => return Err(format!("invalid device specification: {flag}")),
    };
    if !valid_access(perms) {
        return Err(format!("invalid device mode: {perms}"));
    }
    if !dst.starts_with('/') {
        return Err(format!(
            "invalid device specification: {flag}: the container path must be absolute"
        ));
    }
    Ok((src.to_string(), dst.to_string(), perms.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flags_split_as_the_docker_cli_splits_them() {
        let p = |s| parse_device_flag(s);
        assert_eq!(
            p("/dev/fuse").unwrap(),
            ("/dev/fuse".into(), "/dev/fuse".into(), "rwm".into())
        );
        assert_eq!(
            p("/dev/fuse:r").unwrap(),
            ("/dev/fuse".into(), "/dev/fuse".into(), "r".into())
        );
        assert_eq!(
            p("/dev/null:/dev/mynull").unwrap(),
            ("/dev/null".into(), "/dev/mynull".into(), "rwm".into())
        );
        assert_eq!(p("/dev/null:/dev/n:rw").unwrap().2, "rw");
        assert!(p("/dev/null:/dev/n:rwx").unwrap_err().contains("rwx"));
        assert!(p("/dev/null:n").unwrap_err().contains("absolute"));
        assert!(p("a:b:c:d").is_err());
    }
}
