"""Every page has an icon: no 404 in the console for /favicon.ico."""


def test_favicon_ico_leads_to_the_icon(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("/static/favicon.svg")


def test_staff_pages_and_the_admin_link_the_icon(agent_client, manager_client):
    assert 'rel="icon" href="/static/favicon.svg"' in agent_client.get("/inbox/").content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in manager_client.get("/admin/").content.decode()
