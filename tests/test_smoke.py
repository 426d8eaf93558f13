def test_signin_flow(client, make_user, auth):
    user = make_user("admin")
    r = auth.signin(user.email)
    assert r.status_code == 302 and r.headers["Location"] == "/dashboard"
