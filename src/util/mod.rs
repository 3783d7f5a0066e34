//! Small helpers shared across layers.

pub mod csv;
pub mod procstat;
pub mod throttle;

/// A random token for the I/O side (API and session tokens, the browser's stand-in user
/// agent), from the operating system's generator. The sans-IO core never calls this: it
/// draws from the `sip::build::Ids` it was given.
pub fn random_token(len: usize) -> String {
    token_from(&mut rand::thread_rng(), len)
}

/// A token of `len` characters from `[a-z0-9]`, drawn from `rng`.
pub fn token_from(rng: &mut impl rand::Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// 256 bits from the operating system, to seed the engine's generator.
pub fn entropy() -> [u8; 32] {
    rand::random()
}

/// Masks a phone number for logs (personal data): keeps the first three and last two
/// characters of numbers long enough to stay useful for tracing, hides the rest.
pub fn mask_number(n: &str) -> String {
    let chars: Vec<char> = n.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let keep_tail = 2;
    let keep_head = 3.min(chars.len() - keep_tail - 1);
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_head || i >= chars.len() - keep_tail {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

/// A name that came from the network, fit for one log line: printable ASCII only (others
/// become `?`, so nobody can forge a line), at most 64 characters.
pub fn sanitize_for_log(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks() {
        assert_eq!(super::mask_number("01012345678"), "010******78");
        assert_eq!(super::mask_number("120"), "***");
        assert_eq!(super::mask_number("12345"), "12*45");
    }
}
