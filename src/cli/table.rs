//! The text tables of the CLI (`status`, `rules list`, `patterns list`, `detect`, `faults
//! list`): aligned columns, no borders, two spaces between columns, no trailing blanks.

use comfy_table::{ContentArrangement, Table, presets::NOTHING};

/// `rows` under `header` (if any), one line each.
pub fn plain<const N: usize>(header: Option<[&str; N]>, rows: Vec<[String; N]>) -> String {
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        // Never wrapped to a terminal's width: a long last error stays on its row's line.
        .set_content_arrangement(ContentArrangement::Disabled);
    if let Some(header) = header {
        table.set_header(header);
    }
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_borders_or_trailing_blanks() {
        let text = plain(
            Some(["PR", "STATUS", "LAST ERROR"]),
            vec![
                ["#7".into(), "queued".into(), String::new()],
                ["#1234".into(), "blocked".into(), "lane busy | held".into()],
            ],
        );
        assert_eq!(
            text,
            "PR     STATUS   LAST ERROR\n#7     queued\n#1234  blocked  lane busy | held\n"
        );
        assert_eq!(plain(None, vec![["a".into(), "b".into()]]), "a  b\n");
    }
}
