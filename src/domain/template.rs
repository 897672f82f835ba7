//! Item text templates: `{column}` is replaced by the catalog value; a `[...]` section is kept
//! only when every column inside it has a non-blank value. So
//! `"{title}[. {category}][. {description}]"` gives `"Mug. Kitchen"` for an item without a
//! description, never `"Mug. Kitchen. "`.

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Column(String),
    Optional(Vec<Piece>),
}

/// A parsed `text.template`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parse a template; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut chars = s.chars().peekable();
        let pieces = parse_pieces(&mut chars, false)?;
        if pieces.iter().all(|p| matches!(p, Piece::Literal(_))) {
            return Err(format!("template {s:?} names no column (use {{column}})"));
        }
        Ok(Template { pieces })
    }

    /// Catalog columns the template reads, in order of first use.
    pub fn columns(&self) -> Vec<String> {
        fn walk(pieces: &[Piece], out: &mut Vec<String>) {
            for p in pieces {
                match p {
                    Piece::Column(c) if !out.contains(c) => out.push(c.clone()),
                    Piece::Optional(inner) => walk(inner, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.pieces, &mut out);
        out
    }

    /// Render with `value(column)`; `None` or blank values drop their optional section.
    pub fn render<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> String {
        fn go<'a>(
            pieces: &[Piece],
            value: &impl Fn(&str) -> Option<&'a str>,
            out: &mut String,
        ) -> bool {
            for p in pieces {
                match p {
                    Piece::Literal(l) => out.push_str(l),
                    Piece::Column(c) => match value(c).map(str::trim).filter(|v| !v.is_empty()) {
                        Some(v) => out.push_str(v),
                        None => return false,
                    },
                    Piece::Optional(inner) => {
                        let mut section = String::new();
                        if go(inner, value, &mut section) {
                            out.push_str(&section);
                        }
                    }
                }
            }
            true
        }
        let mut out = String::new();
        // A missing column outside any section renders as empty rather than dropping the text.
        let mut required = String::new();
        if go(&self.pieces, &value, &mut required) {
            out = required;
        } else {
            let lenient: Vec<Piece> = self
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Column(_) => Piece::Optional(vec![p.clone()]),
                    other => other.clone(),
                })
                .collect();
            go(&lenient, &value, &mut out);
        }
        out.trim().to_string()
    }
}

fn parse_pieces(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    in_section: bool,
) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    while let Some(c) = chars.next() {
        match c {
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => name.push(ch),
                        None => return Err("unclosed '{'".into()),
                    }
                }
                let name = name.trim().to_string();
                if name.is_empty() {
                    return Err("empty column name '{}'".into());
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Column(name));
            }
            '[' => {
                if in_section {
                    return Err("nested '[' sections are not supported".into());
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Optional(parse_pieces(chars, true)?));
            }
            ']' if in_section => {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(literal));
                }
                return Ok(pieces);
            }
            '}' | ']' => return Err(format!("unmatched '{c}'")),
            _ => literal.push(c),
        }
    }
    if in_section {
        return Err("unclosed '['".into());
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, vals: &[(&str, Option<&'static str>)]) -> String {
        let t = Template::parse(t).unwrap();
        t.render(|c| vals.iter().find(|(k, _)| *k == c).and_then(|(_, v)| *v))
    }

    #[test]
    fn optional_sections_drop_when_blank() {
        let t = "{title}[. {category}][. {description}]";
        assert_eq!(
            render(
                t,
                &[
                    ("title", Some("Mug")),
                    ("category", Some("Kitchen")),
                    ("description", None)
                ]
            ),
            "Mug. Kitchen"
        );
        assert_eq!(
            render(
                t,
                &[
                    ("title", Some("Mug")),
                    ("category", Some("  ")),
                    ("description", Some("Blue"))
                ]
            ),
            "Mug. Blue"
        );
        assert_eq!(
            render(
                t,
                &[
                    ("title", Some(" Mug ")),
                    ("category", None),
                    ("description", None)
                ]
            ),
            "Mug"
        );
    }

    #[test]
    fn missing_required_column_renders_empty_not_dropped() {
        assert_eq!(
            render(
                "{title} by {brand}",
                &[("title", Some("Mug")), ("brand", None)]
            ),
            "Mug by"
        );
    }

    #[test]
    fn columns_and_errors() {
        let t = Template::parse("{title}[ ({brand})] {title}").unwrap();
        assert_eq!(t.columns(), vec!["title".to_string(), "brand".to_string()]);
        for bad in ["{title", "no columns", "{}", "[{a}", "{a}]", "[[{a}]]"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
