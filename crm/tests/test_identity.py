import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from crm import identity
from crm.models import CustomerIdentity
from crm.services import customer_for_identity
from tests.factories import make_customer


@pytest.mark.parametrize("raw, expected", [
    ("+1 (415) 555-0100", "+14155550100"),
    ("  415.555.0100 ", "+14155550100"),
    ("(415) 555 0100", "+14155550100"),
    ("1-415-555-0100", "+14155550100"),
    ("+44 20 7946 0958", "+442079460958"),
])
def test_phone_numbers_become_e164_with_the_business_region(raw, expected):
    assert identity.normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "call me", "555", "+1 (415) 555-01000000", "x" * 5000])
def test_unreadable_phone_numbers_are_refused_with_a_message(raw):
    with pytest.raises(ValidationError) as info:
        identity.normalize_phone(raw)
    assert info.value.messages[0]


@pytest.mark.parametrize("raw, expected", [
    ("John@Example.COM", "john@example.com"),
    ("  jane.smith@example.com \n", "jane.smith@example.com"),
])
def test_emails_are_trimmed_and_lower_cased(raw, expected):
    assert identity.normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "not-an-email", "a@", "@example.com"])
def test_invalid_emails_are_refused(raw):
    with pytest.raises(ValidationError):
        identity.normalize_email(raw)


def test_saving_an_identity_normalises_it(db):
    customer = make_customer()
    phone = CustomerIdentity.objects.create(customer=customer, kind="phone", value="+1 (415) 555-0100")
    assert phone.value == "+14155550100"


def test_database_refuses_a_duplicate_identity(db):
    first = make_customer("dup@example.com")
    other = make_customer("other@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerIdentity.objects.bulk_create([CustomerIdentity(customer=other, kind="email", value="dup@example.com")])
    assert CustomerIdentity.objects.get(value="dup@example.com").customer == first


def test_database_refuses_an_empty_identity(db):
    customer = make_customer()
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerIdentity.objects.bulk_create([CustomerIdentity(customer=customer, kind="email", value="")])


def test_the_same_person_is_found_by_any_spelling_of_their_email(db):
    customer, created = customer_for_identity(kind="email", value="Mixed.Case@Example.com")
    again, created_again = customer_for_identity(kind="email", value="  mixed.case@example.COM ")
    assert created and not created_again
    assert again == customer


def test_admin_reports_a_duplicate_identity_instead_of_crashing(manager_client):
    make_customer("taken@example.com")
    other = make_customer("free@example.com")
    response = manager_client.post("/admin/crm/customeridentity/add/", {
        "customer": other.pk, "kind": "email", "value": "TAKEN@example.com", "created_at_0": "2026-01-01",
        "created_at_1": "10:00:00",
    })
    assert response.status_code == 200
    assert "Another customer already has this email or phone." in response.content.decode()


def test_admin_reports_an_unreadable_phone_number(manager_client):
    customer = make_customer()
    response = manager_client.post("/admin/crm/customeridentity/add/", {
        "customer": customer.pk, "kind": "phone", "value": "call me maybe", "created_at_0": "2026-01-01",
        "created_at_1": "10:00:00",
    })
    assert response.status_code == 200
    assert "is not a phone number we can read" in response.content.decode()
    assert not CustomerIdentity.objects.filter(kind="phone").exists()


def test_a_chat_visitor_is_found_by_the_digest_of_their_token_never_the_token(db):
    token = "Vt_8g2kQm4ZpL0sWc7YhN1xR5aDf3Je9"
    customer, created = customer_for_identity(kind=identity.VISITOR, value=token)
    again, created_again = customer_for_identity(kind=identity.VISITOR, value=f" {token} ")
    assert created and not created_again and again == customer
    stored = customer.identities.get()
    assert stored.kind == "visitor" and token not in stored.value and stored.value.startswith("sha256:")
    assert customer.preferred_channel == "chat"


@pytest.mark.parametrize("token", ["", "short", "has spaces in it and is long enough", "x" * 129, "<script>xxxxxxxxxxxxxxxxxx"])
def test_a_malformed_visitor_token_is_refused_with_a_message(token):
    with pytest.raises(ValidationError) as info:
        identity.normalize(identity.VISITOR, token)
    assert "visitor token" in info.value.messages[0]


@pytest.mark.parametrize("raw, stored, unparsed", [
    ("(415) 555-0100", "+14155550100", False),
    ("+44 20 7946 0958", "+442079460958", False),
    ("call me", "unparsed:call me", True),
    ("  Anonymous\x00 ", "unparsed:Anonymous", True),
])
def test_a_channels_number_is_e164_or_kept_as_given_and_flagged(raw, stored, unparsed):
    assert identity.phone_or_unparsed(raw) == (stored, unparsed)
    assert identity.normalize_phone(stored) == stored  # normalising again changes nothing


def test_an_empty_number_is_still_refused():
    with pytest.raises(ValidationError):
        identity.phone_or_unparsed("  \x00 ")
