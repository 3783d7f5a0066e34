//! Dial patterns for the outbound allow- and deny-lists, in the notation telephony
//! operators know from PBX dialplans: digits and `+` match themselves, `X` any digit,
//! `Z` 1-9, `N` 2-9, `[1-5]` or `[147]` one digit of a set, and a final `.` one or more
//! further digits, a final `!` zero or more. `0Z.` is "0, then 1-9, then anything":
//! Korea's domestic numbers (02…, 031…, 010…) and not its international prefixes (00…).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    Set(Vec<u8>),
}

#[derive(Clone, PartialEq, Eq)]
pub struct NumberPattern {
    text: String,
    elems: Vec<Elem>,
    /// After the fixed elements: how many more digits at least, if any more are allowed.
    tail: Option<usize>,
}

impl fmt::Debug for NumberPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl NumberPattern {
    pub fn parse(text: &str) -> Result<NumberPattern, String> {
        let bad = |why: &str| format!("dial pattern {text:?}: {why}");
        let mut elems = Vec::new();
        let mut tail = None;
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if tail.is_some() {
                return Err(bad("'.' or '!' may only end a pattern"));
            }
            let set: Vec<u8> = match b[i] {
                c @ (b'0'..=b'9' | b'+' | b'*' | b'#') => vec![c],
                b'X' | b'x' => (b'0'..=b'9').collect(),
                b'Z' | b'z' => (b'1'..=b'9').collect(),
                b'N' | b'n' => (b'2'..=b'9').collect(),
                b'.' => {
                    tail = Some(1);
                    i += 1;
                    continue;
                }
                b'!' => {
                    tail = Some(0);
                    i += 1;
                    continue;
                }
                b'[' => {
                    let end = text[i..]
                        .find(']')
                        .map(|e| i + e)
                        .ok_or_else(|| bad("unclosed '['"))?;
                    let inner = &b[i + 1..end];
                    let mut set = Vec::new();
                    let mut j = 0;
                    while j < inner.len() {
                        let c = inner[j];
                        if !c.is_ascii_digit() {
                            return Err(bad("only digits and ranges inside [ ]"));
                        }
                        if inner.get(j + 1) == Some(&b'-') {
                            let hi = *inner.get(j + 2).ok_or_else(|| bad("range without end"))?;
                            if !hi.is_ascii_digit() || hi < c {
                                return Err(bad("bad range"));
                            }
                            set.extend(c..=hi);
                            j += 3;
                        } else {
                            set.push(c);
                            j += 1;
                        }
                    }
                    if set.is_empty() {
                        return Err(bad("empty [ ]"));
                    }
                    i = end;
                    set
                }
                _ => return Err(bad("use digits, +, X, Z, N, [..], and a final . or !")),
            };
            elems.push(Elem::Set(set));
            i += 1;
        }
        if elems.is_empty() {
            return Err(bad("empty"));
        }
        Ok(NumberPattern {
            text: text.to_string(),
            elems,
            tail,
        })
    }

    pub fn matches(&self, number: &str) -> bool {
        let n = number.as_bytes();
        if n.len() < self.elems.len() {
            return false;
        }
        let fixed = self
            .elems
            .iter()
            .zip(n)
            .all(|(Elem::Set(set), c)| set.contains(c));
        let rest = &n[self.elems.len()..];
        fixed
            && match self.tail {
                None => rest.is_empty(),
                Some(min) => rest.len() >= min && rest.iter().all(u8::is_ascii_digit),
            }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Which numbers the engine may dial out to: allowed by a pattern of `allow` and by no
/// pattern of `deny`.
#[derive(Debug, Clone, Default)]
pub struct OutboundRules {
    pub allow: Vec<NumberPattern>,
    pub deny: Vec<NumberPattern>,
}

impl OutboundRules {
    pub fn permits(&self, number: &str) -> bool {
        self.allow.iter().any(|p| p.matches(number)) && !self.deny.iter().any(|p| p.matches(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NumberPattern {
        NumberPattern::parse(s).unwrap()
    }

    #[test]
    fn the_default_lets_domestic_numbers_out_and_nothing_else() {
        let rules = OutboundRules {
            allow: vec![p("0Z.")],
            deny: vec![p("060!")],
        };
        for ok in ["0212345678", "0312345678", "01012345678", "0221330000"] {
            assert!(rules.permits(ok), "{ok}");
        }
        for no in [
            "001441234567", // international
            "00700123",     // international, another carrier
            "+441234567",   // international, E.164
            "0601234567",   // premium rate
            "112",          // not a subscriber number
            "0",
            "02x",
            "",
        ] {
            assert!(!rules.permits(no), "{no}");
        }
    }

    #[test]
    fn pattern_elements() {
        assert!(p("1XX").matches("120"));
        assert!(!p("1XX").matches("1200"));
        assert!(p("02!").matches("02"));
        assert!(!p("02.").matches("02"));
        assert!(p("[1-3]5").matches("25"));
        assert!(!p("[1-3]5").matches("45"));
        assert!(p("[147]").matches("7"));
        assert!(p("+82Z.").matches("+8221234567"));
        for bad in ["", "0.1", "[3-1]", "[", "0A", "[]"] {
            assert!(NumberPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
