//! API bearer tokens and roles. Tokens come from the config, from `DASAN_API_TOKEN` (a
//! supervisor token for scripts), or, with neither, from a supervisor token generated at
//! first start and kept in `<data dir>/api-token` (mode 0600).

use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Supervisor,
    Reporting,
    Agent(String),
}

impl Role {
    /// Caller numbers are personal data: only supervisors see them in clear.
    pub fn sees_numbers(&self) -> bool {
        matches!(self, Role::Supervisor)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, Role>,
}

/// Where the supervisor token came from, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Config,
    Environment,
    Generated(PathBuf),
    Existing(PathBuf),
}

impl Tokens {
    pub fn from_list(list: impl IntoIterator<Item = (String, Role)>) -> Tokens {
        Tokens {
            by_token: list.into_iter().collect(),
        }
    }

    /// Config tokens, plus `env_token` as a supervisor; with neither, the token file in
    /// `data_dir` (created with a random token if missing).
    pub fn load(
        cfg: &crate::config::Config,
        env_token: Option<String>,
        data_dir: &Path,
    ) -> std::io::Result<(Tokens, Source)> {
        let mut list: Vec<(String, Role)> = cfg
            .http
            .tokens
            .iter()
            .map(|t| {
                let role = match t.role.get_ref().as_str() {
                    "supervisor" => Role::Supervisor,
                    "reporting" => Role::Reporting,
                    _ => Role::Agent(t.agent.clone().unwrap_or_default()),
                };
                (t.token.get_ref().clone(), role)
            })
            .collect();
        let mut source = Source::Config;
        if let Some(t) = env_token.filter(|t| !t.is_empty()) {
            list.push((t, Role::Supervisor));
            source = Source::Environment;
        } else if list.is_empty() {
            let path = data_dir.join("api-token");
            let (token, src) = match std::fs::read_to_string(&path) {
                Ok(t) if t.trim().len() >= 16 => (t.trim().to_string(), Source::Existing(path)),
                _ => {
                    let t = crate::util::random_token(32);
                    write_private(&path, &t)?;
                    (t, Source::Generated(path))
                }
            };
            list.push((token, Role::Supervisor));
            source = src;
        }
        Ok((Tokens::from_list(list), source))
    }

    /// The caller's role from `Authorization: Bearer …`, or the HTTP error to answer.
    pub fn check(&self, headers: &HeaderMap) -> Result<Role, (StatusCode, &'static str)> {
        let Some(value) = headers.get("authorization") else {
            return Err((
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer token",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or((
                StatusCode::UNAUTHORIZED,
                "Authorization must be 'Bearer <token>'",
            ))?;
        // Every stored token is compared, so timing does not reveal a matching prefix.
        let mut found = None;
        for (t, role) in &self.by_token {
            if constant_time_eq(t.as_bytes(), token.as_bytes()) {
                found = Some(role.clone());
            }
        }
        found.ok_or((StatusCode::UNAUTHORIZED, "unknown token"))
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", v.parse().unwrap());
        h
    }

    #[test]
    fn bearer_tokens_map_to_roles_and_bad_ones_are_401() {
        let t = Tokens::from_list([
            ("s".repeat(20), Role::Supervisor),
            ("a".repeat(20), Role::Agent("1001".into())),
        ]);
        assert_eq!(
            t.check(&headers(&format!("Bearer {}", "s".repeat(20)))),
            Ok(Role::Supervisor)
        );
        assert_eq!(
            t.check(&headers(&format!("Bearer {}", "a".repeat(20)))),
            Ok(Role::Agent("1001".into()))
        );
        assert_eq!(
            t.check(&HeaderMap::new()).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            t.check(&headers("Basic eHg=")).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            t.check(&headers("Bearer nope")).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn generated_token_is_private_and_kept_across_restarts() {
        let dir = std::env::temp_dir().join(format!("dasan-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("api-token"));
        let cfg = crate::config::Config::parse("", "t").unwrap();
        let (t1, s1) = Tokens::load(&cfg, None, &dir).unwrap();
        assert_eq!(s1, Source::Generated(dir.join("api-token")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("api-token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (t2, s2) = Tokens::load(&cfg, None, &dir).unwrap();
        assert_eq!(s2, Source::Existing(dir.join("api-token")));
        assert_eq!(
            t1.by_token.keys().collect::<Vec<_>>(),
            t2.by_token.keys().collect::<Vec<_>>()
        );
        let (t3, s3) = Tokens::load(&cfg, Some("e".repeat(20)), &dir).unwrap();
        assert_eq!(s3, Source::Environment);
        assert_eq!(
            t3.check(&headers(&format!("Bearer {}", "e".repeat(20)))),
            Ok(Role::Supervisor)
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
