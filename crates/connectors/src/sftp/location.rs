//! `sftp://user@host:port/dir`: where a remote folder is.

/// A parsed `sftp://` folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) user: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The folder as the server resolves it: absolute (`/srv/erp`) or, written `/~/dir`, relative to the
    /// user's login folder (`dir`; empty for the login folder itself).
    pub(crate) dir: String,
}

/// Whether a `path` option names a remote folder.
pub(crate) fn is_remote(path: &str) -> bool {
    path.trim_start().to_ascii_lowercase().starts_with("sftp://")
}

impl Location {
    /// Parses `sftp://user@host[:port]/dir`. A password in the URL is refused: it belongs in a secret.
    pub(crate) fn parse(url: &str) -> Result<Location, String> {
        let url = url.trim();
        let rest = url.get(..7).filter(|s| s.eq_ignore_ascii_case("sftp://")).map(|_| &url[7..]).ok_or("must start with sftp://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/~"),
        };
        let (user, host_port) = authority.rsplit_once('@').ok_or("must name the user: sftp://user@host:port/dir")?;
        if user.contains(':') {
            return Err("must not carry a password: write password = { secret = \"NAME\" } instead".into());
        }
        if user.is_empty() {
            return Err("names no user before @".into());
        }
        let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("has an unclosed [ in the host")?;
            (host, after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return Err("names no host".into());
        }
        let port = match port {
            None => 22,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("port {p:?} is not a port number"))?,
        };
        let dir = match path.strip_prefix("/~") {
            Some(home) if home.is_empty() || home.starts_with('/') => home.trim_start_matches('/').trim_end_matches('/').to_owned(),
            _ => {
                let d = path.trim_end_matches('/');
                if d.is_empty() { "/".to_owned() } else { d.to_owned() }
            }
        };
        Ok(Location { user: user.to_owned(), host: host.to_owned(), port, dir })
    }

    /// The remote path of a file (or folder) in the folder; `""` is the folder itself.
    pub(crate) fn path_of(&self, name: &str) -> String {
        if name.is_empty() {
            return self.dir.clone();
        }
        super::client::join(&self.dir, name)
    }

    /// How messages name a remote path: as a URL (never with a password: there is none in it).
    pub(crate) fn url_of(&self, path: &str) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let path = if path.is_empty() { self.dir.as_str() } else { path };
        let path = if path.starts_with('/') { path.to_owned() } else if path.is_empty() { "/~".to_owned() } else { format!("/~/{path}") };
        format!("sftp://{}@{host}:{}{path}", self.user, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_user_host_port_and_an_absolute_or_home_relative_folder() {
        let l = Location::parse("sftp://erp@files.example.com:2222/srv/exports/").unwrap();
        assert_eq!((l.user.as_str(), l.host.as_str(), l.port, l.dir.as_str()), ("erp", "files.example.com", 2222, "/srv/exports"));
        assert_eq!(l.path_of("products.csv"), "/srv/exports/products.csv");
        assert_eq!(l.url_of("/srv/exports/products.csv"), "sftp://erp@files.example.com:2222/srv/exports/products.csv");

        let l = Location::parse("SFTP://erp@10.0.0.5/~/outbox").unwrap();
        assert_eq!((l.port, l.dir.as_str()), (22, "outbox"));
        assert_eq!(l.path_of("orders.csv"), "outbox/orders.csv");
        assert_eq!(l.url_of("outbox/orders.csv"), "sftp://erp@10.0.0.5:22/~/outbox/orders.csv");

        let l = Location::parse("sftp://erp@[::1]:2022/").unwrap();
        assert_eq!((l.host.as_str(), l.port, l.dir.as_str()), ("::1", 2022, "/"));
        assert_eq!(Location::parse("sftp://erp@host").unwrap().dir, "");
    }

    #[test]
    fn a_password_in_the_url_a_missing_user_or_a_bad_port_is_refused_with_the_reason() {
        assert!(Location::parse("sftp://erp:hunter2@host/x").unwrap_err().contains("secret"));
        assert!(Location::parse("sftp://host/x").unwrap_err().contains("user"));
        assert!(Location::parse("sftp://erp@host:99999/x").unwrap_err().contains("port"));
        assert!(Location::parse("ftp://erp@host/x").unwrap_err().contains("sftp://"));
        assert!(is_remote(" sftp://a@b/c") && !is_remote("exports/sftp"));
    }
}
