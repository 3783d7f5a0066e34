//! The digest header (`registrar::digest`): `Credentials::parse` of an Authorization or
//! Proxy-Authorization value, the expected response for it, the nonce check, and the
//! client side that answers a challenge (the same parser on a WWW-Authenticate value).
#![no_main]

use dasan::registrar::digest::{
    authorization, ct_eq, expected_response, Algorithm, Credentials, NonceKey,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    if let Some(c) = Credentials::parse(&header) {
        let alg = c.algorithm();
        for a in [Algorithm::Md5, Algorithm::Sha256] {
            let ha1 = a.hash("1001:dasan:pw");
            if let Some(e) = expected_response(a, &ha1, "REGISTER", &c) {
                let given = c.get("response").unwrap_or("");
                let _ = ct_eq(&e, &given.to_ascii_lowercase());
            }
        }
        if let Some(n) = c.get("nonce") {
            let key = NonceKey::new("fuzz".into());
            let ip = std::net::IpAddr::from([192, 0, 2, 1]);
            let _ = key.check(n, 1_700_000_000, ip, "dasan");
            let _ = key.check(n, u64::MAX, ip, "dasan");
            let _ = NonceKey::expiry(n);
            // A nonce we issue is accepted where it was issued.
            let ours = key.issue(1_700_000_000, "salt", ip, "dasan");
            assert_eq!(key.check(&ours, 1_700_000_000, ip, "dasan"), Some(true));
        }
        let _ = alg.map(Algorithm::name);
    }
    let _ = authorization(&header, "1001", "pw", "REGISTER", "sip:dasan", "cn");
});
