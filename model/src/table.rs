//! The one way both CLIs (`shoal get`, `describe`, `key list`; `shoal-agent ps`, `images`)
//! print a table, as kubectl does: upper-case headers, left-aligned columns three spaces
//! apart, widths in characters, and no trailing spaces (the last column is not padded).

/// Spaces between columns.
pub const COLUMN_GAP: usize = 3;

/// `headers`, then one line per row. A row with fewer cells than headers leaves the rest
/// empty; cells beyond the headers are not shown.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            line.push_str(cell);
            if i + 1 < columns {
                let pad = width - cell.chars().count() + COLUMN_GAP;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    /// (headers, rows, expected)
    type Row<'a> = (&'a [&'a str], Vec<Vec<String>>, &'a str);

    #[test]
    fn tables_align_columns_three_spaces_apart_without_trailing_spaces() {
        let cases: [Row; 5] = [
            (
                &["NAME", "STATUS", "WORKLOADS"],
                vec![
                    row(&["gw-1", "Ready", "3"]),
                    row(&["camera-north-2", "NotReady", ""]),
                ],
                "NAME             STATUS     WORKLOADS\n\
                 gw-1             Ready      3\n\
                 camera-north-2   NotReady\n",
            ),
            (&["NAME", "AGE"], vec![], "NAME   AGE\n"),
            // Widths count characters, not bytes.
            (
                &["A", "B"],
                vec![row(&["é…", "x"]), row(&["abc", "y"])],
                "A     B\né…    x\nabc   y\n",
            ),
            // A short row leaves its last cells empty; extra cells are not shown.
            (
                &["A", "B", "C"],
                vec![row(&["1"]), row(&["1", "2", "3", "4"])],
                "A   B   C\n1\n1   2   3\n",
            ),
            (&[], vec![row(&["x"])], "\n\n"),
        ];
        for (headers, rows, expected) in cases {
            assert_eq!(render(headers, &rows), expected, "{headers:?} {rows:?}");
        }
    }
}
