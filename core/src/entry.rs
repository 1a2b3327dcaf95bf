//! The generic registry table: one [`Entry`] trait for every item kind, one
//! type-erased item ([`AnyEntry`]), one list type ([`PackItems`]) and one table
//! ([`Table`]) with one duplicate check and one insert loop.
//!
//! # Adding a kind
//! 1. Define the entry struct with `name`, `pack` and `summary` fields
//!    (`&'static str`) plus whatever the kind needs (a `build` or `load` fn).
//! 2. In the same crate: `lumen_core::entry_kind!(MyEntry, "my-kind", RANK);` (it
//!    implements [`Entry`], collects the type with `inventory` and registers the kind
//!    so that the inventory snapshot, the loader and `lumen plugins` see it; `RANK`
//!    orders kinds in listings).
//! 3. A declaration macro for packs:
//!    `macro_rules! submit_my_kind { (...) => { $crate::submit_entry!(MyEntry { ... }); } }`.
//! 4. Typed access is generic: `reg.entries::<MyEntry>()`, `reg.entry::<MyEntry>(name)`;
//!    calls into the entry's fns go through [`crate::guard::guard`] with the item's
//!    origin pack (see `Registry::build_method` for the pattern).
//!
//! This module sits below every kind and below the [`Registry`](crate::Registry), so
//! kinds can live anywhere in core without a module cycle.
//!
//! The struct must live in a crate inside the shared runtime (lumen-core) for items
//! of plugin packs to land in the host's lists.

use crate::{Error, Result};
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One item kind of the registry.
pub trait Entry: Any + Sync {
    /// The kind's name in messages and listings ("method", "model", ...).
    const KIND: &'static str;
    fn name(&self) -> &'static str;
    fn pack(&self) -> &'static str;
    fn summary(&self) -> &'static str;
}

/// A registered kind: how to list its inventory items.
pub struct Kind {
    pub name: &'static str,
    /// Order in listings (methods first).
    pub rank: u32,
    pub collect: fn() -> Vec<AnyEntry>,
}
inventory::collect!(Kind);

/// Every inventory item of kind `T`.
pub fn collect<T: Entry + inventory::Collect>() -> Vec<AnyEntry> {
    inventory::iter::<T>.into_iter().map(AnyEntry::of).collect()
}

/// Makes a struct an item kind (see the module docs).
#[macro_export]
macro_rules! entry_kind {
    ($ty:ty, $kind:literal, $rank:expr) => {
        impl $crate::entry::Entry for $ty {
            const KIND: &'static str = $kind;
            fn name(&self) -> &'static str {
                self.name
            }
            fn pack(&self) -> &'static str {
                self.pack
            }
            fn summary(&self) -> &'static str {
                self.summary
            }
        }
        $crate::inventory::collect!($ty);
        $crate::inventory::submit! {
            $crate::entry::Kind { name: $kind, rank: $rank, collect: $crate::entry::collect::<$ty> }
        }
    };
}

/// Declares an item of any kind in the calling pack: the struct literal without its
/// `pack` field, which becomes the calling crate's package name. The per-kind macros
/// (`submit_method!`, `submit_model!`, ...) are thin wrappers of this one.
#[macro_export]
macro_rules! submit_entry {
    ($ty:path { $($field:ident : $value:expr),* $(,)? }) => {
        $crate::inventory::submit! {
            $ty { pack: env!("CARGO_PKG_NAME"), $($field: $value),* }
        }
    };
}

/// An item of any kind.
#[derive(Clone, Copy)]
pub struct AnyEntry {
    pub kind: &'static str,
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    entry: &'static (dyn Any + Sync),
}

impl AnyEntry {
    pub fn of<T: Entry>(e: &'static T) -> Self {
        AnyEntry { kind: T::KIND, name: e.name(), pack: e.pack(), summary: e.summary(), entry: e }
    }

    /// The entry as its own type, if it is a `T`.
    pub fn get<T: Entry>(&self) -> Option<&'static T> {
        let e: &'static (dyn Any + Sync) = self.entry;
        (e as &'static dyn Any).downcast_ref::<T>()
    }

    /// The item's address: its identity, whatever its `pack` field says.
    pub fn addr(&self) -> usize {
        self.entry as *const (dyn Any + Sync) as *const () as usize
    }

    /// The listing order of its kind.
    pub fn rank(&self) -> u32 {
        kinds().iter().find(|k| k.name == self.kind).map_or(u32::MAX, |k| k.rank)
    }
}

impl std::fmt::Debug for AnyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.kind, self.name, self.pack)
    }
}

/// Every kind known in the process, by rank.
pub fn kinds() -> Vec<&'static Kind> {
    let mut v: Vec<&'static Kind> = inventory::iter::<Kind>.into_iter().collect();
    v.sort_by_key(|k| (k.rank, k.name));
    v.dedup_by_key(|k| k.name);
    v
}

/// Inventory items of every kind: a whole inventory, one library's share of it, or
/// one pack's items.
#[derive(Default, Clone, Debug)]
pub struct PackItems {
    pub items: Vec<AnyEntry>,
}

impl PackItems {
    /// Every item in the process-wide inventory lists right now.
    pub fn inventory() -> Self {
        PackItems { items: kinds().iter().flat_map(|k| (k.collect)()).collect() }
    }

    /// The items linked into the process: the inventory as it was before the loader
    /// opened any library. Taken once, at the first call of this or of the loader's
    /// first `dlopen` (which calls it first), so it never depends on what was loaded.
    pub fn linked() -> &'static PackItems {
        static LINKED: OnceLock<PackItems> = OnceLock::new();
        LINKED.get_or_init(PackItems::inventory)
    }

    pub fn addresses(&self) -> Vec<usize> {
        self.items.iter().map(AnyEntry::addr).collect()
    }

    /// The items whose address `keep` accepts.
    pub fn filter_addresses(&self, keep: impl Fn(usize) -> bool) -> Self {
        PackItems { items: self.items.iter().copied().filter(|e| keep(e.addr())).collect() }
    }

    /// The items whose `pack` field is `pack`.
    pub fn of_pack(&self, pack: &str) -> Self {
        PackItems { items: self.items.iter().copied().filter(|e| e.pack == pack).collect() }
    }

    /// The items of kind `T`.
    pub fn of_kind<T: Entry>(&self) -> Vec<&'static T> {
        self.items.iter().filter_map(|e| e.get::<T>()).collect()
    }

    /// The distinct `pack` fields, sorted.
    pub fn packs(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.items.iter().map(|e| e.pack).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Where a registered item came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub pack: String,
    /// `static` for linked packs, or the library path.
    pub source: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.pack, self.source)
    }
}

/// A registered item.
#[derive(Clone)]
pub struct Slot {
    pub entry: AnyEntry,
    pub origin: Origin,
}

/// Every registered item of every kind, keyed by (kind, name).
#[derive(Default, Clone)]
pub struct Table {
    slots: BTreeMap<(&'static str, String), Slot>,
}

impl Table {
    /// Fails if another pack already registered an item of this kind and name.
    fn check_free(&self, e: &AnyEntry, origin: &Origin) -> Result<()> {
        match self.slots.get(&(e.kind, e.name.to_string())) {
            Some(old) if old.origin.pack != origin.pack => Err(Error::Duplicate {
                kind: e.kind,
                name: e.name.to_string(),
                first: old.origin.to_string(),
                second: origin.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Adds `items` from `origin`, all or nothing: a name another pack took is an
    /// error that leaves the table unchanged. The same pack seen twice (linked and
    /// loaded) keeps its first copy.
    pub fn insert_all(&mut self, items: &[AnyEntry], origin: &Origin) -> Result<()> {
        for e in items {
            self.check_free(e, origin)?;
        }
        for e in items {
            self.slots.entry((e.kind, e.name.to_string())).or_insert_with(|| Slot { entry: *e, origin: origin.clone() });
        }
        Ok(())
    }

    /// The item of kind `T` called `name`, or an error listing the known ones.
    pub fn get<T: Entry>(&self, name: &str) -> Result<(&'static T, &Origin)> {
        self.slots
            .get(&(T::KIND, name.to_string()))
            .and_then(|s| s.entry.get::<T>().map(|e| (e, &s.origin)))
            .ok_or_else(|| Error::Unknown { kind: T::KIND, name: name.to_string(), known: self.names::<T>() })
    }

    /// Every item of kind `T`, by name.
    pub fn iter<T: Entry>(&self) -> impl Iterator<Item = (&'static T, &Origin)> {
        self.slots
            .range((T::KIND, String::new())..)
            .take_while(|((k, _), _)| *k == T::KIND)
            .filter_map(|(_, s)| s.entry.get::<T>().map(|e| (e, &s.origin)))
    }

    pub fn names<T: Entry>(&self) -> Vec<String> {
        self.iter::<T>().map(|(e, _)| e.name().to_string()).collect()
    }

    /// Every item of every kind.
    pub fn all(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }
}
