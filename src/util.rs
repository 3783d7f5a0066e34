//! Small helpers shared across layers.

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

#[cfg(test)]
mod tests {
    #[test]
    fn masks() {
        assert_eq!(super::mask_number("01012345678"), "010******78");
        assert_eq!(super::mask_number("120"), "***");
        assert_eq!(super::mask_number("12345"), "12*45");
    }
}
