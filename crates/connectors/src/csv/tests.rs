use super::*;
use ferry_engine::{WriteAction, connector::BuildContext};
use ferry_model::Record;
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::Path;

fn build(dir: &Path, options: Value) -> Arc<dyn Connector> {
    let mut options = options;
    options["path"] = json!(dir.to_str().unwrap());
    CsvFactory.build(&options, &BuildContext::new("erp", dir)).unwrap()
}

async fn read_all(c: &dyn Connector, stream: Stream) -> Vec<ReadItem> {
    let items: Vec<_> = c.read(ReadRequest { stream: Some(stream), ..Default::default() }).collect().await;
    items.into_iter().map(|i| i.unwrap()).collect()
}

fn data(items: &[ReadItem]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| match i {
            ReadItem::Record(r) => Some(r.data.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn decimal_comma_numbers_become_dot_decimals() {
    for (text, want) in [
        ("12,50", Some("12.50")),
        ("-3,5", Some("-3.5")),
        ("1.234,50", Some("1234.50")),
        ("12.345.678,9", Some("12345678.9")),
        ("0,001", Some("0.001")),
        // not numbers with a decimal comma: left alone
        ("12", None),
        ("12.5", None),
        ("1,2,3", None),
        ("12,5 kg", None),
        ("1.23,4", None),
        ("1234.567,8", None),
        (",5", None),
        ("5,", None),
        ("Garden, Tools", None),
        ("-", None),
    ] {
        assert_eq!(decimal_comma_to_dot(text).as_deref(), want, "{text}");
    }
}

#[tokio::test]
async fn headers_are_field_paths_and_empty_cells_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("products.csv"),
        "\u{feff}ItemCode;name;price.amount;price.currency;weight.value;Size;Note;\n\
         SP-1;Spade;1.234,50;AUD;2,5;3,5;;\n\
         SP-2; Rake ;;AUD;0,75;L;see \"1,5\";\n",
    )
    .unwrap();
    let c = build(
        dir.path(),
        json!({"delimiter": ";", "decimal_comma": true, "columns": {"products": {"ItemCode": "sku", "Note": "custom.note"}},
               "text_columns": ["Size"]}),
    );
    let items = read_all(c.as_ref(), Stream::Products).await;
    let ReadItem::Record(first) = &items[0] else { panic!("{items:?}") };
    // The BOM is gone (the first header matched its rename), and the position is the physical line.
    assert_eq!(first.position, "products.csv line 2");
    assert_eq!(
        first.data,
        json!({"sku": "SP-1", "name": "Spade", "price": {"amount": "1234.50", "currency": "AUD"}, "weight": {"value": "2.5"}, "Size": "3,5"})
    );
    assert_eq!(
        data(&items)[1],
        json!({"sku": "SP-2", "name": "Rake", "price": {"currency": "AUD"}, "weight": {"value": "0.75"}, "Size": "L",
               "custom": {"note": "see \"1,5\""}})
    );
}

#[tokio::test]
async fn without_decimal_comma_values_stay_as_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stock.csv"), "sku,location,on_hand\nA,\"MEL, VIC\",\"1,5\"\n").unwrap();
    let c = build(dir.path(), json!({}));
    assert_eq!(data(&read_all(c.as_ref(), Stream::Stock).await), [json!({"sku": "A", "location": "MEL, VIC", "on_hand": "1,5"})]);
}

#[tokio::test]
async fn bad_rows_are_reported_with_line_and_column_and_reading_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"code;email;company\nC1;a@b.example;Acme\nC2;only two\nC3;c@d.example;Caf".to_vec();
    bytes.extend_from_slice(b"\xE9 Bleu\nC4;e@f.example;\n");
    std::fs::write(dir.path().join("customers.csv"), bytes).unwrap();
    let c = build(dir.path(), json!({"delimiter": ";"}));
    let items = read_all(c.as_ref(), Stream::Customers).await;
    assert_eq!(items.len(), 4);
    let ReadItem::Invalid { position, message, field, .. } = &items[1] else { panic!("{:?}", items[1]) };
    assert_eq!(position, "customers.csv line 3");
    assert!(field.is_empty() && message.contains("has 2 fields but the header has 3"), "{message}");
    let ReadItem::Invalid { position, message, field, raw, .. } = &items[2] else { panic!("{:?}", items[2]) };
    assert_eq!(position, "customers.csv line 4");
    assert_eq!(field, "company");
    assert!(message.contains("column \"company\" is not valid UTF-8"), "{message}");
    assert_eq!(raw["code"], "C3");
    assert_eq!(data(&items), [json!({"code": "C1", "email": "a@b.example", "company": "Acme"}), json!({"code": "C4", "email": "e@f.example"})]);
}

#[tokio::test]
async fn positions_name_the_physical_line_in_crlf_files_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("customers.csv"), "code;email\r\nC1;a@b.example\r\nC2\r\n").unwrap();
    let c = build(dir.path(), json!({"delimiter": ";"}));
    let items = read_all(c.as_ref(), Stream::Customers).await;
    let ReadItem::Record(first) = &items[0] else { panic!("{:?}", items[0]) };
    assert_eq!(first.position, "customers.csv line 2");
    let ReadItem::Invalid { position, .. } = &items[1] else { panic!("{:?}", items[1]) };
    assert_eq!(position, "customers.csv line 3");
}

/// Each record's line number (from its position), keyed by its `code` cell.
fn lines_by_code(items: &[ReadItem]) -> Vec<(String, u64)> {
    items
        .iter()
        .map(|i| {
            let (position, code) = match i {
                ReadItem::Record(r) => (&r.position, r.data["code"].as_str().unwrap_or("").to_owned()),
                ReadItem::Invalid { position, raw, .. } => (position, raw["code"].as_str().unwrap_or("").to_owned()),
                other => panic!("{other:?}"),
            };
            (code, position.rsplit_once(" line ").unwrap().1.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn mixed_line_endings_blank_lines_and_quoted_newlines_count_like_an_editor() {
    // The issue's file: CRLF with one bare LF. The csv crate said lines 2, 4, 4.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("customers.csv"), "code,email\r\nA,bad1\nB,bad2\r\nC,bad3\r\n").unwrap();
    let c = build(dir.path(), json!({}));
    assert_eq!(lines_by_code(&read_all(c.as_ref(), Stream::Customers).await), [("A".into(), 2), ("B".into(), 3), ("C".into(), 4)]);
    // Old-Mac CR endings, blank lines (skipped by the parser, counted by an editor), a quoted field
    // spanning three lines, and a short row after it.
    std::fs::write(dir.path().join("customers.csv"), "code,email\rA,a\r\r\n\nB,\"x\r\ny\nz\"\rC\n\r\nD,d").unwrap();
    assert_eq!(
        lines_by_code(&read_all(c.as_ref(), Stream::Customers).await),
        [("A".into(), 2), ("B".into(), 5), ("C".into(), 8), ("D".into(), 10)]
    );
}

/// Where an editor shows each record of `text` starting: breaks are `\r\n`, `\r` or `\n`.
fn editor_line(text: &str, byte: usize) -> u64 {
    text[..byte].replace("\r\n", "\n").replace('\r', "\n").matches('\n').count() as u64 + 1
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Whatever the mix of line endings, blank lines and quoted newlines, every record is named by the
    /// line an editor shows it on.
    #[test]
    fn every_record_is_named_by_its_editor_line(
        rows in proptest::collection::vec((0..3usize, 0..4usize, proptest::collection::vec(0..3usize, 0..3), 0..3usize), 1..40),
        final_break in proptest::bool::ANY,
    ) {
        const BREAKS: [&str; 3] = ["\n", "\r\n", "\r"];
        let mut text = String::from("code,email\r\n");
        let mut expected = Vec::new();
        for (i, (blank_lines, shape, inner_breaks, end)) in rows.iter().enumerate() {
            for b in 0..*blank_lines {
                // A blank line after a lone `\r` would merge with it into one `\r\n`: use `\r` alone there.
                text.push_str(if text.ends_with('\r') { "\r" } else { BREAKS[b % 3] });
            }
            let code = format!("R{i}");
            expected.push((code.clone(), editor_line(&format!("{text}x"), text.len())));
            match shape {
                0 => text.push_str(&format!("{code},e{i}")),
                1 => text.push_str(&code), // too few fields: an invalid row
                _ => {
                    let inner: String = inner_breaks.iter().map(|b| format!("part{}", BREAKS[*b])).collect();
                    text.push_str(&format!("{code},\"{inner}end\""));
                }
            }
            if i + 1 < rows.len() || final_break {
                text.push_str(BREAKS[*end]);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("customers.csv"), &text).unwrap();
        let c = build(dir.path(), json!({}));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = lines_by_code(&runtime.block_on(read_all(c.as_ref(), Stream::Customers)));
        proptest::prop_assert_eq!(got, expected, "file {:?}", text);
    }
}

#[tokio::test]
async fn colliding_paths_and_missing_files_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prices.csv"), "sku,price,price.amount\nA,1,2\n").unwrap();
    let c = build(dir.path(), json!({"files": {"customers": "debtors.csv"}}));
    let items: Vec<_> = c.read(ReadRequest { stream: Some(Stream::Prices), ..Default::default() }).collect().await;
    let err = items[0].as_ref().unwrap_err();
    assert_eq!(err.kind, ferry_engine::ErrorKind::Config);
    assert!(err.message.contains("\"price\"") && err.message.contains("price.amount"), "{err}");
    let items: Vec<_> = c.read(ReadRequest { stream: Some(Stream::Customers), ..Default::default() }).collect().await;
    let err = items[0].as_ref().unwrap_err();
    assert!(err.endpoint.ends_with("debtors.csv") && err.kind == ferry_engine::ErrorKind::Config, "{err}");
}

#[test]
fn bad_options_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = BuildContext::new("erp", dir.path());
    for (options, needle) in [
        (json!({"path": ".", "delimiter": ";;"}), "option delimiter"),
        (json!({"path": ".", "files": {"produce": "x.csv"}}), "files.produce"),
        (json!({"path": ".", "columns": {"orders": {"order_no": "Nr"}}}), "columns.orders"),
        (json!({"path": ".", "colums": {}}), "colums"),
    ] {
        let err = CsvFactory.build(&options, &ctx).err().unwrap();
        assert!(err.message.contains(needle) && err.endpoint == "connection erp", "{err}");
    }
}

fn order(number: &str, notes: &str) -> WriteRecord {
    let v = json!({
        "number": number,
        "placed_at": "2026-11-20T10:00:00Z",
        "status": "confirmed",
        "currency": "AUD",
        "prices_include_tax": false,
        "customer": {"code": "C1001", "email": "jo@example.com", "first_name": "Jo", "last_name": "Bloggs", "company": "Bloggs Landscaping"},
        "lines": [
            {"sku": "SPADE-1", "name": "Spade; steel", "quantity": "2", "unit_price": "25", "total": "50",
             "taxes": [{"name": "GST", "rate": "0.10", "amount": "5"}]},
            {"sku": "RAKE-1", "quantity": "1", "unit_price": "13.5", "discount": "0.5", "total": "13",
             "taxes": [{"name": "GST", "rate": "0.10", "amount": "1.3"}]}
        ],
        "shipping": [{"method": "Standard", "amount": "1234.5", "taxes": [{"name": "GST", "amount": "1.00"}]}],
        "discounts": [{"kind": "coupon", "code": "SAVE5", "amount": "5"}],
        "coupons": ["SAVE5", "FREESHIP"],
        "totals": {"subtotal": "63", "shipping": "1234.5", "discount": "5", "tax": "7.3", "total": "1299.8"},
        "shipping_address": {"name": "Jo Bloggs", "street": ["Unit 4", "12 Main St"], "city": "Ballarat", "postcode": "3350", "country": "AU"},
        "notes": notes
    });
    let record = Record::parse(Stream::Orders, v, "test").unwrap();
    WriteRecord { key: record.key(), target_id: None, record, previous: None }
}

#[tokio::test]
async fn orders_are_written_one_row_per_line_with_decimal_commas() {
    let dir = tempfile::tempdir().unwrap();
    let c = build(dir.path(), json!({"delimiter": ";", "decimal_comma": true, "columns": {"orders": {"order_number": "OrderNo"}}}));
    let out = c.write(Stream::Orders, vec![order("WEB-1001", "leave at\nthe back door")]).await.unwrap();
    assert_eq!(out[0].result.as_ref().unwrap().target_id, "WEB-1001");
    let text = std::fs::read_to_string(dir.path().join("orders.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut header = ORDER_COLUMNS.to_vec();
    header[0] = "OrderNo";
    assert_eq!(lines[0], header.join(";"));
    assert_eq!(
        lines[1],
        "WEB-1001;2026-11-20T10:00:00Z;confirmed;C1001;jo@example.com;Jo Bloggs;Bloggs Landscaping;AUD;false;\
         1;SPADE-1;\"Spade; steel\";2;25,00;0,00;5,00;50,00;1234,50;5,00;7,30;1299,80;SAVE5|FREESHIP;\
         Jo Bloggs;Unit 4, 12 Main St;Ballarat;3350;AU;leave at the back door"
    );
    assert!(lines[2].starts_with("WEB-1001;2026-11-20T10:00:00Z;confirmed;") && lines[2].contains(";2;RAKE-1;;1;13,50;0,50;1,30;13,00;"), "{}", lines[2]);
    assert_eq!(lines.len(), 3);
}

#[tokio::test]
async fn an_order_is_in_the_file_once_across_reopens_and_torn_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.csv");
    let c = build(dir.path(), json!({}));
    assert!(c.find_by_key(Stream::Orders, &["WEB-1".into()]).await.unwrap().is_empty());
    c.write(Stream::Orders, vec![order("WEB-1", "")]).await.unwrap();

    // Ferry killed while appending the next order: a partial row at the end.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"WEB-2,2026-11-20T10:0");
    std::fs::write(&path, &bytes).unwrap();

    let c = build(dir.path(), json!({}));
    let found = c.find_by_key(Stream::Orders, &["WEB-1".into(), "WEB-2".into()]).await.unwrap();
    assert_eq!(found, HashMap::from([("WEB-1".to_owned(), "WEB-1".to_owned())]));
    let out = c.write(Stream::Orders, vec![order("WEB-1", ""), order("WEB-2", "")]).await.unwrap();
    let actions: Vec<_> = out.iter().map(|o| o.result.as_ref().unwrap().action).collect();
    assert_eq!(actions, [WriteAction::Unchanged, WriteAction::Created]);

    let text = std::fs::read_to_string(&path).unwrap();
    let numbers: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(numbers, ["WEB-1", "WEB-1", "WEB-2", "WEB-2"], "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("order_number")).count(), 1);
}

#[tokio::test]
async fn an_orders_file_with_other_columns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.csv"), "Nr,Datum\nX,1\n").unwrap();
    let c = build(dir.path(), json!({}));
    let err = c.write(Stream::Orders, vec![order("WEB-1", "")]).await.unwrap_err();
    assert!(err.message.contains("header") && err.endpoint.ends_with("orders.csv"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("orders.csv")).unwrap(), "Nr,Datum\nX,1\n");
}

#[tokio::test]
async fn check_opens_the_files_and_reports_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stock.csv"), "sku,on_hand\n").unwrap();
    let report = build(dir.path(), json!({})).check().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.details.iter().any(|d| d == "stock: stock.csv readable (12 bytes), header: sku | on_hand"), "{report:?}");
    assert!(report.details.iter().any(|d| d.starts_with("products: products.csv not present")), "{report:?}");
    assert!(report.details.iter().any(|d| d == "orders: orders.csv will be created (folder writable)"), "{report:?}");
    let report = build(&dir.path().join("nope"), json!({})).check().await.unwrap();
    assert!(!report.ok);
}

/// Things a metadata-only check called `ok` and a sync then failed on (root reads through chmod 000, so
/// these use what nobody can read: a file where the folder should be, a link to nothing, a folder
/// where a file should be).
#[tokio::test]
async fn check_fails_for_what_a_sync_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain-file"), "x").unwrap();
    let report = build(&dir.path().join("plain-file"), json!({})).check().await.unwrap();
    assert!(!report.ok && report.details[0].contains("is not a folder"), "{report:?}");

    std::os::unix::fs::symlink(dir.path().join("gone.csv"), dir.path().join("products.csv")).unwrap();
    std::fs::create_dir(dir.path().join("stock.csv")).unwrap();
    let report = build(dir.path(), json!({})).check().await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert!(report.details.iter().any(|d| d == "products: products.csv is a link to a file that does not exist"), "{report:?}");
    assert!(report.details.iter().any(|d| d == "stock: stock.csv is a folder, not a file"), "{report:?}");
}

/// Without root, permissions are real: an unreadable file and a read-only folder fail the check.
#[tokio::test]
async fn check_fails_for_unreadable_files_and_unwritable_folders_when_not_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("customers.csv");
    std::fs::write(&file, "code,email\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&file).is_ok() {
        // Root: permission bits do not stop it; `check_fails_for_what_a_sync_could_not_read` covers it.
        return;
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let report = build(dir.path(), json!({})).check().await.unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!report.ok, "{report:?}");
    assert!(report.details.iter().any(|d| d.starts_with("customers: customers.csv cannot be read")), "{report:?}");
    assert!(report.details.iter().any(|d| d.starts_with("orders: ") && d.contains("not writable")), "{report:?}");
}

#[tokio::test]
async fn a_header_split_by_the_wrong_delimiter_gets_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prices.csv"), "price_list,sku,amount\nRETAIL,A,12.50\n").unwrap();
    let c = build(dir.path(), json!({"delimiter": ";"}));
    let report = c.check().await.unwrap();
    assert!(!report.ok, "{report:?}");
    let hint = report.details.iter().find(|d| d.starts_with("prices: ")).unwrap();
    assert!(hint.contains("has one column (\"price_list,sku,amount\")") && hint.contains("set delimiter = \",\""), "{hint}");
    // A sync says it once, before the rows.
    let items = read_all(c.as_ref(), Stream::Prices).await;
    let ReadItem::Warning(w) = &items[0] else { panic!("{items:?}") };
    assert!(w.starts_with("prices.csv: the header row read with delimiter \";\" has one column"), "{w}");
    assert_eq!(items.iter().filter(|i| matches!(i, ReadItem::Warning(_))).count(), 1);
    // Several columns, but none of the mapped names: the split that finds them is suggested.
    std::fs::write(dir.path().join("stock.csv"), "Item|Qty;x\nA|1;2\n").unwrap();
    let c = build(dir.path(), json!({"delimiter": ";", "columns": {"stock": {"Item": "sku", "Qty": "on_hand"}}}));
    let report = c.check().await.unwrap();
    let hint = report.details.iter().find(|d| d.starts_with("stock: ")).unwrap();
    assert!(hint.contains("names none of the mapped columns") && hint.contains("set delimiter = \"|\""), "{hint}");
    // A right header: no hint.
    assert_eq!(rows::delimiter_hint("x.csv", &["sku".into(), "name".into()], b',', &[]), None);
    // A one-column header no other delimiter splits: nothing to suggest.
    assert_eq!(rows::delimiter_hint("x.csv", &["sku".into()], b',', &[]), None);
}

#[tokio::test]
async fn a_targeted_read_filters_rows_that_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stock.csv"), "ItemCode,location,on_hand\nA,MEL,1\nA,SYD,2\nB,MEL,3\n").unwrap();
    let c = build(dir.path(), json!({"columns": {"stock": {"ItemCode": "sku"}}}));
    let request = ReadRequest { stream: Some(Stream::Stock), keys: Some(vec!["A@SYD".into()]), ..Default::default() };
    let items: Vec<_> = c.read(request).map(|i| i.unwrap()).collect().await;
    assert_eq!(data(&items), [json!({"sku": "A", "location": "SYD", "on_hand": "2"})]);
    // Without a key field the rows cannot be told apart here: all pass, for the flow's mapping to filter.
    let c = build(dir.path(), json!({}));
    let request = ReadRequest { stream: Some(Stream::Stock), keys: Some(vec!["A@SYD".into()]), ..Default::default() };
    assert_eq!(c.read(request).collect::<Vec<_>>().await.len(), 3);
}

/// Shop-entered text reaches an ERP's CSV import: a name starting with `=` must not run as a formula
/// when the file is opened in a spreadsheet. Ferry's own numbers stay numbers; the escape is reversible
/// for order numbers, so an escaped order is still found (never imported twice).
#[tokio::test]
async fn text_that_starts_like_a_formula_is_escaped_and_the_order_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let c = build(dir.path(), json!({}));
    let mut w = order("=WEB-1", "@SUM(A1:A9)");
    let Record::Order(o) = &mut w.record else { unreachable!() };
    o.customer.first_name = Some("=HYPERLINK(\"http://evil\",\"Jo\")".into());
    o.customer.last_name = None;
    o.lines[0].sku = "-SPADE".into();
    o.shipping_address.as_mut().unwrap().city = Some("+61 Ballarat".into());
    o.lines[1].discount = rust_decimal::Decimal::new(-5, 1);
    c.write(Stream::Orders, vec![w.clone()]).await.unwrap();
    let text = std::fs::read_to_string(dir.path().join("orders.csv")).unwrap();
    let row: Vec<String> = csv::Reader::from_reader(text.as_bytes()).records().next().unwrap().unwrap().iter().map(str::to_owned).collect();
    let col = |name: &str| row[ORDER_COLUMNS.iter().position(|c| *c == name).unwrap()].clone();
    assert_eq!(col("order_number"), "'=WEB-1");
    assert_eq!(col("customer_name"), "'=HYPERLINK(\"http://evil\",\"Jo\")");
    assert_eq!(col("sku"), "'-SPADE");
    assert_eq!(col("ship_to_city"), "'+61 Ballarat");
    assert_eq!(col("notes"), "'@SUM(A1:A9)");
    assert_eq!(col("line_total"), "50.00", "numbers are not escaped");

    // Reopened (a new connector scans the file): the escaped order number is found, not written again.
    let again = build(dir.path(), json!({}));
    assert_eq!(again.find_by_key(Stream::Orders, &["=WEB-1".into()]).await.unwrap().get("=WEB-1").map(String::as_str), Some("=WEB-1"));
    let out = again.write(Stream::Orders, vec![w.clone()]).await.unwrap();
    assert_eq!(out[0].result.as_ref().unwrap().action, WriteAction::Unchanged);

    // Off by option, for an importer that wants the raw text.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = build(raw_dir.path(), json!({"escape_formulas": false}));
    raw.write(Stream::Orders, vec![w]).await.unwrap();
    let text = std::fs::read_to_string(raw_dir.path().join("orders.csv")).unwrap();
    assert!(text.lines().nth(1).unwrap().starts_with("=WEB-1,"), "{text}");
}

/// An export whose last line has no newline: its last row is a record like the others.
#[tokio::test]
async fn a_last_row_without_newline_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("products.csv"), "sku,name\nA,Spade\nB,Rake").unwrap();
    let c = build(dir.path(), json!({}));
    let rows = data(&read_all(c.as_ref(), Stream::Products).await);
    assert_eq!(rows, [json!({"sku": "A", "name": "Spade"}), json!({"sku": "B", "name": "Rake"})]);
}
