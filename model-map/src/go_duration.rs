//! Go's `time.ParseDuration`, with its error texts: Ollama's `keep_alive`
//! strings go through it, so the emulator answers with it and the filter
//! checks with it before choosing an instance.

/// The `quote` of Go's time package: `"` and `\\` escaped, every byte
/// of a control or non-ASCII character as `\xNN`.
fn time_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out.push('"');
    out
}

/// Parses a Go duration string (`"1h2m"`, `"-1m"`, `"500ms"`, `"0"`) into
/// signed nanoseconds, with `time.ParseDuration`'s error texts.
pub fn parse_go_duration(orig: &str) -> Result<i128, String> {
    let quoted = time_quote(orig);
    let invalid = || format!("time: invalid duration {quoted}");
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while let Some(&b) = s.as_bytes().first() {
        if !(b == b'.' || b.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if s.starts_with('.') {
            s = &s[1..];
            let frac_len = s.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &s[..frac_len];
            s = &s[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                let unit = time_quote(unit);
                return Err(format!("time: unknown unit {unit} in duration {quoted}"));
            }
        };
        let number: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            frac_part
        )
        .trim_end_matches('.')
        .parse()
        .map_err(|_| invalid())?;
        total += number * scale;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let ns = total as i128;
    Ok(if neg { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5m"), Ok(300_000_000_000));
        assert_eq!(parse_go_duration("-1m"), Ok(-60_000_000_000));
        assert_eq!(parse_go_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(parse_go_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(
            parse_go_duration("-1"),
            Err("time: missing unit in duration \"-1\"".into())
        );
        assert_eq!(
            parse_go_duration("abc"),
            Err("time: invalid duration \"abc\"".into())
        );
        assert_eq!(
            parse_go_duration("5x"),
            Err("time: unknown unit \"x\" in duration \"5x\"".into())
        );
        // time.quote writes control and non-ASCII bytes as \xNN
        assert_eq!(
            parse_go_duration("a\n\u{e9}\"\u{fffd}"),
            Err("time: invalid duration \"a\\x0a\\xc3\\xa9\\\"\\xef\\xbf\\xbd\"".into())
        );
        assert_eq!(
            parse_go_duration("5\u{b5}x"),
            Err("time: unknown unit \"\\xc2\\xb5x\" in duration \"5\\xc2\\xb5x\"".into())
        );
    }
}
