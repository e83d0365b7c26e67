//! Keyset paging (`limit` + `marker`): pages cost the same at any depth, because each one is
//! an index range scan that starts after the marker's sort key, never an OFFSET.

use chrono::{DateTime, Utc};
use diesel::expression::BoxableExpression;
use diesel::pg::Pg;
use diesel::sql_types::{Bool, Int4, Text, Timestamptz, Uuid as SqlUuid};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// A validated page request. `sort_key` is one of the keys the resource allows.
#[derive(Debug, Clone)]
pub struct PageRequest<M> {
    pub limit: i64,
    pub marker: Option<M>,
    pub sort_key: &'static str,
    pub dir: SortDir,
}

/// One page of results: `more` tells whether a next page exists.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> Page<T> {
    /// Cuts a result fetched with `limit + 1` rows down to `limit`.
    pub fn from_overfetch(mut items: Vec<T>, limit: i64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = items.len() > limit;
        items.truncate(limit);
        Page { items, more }
    }
}

/// The sort value of the marker row.
#[derive(Debug, Clone)]
pub enum SortValue {
    Time(DateTime<Utc>),
    Text(String),
    Int(i32),
}

/// `(sort_key, id) > (value, marker_id)` (or `<` when descending), as a filter usable on any
/// table. Column names come from a fixed list in code, never from the request.
pub fn after<QS: 'static>(
    sort_key: &'static str,
    value: SortValue,
    tie_breaker: Option<(&'static str, Uuid)>,
    dir: SortDir,
) -> Box<dyn BoxableExpression<QS, Pg, SqlType = Bool>> {
    use diesel::dsl::sql;
    let op = match dir {
        SortDir::Asc => ">",
        SortDir::Desc => "<",
    };
    match (value, tie_breaker) {
        (SortValue::Time(t), Some((id_col, id))) => Box::new(
            sql::<Bool>(&format!("({sort_key}, {id_col}) {op} ("))
                .bind::<Timestamptz, _>(t)
                .sql(", ")
                .bind::<SqlUuid, _>(id)
                .sql(")"),
        ),
        (SortValue::Text(s), Some((id_col, id))) => Box::new(
            sql::<Bool>(&format!("({sort_key}, {id_col}) {op} ("))
                .bind::<Text, _>(s)
                .sql(", ")
                .bind::<SqlUuid, _>(id)
                .sql(")"),
        ),
        (SortValue::Int(i), Some((id_col, id))) => Box::new(
            sql::<Bool>(&format!("({sort_key}, {id_col}) {op} ("))
                .bind::<Int4, _>(i)
                .sql(", ")
                .bind::<SqlUuid, _>(id)
                .sql(")"),
        ),
        (SortValue::Time(t), None) => {
            Box::new(sql::<Bool>(&format!("{sort_key} {op} ")).bind::<Timestamptz, _>(t))
        }
        (SortValue::Text(s), None) => {
            Box::new(sql::<Bool>(&format!("{sort_key} {op} ")).bind::<Text, _>(s))
        }
        (SortValue::Int(i), None) => {
            Box::new(sql::<Bool>(&format!("{sort_key} {op} ")).bind::<Int4, _>(i))
        }
    }
}

/// `ORDER BY sort_key dir, id dir` as SQL text for `order_by(sql(...))`.
pub fn order(sort_key: &'static str, tie_breaker: Option<&'static str>, dir: SortDir) -> String {
    let dir = match dir {
        SortDir::Asc => "ASC",
        SortDir::Desc => "DESC",
    };
    match tie_breaker {
        Some(id) => format!("{sort_key} {dir}, {id} {dir}"),
        None => format!("{sort_key} {dir}"),
    }
}
