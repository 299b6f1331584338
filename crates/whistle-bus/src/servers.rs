//! NATS server lists as operators write them: `nats://a:4222,nats://b:4222`
//! (async-nats takes a list of addresses, not a comma-separated string).

use async_nats::ServerAddr;

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

#[cfg(test)]
mod tests {
    use super::parse_servers;

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
