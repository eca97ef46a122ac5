use super::*;
use ferry_model::Record;
use proptest::prelude::*;
use serde_json::json;

fn compile(config: MappingConfig) -> Mapping {
    Mapping::compile(&config, Stream::Products).expect("mapping compiles")
}

fn map(mapping: &Mapping, source: Value) -> Value {
    mapping.apply(source).expect("mapping applies").expect("record kept")
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn values(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// The exact text of a JSON number (arbitrary_precision keeps it).
fn number_text(v: &Value) -> &str {
    match v {
        Value::Number(n) => n.as_str(),
        other => panic!("expected a number, got {other}"),
    }
}

#[test]
fn rename_moves_fields_to_nested_paths() {
    let m = compile(MappingConfig {
        rename: strings(&[("ItemCode", "sku"), ("SellPrice", "price.amount"), ("Picture", "media[0].url"), ("Title", "name")]),
        ..Default::default()
    });
    let out = map(&m, json!({"ItemCode": "A1", "SellPrice": "19.90", "Picture": "https://x/a1.jpg", "Title": "Spade"}));
    assert_eq!(out, json!({"sku": "A1", "price": {"amount": "19.90"}, "media": [{"url": "https://x/a1.jpg"}], "name": "Spade"}));
}

#[test]
fn rename_takes_all_sources_before_writing_so_swaps_and_nesting_work() {
    let m =
        compile(MappingConfig { rename: strings(&[("name", "sku"), ("sku", "name"), ("price", "price.amount")]), ..Default::default() });
    let out = map(&m, json!({"sku": "Spade", "name": "A1", "price": "5"}));
    assert_eq!(out, json!({"sku": "A1", "name": "Spade", "price": {"amount": "5"}}));
}

#[test]
fn rename_of_a_missing_source_field_writes_nothing() {
    let m = compile(MappingConfig { rename: strings(&[("Brand", "brand")]), ..Default::default() });
    assert_eq!(map(&m, json!({"sku": "A1"})), json!({"sku": "A1"}));
}

#[test]
fn defaults_fill_absent_null_or_empty_while_set_always_overwrites() {
    let m = compile(MappingConfig {
        defaults: values(&[
            ("brand", json!("Acme")),
            ("tax_class", json!("GST")),
            ("description", json!("n/a")),
            ("price.tax_inclusive", json!(true)),
        ]),
        set: values(&[("price.currency", json!("AUD")), ("status", json!("active"))]),
        ..Default::default()
    });
    let out = map(
        &m,
        json!({"sku": "A1", "brand": "Bosch", "tax_class": null, "description": "", "status": "draft", "price": {"amount": "1", "currency": "NZD"}}),
    );
    assert_eq!(
        out,
        json!({
            "sku": "A1",
            "brand": "Bosch",
            "tax_class": "GST",
            "description": "n/a",
            "status": "active",
            "price": {"amount": "1", "currency": "AUD", "tax_inclusive": true}
        })
    );
}

#[test]
fn drop_removes_source_fields_before_renames() {
    let m = compile(MappingConfig {
        drop: vec!["InternalNote".into(), "Absent".into()],
        rename: strings(&[("ItemCode", "sku")]),
        ..Default::default()
    });
    assert_eq!(map(&m, json!({"ItemCode": "A1", "InternalNote": "do not publish"})), json!({"sku": "A1"}));
}

#[test]
fn unmapped_keep_leaves_unknown_fields_and_validation_names_them() {
    let m = compile(MappingConfig { rename: strings(&[("ItemCode", "sku"), ("Title", "name")]), ..Default::default() });
    let out = map(&m, json!({"ItemCode": "A1", "Title": "Spade", "Colour": "red"}));
    assert_eq!(out, json!({"sku": "A1", "name": "Spade", "Colour": "red"}));
    let err = Record::parse(Stream::Products, out, "line 2").unwrap_err();
    assert_eq!(err.record, "A1");
    assert!(err.to_string().contains("Colour"), "{err}");
}

#[test]
fn unmapped_drop_removes_fields_the_stream_does_not_have() {
    let m = compile(MappingConfig { rename: strings(&[("ItemCode", "sku")]), unmapped: Unmapped::Drop, ..Default::default() });
    let out = map(&m, json!({"ItemCode": "A1", "name": "Spade", "Colour": "red", "Size": "L"}));
    assert_eq!(out, json!({"sku": "A1", "name": "Spade"}));
}

#[test]
fn unmapped_custom_moves_fields_into_custom_and_explicit_custom_wins() {
    let m = compile(MappingConfig {
        custom: strings(&[("Colour", ".Colour | ascii_downcase")]),
        unmapped: Unmapped::Custom,
        ..Default::default()
    });
    let out = map(&m, json!({"sku": "A1", "name": "Spade", "Colour": "RED", "Size": "L", "custom": {"origin": "DE"}}));
    assert_eq!(out, json!({"sku": "A1", "name": "Spade", "custom": {"origin": "DE", "Colour": "red", "Size": "L"}}));
    let record = Record::parse(Stream::Products, out, "line 2").expect("valid product");
    assert_eq!(record.key(), "A1");
}

#[test]
fn compute_builds_multi_level_categories_with_jq() {
    let m = compile(MappingConfig {
        compute: strings(&[("categories", r#".Category | split("|") | map(split(">") | map(trim))"#)]),
        drop: vec!["Category".into()],
        ..Default::default()
    });
    let out = map(&m, json!({"sku": "A1", "Category": "Garden > Tools > Spades|Kitchen > Knives"}));
    assert_eq!(out, json!({"sku": "A1", "categories": [["Garden", "Tools", "Spades"], ["Kitchen", "Knives"]]}));
}

#[test]
fn compute_sees_the_original_record_even_for_dropped_and_renamed_fields() {
    let m = compile(MappingConfig {
        rename: strings(&[("ItemCode", "sku")]),
        drop: vec!["Maker".into()],
        compute: strings(&[("group", r#".ItemCode | split("-") | .[0]"#), ("brand", ".Maker")]),
        ..Default::default()
    });
    assert_eq!(
        map(&m, json!({"ItemCode": "SHIRT-RED-L", "Maker": "Acme"})),
        json!({"sku": "SHIRT-RED-L", "group": "SHIRT", "brand": "Acme"})
    );
}

#[test]
fn compute_yielding_null_leaves_the_field_absent() {
    let m = compile(MappingConfig { compute: strings(&[("brand", ".Maker")]), ..Default::default() });
    assert_eq!(map(&m, json!({"sku": "A1"})), json!({"sku": "A1"}));
}

#[test]
fn compute_yielding_several_values_or_none_is_an_error_naming_the_field() {
    let many = compile(MappingConfig { compute: strings(&[("categories", r#".Category | split("|") | .[]"#)]), ..Default::default() });
    let err = many.apply(json!({"Category": "a|b"})).unwrap_err();
    assert_eq!(err.field, "categories");
    assert!(err.message.contains("more than one value") && err.message.contains("[ … ]"), "{err}");
    // Collecting with [ ... ] is the documented way.
    let collected = compile(MappingConfig { compute: strings(&[("options", r#"{Size: .Size}"#)]), ..Default::default() });
    assert_eq!(map(&collected, json!({"Size": "L"})), json!({"Size": "L", "options": {"Size": "L"}}));

    let none = compile(MappingConfig { compute: strings(&[("brand", r#".Maker | select(. != "")"#)]), ..Default::default() });
    let err = none.apply(json!({"Maker": ""})).unwrap_err();
    assert_eq!(err.field, "brand");
    assert!(err.message.contains("no value"), "{err}");
    let alt = compile(MappingConfig { compute: strings(&[("brand", r#"(.Maker | select(. != "")) // null"#)]), ..Default::default() });
    assert_eq!(map(&alt, json!({"Maker": ""})), json!({"Maker": ""}));
}

#[test]
fn custom_field_via_jq() {
    let m = compile(MappingConfig {
        custom: strings(&[("warranty_years", r#".Warranty | tonumber"#), ("label.en", r#""Spade " + .Size"#)]),
        ..Default::default()
    });
    let out = map(&m, json!({"sku": "A1", "Warranty": "2", "Size": "L"}));
    assert_eq!(out, json!({"sku": "A1", "Warranty": "2", "Size": "L", "custom": {"warranty_years": 2, "label.en": "Spade L"}}));
}

#[test]
fn filter_skips_records_it_rejects() {
    let m = compile(MappingConfig { filter: Some(r#".Active == "1""#.into()), ..Default::default() });
    assert!(!m.is_identity());
    assert_eq!(m.apply(json!({"sku": "A1", "Active": "1"})).unwrap(), Some(json!({"sku": "A1", "Active": "1"})));
    assert_eq!(m.apply(json!({"sku": "A2", "Active": "0"})).unwrap(), None);
    // null (missing field → null) skips, `select` yielding nothing skips.
    let m = compile(MappingConfig { filter: Some(".Web".into()), ..Default::default() });
    assert_eq!(m.apply(json!({"sku": "A3"})).unwrap(), None);
    let m = compile(MappingConfig { filter: Some(r#"select(.sku | startswith("A"))"#.into()), ..Default::default() });
    assert_eq!(m.apply(json!({"sku": "B1"})).unwrap(), None);
    assert!(m.apply(json!({"sku": "A1"})).unwrap().is_some());
}

#[test]
fn filter_runtime_error_says_it_is_the_filter() {
    let m = compile(MappingConfig { filter: Some(".Qty > 0 and (.Qty | startswith(\"x\"))".into()), ..Default::default() });
    let err = m.apply(json!({"Qty": 3})).unwrap_err();
    assert!(err.message.starts_with("mapping filter: jq expression failed:"), "{err}");
}

#[test]
fn jq_syntax_error_at_compile_names_the_option_and_position() {
    let config = MappingConfig { compute: strings(&[("categories", r#".Category | split("|"#)]), ..Default::default() };
    let err = Mapping::compile(&config, Stream::Products).unwrap_err();
    assert_eq!(err.option, "compute.categories");
    assert!(err.message.contains("jq syntax error at line 1, column"), "{err}");
    assert!(err.to_string().starts_with("mapping option compute.categories: jq syntax error"), "{err}");

    let config = MappingConfig { filter: Some(".a |".into()), ..Default::default() };
    let err = Mapping::compile(&config, Stream::Products).unwrap_err();
    assert_eq!(err.option, "filter");
    assert!(err.message.contains("end of expression"), "{err}");

    let config = MappingConfig { custom: strings(&[("x", ".a | no_such_function(1)")]), ..Default::default() };
    let err = Mapping::compile(&config, Stream::Products).unwrap_err();
    assert_eq!(err.option, "custom.x");
    assert!(err.message.contains("undefined filter no_such_function/1") && err.message.contains("column 6"), "{err}");
}

#[test]
fn jq_runtime_error_names_the_target_field() {
    let m = compile(MappingConfig { compute: strings(&[("categories", r#".Category | split("|")"#)]), ..Default::default() });
    let err = m.apply(json!({"sku": "A1", "Category": 12})).unwrap_err();
    assert_eq!(err.field, "categories");
    assert!(err.message.starts_with("jq expression of compute.categories failed: "), "{err}");

    let m = compile(MappingConfig { custom: strings(&[("warranty", r#"error("no warranty for " + .sku)"#)]), ..Default::default() });
    let err = m.apply(json!({"sku": "A1"})).unwrap_err();
    assert_eq!(err.field, "custom.warranty");
    assert_eq!(err.message, "jq expression of custom.warranty failed: no warranty for A1");
}

#[test]
fn env_is_unavailable_and_halt_is_an_error_not_an_exit() {
    let config = MappingConfig { compute: strings(&[("brand", "env.HOME")]), ..Default::default() };
    let err = Mapping::compile(&config, Stream::Products).unwrap_err();
    assert!(err.message.contains("undefined filter env/0"), "{err}");
    let config = MappingConfig { compute: strings(&[("brand", "$ENV.HOME")]), ..Default::default() };
    let err = Mapping::compile(&config, Stream::Products).unwrap_err();
    assert!(err.message.contains("undefined variable"), "{err}");
    let m = compile(MappingConfig { compute: strings(&[("brand", "halt")]), ..Default::default() });
    let err = m.apply(json!({})).unwrap_err();
    assert!(err.message.contains("halt"), "{err}");
}

#[test]
fn decimal_strings_and_decimal_numbers_survive_untouched() {
    let m = compile(MappingConfig {
        rename: strings(&[("SellPrice", "price.amount")]),
        compute: strings(&[("rrp.amount", ".Rrp"), ("cost.amount", ".Cost"), ("weight.value", ".Weight | tonumber"), ("barcode", ".Ean")]),
        custom: strings(&[("qty", ".Qty"), ("raw", "."), ("big", ".Big")]),
        ..Default::default()
    });
    let source: Value = serde_json::from_str(
        r#"{"SellPrice": "19.90", "Rrp": 24.90, "Cost": "0.10", "Weight": "1.250", "Ean": "0012345678905",
            "Qty": 100000000000000000000001, "Big": 1.00000000000000000000001}"#,
    )
    .unwrap();
    let out = map(&m, source.clone());
    assert_eq!(out["price"]["amount"], json!("19.90"));
    assert_eq!(out["cost"]["amount"], json!("0.10"));
    assert_eq!(out["barcode"], json!("0012345678905"));
    assert_eq!(number_text(&out["rrp"]["amount"]), "24.90");
    assert_eq!(number_text(&out["weight"]["value"]), "1.250");
    assert_eq!(number_text(&out["custom"]["qty"]), "100000000000000000000001");
    assert_eq!(number_text(&out["custom"]["big"]), "1.00000000000000000000001");
    // The whole record round-trips through jq byte for byte.
    assert_eq!(serde_json::to_string(&out["custom"]["raw"]).unwrap(), serde_json::to_string(&source).unwrap());
    // Constants from the config keep their text as well.
    let m = compile(MappingConfig { set: values(&[("price.amount", serde_json::from_str("7.50").unwrap())]), ..Default::default() });
    assert_eq!(number_text(&map(&m, json!({}))["price"]["amount"]), "7.50");
}

#[test]
fn jq_arithmetic_on_decimals_uses_floats_as_documented() {
    // Integers stay exact; decimals become f64 once arithmetic touches them. This is why mappings
    // should keep money as strings.
    let m = compile(MappingConfig { custom: strings(&[("int", ".a * 3"), ("dec", ".b + .c")]), ..Default::default() });
    let out = map(&m, serde_json::from_str(r#"{"a": 7, "b": 0.1, "c": 0.2}"#).unwrap());
    assert_eq!(number_text(&out["custom"]["int"]), "21");
    assert_eq!(number_text(&out["custom"]["dec"]), "0.30000000000000004");
    let m = compile(MappingConfig { custom: strings(&[("nan", "nan")]), ..Default::default() });
    let err = m.apply(json!({})).unwrap_err();
    assert_eq!(err.field, "custom.nan");
    assert!(err.message.contains("not a JSON number"), "{err}");
}

#[test]
fn path_conflicts_are_errors_naming_the_field() {
    let m = compile(MappingConfig { rename: strings(&[("SellPrice", "price.amount")]), ..Default::default() });
    let err = m.apply(json!({"SellPrice": "19.90", "price": "19.90"})).unwrap_err();
    assert_eq!(err.field, "price.amount");
    assert_eq!(err.message, "path conflict: price is a string, not an object");

    let m = compile(MappingConfig { set: values(&[("media[1].kind", json!("image"))]), ..Default::default() });
    let err = m.apply(json!({"media": {"url": "x"}})).unwrap_err();
    assert_eq!(err.message, "path conflict: media is an object, not an array");
    // Indices pad arrays with null and fill existing elements.
    assert_eq!(map(&m, json!({"media": [{"url": "a"}, {"url": "b"}]})), json!({"media": [{"url": "a"}, {"url": "b", "kind": "image"}]}));
    assert_eq!(map(&m, json!({})), json!({"media": [null, {"kind": "image"}]}));
}

#[test]
fn compile_rejects_bad_paths_unknown_fields_and_duplicate_targets() {
    let cases: Vec<(MappingConfig, &str, &str)> = vec![
        (
            MappingConfig { rename: strings(&[("ItemCode", "skuu")]), ..Default::default() },
            "rename.ItemCode",
            "\"skuu\" is not a field of products",
        ),
        (MappingConfig { set: values(&[("price..amount", json!(1))]), ..Default::default() }, "set.price..amount", "empty segment"),
        (
            MappingConfig { defaults: values(&[("media[x].url", json!(1))]), ..Default::default() },
            "defaults.media[x].url",
            "index must be a number",
        ),
        (MappingConfig { compute: strings(&[("[0]", ".")]), ..Default::default() }, "compute.[0]", "must start with a field name"),
        (MappingConfig { rename: strings(&[("A", "sku"), ("B", "sku")]), ..Default::default() }, "rename.B", "renamed to \"sku\" as well"),
    ];
    for (config, option, message) in cases {
        let err = Mapping::compile(&config, Stream::Products).unwrap_err();
        assert_eq!(err.option, option);
        assert!(err.message.contains(message), "{err}");
    }
}

#[test]
fn non_object_source_is_an_error() {
    let m = compile(MappingConfig { drop: vec!["x".into()], ..Default::default() });
    let err = m.apply(json!(["A1"])).unwrap_err();
    assert!(err.message.contains("JSON object"), "{err}");
}

#[test]
fn toml_flow_mapping_table_deserialises_and_maps_a_csv_row_to_a_valid_product() {
    #[derive(Deserialize)]
    struct Root {
        flows: BTreeMap<String, Flow>,
    }
    #[derive(Deserialize)]
    struct Flow {
        mapping: MappingConfig,
    }
    let root: Root = toml::from_str(
        r#"
        [flows.erp_products.mapping]
        filter = '.Active != "0"'
        drop = ["Active", "Category", "Warranty"]   # consumed by compute/custom, which see the original row
        unmapped = "custom"

        [flows.erp_products.mapping.rename]
        ItemCode = "sku"
        Description = "name"
        "SellPrice" = "price.amount"

        [flows.erp_products.mapping.compute]
        categories = '.Category | split("|") | map(split(">") | map(trim))'

        [flows.erp_products.mapping.custom]
        warranty_years = '(.Warranty | tonumber?) // null'

        [flows.erp_products.mapping.defaults]
        "price.tax_inclusive" = true
        launched = 2024-03-01

        [flows.erp_products.mapping.set]
        "price.currency" = "AUD"
        "weight.unit" = "kg"
        "weight.value" = "0.5"
        "#,
    )
    .map_err(|e| e.to_string())
    .unwrap_or_else(|e| panic!("{e}"));
    let config = &root.flows["erp_products"].mapping;
    assert_eq!(config.rename["SellPrice"], "price.amount");
    assert_eq!(config.set["price.currency"], json!("AUD"));
    assert_eq!(config.unmapped, Unmapped::Custom);
    // `launched` is not a product field: compile says so, naming the option.
    let err = Mapping::compile(config, Stream::Products).unwrap_err();
    assert_eq!(err.option, "defaults.launched");

    let mut config = config.clone();
    let launched = config.defaults.remove("launched").unwrap();
    config.set.insert("custom.launched".into(), launched);
    let m = Mapping::compile(&config, Stream::Products).unwrap();
    let row = json!({"ItemCode": "A1", "Description": "Spade", "SellPrice": "19.90", "Category": "Garden > Tools > Spades|Kitchen > Knives",
                     "Warranty": "2", "Active": "1", "Colour": "red"});
    let out = map(&m, row);
    assert_eq!(
        out,
        json!({
            "sku": "A1", "name": "Spade",
            "price": {"amount": "19.90", "currency": "AUD", "tax_inclusive": true},
            "weight": {"value": "0.5", "unit": "kg"},
            "categories": [["Garden", "Tools", "Spades"], ["Kitchen", "Knives"]],
            "custom": {"warranty_years": 2, "launched": "2024-03-01", "Colour": "red"}
        })
    );
    let Record::Product(product) = Record::parse(Stream::Products, out, "line 2").expect("valid product") else { panic!("not a product") };
    assert_eq!(product.price.unwrap().amount.to_string(), "19.90");
    assert_eq!(m.apply(json!({"ItemCode": "A2", "Active": "0"})).unwrap(), None);

    // Unknown options are refused, so a typo does not silently do nothing.
    let err = toml::from_str::<MappingConfig>("renam = { a = \"sku\" }").unwrap_err();
    assert!(err.to_string().contains("renam"), "{err}");
}

#[test]
fn an_empty_config_is_identity_and_any_option_is_not() {
    assert!(compile(MappingConfig::default()).is_identity());
    assert!(!compile(MappingConfig { unmapped: Unmapped::Drop, ..Default::default() }).is_identity());
    assert!(!compile(MappingConfig { drop: vec!["x".into()], ..Default::default() }).is_identity());
    let m = compile(MappingConfig::default());
    assert_eq!(m.apply(json!("not even an object")).unwrap(), Some(json!("not even an object")));
}

#[test]
fn mapping_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Mapping>();
    let m = compile(MappingConfig { compute: strings(&[("brand", ".Maker")]), ..Default::default() });
    let shared = m.clone();
    let out = std::thread::spawn(move || shared.apply(json!({"Maker": "Acme"})).unwrap()).join().unwrap();
    assert_eq!(out, Some(json!({"Maker": "Acme", "brand": "Acme"})));
}

/// Arbitrary JSON, numbers included as exact decimal text.
fn arb_json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (any::<i64>(), 0u32..30).prop_map(|(i, zeros)| format!("{}.{}{}", i, "0".repeat(zeros as usize), i.unsigned_abs())),
        "-?[1-9][0-9]{0,30}(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
    ]
    .prop_map(|text| Value::Number(text.parse().expect("valid number text")));
    let leaf = prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), number, ".{0,12}".prop_map(Value::String)];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop_oneof![".{0,8}", Just("a".to_owned()), Just("name".to_owned())], arb_json(), 0..8)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #[test]
    fn identity_mapping_returns_its_input_unchanged(object in arb_object()) {
        let m = compile(MappingConfig::default());
        let input = Value::Object(object);
        let out = m.apply(input.clone()).unwrap().unwrap();
        prop_assert_eq!(serde_json::to_string(&out).unwrap(), serde_json::to_string(&input).unwrap());
    }

    #[test]
    fn json_survives_the_trip_through_jq_values_exactly(value in arb_json()) {
        let back = val_to_json(json_to_val(&value)).unwrap();
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn jq_identity_expression_copies_the_record_exactly(object in arb_object()) {
        let mut object = object;
        object.remove("custom");
        let m = compile(MappingConfig { custom: strings(&[("copy", ".")]), ..Default::default() });
        let input = Value::Object(object);
        let out = m.apply(input.clone()).unwrap().unwrap();
        prop_assert_eq!(serde_json::to_string(&out["custom"]["copy"]).unwrap(), serde_json::to_string(&input).unwrap());
    }

    #[test]
    fn rename_preserves_every_other_field(object in arb_object()) {
        let m = compile(MappingConfig { rename: strings(&[("a", "name")]), ..Default::default() });
        let out = m.apply(Value::Object(object.clone())).unwrap().unwrap();
        let out = out.as_object().unwrap();
        let mut expected = object.clone();
        if let Some(a) = expected.remove("a") {
            expected.insert("name".into(), a);
        }
        prop_assert_eq!(serde_json::to_string(out).unwrap(), serde_json::to_string(&expected).unwrap());
        for (k, v) in &object {
            if k != "a" && k != "name" {
                prop_assert_eq!(out.get(k), Some(v));
            }
        }
    }
}
