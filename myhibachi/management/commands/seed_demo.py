"""manage.py seed_demo: realistic demo data, safe to run again.

Every generated customer has a fixed index and a fixed email
(guest000123@demo.myhibachi.test); a run creates only the customers (and
their bookings, leads, conversations, messages and notes) whose index does
not exist yet. So running it twice creates nothing the second time, and a
larger --scale adds only the difference. Rows are written with bulk inserts
in batches, so --scale 500 (100,000 customers) stays quick.
"""
import random
import sys
import time
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from crm.models import (Booking, Channel, Customer, CustomerIdentity, EventType, Lead, LostReason, MarketingSpend,
                        Payment, Source)
from inbox import history, routing
from inbox.models import CannedResponse, Conversation, Message, Note, RoutingRule, Tag
from myhibachi.management.demo import insert

EMAIL_DOMAIN = "demo.myhibachi.test"
FIRST = ["John", "Jane", "Mike", "Sarah", "Ana", "Luis", "Mei", "Kenji", "Priya", "Omar", "Grace", "Tom", "Lena",
         "Carlos", "Aiko", "Ben", "Fatima", "Noah", "Chloe", "Diego", "Hana", "Ivan", "Jade", "Kai", "Maya", "Raj"]
LAST = ["Doe", "Smith", "Johnson", "Nguyen", "Garcia", "Kim", "Patel", "Tanaka", "Lopez", "Chen", "Brown", "Wong",
        "Martinez", "Singh", "Sato", "Davis", "Khan", "Miller", "Rossi", "Silva"]
INBOUND = [
    "Hi, I want to book a hibachi party for {n} people next month. What dates are open?",
    "What's the price for {n} people? Do you bring the grill?",
    "Can we do 6 PM instead of 5? Our guests arrive late.",
    "Do you have vegetarian options? Two of our guests don't eat meat.",
    "Thank you for the amazing service last weekend, everyone loved the chef!",
    "Is the deposit refundable if it rains? The party is outdoors.",
    "Can you send me the invoice again? I can't find the email.",
    "We need to change the guest count to {n}, is that ok?",
    "Do you serve the Sacramento area? Looking for a graduation party.",
]
# A call's text is what happened on the phone; it is never a chat line or an email.
CALLS = ["Missed call, left a voicemail about a birthday party quote.", "Called about the date for {n} guests."]
STREETS = ["Ocean Ave", "Maple St", "Sunset Blvd", "Oak Dr", "Harbor Way", "Mission Rd"]
OUTBOUND = [
    "Great! We have availability. What time works best for you?",
    "Our price is $60 per adult with a $600 minimum; the chef brings the grill and everything else.",
    "Yes, we have a vegetable and tofu menu at the same price.",
    "All set, I've updated your booking. See you soon!",
    "The deposit moves to a new date if weather cancels the event.",
]
NOTES = ["Customer wants vegetarian options", "VIP — booked 3 times, offer free upgrade",
         "Asked for a callback after 5pm", "Double-check the address, gated community", "@sarah can you follow up?"]
AGENTS = [("sarah", "Sarah", "Lee"), ("mike", "Mike", "Ortiz"), ("lena", "Lena", "Park")]
DEMO_LOGINS = {"manager": "hibachi-manager-demo", "agent": "hibachi-agent-demo"}
SOURCES = [Source.WEBSITE, Source.PHONE, Source.REFERRAL, Source.YELP, Source.GOOGLE, Source.INSTAGRAM]
CHANNELS = [Channel.EMAIL, Channel.SMS, Channel.CHAT, Channel.CALL]
LOCATIONS = ["San Jose", "San Francisco", "Oakland", "Palo Alto", "Fremont", "Sacramento"]
EVENT_TYPES = [EventType.BIRTHDAY] * 5 + [EventType.CORPORATE] * 2 + [EventType.WEDDING, EventType.HOLIDAY,
                                                                      EventType.OTHER]
# How likely an event lands in each month (Jan..Dec): summer parties and December holidays peak.
SEASON = [0.45, 0.45, 0.55, 0.7, 0.85, 1.0, 1.0, 0.95, 0.75, 0.6, 0.65, 0.95]
# Lost reasons by weight: most inquiries are lost to a taken date or to price.
LOST_WEIGHTS = {"date_unavailable": 35, "price": 25, "no_response": 20, "chose_competitor": 12, "other": 8}


@contextmanager
def unlogged_statements():
    """With DEBUG on (as `make run` has it) Django keeps the text of every statement, all its values
    written out, in memory: for bulk inserts of thousands of rows that took longer than the inserts
    (and grew with --scale). The seed's statements skip that log; cursors log again afterwards."""
    connection.make_debug_cursor = connection.make_cursor
    try:
        yield
    finally:
        del connection.make_debug_cursor


class Command(BaseCommand):
    help = (
        "Fill the database with demo staff, customers, bookings, leads, marketing spend, conversations, "
        "notes, canned responses and routing rules. Idempotent: only missing customers are added."
    )

    def add_arguments(self, parser):
        parser.add_argument("--scale", type=int, default=1, help="Multiply the 200 demo customers (default 1).")
        parser.add_argument("--customers", type=int, help="Exact number of customers (overrides --scale).")
        parser.add_argument("--conversations-per-customer", type=int, default=5)
        parser.add_argument("--messages-per-conversation", type=int, default=4,
                            help="Average messages per conversation (default 4).")
        parser.add_argument("--batch", type=int, default=1000, help="Customers written per transaction.")
        parser.add_argument("--print-logins", action="store_true",
                            help="Give the demo manager and agent known passwords and print them (DEBUG only).")
        parser.add_argument("--seed", type=int, default=7, help="Random seed; the same seed gives the same data.")

    def handle(self, *args, **opts):
        if opts["scale"] < 1 or (opts["customers"] is not None and opts["customers"] < 0):
            raise CommandError("--scale must be at least 1 and --customers not negative.")
        with unlogged_statements():
            self._seed(opts)
        if opts["print_logins"]:
            self._logins()

    def _seed(self, opts):
        self.now = timezone.now()
        with transaction.atomic():  # one commit for the setup, not one per row (each a disk sync on SQLite)
            self.lost_reasons = {
                slug: LostReason.objects.get_or_create(slug=slug, defaults={"name": name, "order": n})[0]
                for n, (slug, name) in enumerate(LostReason.DEFAULTS)}
            staff = self._staff()
            self._canned_and_rules()
            self._marketing_spend(random.Random(opts["seed"]))
        total = opts["customers"] if opts["customers"] is not None else 200 * opts["scale"]
        existing = set(
            int(v.split("@")[0].removeprefix("guest"))
            for v in CustomerIdentity.objects.filter(kind="email", value__endswith="@" + EMAIL_DOMAIN)
            .values_list("value", flat=True)
        )
        missing = [i for i in range(total) if i not in existing]
        started, done = time.monotonic(), 0
        for start in range(0, len(missing), opts["batch"]):
            indexes = missing[start:start + opts["batch"]]
            with transaction.atomic():
                self._customers(indexes, staff, opts)
            done += len(indexes)
            rate = done / max(time.monotonic() - started, 1e-6)
            self.stderr.write(f"\r  customers {done:,}/{len(missing):,} ({rate:,.0f}/s)", ending="")
            sys.stderr.flush()
        if missing:
            self.stderr.write("")
        self.stdout.write(self.style.SUCCESS(
            f"Demo data ready: {len(missing):,} customers added, {len(existing & set(range(total))):,} already there."
        ))

    # --- staff, canned responses, rules, spend --------------------------------
    def _staff(self):
        User = get_user_model()
        agent_group, _ = Group.objects.get_or_create(name="Agent")
        manager_group, _ = Group.objects.get_or_create(name="Manager")
        users = []
        for username, first, last, group in [("manager", "Morgan", "Reyes", manager_group),
                                             ("agent", "Alex", "Kim", agent_group),
                                             *[(u, f, l, agent_group) for u, f, l in AGENTS]]:
            user, created = User.objects.get_or_create(
                username=username, defaults={"first_name": first, "last_name": last,
                                             "email": f"{username}@myhibachi.test", "is_staff": group == manager_group}
            )
            if created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
            user.groups.add(group)
            if group == agent_group:
                users.append(user)
        return users

    def _logins(self):
        if not settings.DEBUG:
            raise CommandError("--print-logins sets well-known passwords and is refused when DEBUG is off.")
        User = get_user_model()
        self.stdout.write("\nLog in at http://127.0.0.1:8000/ with:")
        for username, password in DEMO_LOGINS.items():
            user = User.objects.get(username=username)
            user.set_password(password)
            user.save(update_fields=["password"])
            role = "manager (inbox + admin)" if username == "manager" else "agent (inbox)"
            self.stdout.write(f"  {role:24} username: {username:8} password: {password}")

    def _canned_and_rules(self):
        self.keyword_tags = []  # (keywords condition, tags) of the demo rules that look only at words
        for shortcut, title, body in [
            ("price", "Pricing", "Hi {{ customer.first_name }}, our price is $60 per adult and $30 per child "
                                 "under 12, with a $600 minimum. — {{ agent.first_name }}"),
            ("thanks", "Thank you", "Thank you {{ customer.first_name }}! We loved cooking for you."),
            ("confirm", "Booking confirmed", "Hi {{ customer.first_name }}, your event on {{ booking.event_date }} "
                                             "at {{ booking.event_time }} for {{ booking.guest_count }} guests is "
                                             "confirmed."),
            ("veggie", "Vegetarian menu", "Yes, {{ customer.first_name }}, we offer a vegetable and tofu menu."),
        ]:
            CannedResponse.objects.get_or_create(shortcut=shortcut, defaults={"title": title, "body": body})
        for name, order, conditions, actions in [
            ("Pricing questions to the sales queue", 10,
             {"keywords": {"words": ["price", "quote", "cost"], "match": "any"}},
             {"assign_round_robin": "Agent", "add_tags": ["pricing"]}),
            ("VIP customers to Sarah", 20, {"loyalty_tier": ["gold", "platinum"]},
             {"assign_user": "sarah", "add_tags": ["vip"]}),
            ("After-hours messages wait", 30, {"business_hours": "outside"}, {"add_tags": ["after-hours"]}),
        ]:
            RoutingRule.objects.get_or_create(name=name, defaults={"order": order, "conditions": conditions,
                                                                   "actions": actions})
            if set(conditions) == {"keywords"}:
                # Seeded conversations skip routing; they get the tags this rule
                # gives a first message, so tag filters find what they would in use.
                tags = [Tag.objects.get_or_create(name=tag)[0] for tag in actions.get("add_tags", [])]
                self.keyword_tags.append((conditions["keywords"], tags))

    def _marketing_spend(self, rng):
        first = date(self.now.year - 2, self.now.month, 1)
        rows, month = [], first
        while month <= self.now.date():
            for source in SOURCES:
                if source in (Source.REFERRAL, Source.PHONE):
                    continue
                rows.append(MarketingSpend(source=source, month=month,
                                           amount=Decimal(rng.randrange(200, 3000))))
            month = (month + timedelta(days=32)).replace(day=1)
        MarketingSpend.objects.bulk_create(rows, ignore_conflicts=True)

    # --- customers and everything that hangs off them ---------------------------
    def _customers(self, indexes, agents, opts):
        now = self.now
        two_years = timedelta(days=730)
        customers, plans = [], []
        for i in indexes:
            rng = random.Random(opts["seed"] * 1_000_003 + i)
            created = now - two_years + timedelta(seconds=rng.randrange(int(two_years.total_seconds())))
            customers.append(Customer(first_name=rng.choice(FIRST), last_name=rng.choice(LAST),
                                      preferred_channel=rng.choice([Channel.EMAIL, Channel.SMS, Channel.SMS]),
                                      created_at=created))
            plans.append((i, rng))
        insert(customers)

        identities, bookings, booking_sources = [], [], []
        for customer, (i, rng) in zip(customers, plans):
            identities.append(CustomerIdentity(customer=customer, kind="email", value=f"guest{i:06d}@{EMAIL_DOMAIN}",
                                               is_primary=True, created_at=customer.created_at))
            identities.append(CustomerIdentity(customer=customer, kind="phone", value=f"+1415{2000000 + i}",
                                               created_at=customer.created_at))
            for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 6, 11])):
                bookings.append(self._booking(customer, rng))
                booking_sources.append(rng)
        insert(identities)
        insert(bookings)
        insert([p for booking, rng in zip(bookings, booking_sources) for p in self._payments(booking, rng)])

        leads = []
        for booking in bookings:
            if booking.status != Booking.Status.LOST:
                leads.append(Lead(source=booking.source, customer=booking.customer, status=Lead.Status.CONVERTED,
                                  booking=booking, created_at=booking.inquiry_at))
        for customer, (i, rng) in zip(customers, plans):
            if rng.random() < 0.6:
                status = rng.choice([Lead.Status.NEW, Lead.Status.CONTACTED, Lead.Status.LOST])
                leads.append(Lead(source=rng.choice(SOURCES), customer=customer, status=status,
                                  lost_reason=self._lost_reason(rng) if status == Lead.Status.LOST else None,
                                  created_at=customer.created_at))
        insert(leads)
        self._conversations(customers, plans, agents, opts)

    def _lost_reason(self, rng):
        slug = rng.choices(list(LOST_WEIGHTS), list(LOST_WEIGHTS.values()))[0]
        return self.lost_reasons[slug]

    def _booking(self, customer, rng):
        inquiry = customer.created_at + timedelta(days=rng.randrange(0, 400))
        if inquiry > self.now:  # anywhere between the customer's arrival and now, not bunched at the end
            inquiry = customer.created_at + (self.now - customer.created_at) * rng.random()
        for _ in range(6):  # seasonality: redraw the date while its month is quiet
            event = inquiry + timedelta(days=rng.randrange(7, 120), hours=rng.randrange(0, 6))
            if rng.random() < SEASON[event.month - 1]:
                break
        guests = rng.randrange(8, 60)
        total = Decimal(guests * 60)
        booking = Booking(customer=customer, event_at=event, guest_count=guests, total=total,
                          address=f"{rng.randrange(10, 999)} {rng.choice(STREETS)}, Los Angeles, CA",
                          deposit=(total * Decimal("0.2")).quantize(Decimal("1")), source=rng.choice(SOURCES),
                          event_type=rng.choice(EVENT_TYPES), location=rng.choice(LOCATIONS),
                          inquiry_at=inquiry, created_at=inquiry)
        if event < self.now:
            booking.status = rng.choices([Booking.Status.COMPLETED, Booking.Status.CANCELLED, Booking.Status.LOST],
                                         [75, 10, 15])[0]
        else:
            booking.status = rng.choice([Booking.Status.INQUIRY, Booking.Status.QUOTED, Booking.Status.CONFIRMED,
                                         Booking.Status.CONFIRMED, Booking.Status.LOST])
        if booking.status == Booking.Status.LOST:
            booking.lost_reason = self._lost_reason(rng)
            booking.lost_at = min(inquiry + timedelta(days=rng.randrange(1, 10)), self.now)
            booking.deposit = Decimal(0)
            return booking
        if booking.status != Booking.Status.INQUIRY:
            booking.quoted_at = inquiry + timedelta(hours=rng.randrange(1, 48))
        if booking.status in (Booking.Status.CONFIRMED, Booking.Status.COMPLETED):
            booking.confirmed_at = booking.quoted_at + timedelta(days=rng.randrange(1, 5))
        if booking.status == Booking.Status.COMPLETED:
            booking.completed_at = event + timedelta(hours=3)
        if booking.status == Booking.Status.CANCELLED:
            booking.cancelled_at = min(event, self.now)
            if rng.random() < 0.5:  # cancelled before paying anything
                booking.deposit = Decimal(0)
        return booking

    def _payments(self, booking, rng):
        """Deposit at confirmation, balance on the day, a refund for some cancellations and a few complaints."""
        paid = []
        if booking.deposit and (booking.confirmed_at or booking.status == Booking.Status.CANCELLED):
            at = booking.confirmed_at or booking.quoted_at or booking.inquiry_at
            paid.append(Payment(booking=booking, kind=Payment.Kind.DEPOSIT, amount=booking.deposit, paid_at=at,
                                method=rng.choice([Payment.Method.CARD] * 4 + [Payment.Method.TRANSFER])))
        if booking.status == Booking.Status.COMPLETED:
            method = rng.choice([Payment.Method.CARD, Payment.Method.CARD, Payment.Method.CASH, Payment.Method.CHECK])
            if booking.total > booking.deposit:
                paid.append(Payment(booking=booking, kind=Payment.Kind.BALANCE, amount=booking.total - booking.deposit,
                                    paid_at=booking.event_at + timedelta(hours=rng.choice([2, 3, 26])), method=method))
            if rng.random() < 0.03:
                paid.append(Payment(booking=booking, kind=Payment.Kind.REFUND, method=Payment.Method.CARD,
                                    amount=(booking.total * Decimal("0.1")).quantize(Decimal("1")),
                                    paid_at=booking.completed_at + timedelta(days=rng.randrange(1, 10))))
        if booking.status == Booking.Status.CANCELLED and booking.deposit and rng.random() < 0.6:
            paid.append(Payment(booking=booking, kind=Payment.Kind.REFUND, amount=booking.deposit,
                                paid_at=booking.cancelled_at, method=Payment.Method.CARD))
        return [p for p in paid if p.paid_at <= self.now]

    @staticmethod
    def _history(messages, conversations):
        """The conversation history the services would have written: received, replied, resolved."""
        Kind = history.Kind
        rows = [history.activity(Kind.RECEIVED if m.direction == "inbound" else Kind.REPLIED, m.conversation,
                                 actor=m.author, channel=m.channel, message=m, at=m.created_at) for m in messages]
        rows += [history.activity(Kind.STATUS_CHANGED, c, actor=c.assignee, from_value="open", to_value="resolved",
                                  at=c.resolved_at) for c in conversations if c.resolved_at]
        return rows

    def _one_active(self, conversations):
        """A customer has at most one open or pending conversation (the receive path's rule, and
        a unique index): the one with the newest activity stays active, older ones are resolved."""
        active = sorted((c for c in conversations if c.status in ("open", "pending")),
                        key=lambda c: c.last_activity_at, reverse=True)
        for conversation in active[1:]:
            conversation.status = "resolved"
            conversation.is_unread = False
            conversation.resolved_at = min(conversation.last_activity_at + timedelta(hours=1), self.now)

    def _conversations(self, customers, plans, agents, opts):
        per_customer, per_conversation = opts["conversations_per_customer"], opts["messages_per_conversation"]
        conversations, drafts = [], []
        for customer, (i, rng) in zip(customers, plans):
            span = max((self.now - customer.created_at).total_seconds(), 3600)
            for _ in range(per_customer):
                started = customer.created_at + timedelta(seconds=rng.randrange(int(span)))
                age = self.now - started
                if age > timedelta(days=14):
                    status = rng.choices(["resolved", "closed"], [3, 7])[0]
                else:
                    status = rng.choices(["open", "pending", "resolved"], [6, 2, 2])[0]
                channel = rng.choice(CHANNELS)
                count = max(1, rng.randrange(1, 2 * per_conversation)) if per_conversation > 1 else 1
                times = sorted(started + timedelta(minutes=rng.randrange(0, 60 * 24 * 3)) for _ in range(count))
                times = [min(t, self.now) for t in times]
                conversation = Conversation(
                    customer=customer, status=status, subject=f"{rng.choice(['Party', 'Booking', 'Question'])} "
                                                              f"for {rng.randrange(8, 60)} guests",
                    assignee=rng.choice([None, *agents]), last_activity_at=times[-1], created_at=started,
                    is_unread=status == "open" and rng.random() < 0.5,
                    resolved_at=min(times[-1] + timedelta(hours=1), self.now) if status in ("resolved", "closed") else None,
                )
                conversations.append(conversation)
                drafts.append((conversation, customer, channel, times, rng))
            self._one_active(conversations[-per_customer:] if per_customer else [])
        insert(conversations)

        messages, notes = [], []
        for conversation, customer, channel, times, rng in drafts:
            for n, at in enumerate(times):
                inbound = n % 2 == 0 or channel == Channel.CALL
                msg_channel = channel if rng.random() < 0.8 else rng.choice([Channel.EMAIL, Channel.SMS])
                if not inbound and msg_channel == Channel.CALL:
                    msg_channel = Channel.SMS
                lines = CALLS if msg_channel == Channel.CALL else INBOUND if inbound else OUTBOUND
                text = rng.choice(lines).format(n=rng.randrange(8, 60))
                messages.append(Message(
                    conversation=conversation, customer=customer, channel=msg_channel,
                    direction="inbound" if inbound else "outbound", text=text,
                    subject=conversation.subject if msg_channel == Channel.EMAIL else "",
                    author=None if inbound else conversation.assignee or agents[0],
                    # Only email reports opens (a tracking pixel); SMS and chat stop at delivered.
                    delivery_status="received" if inbound else rng.choice(
                        ["sent", "delivered", "opened"] if msg_channel == Channel.EMAIL else ["sent", "delivered"]),
                    external_id=f"demo-{conversation.pk}-{n}",
                    metadata={"duration": rng.randrange(0, 600)} if msg_channel == Channel.CALL else {},
                    created_at=at,
                ))
                if not inbound and conversation.first_response_at is None:
                    conversation.first_response_at = at
            if rng.random() < 0.2:
                body = rng.choice(NOTES)  # nobody @-mentions themselves
                authors = [a for a in agents if f"@{a.get_username()} " not in f"{body} "] or agents
                notes.append(Note(conversation=conversation, customer=customer, author=rng.choice(authors),
                                  body=body, created_at=times[-1]))
        insert(messages)
        history.record_many(self._history(messages, conversations))
        tagged, first_texts = [], {}
        for message in messages:
            first_texts.setdefault(message.conversation_id, f"{message.subject}\n{message.text}")
        for conversation_id, text in first_texts.items():
            for spec, tags in self.keyword_tags:
                if routing.has_words(text, spec["words"], spec.get("match", "any")):
                    tagged.extend(Conversation.tags.through(conversation_id=conversation_id, tag=tag) for tag in tags)
        Conversation.tags.through.objects.bulk_create(tagged, batch_size=5000)
        insert(notes)
        history.record_many([history.activity(history.Kind.NOTE, n.conversation, actor=n.author, at=n.created_at)
                             for n in notes])
        ids = [c.pk for c in conversations]
        latest = Message.objects.filter(conversation=OuterRef("pk")).order_by("-created_at", "-id").values("pk")[:1]
        first_reply = (Message.objects.filter(conversation=OuterRef("pk"), direction="outbound")
                       .order_by("created_at", "id").values("created_at")[:1])
        for start in range(0, len(ids), 5000):
            Conversation.objects.filter(pk__in=ids[start:start + 5000]).update(
                last_message=Subquery(latest), first_response_at=Subquery(first_reply)
            )
