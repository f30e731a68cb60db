"""Staff replies on the chat: settings.INBOX_SENDERS["chat"] points here.

The reply goes to the visitor who last wrote in the conversation
(services.recipient_of), live to every open socket of theirs through the
channel layer (any node). A visitor who is not present (no socket pinged
within CHAT_PRESENCE_SECONDS) and left an email address gets it by email too;
either way the reply waits in their history for when they come back.
"""
import logging

from channels.layers import get_channel_layer

from crm import identity
from crm.models import CustomerIdentity
from inbox import services as inbox_services
from inbox.delivery import PermanentSendError, TransientSendError
from inbox.models import Message
from myhibachi import layer_calls

from ..email import sender as email_sender
from ..email.threads import outbound_message_id
from . import services

logger = logging.getLogger(__name__)


def send(message: Message) -> str:
    digest = services.recipient_of(message.conversation)
    if digest is None:
        raise PermanentSendError("This customer has never written on the website chat; reply by email or SMS.")
    message.metadata = {**(message.metadata or {}), "visitor": digest}
    frame = services.visitor_frame(message)
    layer = get_channel_layer()
    failure = None
    if layer is not None:
        try:  # first, before anything else: the visitor is waiting for it
            layer_calls.run(layer, layer.group_send, services.visitor_group(digest),
                            {"type": "chat.frame", "frame": frame})
        except Exception as exc:
            failure = exc
    present = services.is_present(digest)
    if failure is not None:
        if present:
            raise TransientSendError(f"The live connection to the visitor failed: {failure}"[:500])
        logger.warning("chat reply %s: channel layer unavailable (%r); the visitor gets it in history",
                       message.pk, failure)
    email = None
    if not present:
        email = (CustomerIdentity.objects.filter(customer_id=message.customer_id, kind=identity.EMAIL)
                 .order_by("-is_primary", "id").values_list("value", flat=True).first())
    # Then recorded (the live frame goes first: it is what the visitor waits for); from here on
    # the visitor's history shows it too. A retry after a failure below sends the frame again,
    # which the widget shows once (it keys lines by id).
    inbox_services.update_delivery(message=message, status=Message.DeliveryStatus.QUEUED,
                                   metadata={"visitor": digest, **({"emailed_to": email} if email else {})})
    if email:
        mail = email_sender.build(message, to=email,
                                  message_id=outbound_message_id(conversation_id=message.conversation_id,
                                                                 message_id=message.pk))
        mail.subject = "Your chat with My Hibachi"
        email_sender.deliver(mail)
    return f"chat-{message.pk}"
