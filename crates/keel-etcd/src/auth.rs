//! etcd's auth store: users, roles, permissions on keys and ranges, whether
//! auth is on, and the auth revision; plus etcd's `simple` tokens.
//!
//! The replicated part ([`AuthStore`]'s users, roles, `enabled`, `revision`)
//! changes only by applying Raft entries, inside the etcd [`Store`]
//! (crate::store::Store), and is written with it: one `auth` row in the
//! backend, one field of every snapshot and backup. It follows etcd's
//! `server/auth/store.go` rule for rule: every change bumps the auth
//! revision; a request carries the revision its user was looked up at and is
//! refused at apply if the store has moved on (`ErrAuthOldRevision`, which
//! etcd's clients answer by fetching a new token and retrying), so a role
//! revoked between a request's check and its apply cannot let it through.
//!
//! Tokens are etcd's `simple` tokens: `<16 letters>.<raft index>`, assigned
//! when the Authenticate entry is applied, so every member knows them; they
//! live in memory only (a restart asks clients to authenticate again, as
//! etcd's do) and expire after `--auth-token-ttl` seconds without use.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::EtcdError;
use crate::pb::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use crate::pb::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserGrantRoleRequest,
    AuthUserRevokeRoleRequest,
};
use crate::pb::keelpb::{AuthState, InternalUserAdd, RequestHeader};

/// The user and role that may do anything (etcd's `rootUser`, `rootRole`).
pub const ROOT: &str = "root";

/// etcd's simple-token TTL by default (`--auth-token-ttl`, seconds).
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(300);

/// bcrypt's cost by default (Go's `bcrypt.DefaultCost`, etcd's `--bcrypt-cost`).
pub const BCRYPT_COST_DEFAULT: u32 = 10;

/// Who a request comes from, and the auth revision it was checked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

impl AuthInfo {
    /// The header a proposal carries: empty when there is no user.
    pub fn header(info: Option<&AuthInfo>) -> RequestHeader {
        match info {
            Some(i) => RequestHeader {
                username: i.user.clone(),
                auth_revision: i.revision,
                system: false,
            },
            None => RequestHeader::default(),
        }
    }
}

/// What an operation needs on a key or range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
}

/// `[start, end)`; `end == None` is open-ended.
type Interval = (Vec<u8>, Option<Vec<u8>>);

/// A user's permissions, merged over their roles (etcd's rangePermCache).
#[derive(Debug, Default)]
struct UserPerms {
    root: bool,
    read: Vec<Interval>,
    write: Vec<Interval>,
}

impl UserPerms {
    fn build(user: &User, roles: &BTreeMap<String, Role>) -> UserPerms {
        let mut p = UserPerms {
            root: user.roles.iter().any(|r| r == ROOT),
            ..UserPerms::default()
        };
        for role in user.roles.iter().filter_map(|r| roles.get(r)) {
            for perm in &role.key_permission {
                let ivl = permission_interval(&perm.key, &perm.range_end);
                let t = PermType::try_from(perm.perm_type).unwrap_or(PermType::Read);
                if matches!(t, PermType::Read | PermType::Readwrite) {
                    p.read.push(ivl.clone());
                }
                if matches!(t, PermType::Write | PermType::Readwrite) {
                    p.write.push(ivl);
                }
            }
        }
        p.read = merge(std::mem::take(&mut p.read));
        p.write = merge(std::mem::take(&mut p.write));
        p
    }

    fn allows(&self, need: Need, key: &[u8], range_end: &[u8]) -> bool {
        if self.root {
            return true;
        }
        let set = match need {
            Need::Read => &self.read,
            Need::Write => &self.write,
        };
        // A single key, or a range that is empty: the key itself must be covered.
        let end: Option<Option<&[u8]>> = if range_end.is_empty() {
            None
        } else if range_end == [0] {
            Some(None)
        } else if range_end <= key {
            None
        } else {
            Some(Some(range_end))
        };
        set.iter().any(|(s, e)| {
            if s.as_slice() > key {
                return false;
            }
            match (end, e) {
                (None, None) => true,
                (None, Some(e)) => key < e.as_slice(),
                (Some(_), None) => true,
                (Some(None), Some(_)) => false,
                (Some(Some(want)), Some(e)) => want <= e.as_slice(),
            }
        })
    }
}

/// A permission's interval: a single key `k` is `[k, k\0)`; a range end of
/// `\0` is open-ended (etcd's range_perm_cache rules b1-b3).
fn permission_interval(key: &[u8], range_end: &[u8]) -> Interval {
    if range_end.is_empty() {
        let mut end = key.to_vec();
        end.push(0);
        (key.to_vec(), Some(end))
    } else if range_end == [0] {
        (key.to_vec(), None)
    } else {
        (key.to_vec(), Some(range_end.to_vec()))
    }
}

/// Sorted, with overlapping and touching intervals joined, so that one
/// interval covers any range the union covers.
fn merge(mut v: Vec<Interval>) -> Vec<Interval> {
    v.sort();
    let mut out: Vec<Interval> = Vec::with_capacity(v.len());
    for (s, e) in v {
        if let Some((_, last_end)) = out.last_mut() {
            let joins = match last_end {
                None => true,
                Some(le) => s.as_slice() <= le.as_slice(),
            };
            if joins {
                *last_end = match (last_end.take(), e) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                continue;
            }
        }
        out.push((s, e));
    }
    out
}

/// etcd's isValidPermissionRange: a key, and an end after it (or none, or `\0`).
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || key < range_end)
}

struct Token {
    user: String,
    deadline: Instant,
}

/// etcd's simple tokens, on this member.
struct Tokens {
    ttl: Duration,
    by_token: HashMap<String, Token>,
    /// Expired tokens are swept when the table has grown to this size.
    sweep_at: usize,
}

impl Tokens {
    fn sweep(&mut self, now: Instant) {
        self.by_token.retain(|_, t| t.deadline > now);
        self.sweep_at = (self.by_token.len() * 2).max(1024);
    }
}

pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    perms: HashMap<String, UserPerms>,
    shared: Arc<AuthShared>,
}

/// What a request needs to name its user, readable without the store's
/// lock (which the Raft thread holds while it applies): whether auth is on,
/// the auth revision, and the tokens. Written only by applies.
pub struct AuthShared {
    enabled: AtomicBool,
    revision: AtomicU64,
    tokens: Mutex<Tokens>,
}

impl AuthShared {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user a token belongs to, refreshing its TTL (etcd's resetSimpleToken).
    pub fn token_user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut t = self.lock_tokens();
        let ttl = t.ttl;
        match t.by_token.get_mut(token) {
            Some(tok) if tok.deadline > now => {
                tok.deadline = now + ttl;
                Some(tok.user.clone())
            }
            Some(_) => {
                t.by_token.remove(token);
                None
            }
            None => None,
        }
    }
}

impl AuthStore {
    pub fn new(token_ttl: Duration) -> AuthStore {
        AuthStore {
            enabled: false,
            // etcd starts the auth revision at 1 (NewAuthStore commits it).
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            perms: HashMap::new(),
            shared: Arc::new(AuthShared {
                enabled: AtomicBool::new(false),
                revision: AtomicU64::new(1),
                tokens: Mutex::new(Tokens {
                    ttl: token_ttl,
                    by_token: HashMap::new(),
                    sweep_at: 1024,
                }),
            }),
        }
    }

    /// The lock-free view for request handlers.
    pub fn shared(&self) -> Arc<AuthShared> {
        self.shared.clone()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The replicated state, for the backend and snapshots.
    pub fn state(&self) -> AuthState {
        AuthState {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        }
    }

    /// Replaces the replicated state (start-up, a snapshot); tokens are dropped.
    pub fn load(&mut self, s: AuthState) {
        self.enabled = s.enabled;
        self.revision = s.revision.max(1);
        self.users = s
            .users
            .into_iter()
            .map(|u| (String::from_utf8_lossy(&u.name).into_owned(), u))
            .collect();
        self.roles = s
            .roles
            .into_iter()
            .map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r))
            .collect();
        self.refresh();
        // A snapshot may skip the deletes and password changes that would
        // have ended some tokens: all of them end, and clients authenticate
        // again.
        self.shared.lock_tokens().by_token.clear();
    }

    /// After every change: a new revision, and the merged permissions again.
    fn commit(&mut self) {
        self.revision += 1;
        self.refresh();
    }

    fn refresh(&mut self) {
        self.shared.enabled.store(self.enabled, Ordering::Release);
        self.shared.revision.store(self.revision, Ordering::Release);
        self.perms = self
            .users
            .iter()
            .map(|(n, u)| (n.clone(), UserPerms::build(u, &self.roles)))
            .collect();
    }

    // ---- checks (etcd's isOpPermitted and IsAdminPermitted) ----

    /// May the request's user do `need` on `[key, range_end)`?
    pub fn check(
        &self,
        header: &RequestHeader,
        need: Need,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        if !self.enabled || header.system {
            return Ok(());
        }
        if header.auth_revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        if header.auth_revision < self.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        match self.perms.get(&header.username) {
            Some(p) if p.allows(need, key, range_end) => Ok(()),
            _ => Err(EtcdError::PermissionDenied),
        }
    }

    /// Is the request's user root? (cluster, maintenance and auth administration)
    pub fn check_admin(&self, header: &RequestHeader) -> Result<(), EtcdError> {
        if !self.enabled || header.system {
            return Ok(());
        }
        if header.username.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        match self.perms.get(&header.username) {
            None => Err(EtcdError::UserNotFound),
            Some(p) if p.root => Ok(()),
            Some(_) => Err(EtcdError::PermissionDenied),
        }
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    // ---- tokens ----

    fn assign_token(&self, user: &str, token: String) {
        let now = Instant::now();
        let mut t = self.shared.lock_tokens();
        if t.by_token.len() >= t.sweep_at {
            t.sweep(now);
        }
        let deadline = now + t.ttl;
        t.by_token.insert(
            token,
            Token {
                user: user.to_string(),
                deadline,
            },
        );
    }

    fn invalidate_user(&self, user: &str) {
        self.shared
            .lock_tokens()
            .by_token
            .retain(|_, t| t.user != user);
    }

    /// The stored hash of a user's password, for the member that checks it
    /// before proposing Authenticate (etcd's CheckPassword, outside apply).
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), EtcdError> {
        if !self.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        match self.users.get(name) {
            None => Err(EtcdError::AuthFailed),
            Some(u) if u.options.as_ref().is_some_and(|o| o.no_password) => {
                Err(EtcdError::NoPasswordUser)
            }
            Some(u) => Ok((u.password.clone(), self.revision)),
        }
    }

    // ---- applies (etcd's authStore methods, in its order of checks) ----

    pub fn authenticate(&self, name: &str, token: &str) -> Result<String, EtcdError> {
        if !self.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        match self.users.get(name) {
            Some(u) if !u.options.as_ref().is_some_and(|o| o.no_password) => {
                self.assign_token(name, token.to_string());
                Ok(token.to_string())
            }
            _ => Err(EtcdError::AuthFailed),
        }
    }

    pub fn auth_enable(&mut self) -> Result<(), EtcdError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(EtcdError::RootUserNotExist)?;
        if !root.roles.iter().any(|r| r == ROOT) {
            return Err(EtcdError::RootRoleNotExist);
        }
        self.enabled = true;
        // etcd re-reads the revision here without bumping it.
        self.refresh();
        Ok(())
    }

    pub fn auth_disable(&mut self) {
        if !self.enabled {
            return;
        }
        self.enabled = false;
        self.commit();
        self.shared.lock_tokens().by_token.clear();
    }

    pub fn user_add(&mut self, r: &InternalUserAdd) -> Result<(), EtcdError> {
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(EtcdError::UserAlreadyExist);
        }
        self.users.insert(
            r.name.clone(),
            User {
                name: r.name.clone().into_bytes(),
                password: if r.no_password {
                    Vec::new()
                } else {
                    r.hashed_password.clone()
                },
                roles: Vec::new(),
                options: Some(UserAddOptions {
                    no_password: r.no_password,
                }),
            },
        );
        self.commit();
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str) -> Result<(), EtcdError> {
        if self.enabled && name == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        if self.users.remove(name).is_none() {
            return Err(EtcdError::UserNotFound);
        }
        self.commit();
        self.invalidate_user(name);
        Ok(())
    }

    pub fn user_change_password(&mut self, r: &InternalUserAdd) -> Result<(), EtcdError> {
        let user = self.users.get_mut(&r.name).ok_or(EtcdError::UserNotFound)?;
        if !user.options.as_ref().is_some_and(|o| o.no_password) {
            user.password = r.hashed_password.clone();
        }
        self.commit();
        self.invalidate_user(&r.name);
        Ok(())
    }

    pub fn user_grant_role(&mut self, r: &AuthUserGrantRoleRequest) -> Result<(), EtcdError> {
        if !self.users.contains_key(&r.user) {
            return Err(EtcdError::UserNotFound);
        }
        if r.role != ROOT && !self.roles.contains_key(&r.role) {
            return Err(EtcdError::RoleNotFound);
        }
        let user = self.users.get_mut(&r.user).expect("checked above");
        if let Err(at) = user.roles.binary_search(&r.role) {
            user.roles.insert(at, r.role.clone());
            self.commit();
        }
        Ok(())
    }

    pub fn user_revoke_role(&mut self, r: &AuthUserRevokeRoleRequest) -> Result<(), EtcdError> {
        if self.enabled && r.name == ROOT && r.role == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(&r.name).ok_or(EtcdError::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|x| *x != r.role);
        if user.roles.len() == before {
            return Err(EtcdError::RoleNotGranted);
        }
        self.commit();
        Ok(())
    }

    pub fn user_get(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        self.users
            .get(name)
            .map(|u| u.roles.clone())
            .ok_or(EtcdError::UserNotFound)
    }

    pub fn user_list(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role_add(&mut self, name: &str) -> Result<(), EtcdError> {
        if name.is_empty() {
            return Err(EtcdError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(EtcdError::RoleAlreadyExist);
        }
        self.roles.insert(
            name.to_string(),
            Role {
                name: name.as_bytes().to_vec(),
                key_permission: Vec::new(),
            },
        );
        self.commit();
        Ok(())
    }

    pub fn role_get(&self, name: &str) -> Result<Vec<Permission>, EtcdError> {
        // The root role lists no permissions, as etcd 3.4 answers (later
        // etcds list one over everything); it needs none.
        let role = self.roles.get(name).ok_or(EtcdError::RoleNotFound)?;
        Ok(role.key_permission.clone())
    }

    pub fn role_list(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    pub fn role_delete(&mut self, name: &str) -> Result<(), EtcdError> {
        if self.enabled && name == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        if self.roles.remove(name).is_none() {
            return Err(EtcdError::RoleNotFound);
        }
        for u in self.users.values_mut() {
            u.roles.retain(|r| r != name);
        }
        self.commit();
        Ok(())
    }

    pub fn role_grant_permission(
        &mut self,
        r: &AuthRoleGrantPermissionRequest,
    ) -> Result<(), EtcdError> {
        // The role first, as etcd 3.4 checks; then what later etcds check
        // (3.4 stores a backwards range, and crashes on no permission).
        let role = self.roles.get_mut(&r.name).ok_or(EtcdError::RoleNotFound)?;
        let perm = r.perm.as_ref().ok_or(EtcdError::PermissionNotGiven)?;
        if !valid_permission_range(&perm.key, &perm.range_end) {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        match role
            .key_permission
            .iter_mut()
            .find(|p| p.key == perm.key && p.range_end == perm.range_end)
        {
            Some(p) => p.perm_type = perm.perm_type,
            None => {
                role.key_permission.push(perm.clone());
                role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        self.commit();
        Ok(())
    }

    pub fn role_revoke_permission(
        &mut self,
        r: &AuthRoleRevokePermissionRequest,
    ) -> Result<(), EtcdError> {
        let role = self.roles.get_mut(&r.role).ok_or(EtcdError::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| !(p.key == r.key && p.range_end == r.range_end));
        if role.key_permission.len() == before {
            return Err(EtcdError::PermissionNotGranted);
        }
        self.commit();
        Ok(())
    }
}

/// A new simple token's random part (etcd's genTokenPrefix: 16 letters).
pub fn token_prefix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes
        .iter()
        .map(|b| LETTERS[usize::from(*b) % LETTERS.len()] as char)
        .collect()
}

/// The raft index a simple token was assigned at (`prefix.index`).
pub fn token_index(token: &str) -> Option<u64> {
    let (_, index) = token.split_once('.')?;
    index.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_with(perms: &[(PermType, &[u8], &[u8])]) -> UserPerms {
        let mut roles = BTreeMap::new();
        roles.insert(
            "r".to_string(),
            Role {
                name: b"r".to_vec(),
                key_permission: perms
                    .iter()
                    .map(|(t, k, e)| Permission {
                        perm_type: *t as i32,
                        key: k.to_vec(),
                        range_end: e.to_vec(),
                    })
                    .collect(),
            },
        );
        let user = User {
            roles: vec!["r".into()],
            ..User::default()
        };
        UserPerms::build(&user, &roles)
    }

    #[test]
    fn single_key_permission_covers_only_that_key() {
        let p = user_with(&[(PermType::Read, b"foo", b"")]);
        assert!(p.allows(Need::Read, b"foo", b""));
        assert!(!p.allows(Need::Read, b"foo0", b""));
        assert!(!p.allows(Need::Read, b"fo", b""));
        assert!(!p.allows(Need::Write, b"foo", b""));
        // A prefix read of foo is a range [foo, fop): not covered by one key.
        assert!(!p.allows(Need::Read, b"foo", b"fop"));
    }

    #[test]
    fn prefix_permission_covers_keys_and_subranges_but_not_beyond() {
        let p = user_with(&[(PermType::Readwrite, b"app/", b"app0")]);
        for need in [Need::Read, Need::Write] {
            assert!(p.allows(need, b"app/x", b""));
            assert!(p.allows(need, b"app/", b"app0"));
            assert!(p.allows(need, b"app/a", b"app/b"));
            assert!(!p.allows(need, b"app/", b"app1"));
            assert!(!p.allows(need, b"app", b""));
            assert!(!p.allows(need, b"app/", &[0]));
        }
    }

    #[test]
    fn touching_permissions_of_two_roles_cover_their_union() {
        let p = user_with(&[
            (PermType::Read, b"a", b"c"),
            (PermType::Readwrite, b"c", b"e"),
            (PermType::Write, b"x", &[0]),
        ]);
        assert!(p.allows(Need::Read, b"a", b"e"));
        assert!(!p.allows(Need::Write, b"a", b"e"));
        assert!(p.allows(Need::Write, b"c", b"e"));
        assert!(p.allows(Need::Write, b"x", &[0]));
        assert!(p.allows(Need::Write, b"zzz", b""));
        assert!(!p.allows(Need::Read, b"x", b""));
    }

    fn header(user: &str, revision: u64) -> RequestHeader {
        RequestHeader {
            username: user.into(),
            auth_revision: revision,
            system: false,
        }
    }

    fn enabled_store() -> AuthStore {
        let mut a = AuthStore::new(TOKEN_TTL_DEFAULT);
        a.user_add(&InternalUserAdd {
            name: ROOT.into(),
            hashed_password: b"h".to_vec(),
            no_password: false,
        })
        .unwrap();
        assert_eq!(a.auth_enable(), Err(EtcdError::RootRoleNotExist));
        a.user_grant_role(&AuthUserGrantRoleRequest {
            user: ROOT.into(),
            role: ROOT.into(),
        })
        .unwrap();
        a.auth_enable().unwrap();
        a
    }

    #[test]
    fn a_request_checked_before_an_auth_change_is_refused_at_apply() {
        let mut a = enabled_store();
        a.role_add("w").unwrap();
        a.user_add(&InternalUserAdd {
            name: "u".into(),
            hashed_password: b"h".to_vec(),
            no_password: false,
        })
        .unwrap();
        a.role_grant_permission(&AuthRoleGrantPermissionRequest {
            name: "w".into(),
            perm: Some(Permission {
                perm_type: PermType::Write as i32,
                key: b"k".to_vec(),
                range_end: Vec::new(),
            }),
        })
        .unwrap();
        a.user_grant_role(&AuthUserGrantRoleRequest {
            user: "u".into(),
            role: "w".into(),
        })
        .unwrap();
        let checked = header("u", a.revision());
        assert_eq!(a.check(&checked, Need::Write, b"k", b""), Ok(()));
        a.user_revoke_role(&AuthUserRevokeRoleRequest {
            name: "u".into(),
            role: "w".into(),
        })
        .unwrap();
        assert_eq!(
            a.check(&checked, Need::Write, b"k", b""),
            Err(EtcdError::AuthOldRevision)
        );
        assert_eq!(
            a.check(&header("u", a.revision()), Need::Write, b"k", b""),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(
            a.check(&header("", 0), Need::Read, b"k", b""),
            Err(EtcdError::UserEmpty)
        );
        assert_eq!(
            a.check_admin(&header("u", 9)),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(a.check_admin(&header(ROOT, 9)), Ok(()));
        assert_eq!(a.user_delete(ROOT), Err(EtcdError::InvalidAuthMgmt));
    }

    #[test]
    fn a_token_lives_its_ttl_unused_and_use_extends_it() {
        let mut a = enabled_store();
        a.shared.lock_tokens().ttl = Duration::ZERO;
        let t = a.authenticate(ROOT, "zero.1").unwrap();
        assert_eq!(a.shared().token_user(&t), None, "expired at once");
        assert!(a.shared.lock_tokens().by_token.is_empty(), "and forgotten");
        a.shared.lock_tokens().ttl = Duration::from_secs(3600);
        let t = a.authenticate(ROOT, "hour.2").unwrap();
        let before = a.shared.lock_tokens().by_token[&t].deadline;
        assert_eq!(a.shared().token_user(&t).as_deref(), Some(ROOT));
        assert!(a.shared.lock_tokens().by_token[&t].deadline >= before);
        // Deleting the user or changing the password ends their tokens.
        a.user_change_password(&InternalUserAdd {
            name: ROOT.into(),
            hashed_password: b"new".to_vec(),
            no_password: false,
        })
        .unwrap();
        assert_eq!(a.shared().token_user(&t), None);
    }

    #[test]
    fn tokens_die_with_their_user_and_with_auth_disable() {
        let mut a = enabled_store();
        let t = a.authenticate(ROOT, "abc.7").unwrap();
        assert_eq!(a.shared().token_user(&t).as_deref(), Some(ROOT));
        assert_eq!(token_index(&t), Some(7));
        a.auth_disable();
        assert_eq!(a.shared().token_user(&t), None);
        assert_eq!(
            a.authenticate(ROOT, "abc.8"),
            Err(EtcdError::AuthNotEnabled)
        );
    }
}
