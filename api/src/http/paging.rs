//! List query parameters (`limit`, `marker`, `sort_key`, `sort_dir`, filters) and `next` links.

use std::collections::BTreeMap;
use std::str::FromStr;

use actix_web::HttpRequest;

use super::error::{ApiError, ApiResult};
use fresco_store::paging::{Page, PageRequest, SortDir};

/// Query parameters, checked against the names an endpoint accepts.
pub struct Query {
    params: BTreeMap<String, String>,
}

const PAGING: &[&str] = &[
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "all_projects",
    "project_id",
];

impl Query {
    /// Parses the query string; names outside `PAGING` and `filters` are a 400.
    pub fn parse(req: &HttpRequest, filters: &[&str]) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        let mut params = BTreeMap::new();
        for (key, value) in pairs {
            // PostgreSQL text cannot hold U+0000: refused here rather than failing as a 500.
            if key.contains('\0') || value.contains('\0') {
                return Err(ApiError::bad_request(format!(
                    "query parameter {} must not contain a NUL character",
                    key.replace('\0', "\\0")
                )));
            }
            if !PAGING.contains(&key.as_str()) && !filters.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {key}"
                )));
            }
            if params.insert(key.clone(), value).is_some() {
                return Err(ApiError::bad_request(format!(
                    "query parameter {key} given twice"
                )));
            }
        }
        Ok(Query { params })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// A typed parameter; the error names it.
    pub fn typed<T: FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        self.get(key)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter {key} has an invalid value {v:?}"
                    ))
                })
            })
            .transpose()
    }

    pub fn all_projects(&self) -> ApiResult<bool> {
        match self.get("all_projects") {
            None => Ok(false),
            Some("true" | "True" | "1" | "yes") => Ok(true),
            Some("false" | "False" | "0" | "no") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "query parameter all_projects must be true or false, got {other:?}"
            ))),
        }
    }

    /// The page request, with `sort_keys` the keys this list may sort by (the first is the
    /// default), ascending unless `sort_dir` says otherwise.
    pub fn page<M: FromStr>(
        &self,
        sort_keys: &[&'static str],
        default_limit: i64,
        max_limit: i64,
    ) -> ApiResult<PageRequest<M>> {
        self.page_sorted(sort_keys, SortDir::Asc, default_limit, max_limit)
    }

    /// [`Query::page`] for a list whose default direction is `default_dir` (executions:
    /// newest first).
    pub fn page_sorted<M: FromStr>(
        &self,
        sort_keys: &[&'static str],
        default_dir: SortDir,
        default_limit: i64,
        max_limit: i64,
    ) -> ApiResult<PageRequest<M>> {
        let limit = self.typed::<i64>("limit")?.unwrap_or(default_limit);
        if limit < 1 || limit > max_limit {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {max_limit}"
            )));
        }
        let sort_key = match self.get("sort_key") {
            None => sort_keys[0],
            Some(key) => sort_keys
                .iter()
                .copied()
                .find(|k| *k == key)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "sort_key must be one of {}",
                        sort_keys.join(", ")
                    ))
                })?,
        };
        let dir = match self.get("sort_dir") {
            None => default_dir,
            Some("asc") => SortDir::Asc,
            Some("desc") => SortDir::Desc,
            Some(_) => return Err(ApiError::bad_request("sort_dir must be asc or desc")),
        };
        Ok(PageRequest {
            limit,
            marker: self.typed::<M>("marker")?,
            sort_key,
            dir,
        })
    }
}

/// The body of a list response: `{"<key>": [views], "next": "<url>"}`, with `next` present
/// only when another page may follow (its marker is the last item's).
pub fn list_body<I, V: serde::Serialize>(
    base_url: &str,
    req: &HttpRequest,
    key: &str,
    page: Page<I>,
    marker: impl Fn(&I) -> String,
    view: impl Fn(I) -> V,
) -> serde_json::Value {
    let next = if page.more {
        page.items
            .last()
            .map(|last| next_link(base_url, req, &marker(last)))
    } else {
        None
    };
    let items: Vec<V> = page.items.into_iter().map(view).collect();
    let mut body = serde_json::json!({ key: items });
    if let Some(next) = next {
        body["next"] = next.into();
    }
    body
}

/// The URL of the next page: the same request with `marker` set to the last item.
pub fn next_link(base_url: &str, req: &HttpRequest, marker: &str) -> String {
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    pairs.retain(|(k, _)| k != "marker");
    pairs.push(("marker".into(), marker.to_owned()));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("{base_url}{}?{query}", req.path())
}
