"""manage.py seed_demo: realistic demo data, safe to run again.

Every generated customer has a fixed index and a fixed email
(guest000123@demo.myhibachi.test); a run creates only the customers (and
their bookings, leads, conversations, messages, notes, chatbot sessions and
email records) whose index does not exist yet. So running it twice creates
nothing the second time, and a larger --scale adds only the difference (the
two demo campaigns gain the new customers, their figures moving with them).
Rows are written with bulk inserts in batches, so --scale 500 (100,000
customers) stays quick. What each channel stores is made the way its adapter
makes it: see myhibachi/management/demo/.
"""
import bisect
import random
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

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
from inbox.services import CALL_BACK_TAG
from myhibachi.management.demo import chatbot as demo_chat
from myhibachi.management.demo import insert
from myhibachi.management.demo import mail as demo_mail
from myhibachi.management.demo import phone as demo_phone

EMAIL_DOMAIN = "demo.myhibachi.test"
TWO_YEARS = timedelta(days=730)  # how far back the demo's customers go
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
        "Fill the database with demo staff, customers, bookings, leads, marketing spend, conversations over "
        "email, SMS, calls and the website chat (with the chatbot's sessions), notes, canned responses, routing "
        "rules, and the email records SendGrid would have left (replies, booking mail, two campaigns). "
        "Idempotent: only missing customers are added."
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
            self.call_back_tag, _ = Tag.objects.get_or_create(name=CALL_BACK_TAG)
            self.campaigns = demo_mail.campaigns(now=self.now, by=self.manager)
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
            else:
                self.manager = user
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
        customers, plans = [], []
        for i in indexes:
            rng = random.Random(opts["seed"] * 1_000_003 + i)
            created = now - TWO_YEARS + timedelta(seconds=rng.randrange(int(TWO_YEARS.total_seconds())))
            customers.append(Customer(first_name=rng.choice(FIRST), last_name=rng.choice(LAST),
                                      preferred_channel=rng.choice([Channel.EMAIL, Channel.SMS, Channel.SMS]),
                                      created_at=created))
            plans.append((i, rng))
        insert(customers)

        identities, bookings, booking_sources = [], [], []
        contacts, bookings_of = {}, defaultdict(list)
        for customer, (i, rng) in zip(customers, plans):
            contact = contacts[customer.pk] = Contact(i, f"guest{i:06d}@{EMAIL_DOMAIN}", f"+1415{2000000 + i}",
                                                      f"{customer.first_name} {customer.last_name}")
            identities.append(CustomerIdentity(customer=customer, kind="email", value=contact.email,
                                               is_primary=True, created_at=customer.created_at))
            identities.append(CustomerIdentity(customer=customer, kind="phone", value=contact.phone,
                                               created_at=customer.created_at))
            for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 6, 11])):
                bookings.append(self._booking(customer, rng))
                booking_sources.append(rng)
                bookings_of[customer.pk].append(bookings[-1])
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
        made = self._conversations(customers, plans, agents, opts, contacts, bookings_of)
        self._mail_and_bot(customers, plans, contacts, bookings_of, made)

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
    def _history(messages, conversations, handoffs):
        """The conversation history the services would have written: received, replied, the
        chatbot's hand-offs (inbox.services.record_bot_handoff), resolved."""
        Kind = history.Kind
        rows = [history.activity(Kind.RECEIVED if m.direction == "inbound" else Kind.REPLIED, m.conversation,
                                 actor=m.author, channel=m.channel, message=m, at=m.created_at) for m in messages]
        rows += [history.activity(Kind.BOT_HANDOFF, m.conversation, channel=m.channel, message=m, at=m.created_at)
                 for m in handoffs]
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

    def _conversations(self, customers, plans, agents, opts, contacts, bookings_of):
        """Each customer's conversations with their messages, notes, tags and history. Returns what
        is stored with the batch's mail and chatbot records (_mail_and_bot): the staff emails and
        the chatbot sessions whose transcripts are in these threads."""
        per_customer, per_conversation = opts["conversations_per_customer"], opts["messages_per_conversation"]
        threads, made = [], Made()
        for customer, (i, rng) in zip(customers, plans):
            contact, mine = contacts[customer.pk], []
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
                if (status == "open" and count % 2 == 0) or (status == "pending" and count % 2):
                    count += 1  # an open conversation waits for us (they wrote last), a pending one for them
                times = sorted(started + timedelta(minutes=rng.randrange(0, 60 * 24 * 3)) for _ in range(count))
                times = [min(t, self.now) for t in times]
                conversation = Conversation(
                    customer=customer, status=status, subject=f"{rng.choice(['Party', 'Booking', 'Question'])} "
                                                              f"for {rng.randrange(8, 60)} guests",
                    assignee=rng.choice([None, *agents]), last_activity_at=times[-1], created_at=started,
                    is_unread=status == "open" and rng.random() < 0.5,
                    resolved_at=min(times[-1] + timedelta(hours=1), self.now) if status in ("resolved", "closed") else None,
                )
                mine.append((conversation, self._thread(conversation, contact, channel, times, rng,
                                                        conversation.assignee or agents[0], made)))
                if rng.random() < 0.2:
                    body = rng.choice(NOTES)  # nobody @-mentions themselves
                    authors = [a for a in agents if f"@{a.get_username()} " not in f"{body} "] or agents
                    made.notes.append(Note(conversation=conversation, customer=customer, author=rng.choice(authors),
                                           body=body, created_at=times[-1]))
            self._bot_before_booking(mine, bookings_of[customer.pk], rng, contact, made)
            self._one_active([conversation for conversation, _ in mine])
            threads += mine
        conversations = [conversation for conversation, _ in threads]
        insert(conversations)
        messages = [message for _, thread in threads for message in thread]
        for message in messages:  # saved since it was set: take its id (as bulk_create would)
            message.conversation = message.conversation
        insert(messages)
        insert(made.visitor_identities())
        history.record_many(self._history(messages, conversations, made.handoffs))

        tagged = []
        for conversation, thread in threads:
            first = f"{thread[0].subject}\n{thread[0].text}"
            for spec, tags in self.keyword_tags:
                if routing.has_words(first, spec["words"], spec.get("match", "any")):
                    tagged.extend(Conversation.tags.through(conversation_id=conversation.pk, tag=tag) for tag in tags)
            if demo_phone.waits_for_call_back(thread):
                tagged.append(Conversation.tags.through(conversation_id=conversation.pk, tag=self.call_back_tag))
        Conversation.tags.through.objects.bulk_create(tagged, batch_size=5000)
        for note in made.notes:
            note.conversation = note.conversation
        insert(made.notes)
        history.record_many([history.activity(history.Kind.NOTE, n.conversation, actor=n.author, at=n.created_at)
                             for n in made.notes])
        ids = [c.pk for c in conversations]
        latest = Message.objects.filter(conversation=OuterRef("pk")).order_by("-created_at", "-id").values("pk")[:1]
        first_reply = (Message.objects.filter(conversation=OuterRef("pk"), direction="outbound")
                       .order_by("created_at", "id").values("created_at")[:1])
        for start in range(0, len(ids), 5000):
            Conversation.objects.filter(pk__in=ids[start:start + 5000]).update(
                last_message=Subquery(latest), first_response_at=Subquery(first_reply)
            )
        for session, message in made.sessions:
            session.message, session.conversation = message, message.conversation
        return made

    def _thread(self, conversation, contact, channel, times, rng, author, made) -> list:
        """The messages of one conversation in time order, each made as its channel's adapter makes it."""
        customer, index, thread = conversation.customer, contact.index, []
        handoff = channel == Channel.CHAT and rng.random() < 0.4
        guests = rng.randrange(8, 60)
        ours = theirs = None  # the Message-IDs of the last emails each way
        for n, at in enumerate(times):
            inbound = n % 2 == 0
            if channel == Channel.CALL:
                kind = Channel.CALL if n == 0 or rng.random() < 0.3 else Channel.SMS
            elif channel == Channel.CHAT:
                kind = Channel.CHAT
            else:
                kind = channel if rng.random() < 0.85 else ({Channel.EMAIL, Channel.SMS} - {channel}).pop()
            serial = made.serial(index)
            text = rng.choice(INBOUND if inbound else OUTBOUND).format(n=guests)
            message = Message(conversation=conversation, customer_id=customer.pk, channel=kind, created_at=at,
                              text=text, direction="inbound" if inbound else "outbound",
                              author=None if inbound else author, delivery_status="received" if inbound else "sent")
            if kind == Channel.CALL:  # a call-log record, ours or theirs: always an inbound item
                active = conversation.status in ("open", "pending")
                result = None
                if n == 0 and active:  # only a missed call or a voicemail opens a conversation
                    result = rng.choice(["Missed", "Voicemail"])
                elif inbound and n == len(times) - 1 and not active:  # one that is over ended on a call taken
                    result = "Accepted"
                message.direction, message.author, message.delivery_status = "inbound", None, "received"
                message.text, message.metadata, message.external_id = demo_phone.call(
                    rng, index=index, n=serial, phone=contact.phone, at=at, inbound=inbound, result=result)
            elif kind == Channel.SMS:
                message.external_id = demo_phone.sms_id(index, serial)
                if inbound:
                    message.metadata = demo_phone.inbound_sms(rc_id=message.external_id, phone=contact.phone,
                                                              text=text, at=at, index=index)
                else:
                    call = thread[-1].metadata.get("call") if thread and thread[-1].channel == Channel.CALL else None
                    message.text = demo_phone.FOLLOW_UPS.get(call and call["result"], text)
                    message.metadata, message.delivery_status, message.status_reason = demo_phone.outbound_sms(
                        rng, rc_id=message.external_id, phone=contact.phone)
            elif kind == Channel.CHAT:
                digest = made.visitor(customer, index, at)
                if n == 0 and handoff:
                    session = demo_chat.session(
                        rng, session_id=f"demo-{index:06d}-{serial}", script=rng.choice(demo_chat.HANDOFFS),
                        ended_at=at, fill={"n": guests}, customer=customer, contact={"name": contact.name})
                    message.text, message.metadata, message.external_id = demo_chat.transcript_item(session,
                                                                                                   sender=digest)
                    made.sessions.append((session, message))
                    made.handoffs.append(message)
                elif inbound:
                    message.metadata, message.external_id = demo_chat.visitor_line(rng, digest)
                else:
                    message.metadata = {"visitor": digest}  # delivered to the visitor's sockets: "sent"
            elif inbound:
                message.external_id = theirs = f"CA{index:06d}.{serial}@{EMAIL_DOMAIN}"
                message.subject = f"Re: {conversation.subject}" if ours else conversation.subject
                message.metadata = demo_mail.inbound_metadata(address=contact.email, name=contact.name,
                                                              message_id=theirs, answers=ours)
            else:
                message.external_id = ours = demo_mail.our_message_id(index, serial)
                message.subject = f"Re: {conversation.subject}"
                mail = demo_mail.plan(rng, "reply", to=contact.email, sent_at=at, now=self.now)
                message.metadata = {"to": contact.email, "message_id": ours, "esp_message_id": mail.esp_id,
                                    "sendgrid_message_id": mail.provider_id,
                                    "in_reply_to": f"<{theirs}>" if theirs else ""}
                message.delivery_status, message.status_reason = mail.delivery_status, mail.reason
                made.replies.append((message, mail))
            thread.append(message)
        return thread

    def _bot_before_booking(self, threads, bookings, rng, contact, made):
        """Half the website bookings began with the chatbot: the visitor asked for a quote and left an
        email, and the transcript joined the customer's latest conversation of that moment (a session
        that does not hand off never opens one: channels_ingest/chat/chatbot.py)."""
        for booking in bookings:
            if booking.confirmed_at is None or booking.source != Source.WEBSITE or rng.random() >= 0.5:
                continue
            ended = booking.inquiry_at
            hosts = [(c, thread) for c, thread in threads if thread and thread[0].created_at <= ended]
            if not hosts:
                continue
            conversation, thread = max(hosts, key=lambda pair: pair[1][0].created_at)
            serial = made.serial(contact.index)
            session = demo_chat.session(
                rng, session_id=f"demo-{contact.index:06d}-{serial}", script="quote", ended_at=ended,
                fill={"n": booking.guest_count, "day": rng.choice(demo_chat.DAYS), "email": contact.email,
                      "occasion": rng.choice(demo_chat.OCCASIONS)},
                customer=conversation.customer, contact={"name": contact.name, "email": contact.email})
            message = Message(conversation=conversation, customer_id=booking.customer_id, channel=Channel.CHAT,
                              direction="inbound", delivery_status="received", created_at=ended)
            message.text, message.metadata, message.external_id = demo_chat.transcript_item(session,
                                                                                           sender=contact.email)
            made.visitor(conversation.customer, contact.index, ended)  # the widget's token came too: chat replies work
            bisect.insort(thread, message, key=lambda m: m.created_at)
            conversation.last_activity_at = max(conversation.last_activity_at, ended)
            made.sessions.append((session, message))

    def _mail_and_bot(self, customers, plans, contacts, bookings_of, made):
        """The batch's email records (staff replies, booking confirmations and reminders, the two
        campaigns' new recipients) with their tracking events, and its chatbot sessions: those
        in the threads and the anonymous ones (visitors who left no contact)."""
        sent = [(demo_mail.sent_email(mail, message=message, message_id_header=message.external_id), mail)
                for message, mail in made.replies]
        recipients, sessions = [], [session for session, _ in made.sessions]
        for customer, (i, rng) in zip(customers, plans):
            contact, bookings = contacts[customer.pk], bookings_of[customer.pk]
            sent += demo_mail.booking_mail(rng, bookings, to=contact.email, now=self.now)
            recipients += demo_mail.recipients(rng, self.campaigns, customer=customer, to=contact.email,
                                               bookings=bookings, now=self.now)
            for n in range(rng.choice([0, 0, 1, 1, 2])):
                ended = self.now - timedelta(seconds=rng.randrange(int(TWO_YEARS.total_seconds())))
                sessions.append(demo_chat.session(
                    rng, session_id=f"demo-{i:06d}-visitor{n}", script=rng.choice(demo_chat.ANONYMOUS),
                    ended_at=ended, fill={"n": rng.randrange(8, 60), "city": rng.choice(LOCATIONS)}))
        demo_mail.store_sent(sent, now=self.now)
        demo_mail.store_recipients(recipients, now=self.now)
        insert(sessions)


class Contact(NamedTuple):
    """How a demo customer is reached: their fixed index, email, phone and name."""
    index: int
    email: str
    phone: str
    name: str


class Made:
    """What one batch's threads made that is stored after them, and the per-customer serial
    numbers that keep the channels' ids (RingCentral's, Message-IDs, session ids) unique."""

    def __init__(self):
        self.notes, self.handoffs, self.sessions, self.replies = [], [], [], []
        self.serials = defaultdict(int)
        self.visitors = {}  # customer -> (visitor digest, first chat)

    def serial(self, index: int) -> int:
        self.serials[index] += 1
        return self.serials[index]

    def visitor(self, customer, index: int, at) -> str:
        """The digest of the customer's chat visitor (their identity is made with the first line)."""
        digest, first = self.visitors.get(customer, (None, at))
        if digest is None:
            digest = demo_chat.visitor_digest(index)
        self.visitors[customer] = (digest, min(first, at))
        return digest

    def visitor_identities(self) -> list:
        return [CustomerIdentity(customer=customer, kind="visitor", value=digest, is_primary=True, created_at=first)
                for customer, (digest, first) in self.visitors.items()]
