//! The catalog room: turns parsed entities into an import plan — identity,
//! owner, and the relations each entity produces (both directions).

use pave_model::{EntityRef, Kind, ParsedEntity, SpecError, SpecErrors, reference_fields};
use serde_json::Value;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// A directed relation between two entities, named as in Backstage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Relation {
    pub source: EntityRef,
    /// `ownedBy`, `ownerOf`, `partOf`, `hasPart`, `dependsOn`, `dependencyOf`,
    /// `providesApi`, `apiProvidedBy`, `consumesApi`, `apiConsumedBy`,
    /// `parentOf`, `childOf`, `memberOf`, `hasMember`.
    pub rel_type: &'static str,
    pub target: EntityRef,
}

/// One entity ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEntity {
    pub parsed: ParsedEntity,
    pub entity_ref: EntityRef,
    /// The owning Group (Component, API, Resource, System, Domain have owners).
    pub owner: Option<EntityRef>,
    /// Every relation this entity produces, both directions, deduplicated and sorted.
    pub relations: Vec<Relation>,
}

/// The validated batch of one apply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportPlan {
    pub entities: Vec<PlannedEntity>,
}

/// The relation pair a reference field produces: (from the entity, from the target).
fn relation_pair(kind: Kind, field: &str) -> Option<(&'static str, &'static str)> {
    Some(match (kind, field) {
        (_, "owner") => ("ownedBy", "ownerOf"),
        (Kind::Component | Kind::Api | Kind::Resource, "system") => ("partOf", "hasPart"),
        (Kind::Component, "subcomponentOf") => ("partOf", "hasPart"),
        (Kind::System, "domain") => ("partOf", "hasPart"),
        (Kind::Component | Kind::Resource, "dependsOn") => ("dependsOn", "dependencyOf"),
        (Kind::Component | Kind::Resource, "dependencyOf") => ("dependencyOf", "dependsOn"),
        (Kind::Component, "providesApis") => ("providesApi", "apiProvidedBy"),
        (Kind::Component, "consumesApis") => ("consumesApi", "apiConsumedBy"),
        (Kind::Group, "parent") => ("childOf", "parentOf"),
        (Kind::Group, "children") => ("parentOf", "childOf"),
        (Kind::Group, "members") => ("hasMember", "memberOf"),
        (Kind::User, "memberOf") => ("memberOf", "hasMember"),
        _ => return None,
    })
}

/// Plans an import: derives refs, owners and relations, and rejects the
/// batch if two documents define the same entity (case-insensitively),
/// naming both locations.
///
/// Deriving relations is allocation-bound (four owned refs per reference),
/// so large batches are split across the available cores; the result is
/// identical to a sequential run.
pub fn plan_import(parsed: Vec<ParsedEntity>) -> Result<ImportPlan, SpecErrors> {
    const PARALLEL_FROM: usize = 2048;
    let planned: Vec<Result<PlannedEntity, Vec<SpecError>>> =
        pave_model::par::par_map(parsed, PARALLEL_FROM, plan_one);

    let mut errors = Vec::new();
    let mut seen: HashMap<String, (String, usize)> = HashMap::with_capacity(planned.len());
    let mut entities = Vec::with_capacity(planned.len());
    for result in planned {
        let planned = match result {
            Ok(p) => p,
            Err(errs) => {
                errors.extend(errs);
                continue;
            }
        };
        match seen.entry(planned.entity_ref.key()) {
            Entry::Occupied(first) => {
                let (file, line) = first.get();
                let p = &planned.parsed;
                errors.push(SpecError::new(
                    &p.file,
                    p.line,
                    p.column,
                    format!(
                        "duplicate entity `{}`: already defined at {file}:{line}",
                        planned.entity_ref
                    ),
                ));
            }
            Entry::Vacant(v) => {
                v.insert((planned.parsed.file.clone(), planned.parsed.line));
                entities.push(planned);
            }
        }
    }
    if errors.is_empty() {
        Ok(ImportPlan { entities })
    } else {
        Err(SpecErrors(errors))
    }
}

/// Derives one entity's ref, owner and relations.
fn plan_one(p: ParsedEntity) -> Result<PlannedEntity, Vec<SpecError>> {
    let mut errors = Vec::new();
    let at = |message: String| SpecError::new(&p.file, p.line, p.column, message);
    let meta = &p.entity.metadata;
    let valid = pave_model::entity_name_rule(&meta.name)
        .and_then(|()| pave_model::entity_name_rule(&meta.namespace));
    if let Err(rule) = valid {
        return Err(vec![at(format!(
            "invalid entity name `{}/{}`: each part must be {rule}",
            meta.namespace, meta.name
        ))]);
    }
    let entity_ref = EntityRef::new(p.entity.kind, &meta.namespace, &meta.name);
    let mut owner = None;
    let mut relations = Vec::new();
    for rf in reference_fields(p.entity.kind) {
        let Some((forward, backward)) = relation_pair(p.entity.kind, rf.field) else {
            continue;
        };
        let Some(value) = p.entity.spec.get(rf.field) else {
            continue;
        };
        let path = |index: Option<usize>| match index {
            Some(i) => format!("spec.{}[{i}]", rf.field),
            None => format!("spec.{}", rf.field),
        };
        let mut add = |v: &Value, index: Option<usize>| match v
            .as_str()
            .map(|s| EntityRef::parse(s, rf.default_kind, &entity_ref.namespace))
        {
            Some(Ok(target)) => {
                if rf.field == "owner" {
                    owner = Some(target.clone());
                }
                relations.push(Relation {
                    source: target.clone(),
                    rel_type: backward,
                    target: entity_ref.clone(),
                });
                relations.push(Relation {
                    source: entity_ref.clone(),
                    rel_type: forward,
                    target,
                });
            }
            Some(Err(e)) => errors.push(at(format!(
                "invalid entity reference in `{}` of `{entity_ref}`: {e}",
                path(index)
            ))),
            None => errors.push(at(format!(
                "`{}` of `{entity_ref}` must be a string entity reference",
                path(index)
            ))),
        };
        match (rf.many, value) {
            (true, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    add(item, Some(i));
                }
            }
            (true, _) => errors.push(at(format!(
                "`spec.{}` of `{entity_ref}` must be a sequence of entity references",
                rf.field
            ))),
            (false, v) => add(v, None),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    relations.sort_unstable();
    relations.dedup();
    Ok(PlannedEntity {
        parsed: p,
        entity_ref,
        owner,
        relations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pave_model::parse_file;

    fn plan(content: &str) -> ImportPlan {
        plan_import(parse_file("catalog-info.yaml", content).expect("parses")).expect("plans")
    }

    fn r(s: &str) -> EntityRef {
        let (kind, rest) = s.split_once(':').expect("kind");
        let (ns, name) = rest.split_once('/').expect("namespace");
        EntityRef::new(Kind::parse(kind).expect("known kind"), ns, name)
    }

    /// The relations as text, in string order; also checks that the plan
    /// holds them sorted and without duplicates.
    fn rels(p: &PlannedEntity) -> Vec<(String, &'static str, String)> {
        assert!(
            p.relations.windows(2).all(|w| w[0] < w[1]),
            "sorted and deduplicated"
        );
        let mut out: Vec<_> = p
            .relations
            .iter()
            .map(|x| (x.source.to_string(), x.rel_type, x.target.to_string()))
            .collect();
        out.sort();
        out
    }

    fn t(a: &str, rel: &'static str, b: &str) -> (String, &'static str, String) {
        (a.to_string(), rel, b.to_string())
    }

    const HEAD: &str = "apiVersion: backstage.io/v1alpha1\n";

    #[test]
    fn component_relations_both_directions() {
        let p = plan(&format!(
            "{HEAD}kind: Component\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  type: service\n  lifecycle: production\n  owner: team-a\n  system: store\n  subcomponentOf: platform\n  dependsOn: [resource:db, default/auth, auth]\n  dependencyOf: [frontend]\n  providesApis: [web-api]\n  consumesApis: [api:default/pay-api]\n"
        ));
        let e = &p.entities[0];
        assert_eq!(e.entity_ref, r("component:shop/web"));
        assert_eq!(e.owner, Some(r("group:shop/team-a")));
        let mut expected = vec![
            t("component:shop/web", "ownedBy", "group:shop/team-a"),
            t("group:shop/team-a", "ownerOf", "component:shop/web"),
            t("component:shop/web", "partOf", "system:shop/store"),
            t("system:shop/store", "hasPart", "component:shop/web"),
            t("component:shop/web", "partOf", "component:shop/platform"),
            t("component:shop/platform", "hasPart", "component:shop/web"),
            t("component:shop/web", "dependsOn", "resource:shop/db"),
            t("resource:shop/db", "dependencyOf", "component:shop/web"),
            t("component:shop/web", "dependsOn", "component:default/auth"),
            t(
                "component:default/auth",
                "dependencyOf",
                "component:shop/web",
            ),
            t("component:shop/web", "dependsOn", "component:shop/auth"),
            t("component:shop/auth", "dependencyOf", "component:shop/web"),
            t(
                "component:shop/web",
                "dependencyOf",
                "component:shop/frontend",
            ),
            t("component:shop/frontend", "dependsOn", "component:shop/web"),
            t("component:shop/web", "providesApi", "api:shop/web-api"),
            t("api:shop/web-api", "apiProvidedBy", "component:shop/web"),
            t("component:shop/web", "consumesApi", "api:default/pay-api"),
            t("api:default/pay-api", "apiConsumedBy", "component:shop/web"),
        ];
        expected.sort();
        assert_eq!(rels(e), expected);
    }

    #[test]
    fn api_resource_system_domain_relations() {
        let p = plan(&format!(
            "{HEAD}kind: API\nmetadata: {{name: pay-api}}\nspec: {{type: openapi, lifecycle: production, owner: team-a, system: store, definition: x}}\n---\n{HEAD}kind: Resource\nmetadata: {{name: db}}\nspec: {{type: database, owner: 'user:ada', system: store, dependsOn: ['resource:disk'], dependencyOf: [web]}}\n---\n{HEAD}kind: System\nmetadata: {{name: store}}\nspec: {{owner: team-a, domain: commerce}}\n---\n{HEAD}kind: Domain\nmetadata: {{name: commerce}}\nspec: {{owner: team-b}}\n"
        ));
        let by = |i: usize| rels(&p.entities[i]);
        assert_eq!(
            by(0),
            vec![
                t("api:default/pay-api", "ownedBy", "group:default/team-a"),
                t("api:default/pay-api", "partOf", "system:default/store"),
                t("group:default/team-a", "ownerOf", "api:default/pay-api"),
                t("system:default/store", "hasPart", "api:default/pay-api"),
            ]
        );
        assert_eq!(p.entities[1].owner, Some(r("user:default/ada")));
        assert_eq!(
            by(1),
            vec![
                t("component:default/web", "dependsOn", "resource:default/db"),
                t(
                    "resource:default/db",
                    "dependencyOf",
                    "component:default/web"
                ),
                t("resource:default/db", "dependsOn", "resource:default/disk"),
                t("resource:default/db", "ownedBy", "user:default/ada"),
                t("resource:default/db", "partOf", "system:default/store"),
                t(
                    "resource:default/disk",
                    "dependencyOf",
                    "resource:default/db"
                ),
                t("system:default/store", "hasPart", "resource:default/db"),
                t("user:default/ada", "ownerOf", "resource:default/db"),
            ]
        );
        assert_eq!(
            by(2),
            vec![
                t("domain:default/commerce", "hasPart", "system:default/store"),
                t("group:default/team-a", "ownerOf", "system:default/store"),
                t("system:default/store", "ownedBy", "group:default/team-a"),
                t("system:default/store", "partOf", "domain:default/commerce"),
            ]
        );
        assert_eq!(
            by(3),
            vec![
                t("domain:default/commerce", "ownedBy", "group:default/team-b"),
                t("group:default/team-b", "ownerOf", "domain:default/commerce"),
            ]
        );
    }

    #[test]
    fn group_and_user_relations() {
        let p = plan(&format!(
            "{HEAD}kind: Group\nmetadata: {{name: team-a}}\nspec: {{type: team, parent: org, children: [team-a1], members: [ada, 'user:bob']}}\n---\n{HEAD}kind: User\nmetadata: {{name: ada}}\nspec: {{memberOf: [team-a, team-a]}}\n---\n{HEAD}kind: Location\nmetadata: {{name: loc}}\nspec: {{target: ./x.yaml}}\n"
        ));
        assert_eq!(p.entities[0].owner, None);
        assert_eq!(
            rels(&p.entities[0]),
            vec![
                t("group:default/org", "parentOf", "group:default/team-a"),
                t("group:default/team-a", "childOf", "group:default/org"),
                t("group:default/team-a", "hasMember", "user:default/ada"),
                t("group:default/team-a", "hasMember", "user:default/bob"),
                t("group:default/team-a", "parentOf", "group:default/team-a1"),
                t("group:default/team-a1", "childOf", "group:default/team-a"),
                t("user:default/ada", "memberOf", "group:default/team-a"),
                t("user:default/bob", "memberOf", "group:default/team-a"),
            ]
        );
        // Deduplicated: `team-a` listed twice gives one pair.
        assert_eq!(
            rels(&p.entities[1]),
            vec![
                t("group:default/team-a", "hasMember", "user:default/ada"),
                t("user:default/ada", "memberOf", "group:default/team-a"),
            ]
        );
        assert!(p.entities[2].relations.is_empty());
    }

    #[test]
    fn pave_yaml_component_relations() {
        let parsed = parse_file(
            "svc/pave.yaml",
            "service: {name: hello, owner: payments, system: checkout, dependsOn: [db], providesApis: [hello-api], consumesApis: [time]}\n",
        )
        .expect("parses");
        let p = plan_import(parsed).expect("plans");
        let e = &p.entities[0];
        assert_eq!(e.owner, Some(r("group:default/payments")));
        assert_eq!(e.relations.len(), 10);
        assert_eq!(e.parsed.file, "svc/pave.yaml");
    }

    #[test]
    fn duplicates_are_rejected_case_insensitively_naming_the_first() {
        let a = parse_file(
            "a/catalog-info.yaml",
            &format!("# c\n{HEAD}kind: System\nmetadata: {{name: Store}}\nspec: {{owner: x}}\n"),
        )
        .expect("parses");
        let b = parse_file(
            "b/catalog-info.yaml",
            &format!("{HEAD}kind: Domain\nmetadata: {{name: store}}\nspec: {{owner: x}}\n---\n{HEAD}kind: System\nmetadata: {{name: store, namespace: DEFAULT}}\nspec: {{owner: y}}\n"),
        )
        .expect("parses");
        let errs = plan_import(a.into_iter().chain(b).collect())
            .expect_err("duplicate")
            .0;
        assert_eq!(errs.len(), 1);
        let e = &errs[0];
        assert_eq!(
            (e.file.as_str(), e.line, e.column),
            ("b/catalog-info.yaml", 6, 1)
        );
        assert_eq!(
            e.message,
            "duplicate entity `system:DEFAULT/store`: already defined at a/catalog-info.yaml:2"
        );
    }

    #[test]
    fn malformed_refs_are_errors_not_panics() {
        let mut parsed = parse_file(
            "catalog-info.yaml",
            &format!("{HEAD}kind: Component\nmetadata: {{name: web}}\nspec: {{type: s, lifecycle: l, owner: x}}\n"),
        )
        .expect("parses");
        let spec = &mut parsed[0].entity.spec;
        spec.insert("owner".into(), Value::String("bad owner".into()));
        spec.insert("dependsOn".into(), Value::String("not-a-list".into()));
        spec.insert("providesApis".into(), serde_json::json!([1]));
        let errs = plan_import(parsed.clone()).expect_err("bad refs").0;
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].message.contains("`spec.owner`"));
        assert!(errs.iter().all(|e| (e.line, e.column) == (1, 1)));

        parsed[0].entity.metadata.name = "no good".into();
        let errs = plan_import(parsed).expect_err("bad name").0;
        assert!(
            errs[0]
                .message
                .starts_with("invalid entity name `default/no good`")
        );
    }

    #[test]
    fn empty_batch_is_an_empty_plan() {
        assert_eq!(plan_import(Vec::new()), Ok(ImportPlan::default()));
    }
}
