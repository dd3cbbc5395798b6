//! Access control lists and user groups as the catalog stores them: for each object, who
//! was granted which privileges (and which of them with GRANT OPTION), by whom. The catalog
//! applies grants and revokes as commands; deciding whether a statement may run is
//! [`crate::privileges`]' job, which reads these lists.
//!
//! Defaults follow Redshift: a new table, view or schema has no entries (its owner and
//! superusers hold every privilege implicitly); schema `public` starts with `USAGE, CREATE`
//! for PUBLIC and the database with `TEMP` for PUBLIC, stored as explicit entries so a
//! REVOKE can take them away.

use serde::{Deserialize, Serialize};

/// A set of privileges (a bit each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Hash)]
#[serde(transparent)]
pub struct Privileges(pub u16);

impl Privileges {
    pub const NONE: Privileges = Privileges(0);
    pub const SELECT: Privileges = Privileges(1);
    pub const INSERT: Privileges = Privileges(1 << 1);
    pub const UPDATE: Privileges = Privileges(1 << 2);
    pub const DELETE: Privileges = Privileges(1 << 3);
    pub const TRUNCATE: Privileges = Privileges(1 << 4);
    pub const REFERENCES: Privileges = Privileges(1 << 5);
    pub const USAGE: Privileges = Privileges(1 << 6);
    pub const CREATE: Privileges = Privileges(1 << 7);
    pub const TEMP: Privileges = Privileges(1 << 8);
    /// What `ALL` means on a table or view.
    pub const TABLE_ALL: Privileges = Privileges(0b11_1111);
    pub const SCHEMA_ALL: Privileges = Privileges((1 << 6) | (1 << 7));
    pub const DATABASE_ALL: Privileges = Privileges((1 << 7) | (1 << 8));

    /// Names and `aclitem` letters, in PostgreSQL's order.
    const NAMES: [(Privileges, &'static str, char); 9] = [
        (Privileges::INSERT, "INSERT", 'a'),
        (Privileges::SELECT, "SELECT", 'r'),
        (Privileges::UPDATE, "UPDATE", 'w'),
        (Privileges::DELETE, "DELETE", 'd'),
        (Privileges::TRUNCATE, "TRUNCATE", 'D'),
        (Privileges::REFERENCES, "REFERENCES", 'x'),
        (Privileges::USAGE, "USAGE", 'U'),
        (Privileges::CREATE, "CREATE", 'C'),
        (Privileges::TEMP, "TEMP", 'T'),
    ];

    pub fn with(self, other: Privileges) -> Privileges {
        Privileges(self.0 | other.0)
    }

    pub fn without(self, other: Privileges) -> Privileges {
        Privileges(self.0 & !other.0)
    }

    pub fn intersect(self, other: Privileges) -> Privileges {
        Privileges(self.0 & other.0)
    }

    pub fn contains(self, other: Privileges) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(p, _, _)| self.contains(*p))
            .map(|(_, n, _)| *n)
            .collect()
    }

    /// The privilege a name (`SELECT`, `TEMPORARY`, ...) means, as `has_table_privilege`
    /// and friends take it.
    pub fn from_name(name: &str) -> Option<Privileges> {
        let upper = name.trim().to_ascii_uppercase();
        let upper = upper
            .strip_suffix(" WITH GRANT OPTION")
            .unwrap_or(&upper)
            .trim();
        match upper {
            "TEMPORARY" => Some(Privileges::TEMP),
            other => Self::NAMES
                .iter()
                .find(|(_, n, _)| *n == other)
                .map(|(p, _, _)| *p),
        }
    }

    /// PostgreSQL's `aclitem` privilege letters, `*` after each grantable one.
    pub fn letters(self, grantable: Privileges) -> String {
        let mut s = String::new();
        for (p, _, c) in Self::NAMES {
            if self.contains(p) {
                s.push(c);
                if grantable.contains(p) {
                    s.push('*');
                }
            }
        }
        s
    }
}

/// Who holds a privilege.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Grantee {
    User(String),
    Group(String),
    Public,
}

impl std::fmt::Display for Grantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grantee::User(u) => f.write_str(u),
            Grantee::Group(g) => write!(f, "group {g}"),
            Grantee::Public => f.write_str("PUBLIC"),
        }
    }
}

/// What an ACL belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AclObject {
    /// A table or a view, by relation id.
    Relation(u64),
    /// A column of a table or view (column-level SELECT / UPDATE).
    Column(u64, String),
    Schema(String),
    Database,
}

/// One grantee's privileges on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub grantee: Grantee,
    pub privileges: Privileges,
    /// The subset held WITH GRANT OPTION.
    pub grantable: Privileges,
    /// Who granted them (PostgreSQL's aclitem shows it).
    pub grantor: String,
}

/// The ACL of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub object: AclObject,
    pub entries: Vec<AclEntry>,
}

/// A user group (`CREATE GROUP`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDef {
    pub name: String,
    /// Its `pg_group.grosysid`.
    pub id: u32,
    pub members: Vec<String>,
}

/// The grants every new cluster starts with (PostgreSQL's and Redshift's defaults).
pub fn initial_acls() -> Vec<Acl> {
    vec![
        Acl {
            object: AclObject::Schema(crate::sql::names::PUBLIC.to_string()),
            entries: vec![AclEntry {
                grantee: Grantee::Public,
                privileges: Privileges::SCHEMA_ALL,
                grantable: Privileges::NONE,
                grantor: String::new(),
            }],
        },
        Acl {
            object: AclObject::Database,
            entries: vec![AclEntry {
                grantee: Grantee::Public,
                privileges: Privileges::TEMP,
                grantable: Privileges::NONE,
                grantor: String::new(),
            }],
        },
    ]
}

/// Adds `privileges` (and `grantable` of them WITH GRANT OPTION) for `grantee` on
/// `object`.
pub fn grant(
    acls: &mut Vec<Acl>,
    object: &AclObject,
    grantee: &Grantee,
    privileges: Privileges,
    grantable: Privileges,
    grantor: &str,
) {
    let i = match acls.iter().position(|a| a.object == *object) {
        Some(i) => i,
        None => {
            acls.push(Acl {
                object: object.clone(),
                entries: Vec::new(),
            });
            acls.len() - 1
        }
    };
    let acl = &mut acls[i];
    match acl.entries.iter_mut().find(|e| e.grantee == *grantee) {
        Some(e) => {
            e.privileges = e.privileges.with(privileges);
            e.grantable = e.grantable.with(grantable);
        }
        None => acl.entries.push(AclEntry {
            grantee: grantee.clone(),
            privileges,
            grantable,
            grantor: grantor.to_string(),
        }),
    }
}

/// Takes `privileges` from `grantee` on `object` (only their grant option, if
/// `grant_option_only`); an entry left with nothing is removed.
pub fn revoke(
    acls: &mut Vec<Acl>,
    object: &AclObject,
    grantee: &Grantee,
    privileges: Privileges,
    grant_option_only: bool,
) {
    let Some(acl) = acls.iter_mut().find(|a| a.object == *object) else {
        return;
    };
    for e in acl.entries.iter_mut().filter(|e| e.grantee == *grantee) {
        e.grantable = e.grantable.without(privileges);
        if !grant_option_only {
            e.privileges = e.privileges.without(privileges);
        }
    }
    acl.entries.retain(|e| !e.privileges.is_empty());
    acls.retain(|a| !a.entries.is_empty());
}

/// Forgets every entry of a dropped grantee.
pub fn forget_grantee(acls: &mut Vec<Acl>, grantee: &Grantee) {
    for acl in acls.iter_mut() {
        acl.entries.retain(|e| e.grantee != *grantee);
    }
    acls.retain(|a| !a.entries.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_and_revoke_merge_entries() {
        let mut acls = Vec::new();
        let t = AclObject::Relation(7);
        let ann = Grantee::User("ann".into());
        grant(
            &mut acls,
            &t,
            &ann,
            Privileges::SELECT,
            Privileges::NONE,
            "b",
        );
        grant(
            &mut acls,
            &t,
            &ann,
            Privileges::INSERT,
            Privileges::INSERT,
            "b",
        );
        assert_eq!(acls.len(), 1);
        let e = &acls[0].entries[0];
        assert_eq!(e.privileges, Privileges::SELECT.with(Privileges::INSERT));
        assert_eq!(e.privileges.letters(e.grantable), "a*r");
        revoke(&mut acls, &t, &ann, Privileges::INSERT, true);
        assert_eq!(
            acls[0].entries[0]
                .privileges
                .letters(acls[0].entries[0].grantable),
            "ar"
        );
        revoke(&mut acls, &t, &ann, Privileges::TABLE_ALL, false);
        assert!(acls.is_empty());
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(Privileges::from_name("select"), Some(Privileges::SELECT));
        assert_eq!(Privileges::from_name("temporary"), Some(Privileges::TEMP));
        assert_eq!(
            Privileges::from_name("INSERT WITH GRANT OPTION"),
            Some(Privileges::INSERT)
        );
        assert_eq!(Privileges::from_name("fly"), None);
        assert_eq!(Privileges::TABLE_ALL.names().len(), 6);
    }
}
