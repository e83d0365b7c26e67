//! Aliases: stable names for versions, with weighted traffic splitting.

use chrono::Utc;
use fresco_store::PgConnection;

use super::runtimes::marker_error;
use super::{db_error, validate, DomainError, DomainResult};
use fresco_store::aliases::{self as store, Alias};
use fresco_store::functions as function_store;
use fresco_store::paging::{Page, PageRequest};
use fresco_store::shadows::{self, Comparison, Sample};
use fresco_store::{versions, Scope};

#[derive(Debug, Clone, Default)]
pub struct AliasInput {
    pub name: Option<String>,
    pub version: Option<i32>,
    /// `Some(None)` clears the second version.
    pub second_version: Option<Option<i32>>,
    pub second_weight: Option<i32>,
    pub description: Option<String>,
    /// `Some(None)` clears the shadow version.
    pub shadow_version: Option<Option<i32>>,
    pub shadow_percent: Option<i32>,
}

/// Checks the traffic split and that every named version exists.
fn check_targets(conn: &mut PgConnection, alias: &Alias, function_key: &str) -> DomainResult<()> {
    validate::range("second_weight", alias.second_weight, 0, 100)?;
    if alias.second_weight > 0 && alias.second_version.is_none() {
        return Err(DomainError::invalid("second_weight needs a second_version"));
    }
    if alias.second_version == Some(alias.version) {
        return Err(DomainError::invalid(
            "second_version must differ from version",
        ));
    }
    validate::range("shadow_percent", alias.shadow_percent, 0, 100)?;
    if alias.shadow_percent > 0 && alias.shadow_version.is_none() {
        return Err(DomainError::invalid(
            "shadow_percent needs a shadow_version",
        ));
    }
    if alias.shadow_version == Some(alias.version) {
        return Err(DomainError::invalid(
            "shadow_version must differ from version",
        ));
    }
    for number in std::iter::once(alias.version)
        .chain(alias.second_version)
        .chain(alias.shadow_version)
    {
        versions::get(conn, &alias.project_id, alias.function_id, number).map_err(|_| {
            DomainError::invalid(format!(
                "version {number} of function {function_key} does not exist"
            ))
        })?;
    }
    Ok(())
}

pub fn create(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    input: AliasInput,
) -> DomainResult<Alias> {
    let name = input
        .name
        .ok_or_else(|| DomainError::invalid("name is required"))?;
    validate::name("name", &name)?;
    let version = input
        .version
        .ok_or_else(|| DomainError::invalid("version is required"))?;
    let description = input.description.unwrap_or_default();
    validate::description(&description)?;
    let function =
        function_store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    let now = Utc::now();
    let shadow_version = input.shadow_version.flatten();
    let alias = Alias {
        function_id: function.id,
        name,
        project_id: function.project_id,
        version,
        second_version: input.second_version.flatten(),
        second_weight: input.second_weight.unwrap_or(0),
        description,
        created_at: now,
        updated_at: now,
        shadow_version,
        shadow_percent: input.shadow_percent.unwrap_or(if shadow_version.is_some() {
            100
        } else {
            0
        }),
    };
    check_targets(conn, &alias, key)?;
    fresco_store::transaction(conn, |conn| {
        store::insert(conn, &alias).map_err(db_error("alias", &alias.name))?;
        shadows::restart(conn, &alias).map_err(DomainError::from)
    })?;
    Ok(alias)
}

pub fn get(conn: &mut PgConnection, scope: &Scope, key: &str, name: &str) -> DomainResult<Alias> {
    let function =
        function_store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    store::get(conn, &function.project_id, function.id, name).map_err(db_error("alias", name))
}

pub fn list(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    page: &PageRequest<String>,
) -> DomainResult<Page<Alias>> {
    let function =
        function_store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    store::list(conn, &function.project_id, function.id, page).map_err(marker_error)
}

pub fn update(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    name: &str,
    input: AliasInput,
) -> DomainResult<Alias> {
    let mut alias = get(conn, scope, key, name)?;
    let before = (alias.version, alias.shadow_version);
    if let Some(shadow) = input.shadow_version {
        // Setting a shadow without a percentage copies every invocation; clearing it, none.
        if shadow.is_some() && alias.shadow_version.is_none() && input.shadow_percent.is_none() {
            alias.shadow_percent = 100;
        }
        if shadow.is_none() {
            alias.shadow_percent = 0;
        }
        alias.shadow_version = shadow;
    }
    if let Some(percent) = input.shadow_percent {
        alias.shadow_percent = percent;
    }
    if let Some(version) = input.version {
        alias.version = version;
    }
    if let Some(second) = input.second_version {
        alias.second_version = second;
        if second.is_none() {
            alias.second_weight = 0;
        }
    }
    if let Some(weight) = input.second_weight {
        alias.second_weight = weight;
    }
    if let Some(description) = input.description {
        validate::description(&description)?;
        alias.description = description;
    }
    alias.updated_at = Utc::now();
    check_targets(conn, &alias, key)?;
    fresco_store::transaction(conn, |conn| {
        store::save(conn, &alias).map_err(db_error("alias", name))?;
        // The comparison's counts restart when what it compares changes.
        if before != (alias.version, alias.shadow_version) {
            shadows::restart(conn, &alias)?;
        }
        Ok::<_, DomainError>(())
    })?;
    Ok(alias)
}

pub fn delete(conn: &mut PgConnection, scope: &Scope, key: &str, name: &str) -> DomainResult<()> {
    let function =
        function_store::get_by_ref(conn, scope, key).map_err(db_error("function", key))?;
    store::delete(conn, &function.project_id, function.id, name).map_err(db_error("alias", name))
}

/// An alias's comparison of its shadow with its primary: the current period's counts (none
/// without a shadow) and its sample of differing pairs, newest first.
pub fn comparison(
    conn: &mut PgConnection,
    scope: &Scope,
    key: &str,
    name: &str,
) -> DomainResult<(Alias, Option<Comparison>, Vec<Sample>)> {
    let alias = get(conn, scope, key, name)?;
    let current = shadows::current(conn, &alias.project_id, alias.function_id, &alias.name)?;
    let samples = match &current {
        Some(period) => shadows::samples(conn, period.id)?,
        None => Vec::new(),
    };
    Ok((alias, current, samples))
}

/// Picks the version an invocation through the alias runs: `second_version` with probability
/// `second_weight`%, given a uniform `roll` in 0..100.
pub fn route(alias: &Alias, roll: u32) -> i32 {
    match alias.second_version {
        Some(second) if roll < u32::try_from(alias.second_weight).unwrap_or(0) => second,
        _ => alias.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(second: Option<i32>, weight: i32) -> Alias {
        Alias {
            function_id: uuid::Uuid::nil(),
            name: "live".into(),
            project_id: "p".into(),
            version: 1,
            second_version: second,
            second_weight: weight,
            description: String::new(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            shadow_version: None,
            shadow_percent: 0,
        }
    }

    #[test]
    fn routing_follows_the_weight() {
        let split = alias(Some(2), 25);
        let to_second = (0..100).filter(|roll| route(&split, *roll) == 2).count();
        assert_eq!(to_second, 25);
        assert!((0..100).all(|roll| route(&alias(None, 0), roll) == 1));
        assert!((0..100).all(|roll| route(&alias(Some(2), 100), roll) == 2));
        assert!((0..100).all(|roll| route(&alias(Some(2), 0), roll) == 1));
    }
}
