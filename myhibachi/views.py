from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from inbox.models import Conversation

from .roles import is_manager, is_staff_member


@login_required
def home(request):
    if not is_staff_member(request.user):
        raise PermissionDenied("Your account is not in the Agent or Manager group.")
    open_count = Conversation.objects.filter(status=Conversation.Status.OPEN).count()
    return render(request, "home.html", {"open_count": open_count, "is_manager": is_manager(request.user)})
