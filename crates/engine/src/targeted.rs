//! Targeted runs (`ferry sync FLOW --key K`, webhooks): the keys are **canonical** keys, the ones a
//! record has after the flow's mapping (`sku`, `code`, `number`, `sku@location`, `list/sku/min_qty`).
//!
//! The source is asked for those keys only when the mapping leaves the key fields exactly as the source
//! has them; when the mapping renames, computes, sets, defaults or drops a key field, the source's own
//! key is something else, so the whole source is read and records are selected after mapping. Either
//! way, only selected records are compared and written (dry runs too), and a record that fails before its
//! key is known (an unreadable row, a mapping error on a raw ERP row) is left alone rather than parked,
//! with a warning saying how many.

use crate::mapping::MappingConfig;
use ferry_model::Stream;
use std::collections::HashSet;

#[derive(Clone, Debug)]
pub struct KeySelection {
    keys: HashSet<String>,
    /// The source can filter by these keys itself.
    push_down: bool,
    stream: Stream,
}

impl KeySelection {
    pub fn new(keys: &[String], mapping: &MappingConfig, stream: Stream) -> Self {
        KeySelection { keys: keys.iter().cloned().collect(), push_down: !mapping_touches_key(mapping, stream), stream }
    }

    /// The keys to hand the source (`ReadRequest::keys`), or `None` to read it all.
    pub fn source_keys(&self) -> Option<Vec<String>> {
        self.push_down.then(|| {
            let mut keys: Vec<String> = self.keys.iter().cloned().collect();
            keys.sort();
            keys
        })
    }

    /// The record with this canonical key is selected: its key is one of the keys, or — for streams keyed
    /// by more than the SKU (stock `sku@location`, prices `list/sku/min_qty`) — its SKU is, so
    /// `ferry sync stock --key SPD-1001` takes that product's stock in every location.
    pub fn selects(&self, key: &str) -> bool {
        if self.keys.contains(key) {
            return true;
        }
        let sku = match self.stream {
            Stream::Stock => key.rsplit_once('@').map(|(sku, _)| sku),
            Stream::Prices => key.rsplit_once('/').and_then(|(rest, _)| rest.split_once('/')).map(|(_, sku)| sku),
            _ => None,
        };
        sku.is_some_and(|sku| self.keys.contains(sku))
    }
}

/// Whether the mapping can make a record's canonical key differ from the key fields the source record
/// carries (so a source filtering by key would filter by the wrong value).
pub fn mapping_touches_key(mapping: &MappingConfig, stream: Stream) -> bool {
    let key_fields = stream.key_fields();
    let is_key = |path: &str| {
        let top = path.split(['.', '[']).next().unwrap_or(path);
        key_fields.contains(&top)
    };
    mapping.rename.iter().any(|(from, to)| is_key(from) || is_key(to))
        || mapping.compute.keys().any(|p| is_key(p))
        || mapping.defaults.keys().any(|p| is_key(p))
        || mapping.set.keys().any(|p| is_key(p))
        || mapping.drop.iter().any(|f| is_key(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(toml: &str) -> MappingConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn a_sku_selects_its_stock_in_every_location_and_its_prices_in_every_list() {
        let none = MappingConfig::default();
        let stock = KeySelection::new(&["SPD-1001".to_owned()], &none, Stream::Stock);
        assert!(stock.selects("SPD-1001@MAIN") && stock.selects("SPD-1001@SYD") && !stock.selects("SPD-1002@MAIN"));
        let prices = KeySelection::new(&["SPD-1001".to_owned()], &none, Stream::Prices);
        assert!(prices.selects("Trade/SPD-1001/1") && prices.selects("Trade/SPD-1001/10") && !prices.selects("Trade/SPD-10/1"));
        let exact = KeySelection::new(&["Trade/SPD-1001/1".to_owned()], &none, Stream::Prices);
        assert!(exact.selects("Trade/SPD-1001/1") && !exact.selects("Trade/SPD-1001/10"));
    }

    #[test]
    fn keys_go_to_the_source_only_when_the_mapping_leaves_key_fields_alone() {
        let keys = ["SPD-1001".to_owned()];
        let untouched = mapping("rename = { Description = \"name\" }\nset = { \"price.currency\" = \"AUD\" }");
        assert_eq!(KeySelection::new(&keys, &untouched, Stream::Products).source_keys(), Some(keys.to_vec()));
        for touching in [
            "rename = { ItemCode = \"sku\" }",
            "rename = { sku = \"custom_sku\" }",
            "compute = { sku = '.Code | ascii_upcase' }",
            "defaults = { sku = \"X\" }",
            "drop = [\"sku\"]",
        ] {
            assert_eq!(KeySelection::new(&keys, &mapping(touching), Stream::Products).source_keys(), None, "{touching}");
        }
        // Stock keys are `sku@location`: a mapped location changes the key too.
        assert!(mapping_touches_key(&mapping("set = { location = \"main\" }"), Stream::Stock));
        assert!(!mapping_touches_key(&mapping("set = { location = \"main\" }"), Stream::Products));
        let selection = KeySelection::new(&keys, &untouched, Stream::Products);
        assert!(selection.selects("SPD-1001") && !selection.selects("SPD-1002"));
    }
}
