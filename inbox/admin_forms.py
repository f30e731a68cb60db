"""The routing rule form managers use: choices, not raw JSON.

Each field is one condition or action of inbox/routing.py. The form turns the
choices into the same ``conditions`` / ``actions`` JSON a rule has always
stored, and the model's ``clean()`` (``routing.validate_rule``) checks that
JSON exactly as before, so a forged post fails the same way a bad API write
would. Choices are read when the form is built: the channels from the
registry (inbox/channels.py), the tiers from settings, the people and teams
from the staff groups.
"""
import re

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from crm.models import loyalty_tier_names
from myhibachi.admin_site import person_name
from myhibachi.roles import AGENT, MANAGER

from . import channels
from .models import Conversation, RoutingRule

ANY = ""
HOURS = [(ANY, "Any time"), ("inside", "Inside business hours"), ("outside", "Outside business hours")]
BOOKING = [(ANY, "Either way"), ("yes", "Has an upcoming booking"), ("no", "Has no upcoming booking")]
MATCH = [("any", "Any of the words"), ("all", "All of the words")]


def _words(text: str) -> list[str]:
    """Comma- or line-separated words and phrases, trimmed, empty ones dropped, first spelling kept."""
    seen, words = set(), []
    for word in re.split(r"[,\n]", text or ""):
        word = " ".join(word.split())
        if word and word.lower() not in seen:
            seen.add(word.lower())
            words.append(word)
    return words


def assignee_choices() -> list[tuple[str, str]]:
    """"Nobody", each active staff member by name, and round-robin over each staff group."""
    people = (get_user_model().objects.filter(is_active=True)
              .filter(Q(groups__name__in=[AGENT, MANAGER]) | Q(is_superuser=True)).distinct()
              .order_by("first_name", "last_name", "username"))
    return [(ANY, "Don't assign"),
            ("In turn (round robin)", [(f"group:{name}", f"Everyone in {name}s, in turn") for name in (AGENT, MANAGER)]),
            ("A person", [(f"user:{u.get_username()}", person_name(u)) for u in people])]


class RoutingRuleForm(forms.ModelForm):
    when_channels = forms.MultipleChoiceField(
        label="Channel", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="The message came in on one of these. None ticked: any channel.")
    when_keywords = forms.CharField(
        label="Words", required=False, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Whole words or phrases, separated by commas, in the subject or text, any case. Empty: no word condition.")
    when_keywords_match = forms.ChoiceField(label="Match", choices=MATCH, initial="any", widget=forms.RadioSelect)
    when_tiers = forms.MultipleChoiceField(
        label="Loyalty tier", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="The customer is in one of these tiers. None ticked: any tier.")
    when_hours = forms.ChoiceField(label="Business hours", choices=HOURS, required=False)
    when_booking = forms.ChoiceField(label="Upcoming booking", choices=BOOKING, required=False)
    then_assign = forms.ChoiceField(label="Assign to", required=False)
    then_status = forms.ChoiceField(label="Set status", required=False,
                                    choices=[(ANY, "Leave as it is"), *Conversation.Status.choices])
    then_tags = forms.CharField(label="Add tags", required=False,
                                help_text="Tag names separated by commas (letters, digits, - and _).")

    fieldsets = (
        (None, {"fields": ("name", "order", "active", "trigger", "continue_processing")}),
        ("When (every condition given must hold)", {"fields": (
            "when_channels", "when_keywords", "when_keywords_match", "when_tiers", "when_hours", "when_booking")}),
        ("Then", {"fields": ("then_assign", "then_status", "then_tags")}),
    )

    class Meta:
        model = RoutingRule
        fields = ("name", "order", "active", "trigger", "continue_processing")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["when_channels"].choices = channels.choices()
        self.fields["when_tiers"].choices = [(t, t.capitalize()) for t in loyalty_tier_names()]
        self.fields["then_assign"].choices = assignee_choices()
        if self.instance.pk is not None and not self.is_bound:
            self.initial.update(self.initial_from(self.instance.conditions or {}, self.instance.actions or {}))

    @staticmethod
    def initial_from(conditions: dict, actions: dict) -> dict:
        keywords = conditions.get("keywords") or {}
        upcoming = conditions.get("has_upcoming_booking")
        assign = ANY
        if actions.get("assign_user"):
            assign = f"user:{actions['assign_user']}"
        elif actions.get("assign_round_robin"):
            assign = f"group:{actions['assign_round_robin']}"
        return {
            "when_channels": conditions.get("channel", []),
            "when_keywords": ", ".join(keywords.get("words", [])),
            "when_keywords_match": keywords.get("match", "any"),
            "when_tiers": conditions.get("loyalty_tier", []),
            "when_hours": conditions.get("business_hours", ANY),
            "when_booking": ANY if upcoming is None else ("yes" if upcoming else "no"),
            "then_assign": assign,
            "then_status": actions.get("set_status", ANY),
            "then_tags": ", ".join(actions.get("add_tags", [])),
        }

    def clean(self):
        data = super().clean()
        conditions, actions = {}, {}
        if data.get("when_channels"):
            conditions["channel"] = list(data["when_channels"])
        words = _words(data.get("when_keywords", ""))
        if words:
            conditions["keywords"] = {"words": words, "match": data.get("when_keywords_match") or "any"}
        if data.get("when_tiers"):
            conditions["loyalty_tier"] = list(data["when_tiers"])
        if data.get("when_hours"):
            conditions["business_hours"] = data["when_hours"]
        if data.get("when_booking"):
            conditions["has_upcoming_booking"] = data["when_booking"] == "yes"
        kind, _, value = (data.get("then_assign") or "").partition(":")
        if kind == "user":
            actions["assign_user"] = value
        elif kind == "group":
            actions["assign_round_robin"] = value
        if data.get("then_status"):
            actions["set_status"] = data["then_status"]
        tags = _words(data.get("then_tags", ""))
        if tags:
            actions["add_tags"] = tags
        if not actions:
            raise forms.ValidationError("Choose at least one thing to do: assign, set a status or add tags.")
        # The model's clean() runs inbox.routing.validate_rule on exactly this JSON.
        self.instance.conditions, self.instance.actions = conditions, actions
        return data

    def _post_clean(self):
        if self._errors:
            return  # a choice is already refused; the JSON built from it would only repeat that
        super()._post_clean()


def summary(rule: RoutingRule) -> str:
    """One line a manager can read: "SMS, outside business hours → assign Alex Kim"."""
    c, a = rule.conditions or {}, rule.actions or {}
    labels = dict(channels.choices())
    when = []
    if c.get("channel"):
        when.append(" or ".join(labels.get(ch, ch) for ch in c["channel"]))
    if c.get("keywords"):
        joiner = " and " if c["keywords"].get("match") == "all" else " or "
        when.append("says " + joiner.join(f"“{w}”" for w in c["keywords"].get("words", [])))
    if c.get("loyalty_tier"):
        when.append(" or ".join(t.capitalize() for t in c["loyalty_tier"]) + " tier")
    if c.get("business_hours"):
        when.append(f"{c['business_hours']} business hours")
    if "has_upcoming_booking" in c:
        when.append("has an upcoming booking" if c["has_upcoming_booking"] else "no upcoming booking")
    then = []
    if a.get("assign_user"):
        then.append(f"assign {a['assign_user']}")
    if a.get("assign_round_robin"):
        then.append(f"assign {a['assign_round_robin']}s in turn")
    if a.get("set_status"):
        then.append(f"set {a['set_status']}")
    if a.get("add_tags"):
        then.append("tag " + ", ".join(a["add_tags"]))
    return f"{', '.join(when) or 'Every message'} → {'; '.join(then) or 'nothing'}"
