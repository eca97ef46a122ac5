//! A CSV export read by the csv connector (any bytes: delimiters, quotes, BOMs, decimal commas, ragged
//! rows) and each row put through a flow mapping with jq expressions (the quickstart's products and
//! stock mappings) and canonical validation. Every row ends as a record, an invalid row or a mapping /
//! validation error; nothing panics.
#![no_main]
use ferry_connectors::csv::CsvFactory;
use ferry_engine::connector::{BuildContext, Connector, ConnectorFactory, ReadItem, ReadRequest};
use ferry_engine::mapping::{Mapping, MappingConfig};
use ferry_model::{Record, Stream};
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

const PRODUCTS: &str = r#"
unmapped = "drop"
rename = { "ItemCode" = "sku", "Description" = "name", "Brand" = "brand", "SellPrice" = "price.amount", "Weight" = "weight.value" }
set = { "price.currency" = "AUD", "price.tax_inclusive" = true, "weight.unit" = "kg" }
[compute]
"categories" = '[.Category | select(.) | split(" > ")]'
"status" = '{"Active": "active", "Pending": "draft", "Discontinued": "discontinued"}[.Status // "Active"]'
[custom]
"warranty_years" = 'if .WarrantyYears then .WarrantyYears | tonumber else null end'
"#;

const STOCK: &str = r#"
unmapped = "drop"
rename = { "ItemCode" = "sku", "Warehouse" = "location", "OnHand" = "on_hand", "Available" = "available" }
[compute]
"status" = '(.Available // .OnHand | tonumber) as $n | if $n <= 0 then "temporarily_out" elif $n < 5 then "low" else "in_stock" end'
"#;

struct Rig {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    products: Mapping,
    stock: Mapping,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let compile = |text: &str, stream| Mapping::compile(&toml_config(text), stream).expect("mapping compiles");
        Rig {
            rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
            dir: tempfile::tempdir().unwrap(),
            products: compile(PRODUCTS, Stream::Products),
            stock: compile(STOCK, Stream::Stock),
        }
    })
}

fn toml_config(text: &str) -> MappingConfig {
    toml::from_str(text).expect("mapping config")
}

fn connector(dir: &std::path::Path, flags: u8) -> Arc<dyn Connector> {
    let options = serde_json::json!({
        "path": dir.to_str().unwrap(),
        "delimiter": if flags & 1 == 1 { ";" } else { "," },
        "decimal_comma": flags & 2 == 2,
        "text_columns": ["Barcode"],
    });
    CsvFactory.build(&options, &BuildContext { connection: "erp".into(), base_dir: dir.to_path_buf() }).expect("options are valid")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, content)) = data.split_first() else { return };
    let rig = rig();
    let (stream, mapping) = if flags & 4 == 4 { (Stream::Stock, &rig.stock) } else { (Stream::Products, &rig.products) };
    std::fs::write(rig.dir.path().join(format!("{stream}.csv")), content).unwrap();
    let c = connector(rig.dir.path(), flags);
    let items: Vec<_> = rig.rt.block_on(c.read(ReadRequest { stream: Some(stream), ..Default::default() }).collect());
    for item in items {
        let Ok(ReadItem::Record(record)) = item else { continue };
        if let Ok(Some(mapped)) = mapping.apply(record.data) {
            let _ = Record::parse(stream, mapped, &record.position);
        }
    }
});
