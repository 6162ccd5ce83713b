//! "Who is on duty at this post now": the escalation engine's [`RoleResolver`] backed by live
//! coverage. Gate, patrol and monitoring-room roles resolve to the guards on those posts of
//! the estate now; when nobody is on them, to the guards assigned to the shift running now;
//! when the rota has no post of that kind at the estate (or nobody at all), and for the roles
//! the rota does not cover (supervisor, duty manager, facility team), to the static
//! `[[roster]]`.

use std::sync::Arc;

use super::RotaShared;
use crate::roles::{Recipient, Role, RoleResolver, StaticRoster};

#[derive(Debug)]
pub struct RotaResolver {
    pub rota: Arc<RotaShared>,
    pub fallback: StaticRoster,
}

impl RoleResolver for RotaResolver {
    fn resolve(&self, estate: &str, role: Role, now_ms: i64) -> Vec<Recipient> {
        let m = &self.rota.model;
        let posts: Vec<_> = m
            .posts
            .iter()
            .filter(|p| p.estate == estate && p.kind.role() == role)
            .collect();
        if posts.is_empty() {
            return self.fallback.resolve(estate, role, now_ms);
        }
        let live = self.rota.live();
        let person = |g: &str| m.guard(g).map(|g| g.recipient());
        let mut out: Vec<Recipient> = posts
            .iter()
            .flat_map(|p| live.present_at(&p.id))
            .filter_map(|(g, _)| person(g))
            .collect();
        if out.is_empty() {
            out = posts
                .iter()
                .filter_map(|p| m.slot_at(p, now_ms))
                .flat_map(|s| {
                    live.assigned(&s.post, s.start_ms)
                        .into_iter()
                        .map(|a| a.guard.clone())
                        .collect::<Vec<_>>()
                })
                .filter(|g| {
                    live.absences
                        .iter()
                        .all(|a| &a.guard != g || a.end <= now_ms || a.start > now_ms)
                })
                .filter_map(|g| person(&g))
                .collect();
        }
        out.dedup();
        if out.is_empty() {
            return self.fallback.resolve(estate, role, now_ms);
        }
        out
    }
}
