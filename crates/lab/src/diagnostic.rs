//! Errors that point into a topology file, rendered like rustc does.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a topology file: what is wrong, where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the source text.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem at `span`.
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic { span, message: message.into(), hint: None }
    }

    /// Adds what to do about it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A topology file's path and text, kept to point errors at lines and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file's path, as errors show it.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl Source {
    /// The text of file `path`.
    pub fn new(path: impl AsRef<Path>, text: impl Into<String>) -> Self {
        Source { path: path.as_ref().to_path_buf(), text: text.into() }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line - 1).unwrap_or("")
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Every problem found in one topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// The file.
    pub source: Source,
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl TopologyError {
    /// The problems `diagnostics` of file `source`.
    pub fn new(source: Source, diagnostics: Vec<Diagnostic>) -> Self {
        TopologyError { source, diagnostics }
    }

    /// `path:line:column` of the first problem.
    pub fn location(&self) -> String {
        match self.diagnostics.first() {
            Some(d) => {
                let (line, col) = self.source.line_col(d.span.start);
                format!("{}:{line}:{col}", self.source.path.display())
            }
            None => self.source.path.display().to_string(),
        }
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let (line, col) = self.source.line_col(d.span.start);
            let text = self.source.line_text(line);
            let width = line.to_string().len();
            let pad = " ".repeat(width);
            writeln!(f, "error: {}", d.message)?;
            writeln!(f, "{pad}--> {}:{line}:{col}", self.source.path.display())?;
            writeln!(f, "{pad} |")?;
            writeln!(f, "{line} | {text}")?;
            let line_chars = text.chars().count();
            let span_chars = self.source.text
                [d.span.start.min(self.source.text.len())..d.span.end.min(self.source.text.len())]
                .chars()
                .take_while(|c| *c != '\n')
                .count();
            let carets = span_chars.clamp(1, (line_chars + 1).saturating_sub(col - 1).max(1));
            write!(f, "{pad} | {}{}", " ".repeat(col - 1), "^".repeat(carets))?;
            if let Some(hint) = &d.hint {
                write!(f, "\n{pad} = help: {hint}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for TopologyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let s = Source::new("t.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        // 'é' is two bytes: the '=' after "bé " is column 4.
        assert_eq!(s.line_col(10), (2, 4));
    }

    #[test]
    fn renders_like_rustc() {
        let src = Source::new("lab.toml", "name = \"x\"\nnetwroks = 1\n");
        let err = TopologyError::new(
            src,
            vec![Diagnostic::new(11..19, "unknown field `netwroks`").hint("did you mean `networks`?")],
        );
        assert_eq!(err.location(), "lab.toml:2:1");
        let text = err.to_string();
        assert!(text.contains("error: unknown field `netwroks`"), "{text}");
        assert!(text.contains("--> lab.toml:2:1"), "{text}");
        assert!(text.contains("2 | netwroks = 1"), "{text}");
        assert!(text.contains("  | ^^^^^^^^\n"), "{text}");
        assert!(text.contains("= help: did you mean `networks`?"), "{text}");
    }
}
