//! Comments on tables, views, columns and schemas (`COMMENT ON`): what they are attached to,
//! setting and removing one, and forgetting those whose object is gone. The catalog owns
//! them so that they commit, replicate and roll back with the rest of a block.

use serde::{Deserialize, Serialize};

use blueshift_common::error::sqlstate;

use super::CatalogState;
use crate::error::{Error, Result};

/// What a comment is attached to: relations by id (a renamed table keeps its comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommentTarget {
    Relation(u64),
    Column { relation: u64, column: String },
    Schema(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentDef {
    pub target: CommentTarget,
    pub text: String,
}

impl CatalogState {
    /// The comment on `target`, if any.
    pub fn comment(&self, target: &CommentTarget) -> Option<&str> {
        self.comments
            .iter()
            .find(|c| c.target == *target)
            .map(|c| c.text.as_str())
    }

    fn comment_target_exists(&self, target: &CommentTarget) -> bool {
        match target {
            CommentTarget::Relation(id) => {
                self.tables.contains_key(id) || self.views.contains_key(id)
            }
            CommentTarget::Column { relation, column } => {
                let columns = self
                    .tables
                    .get(relation)
                    .map(|t| &t.columns)
                    .or_else(|| self.views.get(relation).map(|v| &v.columns));
                columns.is_some_and(|cols| cols.iter().any(|c| c.name == *column))
            }
            CommentTarget::Schema(name) => self.schema_exists(name),
        }
    }

    /// Sets (or with None removes) the comment on an object that exists.
    pub(super) fn set_comment(&mut self, target: &CommentTarget, text: Option<&str>) -> Result<()> {
        if !self.comment_target_exists(target) {
            return Err(Error::sql(
                sqlstate::UNDEFINED_OBJECT,
                "the object of the comment was dropped while the comment was being set",
            ));
        }
        self.comments.retain(|c| c.target != *target);
        if let Some(text) = text {
            self.comments.push(CommentDef {
                target: target.clone(),
                text: text.to_string(),
            });
        }
        Ok(())
    }

    /// Forgets the comments of dropped objects (and of dropped or renamed-away columns).
    pub(super) fn forget_orphan_comments(&mut self) {
        if self.comments.is_empty() {
            return;
        }
        let comments = std::mem::take(&mut self.comments);
        self.comments = comments
            .into_iter()
            .filter(|c| self.comment_target_exists(&c.target))
            .collect();
    }
}
