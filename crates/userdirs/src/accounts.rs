//! Users from the system's user database (NSS: files, LDAP, sssd...). These calls may block on
//! the network: the daemon runs them off its event loop.

/// What the runtime dir needs of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

/// A failed lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no user named {0:?}")]
    NoSuchName(String),
    #[error("no user with uid {0}")]
    NoSuchUid(u32),
    #[error("give a user name or a uid, not both and not neither")]
    Ambiguous,
    #[error("unable to look up {what}: {why}")]
    Nss { what: String, why: String },
}

/// Looks up by name or by uid (exactly one).
pub fn lookup(name: Option<&str>, uid: Option<u32>) -> Result<Account, LookupError> {
    let found = match (name, uid) {
        (Some(n), None) => nix::unistd::User::from_name(n)
            .map_err(|e| LookupError::Nss {
                what: format!("user {n:?}"),
                why: e.to_string(),
            })?
            .ok_or_else(|| LookupError::NoSuchName(n.to_owned()))?,
        (None, Some(u)) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
            .map_err(|e| LookupError::Nss {
                what: format!("uid {u}"),
                why: e.to_string(),
            })?
            .ok_or(LookupError::NoSuchUid(u))?,
        _ => return Err(LookupError::Ambiguous),
    };
    Ok(Account {
        uid: found.uid.as_raw(),
        gid: found.gid.as_raw(),
        name: found.name,
    })
}

/// Whether the user and group databases are local files only, judged from nsswitch.conf(5)
/// text (`None`: no such file, as with musl, which only reads /etc/passwd). Lookups then
/// cannot block on a network (LDAP, sssd), so a daemon may do them on its event loop.
pub fn nss_is_local(nsswitch: Option<&str>) -> bool {
    let Some(text) = nsswitch else { return true };
    ["passwd", "group"].iter().all(|db| {
        let line = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .find(|l| l.split(':').next().map(str::trim) == Some(db));
        match line.and_then(|l| l.split_once(':')) {
            // Default sources when the database is not listed: glibc uses "files" (and more on
            // some builds), so be careful and call that non-local.
            None => false,
            Some((_, sources)) => sources
                .split_whitespace()
                .filter(|s| !s.starts_with('['))
                .all(|s| matches!(s, "files" | "compat")),
        }
    })
}

/// Whether `name` can be a file name in the linger directory: a plausible user name.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'$'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_root_both_ways_and_reports_missing() {
        let r = lookup(Some("root"), None).unwrap();
        assert_eq!(
            r,
            Account {
                uid: 0,
                gid: 0,
                name: "root".into()
            }
        );
        assert_eq!(lookup(None, Some(0)).unwrap(), r);
        assert_eq!(
            lookup(Some("no-such-user-xyz"), None),
            Err(LookupError::NoSuchName("no-such-user-xyz".into()))
        );
        assert_eq!(
            lookup(None, Some(3_999_999)),
            Err(LookupError::NoSuchUid(3_999_999))
        );
        assert_eq!(lookup(None, None), Err(LookupError::Ambiguous));
        assert_eq!(lookup(Some("root"), Some(0)), Err(LookupError::Ambiguous));
    }

    #[test]
    fn nsswitch_locality() {
        assert!(nss_is_local(None));
        assert!(nss_is_local(Some(
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
        )));
        assert!(nss_is_local(Some(
            "passwd:         compat\ngroup:          compat [NOTFOUND=return] files\n"
        )));
        assert!(!nss_is_local(Some(
            "passwd: files systemd\ngroup: files systemd\n"
        )));
        assert!(!nss_is_local(Some("passwd: files ldap\ngroup: files\n")));
        assert!(!nss_is_local(Some("passwd: sss files\ngroup: files\n")));
        assert!(
            !nss_is_local(Some("hosts: files\n")),
            "unlisted databases are not assumed local"
        );
        assert!(nss_is_local(Some(
            "# passwd: ldap\npasswd: files # ldap\ngroup: files\n"
        )));
    }

    #[test]
    fn user_names_for_files() {
        for ok in ["alice", "a.b", "svc-1", "u_2", "machine$"] {
            assert!(valid_user_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "..", "a b", "x\n"] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }
}
