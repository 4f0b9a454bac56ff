//! Plain-text tables for people: columns aligned with spaces, no borders, no trailing spaces, so
//! the output also reads well through `grep` and `less`.

/// Spaces between two columns.
const GAP: usize = 2;

/// Rows of cells under an optional header line.
pub struct Table {
    /// Column titles; `None` for a key-value block such as the identity part of `twin get`.
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first line names the columns.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: Some(header.iter().map(|title| (*title).to_owned()).collect()),
            rows: Vec::new(),
        }
    }

    /// A table without a header line.
    pub fn headless() -> Self {
        Self {
            header: None,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The lines of the table, each ending in a newline.
    pub fn render(&self) -> String {
        let lines: Vec<&Vec<String>> = self.header.iter().chain(&self.rows).collect();
        let columns = lines.iter().map(|cells| cells.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                lines
                    .iter()
                    .filter_map(|cells| cells.get(column))
                    .map(|cell| width(cell))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for cells in lines {
            let mut line = String::new();
            for (column, cell) in cells.iter().enumerate() {
                line.push_str(cell);
                if column + 1 < cells.len() {
                    line.push_str(&" ".repeat(widths[column] - width(cell) + GAP));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Width on a terminal, counted in characters: exact for the ASCII ids and JSON this prints.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` cut to at most `max` characters, ending in `…` when something was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell_without_trailing_spaces() {
        let mut table = Table::new(&["DEVICE", "VERSION", "STATUS"]);
        table.row(vec!["pump-001".into(), "7".into(), "CONNECTED".into()]);
        table.row(vec!["a".into(), "12345678".into(), "".into()]);
        assert_eq!(
            table.render(),
            "DEVICE    VERSION   STATUS\n\
             pump-001  7         CONNECTED\n\
             a         12345678\n"
        );
    }

    #[test]
    fn headless_tables_are_key_value_blocks() {
        let mut table = Table::headless();
        table.row(vec!["device".into(), "pump-001".into()]);
        table.row(vec!["created_at".into(), "2024-01-01T00:00:00Z".into()]);
        assert_eq!(
            table.render(),
            "device      pump-001\ncreated_at  2024-01-01T00:00:00Z\n"
        );
        assert_eq!(Table::headless().render(), "");
    }

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("ééééééé", 3), "éé…");
    }
}
