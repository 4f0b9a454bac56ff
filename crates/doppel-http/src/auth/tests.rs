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
