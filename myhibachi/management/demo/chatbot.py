"""Website chat for the demo: a visitor's lines and staff replies as channels_ingest/chat stores
them, and the chatbot's sessions as POST /api/v1/chatbot/sessions stores them (chat/chatbot.py):
the session row with its figures, and with a contact, its transcript as one chat item.
"""
import hashlib
import string
from datetime import timedelta
from decimal import Decimal

from django.conf import settings

from channels_ingest.chat.models import ChatbotSession
from crm import identity

# USD per million tokens (prompt, completion), the providers' list prices; the first is used most.
MODELS = {"gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")), "claude-3-5-haiku": (Decimal("0.80"), Decimal("4.00"))}
SYSTEM_PROMPT_TOKENS = 650
# What visitors ask the bot. Anonymous sessions leave no contact; "quote" leaves an email, and the
# two hand-offs end with the bot passing the visitor to staff. Nothing here is about phoning.
SCRIPTS = {
    "price": [("visitor", "How much is a hibachi party for {n} people?"),
              ("bot", "Our price is $60 per adult and $30 per child under 12, with a $600 minimum. "
                      "The chef brings the grill, the food and the show."),
              ("visitor", "Ok thanks, I'll talk to my family.")],
    "menu": [("visitor", "What comes with the party?"),
             ("bot", "Each guest gets salad, fried rice, vegetables and two proteins: chicken, steak, shrimp, "
                     "salmon or tofu."),
             ("visitor", "Can we add lobster?"),
             ("bot", "Yes, lobster tail is $15 per guest extra.")],
    "area": [("visitor", "Do you come to {city}?"),
             ("bot", "Yes, we serve {city} and the cities around it."),
             ("visitor", "Great, thanks!")],
    "quote": [("visitor", "Hi! How much is a hibachi party for {n} people?"),
              ("bot", "Our price is $60 per adult and $30 per child under 12, with a $600 minimum."),
              ("visitor", "Is {day} open? It's for a {occasion}."),
              ("bot", "The team confirms dates within a few hours. Where should they write to you?"),
              ("visitor", "{email}"),
              ("bot", "Thank you! The quote and the open times will come to {email}.")],
    "allergy": [("visitor", "We have {n} guests and two have nut allergies. Can the chef cook separately for them?"),
                ("bot", "Our chefs handle allergies often, but a person should confirm the details with you."),
                ("visitor", "Yes please, can I talk to someone?"),
                ("bot", "Of course. I'm handing you over to our team now; someone will answer here shortly."),
                ("system", "Handed over to staff")],
    "move": [("visitor", "I need to move our party from Saturday to Sunday, is that possible?"),
             ("bot", "I can't change bookings myself. Let me hand you to our team."),
             ("system", "Handed over to staff")],
}
ANONYMOUS = ["price", "menu", "area"]
HANDOFFS = ["allergy", "move"]
DAYS = ["Saturday the 14th", "next Friday", "the 3rd", "Sunday afternoon"]
OCCASIONS = ["birthday", "graduation party", "team dinner", "anniversary"]
ALPHABET = string.ascii_letters + string.digits


def visitor_digest(index: int) -> str:
    """The stored identity of the demo customer's chat visitor (crm.identity: the token's digest;
    the token itself, made from SECRET_KEY, is never kept)."""
    token = hashlib.sha256(f"{settings.SECRET_KEY}:demo-visitor:{index}".encode()).hexdigest()
    return identity.normalize_visitor(token)


def visitor_line(rng, digest: str) -> tuple[dict, str]:
    """(metadata, external id) of a line the visitor typed: chat/services.visitor_says with the widget's id."""
    client_id = "".join(rng.choices(ALPHABET, k=16))
    return {"from": digest, "client_id": client_id}, f"{digest}:{client_id}"


def session(rng, *, session_id: str, script: str, ended_at, fill: dict, customer=None, contact=None) -> ChatbotSession:
    """One session as the chatbot's integration posts it; handed off when its script says so."""
    lines, transcript = SCRIPTS[script], []
    at = ended_at - timedelta(seconds=sum(rng.randrange(8, 50) for _ in SCRIPTS[script]))
    started = at
    for role, text in lines:
        at = min(at + timedelta(seconds=rng.randrange(8, 50)), ended_at)
        transcript.append({"role": role, "text": text.format(**fill), "at": at.isoformat()})
    model = rng.choices(list(MODELS), [3, 1])[0]
    turns = sum(1 for role, _ in lines if role == "bot")
    prompt = sum(SYSTEM_PROMPT_TOKENS + 45 * n for n in range(1, len(lines) + 1, 2))
    completion = turns * rng.randrange(30, 70)
    per_prompt, per_completion = MODELS[model]
    handed_off = script in HANDOFFS
    rated = rng.random() < 0.55
    return ChatbotSession(
        session_id=session_id, customer_id=customer and customer.pk, model=model, prompt_tokens=prompt,
        completion_tokens=completion,
        cost=((prompt * per_prompt + completion * per_completion) / 1_000_000).quantize(Decimal("0.000001")),
        rating=rng.choice([1, 2, 3, 3, 4] if handed_off else [3, 4, 4, 5, 5, 5]) if rated else None,
        handed_off=handed_off, transcript=transcript, contact=contact or {}, started_at=started, ended_at=ended_at,
        created_at=ended_at + timedelta(seconds=rng.randrange(1, 20)))


def transcript_text(lines) -> str:
    """The transcript as chat/chatbot.py's transcript_text writes it into the thread (a test holds the
    two the same; importing that module would load DRF and cost the seed a sixth of a second)."""
    names = {"visitor": "Visitor", "bot": "Bot", "agent": "Agent", "system": "System"}
    return "\n".join(f"{names[line['role']]}: {' '.join(line['text'].split())}" for line in lines)


def transcript_item(session: ChatbotSession, *, sender: str) -> tuple[str, dict, str]:
    """(text, metadata, external id) of the session's item in the customer's thread."""
    return transcript_text(session.transcript), {
        "kind": "chatbot_transcript", "session": session.session_id, "model": session.model,
        "rating": session.rating, "handed_off": session.handed_off, "from": sender,
    }, f"chatbot:{session.session_id}"
