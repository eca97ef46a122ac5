//! Identifiers from the config (tables, views, columns): validated, then always quoted, so a name can never
//! carry SQL into a statement. Values are never written into SQL text: they are bound parameters.

use std::fmt;

/// Which SQL the server speaks: quoting and placeholders differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    MySql,
}

impl Dialect {
    /// `"name"` (PostgreSQL) or `` `name` `` (MySQL/MariaDB), the quote character doubled inside.
    pub(crate) fn quote(self, name: &str) -> String {
        match self {
            Dialect::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
            Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        }
    }

    /// The `n`th (1-based) bound parameter: `$n` or `?`.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql => "?".to_owned(),
        }
    }

    /// `first, first+1, …` placeholders, comma separated.
    pub(crate) fn placeholders(self, first: usize, count: usize) -> String {
        (first..first + count).map(|n| self.placeholder(n)).collect::<Vec<_>>().join(", ")
    }

    /// A cast of an expression to text, for values read back as strings (keys of any column type).
    pub(crate) fn as_text(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({expr} AS TEXT)"),
            Dialect::MySql => format!("CAST({expr} AS CHAR)"),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
        }
    }
}

/// Longest identifier both servers accept (PostgreSQL truncates at 63 bytes, MySQL refuses over 64).
const MAX_IDENT_BYTES: usize = 63;

/// Checks one identifier part: not empty, not too long, no control characters (quoting handles the rest).
pub(crate) fn check_ident(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(format!("{name:?} is longer than {MAX_IDENT_BYTES} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} contains a control character"));
    }
    if name != name.trim() {
        return Err(format!("{name:?} starts or ends with a space"));
    }
    Ok(())
}

/// A table or view, optionally in a schema (PostgreSQL) / database (MySQL): `name` or `schema.name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableName {
    pub(crate) schema: Option<String>,
    pub(crate) name: String,
}

impl TableName {
    pub(crate) fn parse(text: &str) -> Result<TableName, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let (schema, name) = match parts.as_slice() {
            [name] => (None, *name),
            [schema, name] => (Some(*schema), *name),
            _ => return Err(format!("{text:?} must be a table name or schema.table")),
        };
        if let Some(s) = schema {
            check_ident(s).map_err(|e| format!("schema of {text:?} {e}"))?;
        }
        check_ident(name).map_err(|e| format!("table {e}"))?;
        Ok(TableName { schema: schema.map(str::to_owned), name: name.to_owned() })
    }

    pub(crate) fn quoted(&self, dialect: Dialect) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", dialect.quote(s), dialect.quote(&self.name)),
            None => dialect.quote(&self.name),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_the_quote_character_so_a_name_cannot_end_the_identifier() {
        assert_eq!(Dialect::Postgres.quote("order\"; DROP TABLE x; --"), "\"order\"\"; DROP TABLE x; --\"");
        assert_eq!(Dialect::MySql.quote("a`b"), "`a``b`");
        assert_eq!(Dialect::Postgres.quote("Item Code"), "\"Item Code\"");
    }

    #[test]
    fn table_names_take_an_optional_schema_and_refuse_empty_or_control_characters() {
        assert_eq!(TableName::parse("legacy.web_orders").unwrap().quoted(Dialect::Postgres), "\"legacy\".\"web_orders\"");
        assert_eq!(TableName::parse("web_orders").unwrap().quoted(Dialect::MySql), "`web_orders`");
        assert!(TableName::parse("a.b.c").unwrap_err().contains("schema.table"));
        assert!(TableName::parse("").unwrap_err().contains("empty"));
        assert!(TableName::parse("x\ny").unwrap_err().contains("control"));
        assert!(TableName::parse(&"x".repeat(64)).unwrap_err().contains("longer"));
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_and_positional_for_mysql() {
        assert_eq!(Dialect::Postgres.placeholders(3, 2), "$3, $4");
        assert_eq!(Dialect::MySql.placeholders(3, 2), "?, ?");
    }
}
