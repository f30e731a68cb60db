"""The website chat: the visitor's widget (static/chat/), its socket (consumers.py), the services
that turn what a visitor says into inbox messages (services.py), the sender that delivers staff
replies to the visitor's page or, when they left, by email (sender.py), and the chatbot hand-off
API (chatbot.py). docs/chat.md tells the whole story."""
