//! `--user` resolved against an image's own `/etc/passwd` and `/etc/group`,
//! as Docker resolves it, read out of the image and bounded in size.

use crate::engine::backend::{Engine, EngineError};
use crate::image::{Image, ImageError};

/// Why `--user` could not be resolved, in Docker's words.
#[derive(Debug, thiserror::Error)]
pub(super) enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error(transparent)]
    Read(#[from] ImageError),
}

/// Reads `etc/passwd` or `etc/group` of an image ("" if it has none).
pub(super) type ReadFile<'a> = dyn Fn(&str) -> Result<String, ImageError> + 'a;

/// `/etc/passwd` or `/etc/group` larger than this is refused: a hostile
/// image could make it endless (or a link to `/dev/zero`).
pub(super) const MAX_USER_DB: u64 = 1 << 20;

/// Resolve `--user` (name, uid, `uid:gid`, `name:group`) against a root
/// filesystem's `etc/passwd` and `etc/group`, read through `read` (given
/// those relative paths). A uid without a passwd entry gets gid 0.
pub(super) fn parse_user(user: &str, read: &ReadFile) -> Result<(u32, u32), UserError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user
        .split_once(':')
        .map_or((user, None), |(u, g)| (u, Some(g)));
    let numeric = u.parse::<u32>().ok();
    let passwd = read("etc/passwd")?;
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| {
            f.len() > 3
                && if numeric.is_some() {
                    f[2] == u
                } else {
                    f[0] == u
                }
        });
    let (uid, mut gid) = match (numeric, &entry) {
        (Some(uid), e) => (uid, e.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0)),
        (None, Some(f)) => match (f[2].parse(), f[3].parse()) {
            (Ok(uid), Ok(gid)) => (uid, gid),
            _ => return Err(UserError::NoUser(user.to_string())),
        },
        (None, None) => return Err(UserError::NoUser(user.to_string())),
    };
    if let Some(g) = g {
        gid = group_id(g, read)?;
    }
    Ok((uid, gid))
}

/// A group by number, or by name in `etc/group`.
fn group_id(g: &str, read: &ReadFile) -> Result<u32, UserError> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    read("etc/group")?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == g)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| UserError::NoGroup(g.to_string()))
}

/// The process's supplementary groups, as Docker gives them: the groups
/// `etc/group` lists the user in (by name), then each `--group-add`.
pub(super) fn supplementary_groups(
    user: &str,
    group_add: &[String],
    read: &ReadFile,
) -> Result<Vec<u32>, UserError> {
    let name = user.split(':').next().unwrap_or("");
    let mut gids = Vec::new();
    if !name.is_empty() && name.parse::<u32>().is_err() {
        for f in read("etc/group")?
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
        {
            if f.len() > 3 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse() {
                    gids.push(g);
                }
            }
        }
    }
    for g in group_add {
        gids.push(group_id(g, read)?);
    }
    gids.dedup();
    Ok(gids)
}

/// `--user` against the image's own `/etc/passwd` and `/etc/group`.
pub(super) fn resolve_user(
    engine: &Engine,
    img: &Image,
    user: &str,
    group_add: &[String],
) -> Result<(u32, u32, Vec<u32>), EngineError> {
    let read = |path: &str| -> Result<String, ImageError> {
        crate::image::layer::read_image_file_max(
            &engine.images,
            &img.manifest,
            &format!("/{path}"),
            MAX_USER_DB,
        )
        .map(|b| {
            b.map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        })
    };
    let named = |e: UserError| {
        EngineError::InvalidArgument(format!(
            "{e} of image {}",
            img.refs.first().map(|r| r.familiar()).unwrap_or_default()
        ))
    };
    let (uid, gid) = parse_user(user, &read).map_err(named)?;
    let groups = supplementary_groups(user, group_add, &read).map_err(named)?;
    Ok((uid, gid, groups))
}

#[cfg(test)]
mod tests {
    use super::parse_user;

    #[test]
    fn users_resolve_like_docker() {
        let read = |f: &str| {
            Ok(match f {
                "etc/passwd" => {
                    "root:x:0:0::/root:/bin/sh\nada:x:1234:100::/:/bin/sh\n".to_string()
                }
                "etc/group" => "root:x:0:\nstaff:x:50:\n".to_string(),
                _ => String::new(),
            })
        };
        let ids = |u: &str| parse_user(u, &read).unwrap();
        assert_eq!(ids(""), (0, 0));
        assert_eq!(ids("ada"), (1234, 100));
        assert_eq!(ids("1234"), (1234, 100));
        assert_eq!(ids("999"), (999, 0));
        assert_eq!(ids("ada:staff"), (1234, 50));
        assert_eq!(ids("ada:7"), (1234, 7));
        let e = |u: &str| parse_user(u, &read).unwrap_err().to_string();
        assert!(e("bob").contains("user bob"));
        assert!(e("ada:nogroup").contains("group nogroup"));
    }
}
