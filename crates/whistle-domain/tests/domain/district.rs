//! District data: validation errors, shorthand expansion, grid lookup, department routing.

use crate::fixtures::*;
use whistle_domain::district::OrgNodeSpec;
use whistle_domain::{
    CategoryCode, District, DistrictError, DistrictSpec, GridId, Level, OrgId, OrgKind, PolicyClass,
};

fn build_with(f: impl FnOnce(&mut DistrictSpec)) -> Result<District, DistrictError> {
    let mut s = spec();
    f(&mut s);
    District::build(s)
}

#[test]
fn the_fixture_builds_and_expands_the_shorthand() {
    let d = district();
    let ids: Vec<&str> = d.org.nodes().map(|n| n.id.as_str()).collect();
    // 3 listed nodes above compounds + cp1 (1 + 2 buildings × (1 + 2 units)) + cp2 (1 + 1 × 2).
    assert_eq!(ids.len(), 3 + 7 + 3, "{ids:?}");
    for id in [
        "cp1-b1",
        "cp1-b1-u1",
        "cp1-b1-u2",
        "cp1-b2",
        "cp1-b2-u1",
        "cp1-b2-u2",
        "cp2-b1",
        "cp2-b1-u1",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(!ids.contains(&"cp1-b3") && !ids.contains(&"cp1-b1-u3"));
    let u = d.org.get(&OrgId::new("cp1-b2-u1")).unwrap();
    assert_eq!(u.kind, OrgKind::Unit);
    assert_eq!(u.parent, Some(OrgId::new("cp1-b2")));
    let b = d.org.get(&OrgId::new("cp1-b2")).unwrap();
    assert_eq!(b.kind, OrgKind::Building);
    assert_eq!(b.parent, Some(OrgId::new(CP1)));

    let chain: Vec<&str> = d
        .org
        .ancestry(&OrgId::new("cp1-b2-u1"))
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(
        chain,
        ["cp1-b2-u1", "cp1-b2", CP1, COMMUNITY, STREET, DISTRICT]
    );
    assert_eq!(
        d.org
            .ancestor_of_kind(&OrgId::new("cp2-b1-u1"), OrgKind::Compound)
            .map(|n| n.id.as_str()),
        Some(CP2)
    );
    assert!(d.org.is_within(&OrgId::new("cp2-b1-u1"), &OrgId::new(CP2)));
    assert!(d.org.is_within(&OrgId::new(CP2), &OrgId::new(CP2)));
    assert!(!d.org.is_within(&OrgId::new("cp2-b1-u1"), &OrgId::new(CP1)));
    assert!(
        !d.org
            .is_within(&OrgId::new("nowhere"), &OrgId::new(DISTRICT))
    );
    assert_eq!(d.catalogue.categories.len(), CATEGORIES.len());
    assert_eq!(d.departments.len(), 3);
}

#[test]
fn units_per_building_defaults_to_one() {
    let d = build_with(|s| {
        s.org[4].units_per_building = None;
        s.org[4].buildings = Some(3);
    })
    .unwrap();
    for id in ["cp2-b1-u1", "cp2-b2-u1", "cp2-b3-u1"] {
        assert!(d.org.get(&OrgId::new(id)).is_some(), "{id}");
    }
    assert!(d.org.get(&OrgId::new("cp2-b1-u2")).is_none());
}

#[test]
fn grid_of_picks_the_most_specific_grid() {
    let d = district();
    let g = |id: &str| d.org.grid_of(&OrgId::new(id)).map(|g| g.as_str());
    assert_eq!(g("cp1-b1-u1"), Some(GRID_CP1_B1), "building micro-grid");
    assert_eq!(g("cp1-b1"), Some(GRID_CP1_B1));
    assert_eq!(g("cp1-b2-u2"), Some(GRID_CP1), "compound grid");
    assert_eq!(g(CP1), Some(GRID_CP1));
    assert_eq!(g("cp2-b1-u1"), Some(GRID_COMMUNITY), "community grid");
    assert_eq!(g(COMMUNITY), Some(GRID_COMMUNITY));
    assert_eq!(g(STREET), None, "nothing covers the street");
    assert_eq!(g("nowhere"), None);

    // Listing order does not matter for nested grids: the innermost node wins.
    let d = build_with(|s| s.grids.reverse()).unwrap();
    assert_eq!(
        d.org.grid_of(&OrgId::new("cp1-b1-u1")).map(|g| g.as_str()),
        Some(GRID_CP1_B1)
    );
    // Two grids on the same node: the first listed keeps it.
    let d = build_with(|s| s.grids.push(grid("g-late", &[CP1]))).unwrap();
    assert_eq!(
        d.org.grid_of(&OrgId::new("cp1-b2")).map(|g| g.as_str()),
        Some(GRID_CP1)
    );
    assert_eq!(d.org.grids().count(), 4);
    assert!(d.org.grid(&GridId::new("g-late")).is_some());
}

#[test]
fn candidate_departments_put_paired_departments_first() {
    let d = district();
    let ids = |cat: &str, compound: &str| -> Vec<String> {
        d.candidate_departments(&CategoryCode::new(cat), &OrgId::new(compound))
            .iter()
            .map(|d| d.id.0.clone())
            .collect()
    };
    // Both own fire hazards; the fire brigade is paired with cp2, urban management with cp1.
    assert_eq!(ids(FIRE, CP1), [DEPT_CHENGGUAN, DEPT_FIRE]);
    assert_eq!(ids(FIRE, CP2), [DEPT_FIRE, DEPT_CHENGGUAN]);
    // Only owners are candidates, paired or not.
    assert_eq!(ids(GAS, CP2), [DEPT_GAS]);
    assert_eq!(ids(BUILD, CP2), [DEPT_CHENGGUAN]);
    assert!(ids(NOISE, CP1).is_empty());
    assert!(ids("no_such", CP1).is_empty());
}

#[test]
fn district_errors() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Box<dyn FnOnce(&mut DistrictSpec)>, DistrictError)> = vec![
        (
            "duplicate org id",
            Box::new(|s| s.org.push(node(STREET, OrgKind::Street, Some(DISTRICT)))),
            DistrictError::Duplicate(STREET.into()),
        ),
        (
            "explicit node colliding with the shorthand",
            Box::new(|s| s.org.push(node("cp1-b2", OrgKind::Building, Some(CP1)))),
            DistrictError::Duplicate("cp1-b2".into()),
        ),
        (
            "duplicate grid id",
            Box::new(|s| s.grids.push(grid(GRID_CP1, &[CP2]))),
            DistrictError::Duplicate(GRID_CP1.into()),
        ),
        (
            "duplicate category",
            Box::new(|s| {
                s.categories
                    .push(category(NOISE, Level::Unit, PolicyClass::Routine))
            }),
            DistrictError::Duplicate(NOISE.into()),
        ),
        (
            "duplicate department",
            Box::new(|s| s.departments.push(department(DEPT_GAS, &[], &[]))),
            DistrictError::Duplicate(DEPT_GAS.into()),
        ),
        (
            "missing parent",
            Box::new(|s| s.org.push(node("cp9", OrgKind::Compound, Some("c9")))),
            DistrictError::MissingParent {
                node: "cp9".into(),
                parent: "c9".into(),
            },
        ),
        (
            "a street without a parent",
            Box::new(|s| s.org.push(node("s2", OrgKind::Street, None))),
            DistrictError::MissingParent {
                node: "s2".into(),
                parent: "(none)".into(),
            },
        ),
        (
            "unit under a street",
            Box::new(|s| s.org.push(node("u9", OrgKind::Unit, Some(STREET)))),
            DistrictError::BadNesting {
                node: "u9".into(),
                kind: "unit",
                parent_kind: "street",
            },
        ),
        (
            "compound directly under the district",
            Box::new(|s| s.org.push(node("cp9", OrgKind::Compound, Some(DISTRICT)))),
            DistrictError::BadNesting {
                node: "cp9".into(),
                kind: "compound",
                parent_kind: "district",
            },
        ),
        (
            "district under a street",
            Box::new(|s| s.org.push(node("d9", OrgKind::District, Some(STREET)))),
            DistrictError::BadNesting {
                node: "d9".into(),
                kind: "district",
                parent_kind: "street",
            },
        ),
        (
            "two roots",
            Box::new(|s| s.org.push(node("d2", OrgKind::District, None))),
            DistrictError::Roots(2),
        ),
        (
            "no root at all",
            Box::new(|s| {
                s.org.clear();
                s.grids.clear();
                s.departments.clear();
            }),
            DistrictError::Roots(0),
        ),
        (
            "grid covering an unknown node",
            Box::new(|s| s.grids.push(grid("g-x", &[CP1, "cp7"]))),
            DistrictError::UnknownGridNode {
                grid: "g-x".into(),
                node: "cp7".into(),
            },
        ),
        (
            "department owning an unknown category",
            Box::new(|s| s.departments.push(department("police", &["theft"], &[]))),
            DistrictError::UnknownReference {
                department: "police".into(),
                what: "category",
                id: "theft".into(),
            },
        ),
        (
            "department paired with an unknown compound",
            Box::new(|s| s.departments.push(department("police", &[], &["cp7"]))),
            DistrictError::UnknownReference {
                department: "police".into(),
                what: "compound",
                id: "cp7".into(),
            },
        ),
        (
            "department paired with a building, not a compound",
            Box::new(|s| s.departments.push(department("police", &[], &["cp1-b1"]))),
            DistrictError::UnknownReference {
                department: "police".into(),
                what: "compound",
                id: "cp1-b1".into(),
            },
        ),
        (
            "district id with a space",
            Box::new(|s| s.id = "d 1".into()),
            DistrictError::InvalidCode("d 1".into()),
        ),
        (
            "org id with a dot (unsafe in NATS subjects)",
            Box::new(|s| s.org.push(node("s.2", OrgKind::Street, Some(DISTRICT)))),
            DistrictError::InvalidCode("s.2".into()),
        ),
        (
            "empty org id",
            Box::new(|s| s.org.push(node("", OrgKind::Street, Some(DISTRICT)))),
            DistrictError::InvalidCode("".into()),
        ),
        (
            "non-ASCII grid id",
            Box::new(|s| s.grids.push(grid("网格1", &[CP1]))),
            DistrictError::InvalidCode("网格1".into()),
        ),
        (
            "category code with a wildcard",
            Box::new(|s| {
                s.categories
                    .push(category("gas>", Level::Unit, PolicyClass::Routine))
            }),
            DistrictError::InvalidCode("gas>".into()),
        ),
        (
            "department id too long",
            Box::new(|s| s.departments.push(department(&"x".repeat(65), &[], &[]))),
            DistrictError::InvalidCode("x".repeat(65)),
        ),
        (
            "shorthand id grows past 64 characters",
            Box::new(|s| {
                let long = "c".repeat(62);
                s.org.push(OrgNodeSpec {
                    buildings: Some(1),
                    units_per_building: Some(1),
                    ..node(&long, OrgKind::Compound, Some(COMMUNITY))
                });
            }),
            DistrictError::InvalidCode(format!("{}-b1", "c".repeat(62))),
        ),
        (
            "empty catalogue",
            Box::new(|s| {
                s.categories.clear();
                s.departments.clear();
            }),
            DistrictError::EmptyCatalogue,
        ),
    ];
    for (name, f, want) in cases {
        assert_eq!(build_with(f), Err(want), "{name}");
    }
    // 64 characters is still a valid code.
    assert!(build_with(|s| s.departments.push(department(&"x".repeat(64), &[], &[]))).is_ok());
}

#[test]
fn district_spec_reads_from_json_with_defaults() {
    let json = r#"{
        "id": "d1", "name": "区",
        "org": [
            {"id": "d1", "kind": "district", "name": "区"},
            {"id": "s1", "kind": "street", "name": "街道", "parent": "d1"},
            {"id": "c1", "kind": "community", "name": "社区", "parent": "s1"},
            {"id": "cp1", "kind": "compound", "name": "小区", "parent": "c1", "buildings": 2}
        ],
        "categories": [
            {"code": "noise", "name_zh": "邻里噪音", "name_en": "noise",
             "starts_at": "NEIGHBOUR", "policy": "routine"}
        ]
    }"#;
    let spec: DistrictSpec = serde_json::from_str(json).unwrap();
    assert!(spec.grids.is_empty() && spec.departments.is_empty());
    let d = District::build(spec).unwrap();
    assert!(d.org.get(&OrgId::new("cp1-b2-u1")).is_some());
    assert_eq!(
        d.catalogue
            .get(&CategoryCode::new("noise"))
            .map(|c| c.starts_at),
        Some(Level::Neighbour)
    );
}
