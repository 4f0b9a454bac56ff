use super::*;

#[test]
fn every_route_names_its_access_once() {
    for (i, (method, pattern, _)) in ROUTES.iter().enumerate() {
        let again = ROUTES[i + 1..]
            .iter()
            .any(|(m, p, _)| m == method && p == pattern);
        assert!(!again, "{method} {pattern} is listed twice");
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        assert_eq!(required(&method, pattern), ROUTES[i].2);
    }
}

#[test]
fn a_route_nobody_listed_needs_admin() {
    assert_eq!(
        required(&Method::GET, "/v1/tenants/{tenant}/secret-new-thing"),
        Access::Needs(Permission::Admin)
    );
    assert_eq!(
        required(&Method::POST, "/v1/tenants/{tenant}/twins"),
        Access::Needs(Permission::Admin)
    );
}

#[test]
fn roles_grant_what_the_weaker_ones_do() {
    let order = [Role::AppRead, Role::AppWrite, Role::Operator, Role::Admin];
    for (i, role) in order.iter().enumerate() {
        assert_eq!(Permission::of(*role).role(), *role);
        for weaker in &order[..i] {
            assert!(Permission::of(*role) > Permission::of(*weaker));
        }
    }
}

#[test]
fn a_caller_answers_for_its_bearer_whichever_kind() {
    let acme = TenantScope::Tenant(doppel_model::TenantId::new("acme").unwrap());
    let jwt = Caller {
        bearer: Some(Bearer::Jwt(Arc::new(JwtIdentity {
            name: "alice@example.com".into(),
            roles: vec![Role::AppWrite],
            tenant: acme.clone(),
            expires_at: Millis(42),
        }))),
    };
    assert_eq!(jwt.changed_by(), "jwt:alice@example.com");
    assert_eq!(jwt.roles(), [Role::AppWrite]);
    assert_eq!(jwt.tenant(), Some(&acme));
    assert_eq!(jwt.expires_at(), Some(Millis(42)));
    let token = Caller {
        bearer: Some(Bearer::Token(Arc::new(TokenInfo {
            id: "0011223344556677".into(),
            name: "grafana".into(),
            roles: vec![Role::AppRead],
            tenant: TenantScope::All,
            created_at: Millis(0),
            expires_at: None,
        }))),
    };
    assert_eq!(token.changed_by(), "token:grafana");
    assert_eq!(token.roles(), [Role::AppRead]);
    assert_eq!(token.tenant(), Some(&TenantScope::All));
    assert_eq!(token.expires_at(), None);
    let nobody = Caller { bearer: None };
    assert_eq!(nobody.changed_by(), "anonymous");
    assert!(nobody.roles().is_empty());
    assert_eq!(nobody.tenant(), None);
}
