//! Collection schemas: what a record may hold, and who may touch it.
//!
//! A schema is data: JSON over the API, TOML in `rampart collections
//! apply`, the same shape in both. [`CollectionSchema::check`] refuses a
//! schema that makes no sense; [`CollectionSchema::check_record`] refuses
//! a record the schema does not allow, listing every problem.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const MAX_FIELDS: usize = 64;
pub const MAX_NAME: usize = 63;
const MAX_ENUM_VALUES: usize = 256;
const MAX_PATTERN: usize = 512;
const MAX_TEXT: u32 = 1024 * 1024;
const DEFAULT_TEXT_MAX: u32 = 10_000;
const DEFAULT_JSON_DEPTH: u32 = 8;
const MAX_JSON_DEPTH: u32 = 32;
const DEFAULT_JSON_BYTES: u32 = 16 * 1024;
const MAX_URL: usize = 2048;
/// Integers beyond this are not exactly representable as JSON numbers in
/// most clients' languages.
const MAX_SAFE_INT: i64 = (1 << 53) - 1;

/// Names the system gives every record; fields cannot take them.
pub const RESERVED: [&str; 6] = [
    "id",
    "created_at",
    "updated_at",
    "owner",
    "version",
    "owner_id",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    List,
    Read,
    Create,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::List,
        Action::Read,
        Action::Create,
        Action::Update,
        Action::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Integer,
    Number,
    Boolean,
    Datetime,
    Email,
    Url,
    Enum,
    Json,
    Reference,
}

impl FieldType {
    /// Whether `<`, `>` and sorting mean something for the type.
    pub fn ordered(self) -> bool {
        matches!(
            self,
            FieldType::Text
                | FieldType::Integer
                | FieldType::Number
                | FieldType::Datetime
                | FieldType::Email
                | FieldType::Url
                | FieldType::Enum
                | FieldType::Boolean
        )
    }

    pub fn textual(self) -> bool {
        matches!(
            self,
            FieldType::Text
                | FieldType::Email
                | FieldType::Url
                | FieldType::Enum
                | FieldType::Reference
        )
    }
}

/// One field. Limits that do not apply to the type are refused by
/// [`CollectionSchema::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// A regular expression the whole value must match (text only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The allowed values of an `enum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u32>,
    /// The collection a `reference` points into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Text only: allow line breaks and tabs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub multiline: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    /// Encrypted at rest; never sorted or range-filtered.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
    /// Sensitive only: exact-match lookups through a blind index.
    #[serde(default, skip_serializing_if = "is_false")]
    pub searchable: bool,
    /// Who may see the field: grants as in [`AccessRules`]. Absent: whoever
    /// may read the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<String>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Who may do what. Each entry is `owner` (the record's creator; for
/// `create`: any signed-in account, which becomes the owner), or a role
/// (`admin`, `member`, or a custom one). An empty list is nobody.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRules {
    #[serde(default = "owner_admin")]
    pub list: Vec<String>,
    #[serde(default = "owner_admin")]
    pub read: Vec<String>,
    #[serde(default = "owner")]
    pub create: Vec<String>,
    #[serde(default = "owner")]
    pub update: Vec<String>,
    #[serde(default = "owner")]
    pub delete: Vec<String>,
}

fn owner() -> Vec<String> {
    vec![OWNER.to_owned()]
}

fn owner_admin() -> Vec<String> {
    vec![OWNER.to_owned(), "admin".to_owned()]
}

pub const OWNER: &str = "owner";

impl Default for AccessRules {
    fn default() -> Self {
        Self {
            list: owner_admin(),
            read: owner_admin(),
            create: owner(),
            update: owner(),
            delete: owner(),
        }
    }
}

impl AccessRules {
    pub fn grants(&self, action: Action) -> &[String] {
        match action {
            Action::List => &self.list,
            Action::Read => &self.read,
            Action::Create => &self.create,
            Action::Update => &self.update,
            Action::Delete => &self.delete,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSchema {
    pub fields: BTreeMap<String, FieldDef>,
    #[serde(default)]
    pub access: AccessRules,
    /// When an account is deleted, its records here go with it; otherwise
    /// they stay, without an owner (ADR 0015).
    #[serde(default)]
    pub owner_deletes: bool,
}

/// One thing wrong with a schema or a record: the field (or `""` for the
/// whole), a stable code, and a sentence. Never the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldProblem {
    fn new(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

/// `[a-z][a-z0-9_]*`, at most 63 bytes: names of collections, fields and
/// roles, safe in a URL, a JSON path and a log line.
pub fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// A custom role's name: a valid name that is not a built-in word.
pub fn valid_role(s: &str) -> bool {
    valid_name(s) && s != OWNER
}

/// Compiles a field's pattern, anchored, with a size limit. The `regex`
/// crate runs in linear time, so no pattern can stall a write.
pub fn compile_pattern(p: &str) -> Result<regex::Regex, String> {
    if p.len() > MAX_PATTERN {
        return Err(format!("the pattern is longer than {MAX_PATTERN} bytes"));
    }
    regex::RegexBuilder::new(&format!("^(?:{p})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|_| "the pattern is not a valid regular expression".to_owned())
}

impl CollectionSchema {
    /// Every problem with the schema itself. `collection` is its own name,
    /// which a reference may point to.
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        if self.fields.is_empty() {
            out.push(FieldProblem::new(
                "",
                "no_fields",
                "a collection needs at least one field",
            ));
        }
        if self.fields.len() > MAX_FIELDS {
            out.push(FieldProblem::new(
                "",
                "too_many_fields",
                format!("a collection has at most {MAX_FIELDS} fields"),
            ));
        }
        for (name, f) in &self.fields {
            if !valid_name(name) {
                out.push(FieldProblem::new(
                    "",
                    "invalid_field_name",
                    "field names are 1-63 characters: a-z first, then a-z, 0-9 or _",
                ));
                continue;
            }
            if RESERVED.contains(&name.as_str()) {
                out.push(FieldProblem::new(
                    name,
                    "reserved_field_name",
                    format!("`{name}` is given to every record by Rampart; choose another name"),
                ));
            }
            check_field(name, f, &mut out);
        }
        for action in Action::ALL {
            for g in self.access.grants(action) {
                if !valid_name(g) {
                    out.push(FieldProblem::new(
                        "",
                        "invalid_grant",
                        format!(
                            "access.{}: grants are `owner` or role names (a-z, 0-9, _)",
                            action.as_str()
                        ),
                    ));
                }
            }
        }
        out
    }

    /// The collections this one references.
    pub fn references(&self) -> BTreeSet<&str> {
        self.fields
            .values()
            .filter_map(|f| f.collection.as_deref())
            .collect()
    }

    /// Whether any field is stored encrypted.
    pub fn has_sensitive(&self) -> bool {
        self.fields.values().any(|f| f.sensitive)
    }

    /// Checks a whole record (a create, or a patch merged onto the stored
    /// record) and returns it normalised (datetimes in UTC). `input` holds
    /// the fields the client sent; every field it names must exist.
    pub fn check_record(
        &self,
        input: &Map<String, Value>,
        patterns: &Patterns,
    ) -> Result<Map<String, Value>, Vec<FieldProblem>> {
        let mut out = Map::new();
        let mut problems = Vec::new();
        for (name, value) in input {
            let Some(def) = self.fields.get(name) else {
                problems.push(FieldProblem::new(
                    "",
                    "unknown_field",
                    format!("this collection has no field `{}`", printable_name(name)),
                ));
                continue;
            };
            if value.is_null() {
                if def.required {
                    problems.push(FieldProblem::new(
                        name,
                        "required",
                        "this field is required",
                    ));
                }
                continue;
            }
            match check_value(name, def, value, patterns.get(name)) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(p) => problems.push(p),
            }
        }
        for (name, def) in &self.fields {
            if def.required && input.get(name).is_none_or(|v| v.is_null()) {
                problems.push(FieldProblem::new(
                    name,
                    "required",
                    "this field is required",
                ));
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            problems.dedup();
            Err(problems)
        }
    }
}

/// A field name from input, safe to quote in a message: cut short, with
/// anything outside printable ASCII replaced.
pub fn printable_name(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// The compiled patterns of a schema's fields.
#[derive(Debug, Default, Clone)]
pub struct Patterns(BTreeMap<String, regex::Regex>);

impl Patterns {
    pub fn compile(schema: &CollectionSchema) -> Result<Self, Vec<FieldProblem>> {
        let mut map = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, f) in &schema.fields {
            if let Some(p) = &f.pattern {
                match compile_pattern(p) {
                    Ok(r) => {
                        map.insert(name.clone(), r);
                    }
                    Err(m) => problems.push(FieldProblem::new(name, "invalid_pattern", m)),
                }
            }
        }
        if problems.is_empty() {
            Ok(Self(map))
        } else {
            Err(problems)
        }
    }

    fn get(&self, name: &str) -> Option<&regex::Regex> {
        self.0.get(name)
    }
}

fn check_field(name: &str, f: &FieldDef, out: &mut Vec<FieldProblem>) {
    let mut bad = |code: &'static str, m: &str| out.push(FieldProblem::new(name, code, m));
    let ty = f.ty;
    let text_like = matches!(ty, FieldType::Text);
    if (f.min_length.is_some() || f.max_length.is_some()) && !text_like {
        bad(
            "limit_not_applicable",
            "min_length/max_length apply to text fields only",
        );
    }
    if let (Some(a), Some(b)) = (f.min_length, f.max_length) {
        if a > b {
            bad("invalid_limits", "min_length is above max_length");
        }
    }
    if f.max_length.is_some_and(|m| m > MAX_TEXT) {
        bad("invalid_limits", "max_length is at most 1048576");
    }
    if f.pattern.is_some() && !text_like {
        bad(
            "limit_not_applicable",
            "pattern applies to text fields only",
        );
    }
    if let Some(p) = &f.pattern {
        if let Err(m) = compile_pattern(p) {
            bad("invalid_pattern", &m);
        }
    }
    if f.multiline && !text_like {
        bad(
            "limit_not_applicable",
            "multiline applies to text fields only",
        );
    }
    let numeric = matches!(ty, FieldType::Integer | FieldType::Number);
    if (f.min.is_some() || f.max.is_some()) && !numeric {
        bad(
            "limit_not_applicable",
            "min/max apply to integer and number fields only",
        );
    }
    for v in [f.min, f.max].into_iter().flatten() {
        if !v.is_finite()
            || (ty == FieldType::Integer && (v.fract() != 0.0 || v.abs() > MAX_SAFE_INT as f64))
        {
            bad(
                "invalid_limits",
                "min/max must be finite (whole numbers within ±2^53 for integers)",
            );
        }
    }
    if let (Some(a), Some(b)) = (f.min, f.max) {
        if a > b {
            bad("invalid_limits", "min is above max");
        }
    }
    match (&f.values, ty) {
        (Some(values), FieldType::Enum) => {
            let distinct: BTreeSet<&String> = values.iter().collect();
            if values.is_empty()
                || values.len() > MAX_ENUM_VALUES
                || distinct.len() != values.len()
                || values
                    .iter()
                    .any(|v| v.is_empty() || v.len() > 200 || v.chars().any(char::is_control))
            {
                bad(
                    "invalid_enum",
                    "values: 1-256 distinct, non-empty strings of at most 200 bytes, no control characters",
                );
            }
        }
        (None, FieldType::Enum) => bad("invalid_enum", "an enum field needs `values`"),
        (Some(_), _) => bad("limit_not_applicable", "values apply to enum fields only"),
        (None, _) => {}
    }
    if (f.max_depth.is_some() || f.max_bytes.is_some()) && ty != FieldType::Json {
        bad(
            "limit_not_applicable",
            "max_depth/max_bytes apply to json fields only",
        );
    }
    if f.max_depth.is_some_and(|d| d == 0 || d > MAX_JSON_DEPTH) {
        bad("invalid_limits", "max_depth is 1 to 32");
    }
    if f.max_bytes.is_some_and(|b| b == 0 || b > MAX_TEXT) {
        bad("invalid_limits", "max_bytes is 1 to 1048576");
    }
    match (&f.collection, ty) {
        (Some(c), FieldType::Reference) if !valid_name(c) => bad(
            "invalid_reference",
            "collection: not a valid collection name",
        ),
        (Some(_), FieldType::Reference) => {}
        (None, FieldType::Reference) => {
            bad("invalid_reference", "a reference field needs `collection`")
        }
        (Some(_), _) => bad(
            "limit_not_applicable",
            "collection applies to reference fields only",
        ),
        (None, _) => {}
    }
    if f.searchable && !f.sensitive {
        bad(
            "searchable_not_sensitive",
            "searchable is for sensitive fields (plain fields can always be filtered)",
        );
    }
    if f.sensitive && ty == FieldType::Json && f.searchable {
        bad("invalid_searchable", "json fields cannot be searchable");
    }
    if let Some(grants) = &f.read {
        if grants.iter().any(|g| !valid_name(g)) {
            bad("invalid_grant", "read: grants are `owner` or role names");
        }
        if f.unique {
            bad(
                "unique_hidden_field",
                "a field hidden with `read` cannot be unique: a refused duplicate would reveal its values",
            );
        }
    }
}

/// Control characters refused in text: every Unicode `Cc` except, in
/// multi-line text, tab, line feed and carriage return. Also the
/// direction overrides used to disguise text.
fn bad_char(c: char, multiline: bool) -> bool {
    if multiline && matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn check_value(
    name: &str,
    def: &FieldDef,
    v: &Value,
    pattern: Option<&regex::Regex>,
) -> Result<Value, FieldProblem> {
    let wrong = |what: &str| FieldProblem::new(name, "wrong_type", format!("expected {what}"));
    match def.ty {
        FieldType::Text => {
            let s = v.as_str().ok_or_else(|| wrong("a string"))?;
            if s.chars().any(|c| bad_char(c, def.multiline)) {
                return Err(FieldProblem::new(
                    name,
                    "control_character",
                    if def.multiline {
                        "control characters other than tab and line breaks are not allowed"
                    } else {
                        "control characters (including line breaks) are not allowed in this field"
                    },
                ));
            }
            let n = s.chars().count() as u64;
            let max = def.max_length.unwrap_or(DEFAULT_TEXT_MAX) as u64;
            if n > max {
                return Err(FieldProblem::new(
                    name,
                    "too_long",
                    format!("at most {max} characters"),
                ));
            }
            if let Some(min) = def.min_length {
                if n < min as u64 {
                    return Err(FieldProblem::new(
                        name,
                        "too_short",
                        format!("at least {min} characters"),
                    ));
                }
            }
            if let Some(re) = pattern {
                if !re.is_match(s) {
                    return Err(FieldProblem::new(
                        name,
                        "pattern_mismatch",
                        "does not match the field's pattern",
                    ));
                }
            }
            Ok(v.clone())
        }
        FieldType::Integer => {
            let n = v.as_i64().filter(|_| v.is_i64() || v.is_u64());
            let Some(n) = n.filter(|n| n.abs() <= MAX_SAFE_INT) else {
                return Err(wrong(
                    "a whole number within ±2^53 (no quotes, no decimal point)",
                ));
            };
            range(name, def, n as f64)?;
            Ok(v.clone())
        }
        FieldType::Number => {
            let n = v
                .as_f64()
                .filter(|n| n.is_finite() && v.is_number())
                .ok_or_else(|| wrong("a number (no quotes)"))?;
            range(name, def, n)?;
            Ok(v.clone())
        }
        FieldType::Boolean => v
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| wrong("true or false")),
        FieldType::Datetime => {
            let s = v
                .as_str()
                .ok_or_else(|| wrong("an RFC 3339 date-time string"))?;
            normalise_datetime(s)
                .map(Value::String)
                .ok_or_else(|| wrong("an RFC 3339 date-time such as 2026-01-31T09:30:00Z"))
        }
        FieldType::Email => {
            let s = v.as_str().ok_or_else(|| wrong("an email address"))?;
            if s.chars().any(|c| bad_char(c, false)) || crate::Email::parse(s).is_err() {
                return Err(FieldProblem::new(
                    name,
                    "invalid_email",
                    "not a valid email address",
                ));
            }
            Ok(v.clone())
        }
        FieldType::Url => {
            let s = v.as_str().ok_or_else(|| wrong("a URL"))?;
            let ok = s.len() <= MAX_URL
                && !s.chars().any(|c| bad_char(c, false) || c == ' ')
                && url::Url::parse(s)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(FieldProblem::new(
                    name,
                    "invalid_url",
                    "not an absolute http(s) URL of at most 2048 bytes",
                ));
            }
            Ok(v.clone())
        }
        FieldType::Enum => {
            let s = v.as_str().ok_or_else(|| wrong("a string"))?;
            if !def
                .values
                .as_ref()
                .is_some_and(|vs| vs.iter().any(|x| x == s))
            {
                return Err(FieldProblem::new(
                    name,
                    "not_in_enum",
                    "not one of the field's allowed values",
                ));
            }
            Ok(v.clone())
        }
        FieldType::Json => {
            if json_has_nul(v) {
                return Err(FieldProblem::new(
                    name,
                    "control_character",
                    "NUL characters are not allowed in strings or keys",
                ));
            }
            let depth = def.max_depth.unwrap_or(DEFAULT_JSON_DEPTH);
            if json_depth(v) > depth {
                return Err(FieldProblem::new(
                    name,
                    "too_deep",
                    format!("nested at most {depth} levels"),
                ));
            }
            let bytes = def.max_bytes.unwrap_or(DEFAULT_JSON_BYTES) as usize;
            if serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX) > bytes {
                return Err(FieldProblem::new(
                    name,
                    "too_large",
                    format!("at most {bytes} bytes as JSON"),
                ));
            }
            Ok(v.clone())
        }
        FieldType::Reference => {
            let s = v.as_str().ok_or_else(|| wrong("a record id"))?;
            if !valid_record_id(s) {
                return Err(FieldProblem::new(
                    name,
                    "invalid_reference",
                    "not a record id",
                ));
            }
            Ok(v.clone())
        }
    }
}

fn range(name: &str, def: &FieldDef, n: f64) -> Result<(), FieldProblem> {
    if let Some(min) = def.min {
        if n < min {
            return Err(FieldProblem::new(
                name,
                "too_small",
                format!("at least {min}"),
            ));
        }
    }
    if let Some(max) = def.max {
        if n > max {
            return Err(FieldProblem::new(
                name,
                "too_large",
                format!("at most {max}"),
            ));
        }
    }
    Ok(())
}

/// Whether a string or key anywhere in the value holds U+0000, which
/// PostgreSQL cannot store in text or JSONB.
fn json_has_nul(v: &Value) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => {
                if o.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(o.values());
            }
            _ => {}
        }
    }
    false
}

fn json_depth(v: &Value) -> u32 {
    // Iterative, so a deep value cannot exhaust the stack (serde_json
    // already refuses input nested beyond 128 levels).
    let mut max = 0;
    let mut stack = vec![(v, 1u32)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// RFC 3339 in, UTC with milliseconds out (`2026-01-31T09:30:00.000Z`), so
/// stored date-times sort as text.
pub fn normalise_datetime(s: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(s, &Rfc3339).ok()?;
    // Checked: an offset can carry the instant past year 9999.
    let t = t.checked_to_offset(time::UtcOffset::UTC)?;
    if !(1..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

/// Record ids are `rec_` and 32 hex digits.
pub fn valid_record_id(s: &str) -> bool {
    s.len() == 36
        && s.starts_with("rec_")
        && s[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> CollectionSchema {
        serde_json::from_value(v).unwrap()
    }

    fn check(s: &CollectionSchema, v: Value) -> Result<Map<String, Value>, Vec<&'static str>> {
        let p = Patterns::compile(s).unwrap();
        s.check_record(v.as_object().unwrap(), &p)
            .map_err(|e| e.iter().map(|p| p.code).collect())
    }

    #[test]
    fn every_kind_of_bad_value_is_named() {
        let s = schema(json!({"fields": {
            "name": {"type": "text", "required": true, "max_length": 5, "pattern": "[a-z]+"},
            "age": {"type": "integer", "min": 0, "max": 150},
            "score": {"type": "number"},
            "ok": {"type": "boolean"},
            "at": {"type": "datetime"},
            "mail": {"type": "email"},
            "site": {"type": "url"},
            "tier": {"type": "enum", "values": ["a", "b"]},
            "meta": {"type": "json", "max_depth": 2},
            "note": {"type": "text", "multiline": true}
        }}));
        assert!(s.check().is_empty());
        assert_eq!(check(&s, json!({})).unwrap_err(), vec!["required"]);
        let cases = [
            (json!({"name": "abcdef"}), "too_long"),
            (json!({"name": "ABC"}), "pattern_mismatch"),
            (json!({"name": "ab\u{0}"}), "control_character"),
            (json!({"name": "ab\ncd"}), "control_character"),
            (json!({"name": 5}), "wrong_type"),
            (json!({"name": "ab", "age": "5"}), "wrong_type"),
            (json!({"name": "ab", "age": 5.0}), "wrong_type"),
            (json!({"name": "ab", "age": 151}), "too_large"),
            (json!({"name": "ab", "age": -1}), "too_small"),
            (json!({"name": "ab", "score": "1"}), "wrong_type"),
            (json!({"name": "ab", "ok": 1}), "wrong_type"),
            (json!({"name": "ab", "at": "yesterday"}), "wrong_type"),
            (json!({"name": "ab", "mail": "nope"}), "invalid_email"),
            (
                json!({"name": "ab", "site": "javascript:alert(1)"}),
                "invalid_url",
            ),
            (json!({"name": "ab", "tier": "c"}), "not_in_enum"),
            (json!({"name": "ab", "meta": {"a": {"b": 1}}}), "too_deep"),
            (json!({"name": "ab", "other": 1}), "unknown_field"),
            (json!({"name": "ab", "note": "a\u{7}"}), "control_character"),
            (
                json!({"name": "ab", "meta": {"k": "a\u{0}"}}),
                "control_character",
            ),
            (
                json!({"name": "ab", "at": "9999-12-31T23:59:59-23:59"}),
                "wrong_type",
            ),
        ];
        for (v, code) in cases {
            assert_eq!(check(&s, v.clone()).unwrap_err(), vec![code], "{v}");
        }
        let ok = check(
            &s,
            json!({"name": "ab", "at": "2026-01-31T10:30:00+01:00", "note": "a\nb", "meta": {"a": 1}}),
        )
        .unwrap();
        assert_eq!(ok["at"], "2026-01-31T09:30:00.000Z");
    }

    #[test]
    fn nonsense_schemas_are_refused() {
        let bad = [
            json!({"fields": {}}),
            json!({"fields": {"id": {"type": "text"}}}),
            json!({"fields": {"Bad": {"type": "text"}}}),
            json!({"fields": {"a": {"type": "integer", "max_length": 3}}}),
            json!({"fields": {"a": {"type": "enum"}}}),
            json!({"fields": {"a": {"type": "text", "pattern": "("}}}),
            json!({"fields": {"a": {"type": "text", "searchable": true}}}),
            json!({"fields": {"a": {"type": "reference"}}}),
            json!({"fields": {"a": {"type": "integer", "min": 0.5}}}),
            json!({"fields": {"a": {"type": "text", "unique": true, "read": ["admin"]}}}),
            json!({"fields": {"a": {"type": "text"}}, "access": {"read": ["Robert'); DROP"]}}),
        ];
        for s in bad {
            assert!(!schema(s.clone()).check().is_empty(), "{s}");
        }
    }

    #[test]
    fn default_access_is_owner_only_and_admin_reads() {
        let s = schema(json!({"fields": {"a": {"type": "text"}}}));
        assert_eq!(s.access.read, vec!["owner", "admin"]);
        assert_eq!(s.access.update, vec!["owner"]);
        assert_eq!(s.access.delete, vec!["owner"]);
    }
}
