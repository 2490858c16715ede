//! etcd's Auth service: `etcdctl user|role|auth` and `Authenticate`.
//!
//! Changes go through Raft and are checked at apply (root only, with the
//! caller's header); reads (user/role get and list, status) are answered
//! locally after a read barrier, checked against the auth store of that
//! moment. Passwords are hashed (bcrypt) and checked here, off the Raft
//! thread: only hashes are proposed, never a password (etcd 3.5 does the
//! same; CVE-2021-28235 was a password kept in a log).

use tonic::{Request, Response, Status};

use super::{lock_store, unexpected, EtcdServer, Res};
use crate::auth::token_prefix;
use crate::error::EtcdError;
use crate::pb::etcdserverpb::auth_server::Auth;
use crate::pb::etcdserverpb::*;
use crate::pb::keelpb::{internal_request, InternalAuthenticate, InternalUserAdd};
use crate::store::Applied;

/// How many times Authenticate re-checks a password that an auth change
/// raced with, before giving up (etcd loops until it wins).
const AUTHENTICATE_ATTEMPTS: usize = 5;

impl EtcdServer {
    /// Proposes an auth change for the caller; the answer is its header.
    async fn auth_change<T>(
        &self,
        req: &Request<T>,
        change: internal_request::Request,
    ) -> Result<ResponseHeader, Status> {
        let h = self.header_of(&self.caller(req)).await?;
        match self.propose_as(&h, change).await? {
            (Applied::Auth, rev) => Ok(self.header_at(rev)),
            _ => Err(unexpected()),
        }
    }

    /// bcrypt of a new password, at the configured cost, on a blocking thread.
    async fn hash_password(&self, password: String) -> Result<Vec<u8>, Status> {
        let cost = self.inner.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(String::into_bytes)
            .map_err(|e| Status::internal(format!("bcrypt: {e}")))
    }

    /// A caller who may read auth state: root, or (`own`) the user asking
    /// about themselves or a role they hold, as etcd's UserGet and RoleGet.
    async fn auth_read<T>(
        &self,
        req: &Request<T>,
        own: impl Fn(&crate::auth::AuthStore, &str) -> bool,
    ) -> Result<(), Status> {
        let h = self.header_of(&self.caller(req)).await?;
        self.barrier(false).await?;
        let store = lock_store(&self.inner.store);
        let a = store.auth();
        match a.check_admin(&h) {
            Ok(()) => Ok(()),
            Err(_) if !h.username.is_empty() && own(a, &h.username) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[tonic::async_trait]
impl Auth for EtcdServer {
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Res<AuthEnableResponse> {
        let header = self
            .auth_change(
                &req,
                internal_request::Request::AuthEnable(AuthEnableRequest {}),
            )
            .await?;
        Ok(Response::new(AuthEnableResponse {
            header: Some(header),
        }))
    }

    async fn auth_disable(&self, req: Request<AuthDisableRequest>) -> Res<AuthDisableResponse> {
        let header = self
            .auth_change(
                &req,
                internal_request::Request::AuthDisable(AuthDisableRequest {}),
            )
            .await?;
        Ok(Response::new(AuthDisableResponse {
            header: Some(header),
        }))
    }

    async fn auth_status(&self, req: Request<AuthStatusRequest>) -> Res<AuthStatusResponse> {
        self.auth_read(&req, |_, _| false).await?;
        let store = lock_store(&self.inner.store);
        Ok(Response::new(AuthStatusResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            enabled: store.auth().enabled(),
            auth_revision: store.auth().revision(),
        }))
    }

    /// etcd's Authenticate: check the password here, then propose the token
    /// so that every member knows it; if the auth store changed meanwhile
    /// (a password changed, the user went), check again.
    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Res<AuthenticateResponse> {
        let AuthenticateRequest { name, password } = req.into_inner();
        self.barrier(false).await?;
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let (hash, checked_at) = {
                let store = lock_store(&self.inner.store);
                store.auth().password_hash(&name)?
            };
            let pw = password.clone();
            let ok = tokio::task::spawn_blocking(move || {
                std::str::from_utf8(&hash)
                    .ok()
                    .is_some_and(|h| bcrypt::verify(pw, h).unwrap_or(false))
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
            if !ok {
                tracing::info!("etcd auth: invalid password for user {name:?}");
                return Err(EtcdError::AuthFailed.into());
            }
            if let Some(jwt) = &self.inner.jwt {
                // A JWT needs no proposal: any member checks it with the key.
                let token = jwt.issue(&name, checked_at).ok_or_else(|| {
                    Status::failed_precondition(
                        "auth: this member has no JWT private key (--auth-token jwt,priv-key=...)",
                    )
                })?;
                return Ok(Response::new(AuthenticateResponse {
                    header: Some(self.header()),
                    token,
                }));
            }
            let change = internal_request::Request::Authenticate(InternalAuthenticate {
                name: name.clone(),
                simple_token: token_prefix(),
            });
            let (applied, rev) = self.propose_as(&Default::default(), change).await?;
            let Applied::Token(token) = applied else {
                return Err(unexpected());
            };
            let now = lock_store(&self.inner.store).auth().revision();
            if now == checked_at {
                return Ok(Response::new(AuthenticateResponse {
                    header: Some(self.header_at(rev)),
                    token,
                }));
            }
        }
        Err(EtcdError::AuthOldRevision.into())
    }

    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Res<AuthUserAddResponse> {
        // Hashing costs tens of milliseconds: only for a caller who may add users.
        self.require_admin(&self.caller(&req)).await?;
        let no_password = req
            .get_ref()
            .options
            .as_ref()
            .is_some_and(|o| o.no_password);
        let hashed_password = if no_password {
            Vec::new()
        } else {
            self.hash_password(req.get_ref().password.clone()).await?
        };
        let change = internal_request::Request::UserAdd(InternalUserAdd {
            name: req.get_ref().name.clone(),
            hashed_password,
            no_password,
        });
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: Some(header),
        }))
    }

    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Res<AuthUserGetResponse> {
        let name = req.get_ref().name.clone();
        self.auth_read(&req, |_, me| me == name).await?;
        let store = lock_store(&self.inner.store);
        let roles = store.auth().user_get(&name)?;
        Ok(Response::new(AuthUserGetResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            roles,
        }))
    }

    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Res<AuthUserListResponse> {
        self.auth_read(&req, |_, _| false).await?;
        let store = lock_store(&self.inner.store);
        Ok(Response::new(AuthUserListResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            users: store.auth().user_list(),
        }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Res<AuthUserDeleteResponse> {
        let change = internal_request::Request::UserDelete(req.get_ref().clone());
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthUserDeleteResponse {
            header: Some(header),
        }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Res<AuthUserChangePasswordResponse> {
        self.require_admin(&self.caller(&req)).await?;
        let hashed_password = self.hash_password(req.get_ref().password.clone()).await?;
        let change = internal_request::Request::UserChangePassword(InternalUserAdd {
            name: req.get_ref().name.clone(),
            hashed_password,
            no_password: false,
        });
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: Some(header),
        }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Res<AuthUserGrantRoleResponse> {
        let change = internal_request::Request::UserGrantRole(req.get_ref().clone());
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthUserGrantRoleResponse {
            header: Some(header),
        }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Res<AuthUserRevokeRoleResponse> {
        let change = internal_request::Request::UserRevokeRole(req.get_ref().clone());
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse {
            header: Some(header),
        }))
    }

    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Res<AuthRoleAddResponse> {
        let change = internal_request::Request::RoleAdd(req.get_ref().clone());
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthRoleAddResponse {
            header: Some(header),
        }))
    }

    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Res<AuthRoleGetResponse> {
        let role = req.get_ref().role.clone();
        self.auth_read(&req, |a, me| a.has_role(me, &role)).await?;
        let store = lock_store(&self.inner.store);
        let perm = store.auth().role_get(&role)?;
        Ok(Response::new(AuthRoleGetResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            perm,
        }))
    }

    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Res<AuthRoleListResponse> {
        self.auth_read(&req, |_, _| false).await?;
        let store = lock_store(&self.inner.store);
        Ok(Response::new(AuthRoleListResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            roles: store.auth().role_list(),
        }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Res<AuthRoleDeleteResponse> {
        let change = internal_request::Request::RoleDelete(req.get_ref().clone());
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: Some(header),
        }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Res<AuthRoleGrantPermissionResponse> {
        let change = internal_request::Request::RoleGrantPermission(req.get_ref().clone());
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse {
            header: Some(header),
        }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Res<AuthRoleRevokePermissionResponse> {
        let change = internal_request::Request::RoleRevokePermission(req.get_ref().clone());
        let header = self.auth_change(&req, change).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse {
            header: Some(header),
        }))
    }
}
