//! Composition of a component with its dependencies, as Spin 4.0.2 does
//! it (`crates/compose/src/lib.rs`, on `wac-graph` 0.10): each dependency
//! name is matched to the component's imports, the dependency is
//! instantiated with no arguments, its export of the import's name (or of
//! `export`) is checked to be a subtype of the import and plugged in, and
//! the component's exports are re-exported. Whatever an instance still
//! imports, the component's own leftovers and every dependency's imports
//! alike, becomes an import of the composition, for the host to satisfy:
//! **a dependency's imports are never satisfied by another dependency.**
//!
//! Spin also wraps a dependency that does not inherit every capability in
//! a deny adapter; [`crate::spin4::capability_set`] lets the tests check
//! that no adapter needs a capability it was not given instead.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use wac_graph::types::{ItemKind, Package, SubtypeChecker, Type, Types, WorldId};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId};

/// One dependency to plug in: the name it has in `spin.toml`, its bytes
/// and the export to use (`None`: the export named like the import).
pub struct Plug<'a> {
    pub name: &'a str,
    pub bytes: Vec<u8>,
    pub export: Option<&'a str>,
}

/// Composes `component` with `plugs`; the composed component's bytes.
pub fn compose(component: &[u8], plugs: Vec<Plug<'_>>) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let (world, instance) = register(&mut graph, "root", component.to_vec())?;
    let imports: Vec<String> = graph.types()[world].imports.keys().cloned().collect();

    let mut arguments: BTreeMap<String, (NodeId, String)> = BTreeMap::new();
    for plug in plugs {
        let matched: Vec<&String> = imports
            .iter()
            .filter(|import| matches_import(plug.name, import))
            .collect();
        if matched.is_empty() {
            bail!(
                "dependency {:?} matches no import of the component",
                plug.name
            );
        }
        let package_name = plug.name.split('/').next().unwrap_or(plug.name);
        let (dep_world, dep_instance) = register(&mut graph, package_name, plug.bytes)?;
        for import in matched {
            let export = plug.export.unwrap_or(import).to_owned();
            if !graph.types()[dep_world].exports.contains_key(&export) {
                bail!(
                    "dependency {:?} does not export {export:?} to satisfy {import:?}",
                    plug.name
                );
            }
            if arguments
                .insert(import.clone(), (dep_instance, export))
                .is_some()
            {
                bail!("import {import:?} is satisfied by two dependencies");
            }
        }
    }

    let mut cache = Default::default();
    let mut checker = SubtypeChecker::new(&mut cache);
    for (import, (dep_instance, export)) in &arguments {
        let dep_world = world_of(&graph, *dep_instance)?;
        let export_ty = graph.types()[dep_world].exports[export];
        let import_ty = graph.types()[world].imports[import];
        checker
            .is_subtype(export_ty, graph.types(), import_ty, graph.types())
            .with_context(|| format!("{export:?} is not compatible with import {import:?}"))?;
        let alias = graph.alias_instance_export(*dep_instance, export)?;
        graph.set_instantiation_argument(instance, import, alias)?;
    }

    let exports: Vec<String> = graph.types()[world].exports.keys().cloned().collect();
    for export in exports {
        let alias = graph.alias_instance_export(instance, &export)?;
        graph.export(alias, &export)?;
    }
    Ok(graph.encode(EncodeOptions::default())?)
}

fn register(
    graph: &mut CompositionGraph,
    name: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<(WorldId, NodeId)> {
    let package = Package::from_bytes(name, None, bytes, graph.types_mut())?;
    let world = package.ty();
    let id = graph.register_package(package)?;
    Ok((world, graph.instantiate(id)))
}

fn world_of(graph: &CompositionGraph, instance: NodeId) -> anyhow::Result<WorldId> {
    let package = graph[instance]
        .package()
        .context("a dependency node is an instantiation")?;
    Ok(graph[package].ty())
}

/// Spin's rule for a dependency name matching an import name: a plain
/// name only itself; `pkg:name[/iface][@version]` every import of that
/// package (and interface, and version, when given).
pub fn matches_import(dependency: &str, import: &str) -> bool {
    let (dep_name, dep_version) = split_version(dependency);
    let (imp_name, imp_version) = split_version(import);
    if !dependency.contains(':') {
        return dependency == import;
    }
    let (dep_package, dep_interface) = match dep_name.split_once('/') {
        Some((p, i)) => (p, Some(i)),
        None => (dep_name, None),
    };
    let Some((imp_package, imp_interface)) = imp_name.split_once('/') else {
        return false;
    };
    dep_package == imp_package
        && dep_interface.is_none_or(|i| i == imp_interface)
        && dep_version.is_none_or(|v| Some(v) == imp_version)
}

fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

/// What a component imports or exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    /// An instance whose exports are only types, none of them a resource:
    /// wasmtime needs no definition for it, so every host satisfies it.
    pub types_only: bool,
}

/// The imports and exports of a component.
pub fn world(bytes: &[u8]) -> anyhow::Result<(Vec<Item>, Vec<Item>)> {
    let mut types = Types::default();
    let package = Package::from_bytes("component", None, bytes.to_vec(), &mut types)?;
    let world = &types[package.ty()];
    let items = |map: &indexmap::IndexMap<String, ItemKind>| {
        map.iter()
            .map(|(name, kind)| Item {
                name: name.clone(),
                types_only: types_only(&types, kind),
            })
            .collect::<Vec<_>>()
    };
    Ok((items(&world.imports), items(&world.exports)))
}

fn types_only(types: &Types, kind: &ItemKind) -> bool {
    let ItemKind::Instance(id) = kind else {
        return false;
    };
    types[*id].exports.values().all(|item| match item {
        ItemKind::Type(Type::Resource(_)) => false,
        ItemKind::Type(_) => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_names_match_imports_as_in_spin() {
        for (dependency, import) in [
            ("foo:bar/baz@0.1.0", "foo:bar/baz@0.1.0"),
            ("foo:bar/baz", "foo:bar/baz@0.1.0"),
            ("foo:bar", "foo:bar/baz@0.1.0"),
            ("foo:bar@0.1.0", "foo:bar/baz@0.1.0"),
            ("foo-bar", "foo-bar"),
        ] {
            assert!(
                matches_import(dependency, import),
                "{dependency} ~ {import}"
            );
        }
        for (dependency, import) in [
            ("foo:bar/baz@0.1.0", "foo:bar/baz"),
            ("foo:bar/baz", "foo:bar/bub@0.1.0"),
            ("foo:bar", "foo:bub/bib"),
            ("foo:bar/baz", "foo:bar/baz-bub"),
        ] {
            assert!(
                !matches_import(dependency, import),
                "{dependency} !~ {import}"
            );
        }
    }
}
