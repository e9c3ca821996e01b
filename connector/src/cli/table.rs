//! Plain-text tables for the CLI, aligned like cloudflared's: columns padded to their widest
//! cell, separated by two spaces, no borders, so the output stays easy to `grep` and `awk`.

/// Renders `header` and `rows` as aligned lines, each ending in `\n`. Rows shorter than the header
/// leave their last columns empty.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = render(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "web".into()],
                vec!["22222".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID     NAME\n1      web\n22222  x\n");
    }
}
