//! A message too long for a robot, in parts: WeCom takes at most 4096 bytes
//! of markdown, DingTalk refuses bodies over 20 KB. Rather than cut what a
//! storm summary or a digest says, it goes as several messages, split at
//! line ends (a single overlong line at a character boundary). Pure.

/// The length in bytes of the first part of `text` whose `cost` is at most
/// `max`: whole lines while they fit, else as many characters of the first
/// line as fit (at least one character, so every call makes progress).
pub fn first_part(text: &str, max: usize, cost: impl Fn(&str) -> usize) -> usize {
    if cost(text) <= max {
        return text.len();
    }
    // Whole lines: the longest prefix ending at a newline that fits.
    let mut best = 0;
    for (i, _) in text.match_indices('\n') {
        let end = i + 1;
        if cost(&text[..end]) <= max {
            best = end;
        } else {
            break;
        }
    }
    if best > 0 {
        return best;
    }
    // One overlong line: characters while they fit.
    let mut end = 0;
    for (i, c) in text.char_indices() {
        let next = i + c.len_utf8();
        if cost(&text[..next]) > max {
            break;
        }
        end = next;
    }
    end.max(text.chars().next().map_or(0, char::len_utf8))
}

/// The bytes a text takes once written as a JSON string (quotes left out).
pub fn json_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(s.len(), |j| j.len() - 2)
}

/// Every part of `text`, in order (for tests and the drill).
pub fn split(text: &str, max: usize, cost: impl Fn(&str) -> usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let n = first_part(rest, max, &cost);
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_one_part() {
        assert_eq!(split("a\nb", 10, str::len), ["a\nb"]);
        assert!(split("", 10, str::len).is_empty());
    }

    #[test]
    fn parts_end_at_lines_and_nothing_is_lost() {
        let lines: Vec<String> = (0..200).map(|k| format!("> 积水点{k:03} 21.5 cm\n")).collect();
        let text = lines.concat();
        let parts = split(&text, 4096, str::len);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() <= 4096 && p.ends_with('\n')));
        assert_eq!(parts.concat(), text, "every byte once, in order");
    }

    #[test]
    fn an_overlong_line_is_cut_at_a_character_boundary() {
        let line = "长".repeat(100);
        let parts = split(&line, 31, str::len);
        assert!(parts.iter().all(|p| p.len() <= 31 && p.chars().all(|c| c == '长')));
        assert_eq!(parts.concat(), line);
        assert_eq!(split("长", 1, str::len), ["长"], "a character too big for the limit still goes");
    }

    #[test]
    fn the_cost_can_be_the_json_size() {
        let text = "\"引号\"\n".repeat(50);
        for p in split(&text, 60, json_len) {
            assert!(json_len(p) <= 60, "{p:?}");
        }
        assert_eq!(json_len("a\"b\n"), 6);
    }
}
