//! Checks on the CSV order-import file that the kill tests of `cli.rs` and `serve.rs` share.

use std::path::Path;

/// Every line of every order appears once in the import file: an order delivered twice would repeat its
/// (order_number, line_no) pairs. Returns the number of lines.
pub fn assert_each_order_line_once(path: &Path) -> usize {
    let mut reader = csv::ReaderBuilder::new().from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = reader.headers().unwrap().clone();
    let number = headers.iter().position(|h| h == "order_number").unwrap();
    let line_no = headers.iter().position(|h| h == "line_no").unwrap();
    let mut seen = std::collections::HashSet::new();
    for row in reader.records() {
        let row = row.unwrap();
        assert!(seen.insert((row[number].to_owned(), row[line_no].to_owned())), "order line {:?} {:?} twice", &row[number], &row[line_no]);
    }
    seen.len()
}
