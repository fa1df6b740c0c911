//! Who owns each object and what was granted on it: the data behind
//! [`super::privileges`], kept durably in `roles.json` beside the roles it
//! names, and shown as Postgres shows it (`pg_class.relacl`'s `aclitem`s,
//! `information_schema.role_table_grants`).
//!
//! An object with no entry belongs to the bootstrap user, with no grants:
//! that is how every object of a catalog written before privileges existed
//! loads, so old data directories need no migration.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use weir_planner::statement::Privilege;

use super::BOOTSTRAP_USER;

/// The grantee `PUBLIC` (every role), stored as Postgres's `aclitem` writes
/// it: an empty name, which no role can have.
pub const PUBLIC: &str = "";

/// A privilege on a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TablePrivilege {
    /// Read it.
    Select,
    /// Insert into it (tables Weir owns).
    Insert,
    /// Update it (tables Weir owns).
    Update,
    /// Delete from it (tables Weir owns).
    Delete,
}

impl TablePrivilege {
    /// The privileges a relation can carry: all four on a table Weir owns
    /// (`writable`), SELECT alone on anything else.
    pub fn applicable(writable: bool) -> &'static [TablePrivilege] {
        if writable {
            &[
                TablePrivilege::Select,
                TablePrivilege::Insert,
                TablePrivilege::Update,
                TablePrivilege::Delete,
            ]
        } else {
            &[TablePrivilege::Select]
        }
    }

    /// The privilege a `GRANT` names, if it is one on relations.
    pub fn from_granted(privilege: Privilege) -> Option<Self> {
        match privilege {
            Privilege::Select => Some(TablePrivilege::Select),
            Privilege::Insert => Some(TablePrivilege::Insert),
            Privilege::Update => Some(TablePrivilege::Update),
            Privilege::Delete => Some(TablePrivilege::Delete),
            Privilege::Create | Privilege::Usage => None,
        }
    }

    /// The keyword, as messages and `information_schema` spell it.
    pub fn keyword(&self) -> &'static str {
        match self {
            TablePrivilege::Select => "SELECT",
            TablePrivilege::Insert => "INSERT",
            TablePrivilege::Update => "UPDATE",
            TablePrivilege::Delete => "DELETE",
        }
    }

    /// Its letter in an `aclitem` (Postgres's `r`, `a`, `w`, `d`).
    fn letter(&self) -> char {
        match self {
            TablePrivilege::Select => 'r',
            TablePrivilege::Insert => 'a',
            TablePrivilege::Update => 'w',
            TablePrivilege::Delete => 'd',
        }
    }
}

/// What an owner holds on its relation, as Postgres 16 shows it: every
/// table privilege, on a view or a stream as on a table (`arwdDxt` in an
/// `aclitem`; INSERT, SELECT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER
/// in `information_schema`). Weir checks the four of [`TablePrivilege`];
/// it has no statement that the other three would allow, so listing them
/// grants nothing, and tools that compare with Postgres see its answer.
const OWNER_LETTERS: &str = "arwdDxt";

/// The owner's privileges by keyword, in [`OWNER_LETTERS`]'s order.
const OWNER_KEYWORDS: [&str; 7] = [
    "INSERT",
    "SELECT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// One object's owner and grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAcl {
    /// The role that created it (or was given it); it has every privilege.
    pub owner: String,
    /// Privileges granted, by grantee ([`PUBLIC`] for every role).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, BTreeSet<TablePrivilege>>,
}

/// Every object's owner and grants, and who may create objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// By object name (Weir's objects share one namespace).
    #[serde(default)]
    pub objects: BTreeMap<String, ObjectAcl>,
    /// Roles granted `CREATE ON SCHEMA public` ([`PUBLIC`] for every role).
    /// As in Postgres 15, nobody but superusers has it until granted.
    #[serde(default)]
    pub create: BTreeSet<String>,
}

impl Acl {
    /// Who owns `object`: its creator, or the bootstrap user for an object
    /// older than privileges.
    pub fn owner_of(&self, object: &str) -> &str {
        self.objects
            .get(object)
            .map_or(BOOTSTRAP_USER, |o| o.owner.as_str())
    }

    /// Does `user` hold `privilege` on `object`, as its owner, by a grant
    /// to it, or by one to PUBLIC?
    pub fn holds(&self, user: &str, object: &str, privilege: TablePrivilege) -> bool {
        if self.owner_of(object) == user {
            return true;
        }
        let Some(entry) = self.objects.get(object) else {
            return false;
        };
        [user, PUBLIC].iter().any(|who| {
            entry
                .grants
                .get(*who)
                .is_some_and(|held| held.contains(&privilege))
        })
    }

    /// May `user` create objects (in the one schema)?
    pub fn may_create(&self, user: &str) -> bool {
        self.create.contains(user) || self.create.contains(PUBLIC)
    }

    /// The entry of `object`, made (owned by the bootstrap user) if missing.
    pub fn entry(&mut self, object: &str) -> &mut ObjectAcl {
        self.objects
            .entry(object.to_string())
            .or_insert_with(|| ObjectAcl {
                owner: BOOTSTRAP_USER.to_string(),
                grants: BTreeMap::new(),
            })
    }

    /// Does `role` own a live object or hold a grant? Named in the error a
    /// `DROP ROLE` of it gets, as Postgres lists them.
    pub fn dependents_of(&self, role: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (name, entry) in &self.objects {
            if entry.owner == role {
                found.push(format!("owner of {name}"));
            } else if entry.grants.contains_key(role) {
                found.push(format!("privileges for {name}"));
            }
        }
        if self.create.contains(role) {
            found.push("privileges for schema public".to_string());
        }
        found
    }

    /// Follow a role's new name everywhere it is named.
    pub fn rename_role(&mut self, from: &str, to: &str) {
        for entry in self.objects.values_mut() {
            if entry.owner == from {
                entry.owner = to.to_string();
            }
            if let Some(held) = entry.grants.remove(from) {
                entry.grants.insert(to.to_string(), held);
            }
        }
        if self.create.remove(from) {
            self.create.insert(to.to_string());
        }
    }

    /// `object`'s `aclitem`s as `pg_class.relacl` shows them
    /// (`grantee=letters/grantor`, the owner's first, with every privilege
    /// Postgres gives an owner; PUBLIC has no name), or `None` while
    /// nothing was granted on it (Postgres's default ACL, which `\dp`
    /// shows empty).
    pub fn aclitems(&self, object: &str) -> Option<Vec<String>> {
        let entry = self.objects.get(object)?;
        if entry.grants.is_empty() {
            return None;
        }
        let owner = entry.owner.as_str();
        // Postgres's order of letters: arwd (insert, select, update, delete).
        let letters = |held: Vec<TablePrivilege>| -> String {
            let mut letters: Vec<char> = held.iter().map(|p| p.letter()).collect();
            letters.sort_by_key(|c| "arwd".find(*c));
            letters.into_iter().collect()
        };
        let mut items = vec![format!("{owner}={OWNER_LETTERS}/{owner}")];
        for (grantee, held) in &entry.grants {
            if !held.is_empty() {
                items.push(format!(
                    "{grantee}={}/{owner}",
                    letters(held.iter().copied().collect())
                ));
            }
        }
        Some(items)
    }

    /// Every privilege held on `object`, as `(grantor, grantee, privilege
    /// keyword)`: the owner's on itself first (all Postgres gives an
    /// owner), then each grant (`PUBLIC` by name), as
    /// `information_schema.role_table_grants` lists them.
    pub fn grants_on(&self, object: &str) -> Vec<(String, String, &'static str)> {
        let owner = self.owner_of(object).to_string();
        let mut rows: Vec<_> = OWNER_KEYWORDS
            .iter()
            .map(|p| (owner.clone(), owner.clone(), *p))
            .collect();
        if let Some(entry) = self.objects.get(object) {
            for (grantee, held) in &entry.grants {
                let grantee = if grantee == PUBLIC { "PUBLIC" } else { grantee };
                rows.extend(
                    held.iter()
                        .map(|p| (owner.clone(), grantee.to_string(), p.keyword())),
                );
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_hold_everything_and_grants_add_to_others() {
        let mut acl = Acl::default();
        assert_eq!(acl.owner_of("t"), BOOTSTRAP_USER);
        assert!(!acl.holds("alice", "t", TablePrivilege::Select));
        acl.entry("t").owner = "bob".into();
        assert!(acl.holds("bob", "t", TablePrivilege::Delete));
        acl.entry("t")
            .grants
            .entry("alice".into())
            .or_default()
            .insert(TablePrivilege::Select);
        assert!(acl.holds("alice", "t", TablePrivilege::Select));
        assert!(!acl.holds("alice", "t", TablePrivilege::Insert));
        acl.entry("t")
            .grants
            .entry(PUBLIC.into())
            .or_default()
            .insert(TablePrivilege::Insert);
        assert!(acl.holds("carol", "t", TablePrivilege::Insert));
        assert_eq!(
            acl.aclitems("t"),
            Some(vec![
                "bob=arwdDxt/bob".to_string(),
                "=a/bob".to_string(),
                "alice=r/bob".to_string()
            ])
        );
        acl.rename_role("bob", "robert");
        assert_eq!(acl.owner_of("t"), "robert");
        assert_eq!(acl.dependents_of("robert"), vec!["owner of t".to_string()]);
    }

    #[test]
    fn an_acl_file_from_before_privileges_reads_as_empty() {
        let acl: Acl = serde_json::from_str("{}").expect("empty");
        assert_eq!(acl, Acl::default());
    }
}
