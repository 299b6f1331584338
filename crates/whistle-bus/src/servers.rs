//! NATS server lists as operators write them: `nats://a:4222,nats://b:4222`
//! (async-nats takes a list of addresses, not a comma-separated string), and the
//! credentials written in them (`nats://user:password@host:4222`).

use async_nats::{ConnectOptions, ServerAddr};

/// Parses one URL or a comma-separated list of them.
pub fn parse_servers(urls: &str) -> Result<Vec<ServerAddr>, String> {
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<ServerAddr>()
                .map_err(|e| format!("NATS server {u:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("no NATS server given".to_owned());
    }
    Ok(servers)
}

/// The user and password written in the URLs (`nats://user:password@host:4222`,
/// percent-encoded as in any URL), from the first URL that names a user.
///
/// async-nats 0.51 parses them but never sends them, so a server with users and
/// permissions (deploy/nats) would refuse whistle; [`with_credentials`] passes them on.
pub fn credentials(servers: &[ServerAddr]) -> Option<(String, String)> {
    let server = servers.iter().find(|s| s.username().is_some())?;
    Some((
        percent_decode(server.username().unwrap_or_default()),
        percent_decode(server.password().unwrap_or_default()),
    ))
}

/// `options` with the credentials of `servers` (see [`credentials`]), if they name any.
pub fn with_credentials(options: ConnectOptions, servers: &[ServerAddr]) -> ConnectOptions {
    match credentials(servers) {
        Some((user, password)) => options.user_and_password(user, password),
        None => options,
    }
}

/// The URLs with any password replaced by `***`, for logs.
pub fn redacted(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let u = u.trim();
            let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
            match rest.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                    let sep = if scheme.is_empty() { "" } else { "://" };
                    format!("{scheme}{sep}{user}:***@{host}")
                }
                None => u.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `%XX` → byte; anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{credentials, parse_servers, redacted};

    #[test]
    fn logs_never_show_a_password() {
        assert_eq!(
            redacted("nats://whistle:s3cret@a:4222, nats://b:4222"),
            "nats://whistle:***@a:4222,nats://b:4222"
        );
        assert_eq!(redacted("fire:pw@host:4222"), "fire:***@host:4222");
        assert!(!redacted("nats://u:p%40ss@h:1").contains("ss"));
    }

    #[test]
    fn credentials_come_from_the_url_decoded() {
        let servers = parse_servers("nats://a:1,nats://fire:p%40ss%2Fw0rd@b:2").expect("urls");
        assert_eq!(
            credentials(&servers),
            Some(("fire".to_owned(), "p@ss/w0rd".to_owned()))
        );
        assert_eq!(
            credentials(&parse_servers("nats://a:1").expect("url")),
            None
        );
    }

    #[test]
    fn one_or_many() {
        assert_eq!(
            parse_servers("nats://127.0.0.1:4222").map(|s| s.len()),
            Ok(1)
        );
        assert_eq!(
            parse_servers("nats://a:1, nats://b:2,nats://c:3").map(|s| s.len()),
            Ok(3)
        );
        assert!(parse_servers("").is_err());
        assert!(parse_servers("nats://a:notaport").is_err());
    }
}
