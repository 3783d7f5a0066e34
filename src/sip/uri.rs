//! Request-URI and Contact URIs: `sip:`/`sips:` through rsip, `tel:` (RFC 3966) here.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<String>,
}

/// The called number: the user part of a sip URI or the number of a tel URI, with visual
/// separators removed (RFC 3966 5.1.1).
pub fn dialled_number(uri: &str) -> Option<String> {
    let uri = uri.trim();
    if let Some(tel) = strip_scheme(uri, "tel") {
        let number = tel.split(';').next().unwrap_or("");
        let digits: String = number
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
            .collect();
        return (!digits.is_empty()).then_some(digits);
    }
    let parsed = parse_sip_uri(uri)?;
    let user = parsed.user?;
    // "user=phone" style numbers may carry separators too.
    let user = user.split(';').next().unwrap_or("").to_string();
    Some(
        user.chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
            .collect(),
    )
}

fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = uri.split_once(':')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// Whether `uri` can stand in a request line as the parser reads one: a scheme, and no
/// whitespace or control characters (RFC 3261 25.1). A URI taken from a peer (Contact) to
/// address later requests must pass this, or those requests would not parse.
pub fn is_request_uri(uri: &str) -> bool {
    uri.contains(':')
        && !uri
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
}

pub fn parse_sip_uri(uri: &str) -> Option<SipUri> {
    let Ok(parsed) = rsip::Uri::try_from(uri.trim()) else {
        return parse_sip_uri_fallback(uri.trim());
    };
    match parsed.scheme {
        Some(rsip::Scheme::Sip) | Some(rsip::Scheme::Sips) => {}
        _ => return None,
    }
    let host = match parsed.host() {
        rsip::Host::Domain(d) => d.to_string(),
        rsip::Host::IpAddr(ip) => ip.to_string(),
    };
    Some(SipUri {
        user: parsed.user().map(str::to_string),
        host,
        port: parsed.port().map(|p| *p.value()),
        transport: parsed.transport().map(|t| t.to_string()),
    })
}

/// What rsip 0.4 rejects but RFC 3261 19.1 allows, IPv6 references among them.
fn parse_sip_uri_fallback(uri: &str) -> Option<SipUri> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let rest = rest.split('?').next().unwrap_or("");
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let mut parts = hostpart.split(';');
    let (host, port) = crate::sip::message::split_host_port(parts.next()?)?;
    if host.is_empty() {
        return None;
    }
    let transport = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("transport"))
        .map(|(_, v)| v.to_string());
    Some(SipUri {
        user: userinfo.map(|u| u.split(':').next().unwrap_or("").to_string()),
        host,
        port,
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(dialled_number("sip:120@127.0.0.1").as_deref(), Some("120"));
        assert_eq!(dialled_number("sip:120@[::1]:5060").as_deref(), Some("120"));
        assert_eq!(
            dialled_number("tel:1-2-0;phone-context=+82").as_deref(),
            Some("120")
        );
        assert_eq!(dialled_number("TEL:+82-2-120").as_deref(), Some("+822120"));
        assert_eq!(dialled_number("mailto:x@y"), None);
        assert_eq!(dialled_number("sip:host.only"), None);
    }

    #[test]
    fn contact() {
        let u = parse_sip_uri("sip:1001-0xabc@127.0.0.1:5072;transport=tcp").unwrap();
        assert_eq!(u.user.as_deref(), Some("1001-0xabc"));
        assert_eq!(u.port, Some(5072));
        assert_eq!(u.host, "127.0.0.1");
    }
}
