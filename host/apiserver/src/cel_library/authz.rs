//! Kubernetes' authorization library for CEL (`k8s.io/apiserver/pkg/cel/library/authz.go`, with
//! the selectors of its version 1): the `authorizer` of admission policies, whose checks ask this
//! server's authorizer what the request's user (or a service account) may do, and
//! `authorizer.requestResource`, the check of the request's own resource.
//!
//! `authorizer.group('apps').resource('deployments').namespace('ns').check('create').allowed()`,
//! `authorizer.path('/healthz').check('get')`, `authorizer.serviceAccount(ns, name)`,
//! `.subresource(s)`, `.name(n)`, `.fieldSelector(s)`, `.labelSelector(s)`, and on a decision
//! `allowed()`, `reason()`, `errored()`, `error()`. A check reads the roles and bindings of the
//! state the admission runs on, which [`with_state`] lends for the evaluation.

use std::sync::Arc;

use cel::common::types::{CelBool, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};
use k8s_openapi::api::authentication::v1::UserInfo;

use super::{take, text};
use crate::authz::attributes::{Attributes, ResourceRequest, Target};
use crate::authz::{Authorizer, Decision};
use crate::cluster::Inner;

scoped_tls::scoped_thread_local!(static STATE: Inner);

/// Runs `f` with `inner` as the state the checks of `authorizer` values read.
pub fn with_state<R>(inner: &Inner, f: impl FnOnce() -> R) -> R {
    STATE.set(inner, f)
}

const AUTHORIZER: Type = Type::new_unspecified_type("kubernetes.authorization.Authorizer");
static AUTHORIZER_TYPE: Type = AUTHORIZER;
const PATH_CHECK: Type = Type::new_unspecified_type("kubernetes.authorization.PathCheck");
static PATH_CHECK_TYPE: Type = PATH_CHECK;
const GROUP_CHECK: Type = Type::new_unspecified_type("kubernetes.authorization.GroupCheck");
static GROUP_CHECK_TYPE: Type = GROUP_CHECK;
const RESOURCE_CHECK: Type = Type::new_unspecified_type("kubernetes.authorization.ResourceCheck");
static RESOURCE_CHECK_TYPE: Type = RESOURCE_CHECK;
const DECISION: Type = Type::new_unspecified_type("kubernetes.authorization.Decision");
static DECISION_TYPE: Type = DECISION;

/// Asks the authorizer as one user; the policy's `authorizer` also knows the request's resource.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizerVal {
    user: Arc<UserInfo>,
    authorizer: Authorizer,
    /// `authorizer.requestResource`: only the policy's own `authorizer` has one.
    request_resource: Option<Box<ResourceCheck>>,
}

opaque!(AuthorizerVal, AUTHORIZER_TYPE, as_indexer);

impl cel::common::traits::Indexer for AuthorizerVal {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let key = idx
            .downcast_ref::<CelString>()
            .map(CelString::inner)
            .unwrap_or_default();
        match (&self.request_resource, key) {
            (Some(check), "requestResource") => Ok(CowVal::owned((**check).clone())),
            _ => Err(ExecutionError::NoSuchKey(Arc::new(key.to_owned()))),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl AuthorizerVal {
    /// The `authorizer` of a request by `user`, decided by `authorizer`, on `request` (its
    /// `requestResource`: the request's group, resource, subresource, namespace and name).
    #[must_use]
    pub fn for_request(user: &UserInfo, authorizer: Authorizer, request: ResourceRequest) -> Self {
        let user = Arc::new(user.clone());
        let group = GroupCheck {
            authorizer: Self {
                user: user.clone(),
                authorizer,
                request_resource: None,
            },
            group: request.group,
        };
        Self {
            user,
            authorizer,
            request_resource: Some(Box::new(ResourceCheck {
                group,
                resource: request.resource,
                subresource: request.subresource,
                namespace: request.namespace,
                name: request.name,
            })),
        }
    }

    /// The decision on `target` for `verb`, as this user.
    fn decide(&self, verb: &str, target: Target) -> DecisionVal {
        let attributes = Attributes {
            user: (*self.user).clone(),
            verb: verb.to_owned(),
            target,
        };
        if !STATE.is_set() {
            return DecisionVal {
                allowed: false,
                reason: String::new(),
                error: "no authorization state to check against".to_owned(),
            };
        }
        STATE
            .with(|inner| self.authorizer.decide(inner, &attributes))
            .into()
    }
}

/// A check of a non-resource path.
#[derive(Debug, Clone, PartialEq)]
pub struct PathCheck {
    authorizer: AuthorizerVal,
    path: String,
}

opaque!(PathCheck, PATH_CHECK_TYPE);

/// Checks in one API group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupCheck {
    authorizer: AuthorizerVal,
    group: String,
}

opaque!(GroupCheck, GROUP_CHECK_TYPE);

/// A check of a resource, narrowed to a subresource, namespace or name when they are set.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceCheck {
    group: GroupCheck,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
}

opaque!(ResourceCheck, RESOURCE_CHECK_TYPE);

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionVal {
    allowed: bool,
    reason: String,
    /// Empty unless the check failed.
    error: String,
}

opaque!(DecisionVal, DECISION_TYPE);

/// Registers the library on `env`.
pub(super) fn declare(env: &mut Env) -> Result<(), DeclarationError> {
    let s = || STRING_TYPE;
    env.add_member_overload("path", "authorizer_path", AUTHORIZER, vec![s()], path)?;
    env.add_member_overload("group", "authorizer_group", AUTHORIZER, vec![s()], group)?;
    env.add_member_overload(
        "serviceAccount",
        "authorizer_serviceaccount",
        AUTHORIZER,
        vec![s(), s()],
        service_account,
    )?;
    env.add_member_overload(
        "resource",
        "groupcheck_resource",
        GROUP_CHECK,
        vec![s()],
        resource,
    )?;
    for (name, op) in [
        (
            "subresource",
            subresource as cel::common::functions::Function,
        ),
        ("namespace", namespace),
        ("name", name),
        ("fieldSelector", selector),
        ("labelSelector", selector),
    ] {
        env.add_member_overload(
            name,
            &format!("resourcecheck_{}", name.to_ascii_lowercase()),
            RESOURCE_CHECK,
            vec![s()],
            op,
        )?;
    }
    env.add_member_overload(
        "check",
        "pathcheck_check",
        PATH_CHECK,
        vec![s()],
        path_check,
    )?;
    env.add_member_overload(
        "check",
        "resourcecheck_check",
        RESOURCE_CHECK,
        vec![s()],
        resource_check,
    )?;
    env.add_member_overload("allowed", "decision_allowed", DECISION, vec![], allowed)?;
    env.add_member_overload("reason", "decision_reason", DECISION, vec![], reason)?;
    env.add_member_overload("errored", "decision_errored", DECISION, vec![], errored)?;
    env.add_member_overload("error", "decision_error", DECISION, vec![], error)?;
    Ok(())
}

fn receiver<'b, T: cel::common::value::StaticVal + Val>(
    value: &'b dyn Val,
    function: &str,
) -> Result<&'b T, ExecutionError> {
    value.downcast_ref::<T>().ok_or_else(|| {
        ExecutionError::function_error(function, format!("expects a {}", T::cel_type().name()))
    })
}

fn owned<'b, 'v>(value: impl Val + 'v) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(value))
}

fn path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [authorizer, path] = take(args)?;
    let path = text(path.as_ref(), "path")?;
    if path.trim().is_empty() {
        return Err(ExecutionError::function_error(
            "path",
            "path must not be empty",
        ));
    }
    owned(PathCheck {
        authorizer: receiver::<AuthorizerVal>(authorizer.as_ref(), "path")?.clone(),
        path: path.to_owned(),
    })
}

fn group<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [authorizer, group] = take(args)?;
    owned(GroupCheck {
        authorizer: receiver::<AuthorizerVal>(authorizer.as_ref(), "group")?.clone(),
        group: text(group.as_ref(), "group")?.to_owned(),
    })
}

/// `serviceAccount(namespace, name)`: the same authorizer asked as
/// `system:serviceaccount:NS:NAME` in the groups `serviceaccount.ServiceAccountInfo` gives it.
fn service_account<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "serviceAccount";
    let [authorizer, namespace, name] = take(args)?;
    let authorizer = receiver::<AuthorizerVal>(authorizer.as_ref(), F)?;
    let (namespace, name) = (text(namespace.as_ref(), F)?, text(name.as_ref(), F)?);
    if crate::validation::dns1123_subdomain(name).is_err() {
        return Err(ExecutionError::function_error(
            F,
            "Invalid service account name",
        ));
    }
    if crate::validation::dns1123_label(namespace).is_err() {
        return Err(ExecutionError::function_error(
            F,
            "Invalid service account namespace",
        ));
    }
    owned(AuthorizerVal {
        user: Arc::new(UserInfo {
            username: Some(crate::user::service_account_username(namespace, name)),
            groups: Some(crate::user::service_account_groups(namespace)),
            ..UserInfo::default()
        }),
        authorizer: authorizer.authorizer,
        request_resource: None,
    })
}

fn resource<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [group, resource] = take(args)?;
    let resource = text(resource.as_ref(), "resource")?;
    if resource.trim().is_empty() {
        return Err(ExecutionError::function_error(
            "resource",
            "resource must not be empty",
        ));
    }
    owned(ResourceCheck {
        group: receiver::<GroupCheck>(group.as_ref(), "resource")?.clone(),
        resource: resource.to_owned(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
    })
}

/// A copy of the receiver with one part set.
fn narrowed<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    set: impl FnOnce(&mut ResourceCheck, String),
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [check, value] = take(args)?;
    let mut check = receiver::<ResourceCheck>(check.as_ref(), function)?.clone();
    set(&mut check, text(value.as_ref(), function)?.to_owned());
    owned(check)
}

fn subresource<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    narrowed(args, "subresource", |c, v| c.subresource = v)
}

fn namespace<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    narrowed(args, "namespace", |c, v| c.namespace = v)
}

fn name<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    narrowed(args, "name", |c, v| c.name = v)
}

/// `fieldSelector` and `labelSelector`: the requirements go to the authorizer with the check,
/// and RBAC, the only authorizer here, does not read them (as on a cluster).
fn selector<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    narrowed(args, "selector", |_, _| {})
}

fn path_check<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [check, verb] = take(args)?;
    let check = receiver::<PathCheck>(check.as_ref(), "check")?;
    let target = Target::NonResource {
        path: check.path.clone(),
    };
    owned(
        check
            .authorizer
            .decide(text(verb.as_ref(), "check")?, target),
    )
}

/// A resource check's attributes: any version of the group (`APIVersion: "*"`).
fn resource_check<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [check, verb] = take(args)?;
    let check = receiver::<ResourceCheck>(check.as_ref(), "check")?;
    let target = Target::Resource(ResourceRequest {
        group: check.group.group.clone(),
        version: "*".to_owned(),
        resource: check.resource.clone(),
        subresource: check.subresource.clone(),
        namespace: check.namespace.clone(),
        name: check.name.clone(),
    });
    owned(
        check
            .group
            .authorizer
            .decide(text(verb.as_ref(), "check")?, target),
    )
}

fn decision<'b, 'v, R: Val + 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    read: impl FnOnce(&DecisionVal) -> R,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [decision] = take(args)?;
    owned(read(receiver::<DecisionVal>(decision.as_ref(), function)?))
}

fn allowed<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    decision(args, "allowed", |d| CelBool::from(d.allowed))
}

fn reason<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    decision(args, "reason", |d| CelString::from(d.reason.clone()))
}

fn errored<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    decision(args, "errored", |d| CelBool::from(!d.error.is_empty()))
}

fn error<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    decision(args, "error", |d| CelString::from(d.error.clone()))
}

impl From<Decision> for DecisionVal {
    fn from(decision: Decision) -> Self {
        Self {
            allowed: decision.allowed(),
            reason: decision.reason().to_owned(),
            error: String::new(),
        }
    }
}
