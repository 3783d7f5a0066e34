//! CSV output for every export, safe to open in a spreadsheet: RFC 4180 quoting, and the
//! OWASP rule against formula injection (CSV injection): a field that starts with `=`,
//! `+`, `-`, `@`, a tab or a carriage return would be run as a formula by Excel, LibreOffice
//! or Google Sheets, so it gets a leading `'` (shown as text, the value otherwise intact).
//! Numbers are written by the same function; ours are never negative, so they pass as
//! they are, but a caller number `+8210…` comes out as `'+8210…`.

/// Characters that make a spreadsheet read a cell as a formula when they come first.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Appends one field: neutralised, then quoted if it holds a comma, a quote or a line end.
pub fn push_field(out: &mut String, v: &str) {
    let guard = v.starts_with(FORMULA_START);
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if guard {
            out.push('\'');
        }
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        if guard {
            out.push('\'');
        }
        out.push_str(v);
    }
}

/// Appends a row of fields and its line end.
pub fn push_row<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f.as_ref());
    }
    out.push('\n');
}

/// Reads CSV text back into rows (RFC 4180 quoting), for tests of the exports.
#[cfg(test)]
pub fn parse(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: &str) -> String {
        let mut s = String::new();
        push_field(&mut s, v);
        s
    }

    #[test]
    fn quotes_what_needs_quoting() {
        assert_eq!(field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(field("plain 한글"), "plain 한글");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field(""), "");
        assert_eq!(field("1795597200000"), "1795597200000");
    }

    #[test]
    fn formulas_are_neutralised_and_read_back_as_text() {
        for (v, want) in [
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("+82101234", "'+82101234"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
            ),
            ("a=b", "a=b"),
        ] {
            assert_eq!(field(v), want, "{v:?}");
        }
        let mut out = String::new();
        push_row(&mut out, &["=1+1", "-x,y", "ok", "\r\n@z"]);
        assert_eq!(parse(&out), vec![vec!["'=1+1", "'-x,y", "ok", "'\r\n@z"]]);
    }
}
