//! Targeted runs (`ferry sync FLOW --key K`, webhooks): the keys are **canonical** keys, the ones a
//! record has after the flow's mapping (`sku`, `code`, `number`, `sku@location`, `list/sku/min_qty`).
//!
//! The source is asked for those keys only when the mapping leaves the key fields exactly as the source
//! has them; when the mapping renames, computes, sets, defaults or drops a key field, the source's own
//! key is something else, so the whole source is read and records are selected after mapping. Either
//! way, only selected records are compared and written (dry runs too), and a record that fails before its
//! key is known (an unreadable row, a mapping error on a raw ERP row) is left alone rather than parked,
//! with a warning saying how many.
//!
//! Prices and stock have composite keys (`list/sku/min_qty`, `sku@location`); for them a plain SKU selects
//! all of that product's prices or locations, as their sources (Tryton) and webhooks name them.

use crate::mapping::MappingConfig;
use ferry_model::Stream;
use std::collections::HashSet;

#[derive(Clone, Debug)]
pub struct KeySelection {
    stream: Stream,
    keys: HashSet<String>,
    /// The source can filter by these keys itself.
    push_down: bool,
}

impl KeySelection {
    pub fn new(keys: &[String], mapping: &MappingConfig, stream: Stream) -> Self {
        KeySelection { stream, keys: keys.iter().cloned().collect(), push_down: !mapping_touches_key(mapping, stream) }
    }

    /// The keys to hand the source (`ReadRequest::keys`), or `None` to read it all.
    pub fn source_keys(&self) -> Option<Vec<String>> {
        self.push_down.then(|| {
            let mut keys: Vec<String> = self.keys.iter().cloned().collect();
            keys.sort();
            keys
        })
    }

    /// Whether the record with canonical key `key` is selected: its key is named, or (prices, stock) its
    /// SKU is. `sku` is the record's SKU when known; otherwise it is read from the key.
    pub fn selects(&self, key: &str, sku: Option<&str>) -> bool {
        if self.keys.contains(key) {
            return true;
        }
        let sku = sku.or_else(|| match self.stream {
            Stream::Stock => key.rsplit_once('@').map(|(sku, _)| sku),
            Stream::Prices => {
                let parts: Vec<&str> = key.split('/').collect();
                (parts.len() == 3).then(|| parts[1])
            }
            _ => None,
        });
        matches!(self.stream, Stream::Stock | Stream::Prices) && sku.is_some_and(|s| self.keys.contains(s))
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
        assert!(selection.selects("SPD-1001", None) && !selection.selects("SPD-1002", None));
        // Composite keys: the full key, or the SKU for all of a product's prices / locations.
        let stock = KeySelection::new(&keys, &MappingConfig::default(), Stream::Stock);
        assert!(stock.selects("SPD-1001@MEL", None) && stock.selects("SPD-1001@SYD", Some("SPD-1001")));
        assert!(!stock.selects("SPD-1002@MEL", None));
        let prices = KeySelection::new(&["TRADE/SPD-1001/10".to_owned()], &MappingConfig::default(), Stream::Prices);
        assert!(prices.selects("TRADE/SPD-1001/10", None) && !prices.selects("TRADE/SPD-1001/1", None));
        let by_sku = KeySelection::new(&keys, &MappingConfig::default(), Stream::Prices);
        assert!(by_sku.selects("TRADE/SPD-1001/1", None) && by_sku.selects("RETAIL/SPD-1001/5", None));
        assert!(!KeySelection::new(&keys, &MappingConfig::default(), Stream::Products).selects("X", Some("SPD-1001")), "products select by key only");
    }
}
