"""Small helpers that build test data through the same services as the product."""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from crm.services import customer_for_identity


def make_user(username, *, role="Agent", password="pw-for-tests-1", **extra):
    user = get_user_model().objects.create_user(username=username, password=password,
                                                first_name=extra.pop("first_name", username.title()), **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def make_customer(email="john@example.com", first_name="John", last_name="Doe", phone=None):
    customer, _ = customer_for_identity(kind="email", value=email, first_name=first_name, last_name=last_name)
    if phone:
        customer.identities.create(kind="phone", value=phone)
    return customer
