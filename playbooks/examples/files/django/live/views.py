"""Each logged-in user's own notifications, live: the page subscribes to
the user's private channel with a token this application signs for that
user alone; anything the application publishes there arrives at once."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST
from mod_wsgi_ws_sidecar import push

from . import release

MAX_TEXT = 500


def own_channel(user) -> str:
    return f"user.{user.pk}"


@login_required
def page(request):
    context = {"channel": own_channel(request.user), "release": release.RELEASE}
    return render(request, "live/page.html", context)


@login_required
def push_token(request):
    """A token for the user's own channel, and no other."""
    channel = request.GET.get("channel", "")
    if channel != own_channel(request.user):
        return HttpResponseForbidden("Not your channel.", content_type="text/plain")
    token = push.token(channel, ttl=300, subject=f"user:{request.user.pk}")
    return HttpResponse(token, content_type="text/plain")


@login_required
@require_POST
def notify(request):
    """Publishes a note to the user's own channel (any request may; here, a form)."""
    text = request.POST.get("text", "")[:MAX_TEXT]
    position = push.publish(own_channel(request.user), {"text": text})
    return JsonResponse({"position": position})


def release_view(request):
    return HttpResponse(f"release {release.RELEASE}", content_type="text/plain")
