"""The analytics benchmark's data set at the issue's scale, loaded with PostgreSQL COPY.

scale 1.0: five years of a 20-location business ending today — 200,000 customers, 500,000
bookings (seasonal: summer and December peaks; about 40 % of customers come back), their
payments (deposits, balances, refunds), 300,000 leads, marketing spend per paid source and
month, and 2,000,000 messages in 500,000 conversations over four channels with their history
(ConversationActivity: received, replied by one of 20 agents, notes, resolutions, reopens, bot
hand-offs). Deterministic (seeded). Rows are written with psycopg's `cursor.copy`, not the ORM,
and triggers are off while loading (`session_replication_role = replica`): the foreign keys, which the
generator keeps consistent itself, and the search vectors of messages and customers, which the
analytics never read and whose GIN upkeep would take most of the time.
"""
import random
import time
from datetime import datetime, timedelta, timezone as dt_timezone

SOURCES = ["website", "phone", "referral", "yelp", "google", "instagram", "other"]
SOURCE_WEIGHTS = [30, 10, 15, 15, 15, 10, 5]
EVENT_TYPES = ["birthday", "wedding", "corporate", "holiday", "other"]
CHANNELS = ["email", "sms", "chat", "call"]
LOCATIONS = [f"Area {n:02d}" for n in range(1, 21)]
# Relative demand per month (Jan..Dec): summer and December peaks.
SEASON = [0.6, 0.6, 0.8, 0.9, 1.1, 1.4, 1.6, 1.5, 1.0, 0.9, 1.0, 1.6]
PAID = ["yelp", "google", "instagram"]
AGENTS = 20


def _progress(label, done, total, started):
    print(f"  {label}: {done:,}/{total:,} ({time.monotonic() - started:,.0f} s)", flush=True)


class Loader:
    def __init__(self, scale, now=None, seed=15):
        self.scale = scale
        self.rng = random.Random(seed)
        self.now = (now or datetime.now(dt_timezone.utc)).replace(microsecond=0)
        self.begin = self.now - timedelta(days=5 * 365)
        self.n_customers = int(200_000 * scale)
        self.n_bookings = int(500_000 * scale)
        self.n_messages = int(2_000_000 * scale)
        # Days weighted by season, sampled by bisection over the cumulative weights.
        days = [self.begin + timedelta(days=d) for d in range(5 * 365)]
        cum, total = [], 0.0
        for d in days:
            total += SEASON[d.month - 1]
            cum.append(total)
        self.days, self.cum, self.total_weight = days, cum, total

    def day(self):
        import bisect

        i = bisect.bisect_left(self.cum, self.rng.random() * self.total_weight)
        return self.days[min(i, len(self.days) - 1)] + timedelta(seconds=self.rng.randrange(8 * 3600, 22 * 3600))

    # --- driver ------------------------------------------------------------------------------
    def load(self, connection):
        """Empty the tables and fill them; returns the row counts."""
        from django.db import transaction

        started = time.monotonic()
        agents, manager = self.staff()
        counts = {}
        with transaction.atomic(), connection.cursor() as c:
            c.execute("TRUNCATE crm_payment, crm_lead, crm_marketingspend, inbox_conversationactivity, "
                      "inbox_message, inbox_conversation, crm_booking, crm_customeridentity, crm_customer "
                      "RESTART IDENTITY CASCADE")
            # No triggers while loading: foreign keys (the generator writes consistent ids) and search vectors.
            c.execute("SET LOCAL session_replication_role = replica")
            counts["customers"] = self.customers(connection, started)
            counts["bookings"], counts["payments"], counts["leads"] = self.bookings(connection, started)
            counts["spend"] = self.spend(connection)
            counts["conversations"], counts["messages"], counts["history_rows"] = self.conversations(
                connection, agents, started)
        with connection.cursor() as c:
            for table in ("crm_customer", "crm_booking", "crm_payment", "crm_lead", "crm_marketingspend",
                          "inbox_conversation", "inbox_message", "inbox_conversationactivity"):
                c.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                          f"COALESCE((SELECT MAX(id) FROM {table}), 1))")
        print(f"  loaded in {time.monotonic() - started:,.0f} s", flush=True)
        return counts

    def staff(self):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        User = get_user_model()
        agent_group, _ = Group.objects.get_or_create(name="Agent")
        manager_group, _ = Group.objects.get_or_create(name="Manager")
        manager, _ = User.objects.get_or_create(username="manager", defaults={"first_name": "Morgan"})
        manager.groups.add(manager_group)
        agents = []
        for n in range(AGENTS):
            user, _ = User.objects.get_or_create(username=f"agent{n:02d}", defaults={"first_name": f"Agent {n:02d}"})
            user.groups.add(agent_group)
            agents.append(user.pk)
        return agents, manager

    @staticmethod
    def _copy(connection, table, columns, rows):
        with connection.cursor() as c, c.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    # --- customers, bookings, payments, leads -------------------------------------------------
    def customers(self, connection, started):
        def rows():
            for i in range(1, self.n_customers + 1):
                yield (i, f"Guest{i}", f"Bench{i % 997}", CHANNELS[i % 3], self.begin)
        self._copy(connection, "crm_customer", ["id", "first_name", "last_name", "preferred_channel", "created_at"],
                   rows())
        _progress("customers", self.n_customers, self.n_customers, started)
        return self.n_customers

    def bookings(self, connection, started):
        rng, now = self.rng, self.now
        # Every customer books once; the rest are repeat bookings by a minority (heavier at low ids).
        owners = list(range(1, self.n_customers + 1))
        repeaters = int(self.n_customers * 0.4)
        owners += [1 + int(repeaters * rng.random() ** 1.5) for _ in range(self.n_bookings - self.n_customers)]
        rng.shuffle(owners)
        payments, leads = [], []
        lost_reasons = self._lost_reasons()
        booking_rows = []
        pid = lid = 0
        for bid, customer in enumerate(owners, 1):
            inquiry = self.day()
            event = inquiry + timedelta(days=rng.randint(7, 200), hours=rng.randint(-4, 4))
            guests = rng.randint(6, 60)
            total = guests * rng.choice([45, 50, 55, 60, 65, 75])
            total += rng.choice([0, 0, 0, 25, 50, 99])
            source = rng.choices(SOURCES, SOURCE_WEIGHTS)[0]
            quoted = confirmed = completed = cancelled = lost = None
            reason = None
            roll = rng.random()
            if roll < 0.15:  # lost before confirming
                quoted = inquiry + timedelta(hours=rng.randint(1, 72)) if rng.random() < 0.5 else None
                lost = (quoted or inquiry) + timedelta(days=rng.randint(1, 10))
                if lost > now:
                    lost = None
                else:
                    reason = rng.choice(lost_reasons)
            elif roll < 0.25:  # still an inquiry or a quote
                quoted = inquiry + timedelta(hours=rng.randint(1, 72)) if rng.random() < 0.6 else None
            else:
                quoted = inquiry + timedelta(hours=rng.randint(1, 72))
                confirmed = quoted + timedelta(days=rng.randint(0, 14), hours=rng.randint(0, 12))
                if confirmed > now:
                    confirmed = None
                elif rng.random() < 0.08:
                    cancelled = confirmed + (event - confirmed) * rng.random()
                    if cancelled > now:
                        cancelled = None
                if confirmed and not cancelled and event < now:
                    completed = event + timedelta(hours=3)
                    if completed > now:
                        completed = None
            if quoted and quoted > now:  # a quote after now has not been sent yet
                quoted = None
            status = ("lost" if lost else "cancelled" if cancelled else "completed" if completed
                      else "confirmed" if confirmed else "quoted" if quoted else "inquiry")
            deposit = 0
            if confirmed:
                deposit = round(total * 0.2)
                pid += 1
                payments.append((pid, bid, "deposit", deposit, confirmed, "card", confirmed, confirmed))
                if cancelled and rng.random() < 0.6:
                    pid += 1
                    payments.append((pid, bid, "refund", deposit, cancelled, "card", cancelled, cancelled))
                if completed and rng.random() < 0.93:
                    pid += 1
                    paid = event + timedelta(hours=4)
                    payments.append((pid, bid, "balance", total - deposit, paid, "card", paid, min(paid, now)))
                    if rng.random() < 0.03:
                        pid += 1
                        back = paid + timedelta(days=3)
                        if back < now:
                            payments.append((pid, bid, "refund", round(total * 0.1), back, "card", back, back))
            if rng.random() < 0.45:  # a lead that turned into this booking
                lid += 1
                leads.append((lid, source, customer, "converted" if completed else "qualified", bid, None,
                              inquiry - timedelta(days=rng.randint(0, 5))))
            # Never after now (auto_now): a row saved "in the future" would be rebuilt by every
            # incremental refresh until then (350 such bookings made the bench's one-booking step 1 s).
            updated = min(max(m for m in (inquiry, quoted, confirmed, completed, cancelled, lost) if m), now)
            booking_rows.append((bid, customer, event, guests, "", status, inquiry, quoted, confirmed, completed,
                                 cancelled, lost, reason, rng.choice(EVENT_TYPES), rng.choice(LOCATIONS), total,
                                 deposit, source, inquiry, updated))
        for _ in range(int(self.n_bookings * 0.15)):  # leads that never booked
            lid += 1
            created = self.day()
            lost = rng.random() < 0.5
            leads.append((lid, rng.choices(SOURCES, SOURCE_WEIGHTS)[0],
                          rng.randint(1, self.n_customers) if rng.random() < 0.5 else None,
                          "lost" if lost else "new", None, rng.choice(lost_reasons) if lost else None, created))
        self._copy(connection, "crm_booking",
                   ["id", "customer_id", "event_at", "guest_count", "address", "status", "inquiry_at", "quoted_at",
                    "confirmed_at", "completed_at", "cancelled_at", "lost_at", "lost_reason_id", "event_type",
                    "location", "total", "deposit", "source", "created_at", "updated_at"], booking_rows)
        _progress("bookings", len(booking_rows), self.n_bookings, started)
        self._copy(connection, "crm_payment", ["id", "booking_id", "kind", "amount", "paid_at", "method", "created_at",
                                               "updated_at"], payments)
        _progress("payments", len(payments), len(payments), started)
        self._copy(connection, "crm_lead", ["id", "source", "customer_id", "status", "booking_id", "lost_reason_id",
                                            "created_at"], leads)
        _progress("leads", len(leads), len(leads), started)
        return len(booking_rows), len(payments), len(leads)

    @staticmethod
    def _lost_reasons():
        from crm.models import LostReason

        return list(LostReason.objects.values_list("pk", flat=True))

    def spend(self, connection):
        rows, month, n = [], self.begin.date().replace(day=1), 0
        while month <= self.now.date():
            for source in PAID:
                n += 1
                rows.append((n, source, month, round(20_000 * self.scale * self.rng.uniform(0.5, 1.5), 2)))
            month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        self._copy(connection, "crm_marketingspend", ["id", "source", "month", "amount"], rows)
        return len(rows)

    # --- conversations, messages, history ------------------------------------------------------
    def conversations(self, connection, agents, started):
        rng, now = self.rng, self.now
        n_conv = self.n_messages // 4
        conv_cols = ["id", "customer_id", "status", "assignee_id", "subject", "last_message_id", "last_activity_at",
                     "is_unread", "first_response_at", "resolved_at", "created_at"]
        msg_cols = ["id", "conversation_id", "customer_id", "channel", "direction", "subject", "text", "html",
                    "metadata", "external_id", "delivery_status", "status_reason", "author_id", "created_at"]
        act_cols = ["id", "conversation_id", "kind", "actor_id", "from_value", "to_value", "channel", "message_id",
                    "at"]
        texts = ["Hi, is the 14th free for a party of 20?", "What does the chicken and steak menu cost?",
                 "Can you do a vegetarian option?", "Thanks, see you then!", "Do you travel to our area?"]
        mid = aid = 0
        convs, msgs, acts = [], [], []
        active = set()  # customers with an open conversation: at most one each (inbox's constraint)
        for cid in range(1, n_conv + 1):
            customer = rng.randint(1, self.n_customers)
            channel = rng.choices(CHANNELS, [35, 35, 25, 5])[0]
            at = self.day()
            created = at
            agent = rng.choice(agents)
            status, first_response, resolved = "open", None, None
            replied = False
            if channel == "chat" and rng.random() < 0.4:  # the bot talks first, then hands off
                aid += 1
                acts.append((aid, cid, "bot_handoff", None, "", "", channel, None,
                             at + timedelta(minutes=rng.randint(1, 10))))
            for turn in range(4):
                inbound = turn % 2 == 0
                gap = (timedelta(minutes=rng.choice([1, 3, 8, 20, 45, 90, 240, 600, 1500, 3000]))
                       if turn else timedelta())
                at = at + gap + timedelta(seconds=rng.randint(0, 59))
                if at > now:
                    break
                mid += 1
                author = None if inbound else agent
                msgs.append((mid, cid, customer, channel, "inbound" if inbound else "outbound", "",
                             rng.choice(texts), "", "{}", None, "received" if inbound else "delivered", "",
                             author, at))
                aid += 1
                acts.append((aid, cid, "received" if inbound else "replied", author, "", "", channel, mid,
                             at))
                if not inbound and not replied:
                    replied, first_response = True, at
            last = at
            if replied and rng.random() < 0.1:
                aid += 1
                acts.append((aid, cid, "note", agent, "", "", "", None, last + timedelta(minutes=2)))
            if replied and rng.random() < 0.7 and last + timedelta(hours=1) < now:
                last += timedelta(hours=1)
                aid += 1
                acts.append((aid, cid, "status_changed", agent, "open", "resolved", "", None, last))
                status, resolved = "resolved", last
                if rng.random() < 0.08 and last + timedelta(days=2) < now:  # the customer writes again
                    last += timedelta(days=2)
                    mid += 1
                    msgs.append((mid, cid, customer, channel, "inbound", "", rng.choice(texts), "", "{}",
                                 None, "received", "", None, last))
                    aid += 1
                    acts.append((aid, cid, "reopened", None, "resolved", "open", channel, mid, last))
                    aid += 1
                    acts.append((aid, cid, "received", None, "", "", channel, mid, last))
                    status, resolved = "open", None
            if status == "open" and customer in active:
                status = "closed"  # an older thread left behind; its history stays as it was
            active.add(customer) if status == "open" else None
            convs.append((cid, customer, status, agent, "", mid, last, status == "open", first_response,
                          resolved, created))
            if cid % 100_000 == 0:
                _progress("conversations", cid, n_conv, started)
        self._copy(connection, "inbox_conversation", conv_cols, convs)
        _progress("conversations", n_conv, n_conv, started)
        self._copy(connection, "inbox_message", msg_cols, msgs)
        _progress("messages", len(msgs), len(msgs), started)
        self._copy(connection, "inbox_conversationactivity", act_cols, acts)
        _progress("history rows", len(acts), len(acts), started)
        return n_conv, mid, aid
