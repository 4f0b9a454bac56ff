//! Applies a [`HistoryQuery`] to entries read in version order; shared by every backend.

use crate::HistoryQuery;
use doppel_model::HistoryEntry;
use std::ops::ControlFlow;

pub(crate) struct Collector<'q> {
    query: &'q HistoryQuery,
    page: Vec<HistoryEntry>,
}

impl<'q> Collector<'q> {
    pub(crate) fn new(query: &'q HistoryQuery) -> Self {
        Self {
            query,
            page: Vec::new(),
        }
    }

    /// Whether a bucket spanning `[start, end)` can hold entries the query wants.
    pub(crate) fn wants_bucket(&self, start: i64, end: i64) -> bool {
        self.query.from.is_none_or(|from| end > from.0)
            && self.query.to.is_none_or(|to| start <= to.0)
    }

    /// Considers the next entry in version order; breaks once the page is full or the entries
    /// have passed the end of the requested time range.
    pub(crate) fn offer(&mut self, entry: HistoryEntry) -> ControlFlow<()> {
        if self.page.len() >= self.query.limit
            || self.query.to.is_some_and(|to| entry.recorded_at > to)
        {
            return ControlFlow::Break(());
        }
        let wanted = self
            .query
            .after_version
            .is_none_or(|after| entry.version > after)
            && self.query.from.is_none_or(|from| entry.recorded_at >= from)
            && self.query.kind.is_none_or(|kind| entry.kind == kind);
        if wanted {
            self.page.push(entry);
        }
        if self.page.len() >= self.query.limit {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    pub(crate) fn finish(self) -> Vec<HistoryEntry> {
        self.page
    }
}
