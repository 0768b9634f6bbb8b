//! The `lease` resource of the `cache` capability: a lease a component
//! holds, as the host keeps it in the request's resource table. A leaf
//! (the generated bindings map `cronium:runtime/cache.lease` to it).

/// A held lease (see [`cronium_rules::lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    pub fence: u64,
}
